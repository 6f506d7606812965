"""The retry layer against what a network and a vendor really do (issue 13), through the flaky
proxy in front of a real emulator: bodies cut mid-stream, 2xx answers that are not JSON, untrusted
certificates; and plain http:// to another host needs saying so."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from canonical.errors import ConfigError
from connectors.errors import ConnectorError
from connectors.http import HttpClient, RetryingSession, RetryPolicy
from sandbox.flaky import FaultMix, FlakyProxy
from sandbox.server import RunningServer, serve


def _things(request: Request) -> JSONResponse:
    return JSONResponse({"results": [{"id": i, "amount": "10.10"} for i in range(200)]})


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningServer]:
    app = Starlette(routes=[Route("/things", _things)])
    with serve(app) as srv:
        yield srv


def _policy(sleeps: list[float], attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, sleep=sleeps.append)


@pytest.mark.parametrize("fault", ["cut", "truncated", "html", "reset", "429", "503"])
def test_httpx_client_retries_each_fault_then_succeeds(upstream: RunningServer, fault: str) -> None:
    with FlakyProxy(upstream.url, mix=FaultMix(rate=0, script=(fault, fault))) as proxy:
        sleeps: list[float] = []
        client = HttpClient("vendor", proxy.url, policy=_policy(sleeps))
        body = client.json("GET", "/things")
        assert len(body["results"]) == 200
        assert proxy.stats[fault] == 2 and len(sleeps) == 2
        client.close()


@pytest.mark.parametrize("fault", ["cut", "reset", "truncated", "html", "503"])
def test_requests_session_retries_each_fault_then_succeeds(upstream: RunningServer, fault: str) -> None:
    """simple-salesforce's transport: a body cut mid-stream is requests' ChunkedEncodingError."""
    with FlakyProxy(upstream.url, mix=FaultMix(rate=0, script=(fault,))) as proxy:
        sleeps: list[float] = []
        session = RetryingSession("salesforce", policy=_policy(sleeps))
        response = session.get(f"{proxy.url}/things")
        assert response.status_code == 200 and len(response.json()["results"]) == 200
        assert len(sleeps) == 1


def test_a_body_that_is_never_json_is_named_not_blamed_on_credentials(upstream: RunningServer) -> None:
    with FlakyProxy(upstream.url, mix=FaultMix(rate=1.0, kinds=("truncated",))) as proxy:
        client = HttpClient("vendor", proxy.url, policy=_policy([], attempts=3))
        with pytest.raises(ConnectorError) as err:
            client.json("GET", "/things")
        text = str(err.value)
        assert "still failing after 3 attempts" in text and "truncated or invalid JSON instead of JSON" in text
        assert "credential" not in text and err.value.exit_code == 1  # a body cut off: the source's failure


def _html_token(request: Request) -> HTMLResponse:
    return HTMLResponse("<html><body>Please sign in to the corporate proxy</body></html>")


def test_salesforce_login_answered_with_an_html_page_is_not_a_credentials_error() -> None:
    from connectors.salesforce import SalesforceConnector

    app = Starlette(routes=[Route("/services/oauth2/token", _html_token, methods=["POST"])])
    with serve(app, tls=True) as srv:
        conn = SalesforceConnector("crm", base_url=srv.url, credentials={"client_id": "a", "client_secret": "b"},
                                   options={"ca_file": srv.ca_file}, policy=_policy([], attempts=2))
        with pytest.raises(ConnectorError) as err:
            conn.source_ids(conn.streams[0])
        assert "HTML page instead of JSON" in str(err.value) and "credentials" not in str(err.value)
        # still a page, not the API, after the retries: an operator fixes base_url or the network (exit 2, as an
        # unreachable server), not a failure of the source (exit 1 before)
        assert err.value.exit_code == 2
        conn.close()


def test_an_untrusted_certificate_is_not_retried_and_says_set_ca_file() -> None:
    app = Starlette(routes=[Route("/things", _things)])
    with serve(app, tls=True) as srv:
        sleeps: list[float] = []
        client = HttpClient("vendor", srv.url, policy=_policy(sleeps))
        with pytest.raises(ConnectorError, match="certificate not trusted: set ca_file"):
            client.request("GET", "/things")
        assert sleeps == [] and client.policy.attempts_made == 1
        client.close()
        session = RetryingSession("salesforce", policy=_policy(sleeps))
        with pytest.raises(ConnectorError, match="certificate not trusted: set ca_file"):
            session.get(f"{srv.url}/things")
        assert sleeps == []
        trusted = HttpClient("vendor", srv.url, verify=srv.ca_file)
        assert trusted.request("GET", "/things").status_code == 200
        trusted.close()


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "ltc.yaml"
    path.write_text(body)
    return path


def test_plain_http_to_another_host_needs_allow_insecure_http(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from ltc.app import runtime
    from ltc.app.config import load_config

    source = ("sources:\n  shop:\n    kind: stripe\n    base_url: http://payments.internal:8080\n"
              "    credentials: {api_key: {env: SK}}\n")
    with pytest.raises(ConfigError, match=r"ltc.yaml:3: sources.shop: .*plain http:// .*allow_insecure_http: true"):
        load_config(_write(tmp_path, source))
    cfg = load_config(_write(tmp_path, source + "    allow_insecure_http: true\n"))
    monkeypatch.setenv("SK", "sk_test_x")
    with caplog.at_level(logging.WARNING, logger="ltc"):
        runtime.build_connector(cfg, "shop").close()
    assert "plain http:// to another host" in caplog.text and "sk_test_x" not in caplog.text
    # loopback stays allowed: the emulators and real peers on this machine
    assert load_config(_write(tmp_path, source.replace("payments.internal", "127.0.0.1"))).sources["shop"]


def test_retry_budget_is_not_spent_on_fatal_statuses(upstream: RunningServer) -> None:
    with FlakyProxy(upstream.url, mix=FaultMix(rate=0)) as proxy:
        client = HttpClient("vendor", proxy.url, policy=_policy([]))
        with pytest.raises(ConnectorError):
            client.request("GET", "/missing")
        assert proxy.stats["requests"] == 1
        assert isinstance(client.client, httpx.Client)
        client.close()

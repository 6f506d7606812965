"""The one retry layer: 429/5xx/transport retried with Retry-After honoured; other 4xx fail fast."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
import requests
import respx

from connectors.errors import AuthenticationError, ConnectorError, PermissionDenied
from connectors.governor import RateGovernor
from connectors.http import HttpClient, RetryingSession, RetryPolicy, parse_retry_after, redact_url


def policy(sleeps: list[float], attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, sleep=sleeps.append)


def test_parse_retry_after_seconds_date_and_clamp() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after("Sun, 22 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Sun, 22 Nov 2026 11:00:00 GMT", now=now) == 0.0  # in the past
    assert parse_retry_after("100000", now=now, cap=120) == 120
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@respx.mock
def test_429_with_retry_after_then_success() -> None:
    route = respx.get("https://api.example.test/v1/things").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}, json={"message": "slow down"}),
            httpx.Response(503, text="busy"),
            httpx.Response(200, json={"amount": 10.10}),
        ]
    )
    sleeps: list[float] = []
    client = HttpClient("example", "https://api.example.test", policy=policy(sleeps))
    body = client.json("GET", "/v1/things")
    assert body == {"amount": Decimal("10.10")} and isinstance(body["amount"], Decimal)
    assert route.call_count == 3
    assert sleeps[0] == 3.0 and 0 <= sleeps[1] <= 1.0  # Retry-After, then jittered backoff


@respx.mock
def test_transport_errors_are_retried_and_capped() -> None:
    respx.get("https://api.example.test/x").mock(side_effect=httpx.ConnectError("refused"))
    sleeps: list[float] = []
    client = HttpClient("example", "https://api.example.test", policy=policy(sleeps, attempts=3))
    with pytest.raises(ConnectorError, match="cannot reach the server after 3 attempts"):
        client.request("GET", "/x")
    assert len(sleeps) == 2


def test_an_unreachable_server_names_the_proxy_the_environment_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy that is down looks like the server being down: the message names it (its password masked)."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    closed = "http://ops:hunter2@127.0.0.1:9"  # the discard port: nothing listens
    monkeypatch.setenv("HTTPS_PROXY", closed)
    monkeypatch.setenv("HTTP_PROXY", closed)
    client = HttpClient("example", "https://api.example.test", policy=policy([], attempts=2))
    with pytest.raises(ConnectorError, match="cannot reach the server after 2 attempts") as caught:
        client.request("GET", "/x")
    message = str(caught.value)
    assert "the proxy the environment sets (http: http://ops:***@127.0.0.1:9, https: http://ops:***@127.0.0.1:9" \
        in message
    assert "hunter2" not in message
    for name in ("HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name)
    with pytest.raises(ConnectorError) as caught:
        HttpClient("example", "http://127.0.0.1:9", policy=policy([], attempts=1)).request("GET", "/x")
    assert "proxy" not in str(caught.value)


@respx.mock
def test_persistent_5xx_gives_up_with_a_clear_error() -> None:
    respx.get("https://api.example.test/x").mock(return_value=httpx.Response(500, text="boom"))
    client = HttpClient("example", "https://api.example.test", policy=policy([], attempts=3))
    with pytest.raises(ConnectorError, match=r"still failing after 3 attempts.*answered 500"):
        client.request("GET", "/x")


@respx.mock
def test_other_4xx_fail_fast_with_vendor_hint_and_no_secret() -> None:
    route = respx.get("https://api.example.test/crm/v3/objects/deals").mock(
        return_value=httpx.Response(403, json={"category": "MISSING_SCOPES", "context": {"requiredScopes": ["crm.objects.deals.read"]}})
    )

    def hint(status: int, headers: object, body: object) -> str | None:
        scopes = body.get("context", {}).get("requiredScopes") if isinstance(body, dict) else None
        return f"the private app lacks scope(s) {', '.join(scopes)}: add them in HubSpot" if scopes else None

    client = HttpClient("hubspot", "https://api.example.test", policy=policy([]), hint=hint)
    with pytest.raises(PermissionDenied) as err:
        client.request("GET", "/crm/v3/objects/deals", params={"hapikey": "s3cr3t"})
    assert route.call_count == 1
    assert "crm.objects.deals.read" in str(err.value) and "s3cr3t" not in str(err.value)


@respx.mock
def test_401_says_to_check_credentials() -> None:
    respx.get("https://api.example.test/x").mock(return_value=httpx.Response(401, json={}))
    client = HttpClient("stripe", "https://api.example.test", policy=policy([]))
    with pytest.raises(AuthenticationError, match="credentials rejected"):
        client.request("GET", "/x")


@respx.mock
def test_governor_is_consulted_and_penalized_on_429() -> None:
    respx.get("https://api.example.test/x").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, json={})]
    )
    clock = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        clock[0] += s

    gov = RateGovernor("example", capacity=10, interval_s=10, clock=lambda: clock[0], sleep=sleep)
    client = HttpClient("example", "https://api.example.test", governor=gov,
                        policy=RetryPolicy(max_attempts=3, sleep=sleep))
    client.request("GET", "/x")
    # the 429 emptied the bucket, so the retry also waited for a token, not just Retry-After
    assert sum(waits) >= 2.0 and client.requests_sent == 2


def test_requests_session_uses_the_same_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    responses = [(503, {}), (429, {"Retry-After": "1"}), (200, {})]
    calls = []

    def fake_request(self: requests.Session, method: str, url: str, *a: object, **k: object) -> requests.Response:
        status, headers = responses[len(calls)]
        calls.append(url)
        r = requests.Response()
        r.status_code, r.headers, r._content = status, requests.structures.CaseInsensitiveDict(headers), b"{}"
        return r

    monkeypatch.setattr(requests.Session, "request", fake_request)
    sleeps: list[float] = []
    session = RetryingSession("salesforce", policy=policy(sleeps))
    assert session.get("https://x.test/services/data?token=abc").status_code == 200
    assert len(calls) == 3 and sleeps[1] == 1.0



def test_a_session_with_the_clients_parse_parses_each_json_answer_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the client's parse, the body the 2xx check reads is parsed that way once and ``json()`` returns
    that value (exact amounts); a body that is not JSON is still retried, then named."""
    bodies = [b'{"records": [{"Amount": 1234.10}]}', b"<html>maintenance</html>", b'{"done": true, "n": 0.1}']
    calls: list[bytes] = []
    parses: list[bytes] = []

    def fake_request(self: requests.Session, method: str, url: str, *a: object, **k: object) -> requests.Response:
        r = requests.Response()
        r.status_code, r._content = 200, bodies[len(calls)]
        calls.append(r._content)
        return r

    def loads(body: bytes) -> object:
        parses.append(body)
        return json.loads(body, parse_float=Decimal)

    monkeypatch.setattr(requests.Session, "request", fake_request)
    session = RetryingSession("salesforce", policy=policy([]), json_loads=loads)
    first = session.get("https://x.test/query")
    value = first.json(parse_float=Decimal)
    assert value == {"records": [{"Amount": Decimal("1234.10")}]} and str(value["records"][0]["Amount"]) == "1234.10"
    assert first.json() is value and parses == [bodies[0]]
    second = session.get("https://x.test/query")  # the HTML page is retried, the next answer kept
    assert second.json() == {"done": True, "n": Decimal("0.1")} and parses == bodies
    calls.clear()
    bodies[:] = [b"<html>maintenance</html>", b"not json either"]
    with pytest.raises(ConnectorError, match="instead of JSON"):
        RetryingSession("salesforce", policy=policy([], attempts=2), json_loads=loads).get("https://x.test/query")
    without = RetryingSession("salesforce", policy=policy([]))  # no parse given: checked only, json() is requests'
    calls.clear()
    bodies[0] = b'{"n": 0.1}'
    assert without.get("https://x.test/query").json() == {"n": 0.1}

def test_redact_url() -> None:
    assert redact_url("https://h/p?access_token=abc&x=1") == "https://h/p"

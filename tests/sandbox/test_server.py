"""The emulator server: HTTP and HTTPS on loopback, the CA verifies, a client without it is refused."""

from __future__ import annotations

import httpx
import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.server import serve


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"path": request.url.path, "scheme": request.url.scheme})


APP = Starlette(routes=[Route("/hello", hello)])


def test_http_server_starts_answers_and_stops() -> None:
    srv = serve(APP)
    assert srv.url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{srv.url}/hello").json() == {"path": "/hello", "scheme": "http"}
    srv.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{srv.url}/hello", timeout=2)


def test_tls_server_is_trusted_only_with_its_ca() -> None:
    with serve(APP, tls=True) as srv:
        assert srv.url.startswith("https://") and srv.ca_file
        assert requests.get(f"{srv.url}/hello", verify=srv.ca_file, timeout=5).json()["scheme"] == "https"
        assert httpx.get(f"https://localhost:{srv.port}/hello", verify=srv.ssl_context()).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{srv.url}/hello", timeout=5)

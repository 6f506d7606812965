"""A local HTTP receiver for webhook notifications.

apprise's plugins post to fixed vendor hosts (hooks.slack.com, open.feishu.cn, qyapi.weixin.qq.com, the
Teams workflow host). :func:`receiving` sends every HTTP request that ``requests`` makes in this process
to a threaded ``http.server`` on 127.0.0.1 instead, keeping the original host as the first path segment,
and answers as each vendor does on success (Slack webhooks: the text ``ok``; WeCom: ``errcode 0``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests


@dataclass
class Received:
    host: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    port: int
    requests: list[Received] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)  # host -> HTTP status to answer

    def to(self, host: str) -> list[Received]:
        return [r for r in self.requests if r.host == host]


@contextmanager
def receiving(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A local HTTP receiver that every ``requests`` call of the process is sent to (for the test's duration)."""
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            host, _, path = parts.path.lstrip("/").partition("/")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append(Received(host, "/" + path, parse_qs(parts.query), dict(self.headers), body))
            code = state.status.get(host, 200)
            # what each vendor answers on success (Slack webhooks: the text ``ok``)
            reply = b"ok" if host == "hooks.slack.com" else b'{"errcode": 0, "errmsg": "ok"}' if host.startswith(
                "qyapi.") else b'{"code": 0, "msg": "success", "data": {}}'
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    real = requests.Session.request

    def redirected(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        local = f"http://127.0.0.1:{state.port}/{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        kwargs.pop("verify", None)
        return real(self, method, local, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", redirected)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def smtp_receiving() -> Iterator[tuple[int, list[bytes]]]:
    """A minimal SMTP server on 127.0.0.1 (no TLS, no login): yields its port and the messages it took."""
    import socketserver

    messages: list[bytes] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 receiver.test ESMTP\r\n")
            while line := self.rfile.readline():
                verb = line[:4].upper()
                if verb == b"DATA":
                    self.wfile.write(b"354 end with .\r\n")
                    data = b""
                    while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                        data += chunk
                    messages.append(data)
                    self.wfile.write(b"250 queued\r\n")
                elif verb == b"QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:  # EHLO, HELO, MAIL, RCPT, RSET, NOOP
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], messages
    finally:
        server.shutdown()
        server.server_close()

"""A fault-injecting reverse proxy for the emulators (and any HTTP peer) on 127.0.0.1.

``FlakyProxy(upstream).start()`` forwards every request to ``upstream`` and answers a share of them
(``rate``, default 20 %) with one of the faults a real network and a real vendor produce:

* ``429``: ``Too Many Requests`` with ``Retry-After: 1``;
* ``503``: ``Service Unavailable`` (no hint);
* ``reset``: the connection is reset (TCP RST) before any answer;
* ``stall``: the answer comes ``stall_s`` late;
* ``cut``: the answer's headers promise more bytes than come (the body is cut mid-stream, then the
  connection closes) — ``requests``' ``ChunkedEncodingError``, httpx's ``RemoteProtocolError``;
* ``truncated``: a well-formed 200 whose body is half the JSON (``Content-Length`` matches);
* ``html``: a 200 with a proxy's HTML error page instead of JSON.

With ``tls=True`` the proxy speaks HTTPS with its own sandbox CA (``ca_file``), as the Salesforce
emulator does. The client's ``Host`` header is passed on, so an upstream that builds URLs from it
(Salesforce's ``instance_url``) keeps the client on the proxy. ``stats`` counts what was done.
"""

from __future__ import annotations

import contextlib
import random
import socket
import socketserver
import ssl
import struct
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sandbox.server import free_port, make_tls_files

FAULTS = ("429", "503", "reset", "stall", "cut", "truncated", "html")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "accept-encoding", "te", "upgrade",
        "proxy-connection", "content-encoding"}
_REASONS = {200: "OK", 429: "Too Many Requests", 503: "Service Unavailable"}


@dataclass
class FaultMix:
    rate: float = 0.2
    kinds: tuple[str, ...] = FAULTS
    stall_s: float = 1.5
    seed: int = 1
    script: tuple[str | None, ...] = ()  # faults for the first requests, in order (None: forward), then ``rate``


@dataclass
class FlakyProxy:
    upstream: str
    upstream_ca: str | None = None
    tls: bool = False
    mix: FaultMix = field(default_factory=FaultMix)
    stats: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.mix.seed)
        self._lock = threading.RLock()
        self._tmp = tempfile.TemporaryDirectory(prefix="ltc-flaky-")
        self.port = free_port()
        self.ca_file: str | None = None
        self._ctx: ssl.SSLContext | None = None
        if self.tls:
            ca, cert, key = make_tls_files(Path(self._tmp.name))
            self.ca_file = str(ca)
            self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ctx.load_cert_chain(str(cert), str(key))
        verify: Any = ssl.create_default_context(cafile=self.upstream_ca) if self.upstream_ca else True
        self._client = httpx.Client(base_url=self.upstream.rstrip("/"), verify=verify,
                                    timeout=120.0)
        self._server: socketserver.ThreadingTCPServer | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def pick(self) -> str | None:
        with self._lock:
            served = self.stats["requests"]
            if served < len(self.mix.script):
                return self.mix.script[served]
            if self._rng.random() >= self.mix.rate:
                return None
            return self._rng.choice(self.mix.kinds)

    def start(self) -> FlakyProxy:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name=f"flaky-{self.port}", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._client.close()
        self._tmp.cleanup()

    def __enter__(self) -> FlakyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- one connection -----------------------------------------------------------------------
    def _serve(self, raw: socket.socket) -> None:
        sock: Any = raw
        try:
            if self._ctx is not None:
                sock = self._ctx.wrap_socket(raw, server_side=True)
            reader = sock.makefile("rb")
            while True:
                request = _read_request(reader)
                if request is None:
                    return
                if not self._answer(sock, *request):
                    return
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def _answer(self, sock: Any, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bool:
        """Answer one request; False when the connection is to be closed."""
        with self._lock:
            fault = self.pick()
            self.stats["requests"] += 1
            self.stats[fault or "forwarded"] += 1
        if fault == "reset":
            _reset(sock)
            return False
        if fault == "429":
            _send(sock, 429, [("Retry-After", "1"), ("Content-Type", "application/json")],
                  b'{"message": "rate limited by the flaky proxy"}')
            return True
        if fault == "503":
            _send(sock, 503, [("Content-Type", "text/plain")], b"upstream unavailable")
            return True
        if fault == "html":
            _send(sock, 200, [("Content-Type", "text/html")],
                  b"<html><body><h1>502 Bad Gateway</h1>The proxy could not reach the server.</body></html>")
            return True
        if fault == "stall":
            time.sleep(self.mix.stall_s)
        send_headers = [(k, v) for k, v in headers if k.lower() not in _HOP]
        upstream = self._client.request(method, target, headers=send_headers, content=body or None)
        out_headers = [(k, v) for k, v in upstream.headers.multi_items() if k.lower() not in _HOP]
        content = upstream.content
        if fault == "cut" and len(content) > 1:
            head = _head(upstream.status_code, [*out_headers, ("Content-Length", str(len(content)))])
            sock.sendall(head + content[: len(content) // 2])
            return False
        if fault == "truncated" and len(content) > 1:
            content = content[: len(content) // 2]
        _send(sock, upstream.status_code, out_headers, content)
        return True


def _read_request(reader: Any) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    line = reader.readline(65536)
    if not line or not line.strip():
        return None
    method, target, _version = line.decode("latin-1").split(" ", 2)
    headers: list[tuple[str, str]] = []
    length = 0
    while True:
        h = reader.readline(65536)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = reader.read(length) if length else b""
    return method, target, headers, body


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _send(sock: Any, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    sock.sendall(_head(status, [*headers, ("Content-Length", str(len(body)))]) + body)


def _reset(sock: Any) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed peer or a middlebox does."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

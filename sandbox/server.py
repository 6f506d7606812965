"""Serve an emulator (an ASGI app) on 127.0.0.1, over HTTP or HTTPS, from tests, benches or the CLI.

``serve(app, tls=True)`` generates a throwaway certificate authority and a ``localhost`` /
``127.0.0.1`` server certificate signed by it (simple-salesforce only speaks https); the returned
:class:`RunningServer` names the CA file a client passes as ``verify``. Nothing is written outside a
private temporary directory, which ``stop()`` removes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ltc-hub sandbox")])


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """Write (ca.pem, server.pem, server.key) for localhost/127.0.0.1 into ``directory``."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("ltc-hub sandbox CA"))
        .issuer_name(_name("ltc-hub sandbox CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


class Served(Protocol):
    """What a caller of a served emulator uses: where it is, the CA to trust, and how to stop it
    (a :class:`RunningServer` in this process, or one of ``sandbox.run.start_world_process``)."""

    @property
    def url(self) -> str: ...

    @property
    def ca_file(self) -> str | None: ...

    def stop(self) -> None: ...


@dataclass
class RunningServer:
    url: str  # e.g. https://127.0.0.1:40123 (no trailing slash)
    port: int
    ca_file: str | None
    _server: uvicorn.Server
    _thread: threading.Thread
    _tmp: tempfile.TemporaryDirectory[str]

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's CA (httpx: ``verify=server.ssl_context()``)."""
        return ssl.create_default_context(cafile=self.ca_file)

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # do not wait for idle keep-alive (TLS) clients to hang up
        self._thread.join(timeout=10)
        self._tmp.cleanup()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(app: Any, *, tls: bool = False, port: int | None = None, host: str = "127.0.0.1",
          startup_timeout_s: float = 15.0) -> RunningServer:
    """Start ``app`` in a background thread; returns once it accepts connections."""
    tmp = tempfile.TemporaryDirectory(prefix="ltc-sandbox-")
    port = port or free_port()
    tls_files: dict[str, str] = {}
    ca_file = None
    if tls:
        ca, cert, key = make_tls_files(Path(tmp.name))
        ca_file = str(ca)
        tls_files = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off", **tls_files)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"sandbox-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            tmp.cleanup()
            raise RuntimeError(f"sandbox server on {host}:{port} did not start")
        time.sleep(0.02)
    scheme = "https" if tls else "http"
    return RunningServer(f"{scheme}://{host}:{port}", port, ca_file, server, thread, tmp)

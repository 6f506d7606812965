"""``ltc ui``: the exception work queue (``ui.app``) served by uvicorn; ``ltc ui hash-password``."""

from __future__ import annotations

import errno
import getpass
import socket
from typing import Any

import typer

from canonical.errors import ConfigError
from ltc.cli.common import ConfigOpt

app = typer.Typer(help="The exception work queue: a small web application on the store.",
                  invoke_without_command=True, no_args_is_help=False)


def build(config: str | None, lang: str | None = None) -> tuple[Any, Any]:
    """The application and the configuration (users checked before anything listens)."""
    from ltc.app import runtime
    from ltc.app.config import load_config
    from ui.app import create_app

    cfg = load_config(config)
    return create_app(runtime.open_store(config), cfg, lang=lang), cfg


def server(config: str | None, host: str | None = None, port: int | None = None, lang: str | None = None) -> Any:
    """A uvicorn server for the work queue (``ltc ui`` runs it; ``ltc serve --ui`` runs it in a thread). Its
    ``listen()`` binds the address now (:class:`ConfigError`, one line, for one it cannot have); ``run()`` serves on
    that socket (bound first, if ``listen()`` was not called)."""
    import uvicorn

    class QueueServer(uvicorn.Server):
        listening: list[socket.socket] | None = None

        def listen(self) -> None:
            if self.listening is None:
                self.listening = [bind(self.config.host, self.config.port)]

        def run(self, sockets: list[socket.socket] | None = None) -> None:
            if sockets is None:
                self.listen()
            super().run(sockets=sockets or self.listening)

    application, cfg = build(config, lang)
    return QueueServer(uvicorn.Config(application, host=host or cfg.ui.host, port=port or cfg.ui.port,
                                      log_level="warning", proxy_headers=False, server_header=False))


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (as uvicorn binds one), before anything says the work queue is there: an
    address this process cannot have is :class:`ConfigError` naming it, not uvicorn's log line and exit code 3 after
    "work queue on ..." was printed."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"cannot listen on {host}:{port}: port {port} is in use ({reason}): stop what listens "
                              "there or give another port (--port, or ui.port in ltc.yaml)") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({reason}): give another address or port (--host, "
                          "--port, or ui.host, ui.port in ltc.yaml)") from None
    sock.set_inheritable(True)
    return sock


@app.callback()
def ui(
    ctx: typer.Context,
    host: str | None = typer.Option(None, help="Address to listen on (default ui.host, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default ui.port, 8765)."),
    lang: str | None = typer.Option(None, "--lang", help="Default language: en or zh."),
    config: str | None = ConfigOpt,
) -> None:
    """Serve the work queue (users and roles from ui.users in ltc.yaml)."""
    if ctx.invoked_subcommand is not None:
        return
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: give a port from 1 to 65535")
    srv = server(config, host, port, lang)
    srv.listen()
    typer.echo(f"work queue on http://{srv.config.host}:{srv.config.port}{srv.config.app.state.base_path}/ "
               "(Ctrl-C to stop)")
    srv.run()


@app.command("hash-password")
def hash_password_cmd() -> None:
    """Read a password (twice, not echoed) and print its hash for ui.users.<name>.password_hash."""
    from ui.auth import hash_password

    first = getpass.getpass("password: ")
    if len(first) < 8:
        raise ConfigError("a password needs at least 8 characters")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the two passwords differ")
    typer.echo(hash_password(first))

"""``ltc ui`` wiring: loopback by default, ``hash-password``, and ``ltc serve --ui`` running the work queue
beside the schedules (Prefect's serve() replaced by a stand-in that checks the queue answers meanwhile)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import flows.serve
from canonical.errors import ConfigError
from ltc.cli import ui as ui_cmd
from ui.auth import hash_password, verify_password


def _config(tmp_path: Path, port: int = 0, **ui: Any) -> str:
    path = tmp_path / "ltc.yaml"
    users = {"fiona": {"role": "finance", "password_hash": hash_password("fiona-secret-1")}}
    path.write_text(yaml.safe_dump({"database_url": f"sqlite:///{tmp_path / 'ltc.db'}",
                                    "ui": {"users": users, "port": port or 8765, **ui}}))
    return str(path)


def test_binds_loopback_unless_told(tmp_path: Path) -> None:
    srv = ui_cmd.server(_config(tmp_path))
    assert (srv.config.host, srv.config.port) == ("127.0.0.1", 8765)
    assert ui_cmd.server(_config(tmp_path), host="0.0.0.0", port=9000).config.host == "0.0.0.0"


def test_refuses_to_start_without_users(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(yaml.safe_dump({"database_url": f"sqlite:///{tmp_path / 'e.db'}"}))
    with pytest.raises(ConfigError, match="hash-password"):
        ui_cmd.server(str(path))


def test_hash_password_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    answers = iter(["a-long-password", "a-long-password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    ui_cmd.hash_password_cmd()
    printed = capsys.readouterr().out.strip()
    assert verify_password("a-long-password", printed) and "a-long-password" not in printed
    answers = iter(["short"])
    with pytest.raises(ConfigError, match="at least 8"):
        ui_cmd.hash_password_cmd()


def test_serve_runs_the_work_queue_beside_the_schedules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = ui_cmd.server(_config(tmp_path, port=port))
    seen: dict[str, Any] = {}

    def fake_serve(*deployments: Any, **kw: Any) -> None:  # Prefect's serve(): blocks while the schedules run
        deadline = time.monotonic() + 15
        while not srv.started and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["health"] = httpx.get(f"http://127.0.0.1:{port}/healthz").text
        seen["login"] = httpx.get(f"http://127.0.0.1:{port}/").status_code
        seen["deployments"] = len(deployments)

    monkeypatch.setattr(flows.serve, "serve", fake_serve)
    monkeypatch.setattr(flows.serve, "deployments", lambda config_path=None: ["a", "b"])
    flows.serve.serve_all(None, ui=srv)
    assert seen == {"health": "ok", "login": 303, "deployments": 2}
    assert srv.should_exit  # the queue stops with the schedules


def _ltc(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[Any, str, str]:
    """The console entry point in-process: its exit code, stdout and stderr."""
    from ltc.cli import main

    monkeypatch.setattr("sys.argv", ["ltc", *args])
    with pytest.raises(SystemExit) as done:
        main()
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


@pytest.mark.parametrize("port", ["99999", "-1", "0"])
def test_a_port_out_of_range_is_refused_at_the_option(port: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``ltc ui --port 99999`` printed "work queue on ...:99999/" and ended in ``OverflowError: bind(): port must be
    0-65535`` (ui.port in ltc.yaml is checked, the option was not)."""
    code, out, err = _ltc(monkeypatch, capsys, "ui", "--config", _config(tmp_path), "--port", port)
    assert (code, out) == (2, "")
    assert err.strip() == f"error: --port {port}: give a port from 1 to 65535"


def test_a_port_in_use_is_one_line_naming_it_and_nothing_says_the_queue_is_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A port in use printed "work queue on http://127.0.0.1:PORT/ (Ctrl-C to stop)", then uvicorn's "ERROR: [Errno
    98] ... address already in use" and exit 3. Now the socket is bound before that line: one line naming the port
    and what to do, exit 2."""
    import socket

    served: list[Any] = []
    monkeypatch.setattr(flows.serve, "serve_all", lambda config_path=None, ui=None: served.append(ui))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = _ltc(monkeypatch, capsys, "ui", "--config", _config(tmp_path), "--port", str(port))
        # `ltc serve --ui` (ui.port in ltc.yaml): the same line before the schedules start, not a thread's log line
        # beside them
        serve = _ltc(monkeypatch, capsys, "serve", "--ui", "--config", _config(tmp_path, port=port))
    assert (code, out) == (2, "")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}: port {port} is in use (")
    assert lines[0].endswith("stop what listens there or give another port (--port, or ui.port in ltc.yaml)")
    assert serve == (2, "", err) and served == []

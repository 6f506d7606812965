"""The CLI on long work: progress (bars on a terminal, periodic lines otherwise), each source isolated in
`ltc sync` with the worst exit code, operator-fixable errors exit 2, `ltc --version`."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from connectors.base import StreamResult
from connectors.errors import AuthenticationError, PermissionDenied, Unreachable
from connectors.http import RetryPolicy
from ltc.app.progress import StageProgress, StreamProgress, StreamTimer, stage
from ltc.cli import app
from ltc.cli.progress import BarProgress, PlainProgress, reporter, stream_line

LTC = [sys.executable, "-c", "from ltc.cli import main; main()"]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_version_is_the_distribution_version() -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.stdout.strip() == f"ltc-hub {version('ltc-hub')}"


def test_plain_lines_first_at_start_then_every_five_seconds_then_the_outcome() -> None:
    clock, lines = Clock(), []
    plain = PlainProgress(lines.append, every=5.0, clock=clock)
    timer = StreamTimer(plain, clock=clock)
    with stage("sync salesforce", plain, clock=clock):
        assert lines == ["sync salesforce: started"]  # before anything is fetched
        result = StreamResult("salesforce", "Opportunity")
        timer(result)  # the stream starts
        for page in range(1, 7):
            clock.now += 1.0
            result.pages, result.records = page, page * 2000
            timer(result)
        assert lines[1:] == ["sync salesforce.Opportunity: 10,000 records, 5 pages, 2,000 rec/s"]
        clock.now += 4.0
        plain.heartbeat()  # no page for 4 s, no line for 5 s: the stream's latest counts
        assert lines[-1] == "sync salesforce.Opportunity: 12,000 records, 6 pages, 2,000 rec/s"
        clock.now += 1.0
        result.status = "success"
        timer(result)
    assert len(lines) == 5
    assert lines[-2] == "sync salesforce.Opportunity: 12,000 records, 6 pages, 1,091 rec/s; success in 11.0 s"
    assert lines[-1] == "sync salesforce: done in 11.0 s"


def test_a_silent_stage_gets_a_heartbeat_and_a_failure_says_why() -> None:
    clock, lines = Clock(), []
    plain = PlainProgress(lines.append, every=5.0, clock=clock)
    with pytest.raises(RuntimeError), stage("reconcile", plain, clock=clock):
        clock.now += 3
        plain.heartbeat()
        clock.now += 3
        plain.heartbeat()
        clock.now += 3
        plain.heartbeat()
        clock.now += 3
        plain.heartbeat()
        raise RuntimeError("database went away")
    assert lines == ["reconcile: started", "reconcile: running, 6 s", "reconcile: running, 12 s",
                     "reconcile: failed in 12.0 s (database went away)"]


def test_stream_line_of_a_paused_stream_names_the_reason() -> None:
    ev = StreamProgress("hubspot", "deals", "paused", 300, 3, 300, 2, 1.5, "daily quota at 95%")
    assert stream_line(ev) == ("sync hubspot.deals: 300 records, 3 pages, 200 rec/s; paused in 1.5 s, "
                               "2 quarantined: daily quota at 95%")


def test_bars_on_a_terminal_show_records_pages_and_rate() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    bars = BarProgress(console)
    with bars.progress:
        bars(StageProgress("sync stripe", "start"))
        bars(StreamProgress("stripe", "charges", "running", 4200, 42, 4200, 0, 2.0))
        bars(StreamProgress("stripe", "charges", "success", 5000, 50, 5000, 0, 2.5))
        bars(StageProgress("sync stripe", "done", 2.6))
    text = out.getvalue()
    assert "\x1b[" in text  # drawn with cursor control, as on a terminal
    assert "stripe.charges" in text and "5,000 records · 50 pages · 2,000 rec/s · success" in text


def test_auto_mode_is_bars_on_a_terminal_and_lines_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LTC_PROGRESS", raising=False)
    with reporter(Console(file=io.StringIO(), force_terminal=True)) as on:
        assert isinstance(on, BarProgress)
    with reporter(Console(file=io.StringIO(), force_terminal=False)) as on:
        assert isinstance(on, PlainProgress)
    monkeypatch.setenv("LTC_PROGRESS", "off")
    with reporter(Console(file=io.StringIO(), force_terminal=True)) as on:
        assert on is None


def test_long_commands_announce_themselves_before_loading(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from ltc.cli import announce

    monkeypatch.delenv("LTC_PROGRESS", raising=False)
    assert announce(["run", "--config", "x.yaml"]) and capsys.readouterr().err == "ltc run: starting\n"
    assert not announce(["sync", "--progress", "off"]) and not announce(["sync", "--progress=off"])
    assert not announce(["status"]) and not announce(["sync", "--help"]) and not announce(["--version"])
    monkeypatch.setenv("LTC_PROGRESS", "off")
    assert not announce(["demo"])
    assert capsys.readouterr().err == ""


def test_operator_fixable_errors_exit_2() -> None:
    assert AuthenticationError("x").exit_code == 2  # 401, INVALID_SESSION_ID after a re-login, wrong API key
    assert PermissionDenied("x").exit_code == 2

    def refused() -> None:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(Unreachable) as err:
        RetryPolicy(max_attempts=2, sleep=lambda s: None).call(refused, what="GET https://nowhere.example/x")
    assert err.value.exit_code == 2 and "check the base_url" in str(err.value)


def _two_sources(tmp_path: Path, url: str, good_key: str) -> Path:
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text(f"sources:\n"
                   f"  dead: {{kind: stripe, base_url: '{url}', credentials: {{api_key: {{env: PROG_BAD_KEY}}}}}}\n"
                   f"  good: {{kind: stripe, base_url: '{url}', credentials: {{api_key: {{env: PROG_GOOD_KEY}}}}}}\n")
    return cfg


def _env(tmp_path: Path, key: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LTC_")}
    return {**base, "COLUMNS": "200", "LTC_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
            "PROG_BAD_KEY": "sk_test_wrong_000000000000", "PROG_GOOD_KEY": key}


def test_one_dead_source_does_not_stop_the_others(tmp_path: Path) -> None:
    from sandbox.server import serve
    from sandbox.stripe import StripeEmulator, create_app

    key = "sk_test_progress_00000000000"
    with serve(create_app(emulator=StripeEmulator(seed=3, size=5, api_key=key))) as srv:
        cfg = _two_sources(tmp_path, srv.url, key)
        res = subprocess.run([*LTC, "sync", "--config", str(cfg)], capture_output=True, text=True,
                             env=_env(tmp_path, key), cwd=tmp_path, timeout=120)
    assert res.returncode == 2, res.stderr  # the worst: a rejected key is the operator's to fix
    assert "good: ok" in res.stdout and "sync: 2 sources: 1 ok, 1 need an operator (exit 2)" in res.stdout
    err = res.stderr.splitlines()
    assert err[:2] == ["ltc sync: starting", "sync dead: started"]  # before the imports, before any fetch
    assert any(line.startswith("dead: needs an operator") and "Invalid API Key" in line for line in err)
    assert any(line.startswith("sync good.charges: ") and "success" in line for line in err)
    assert "sk_test_wrong_000000000000" not in res.stdout + res.stderr and key not in res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux `script` for a pseudo-terminal")
def test_on_a_real_terminal_sync_draws_bars(tmp_path: Path) -> None:
    from sandbox.server import serve
    from sandbox.stripe import StripeEmulator, create_app

    key = "sk_test_progress_00000000000"
    with serve(create_app(emulator=StripeEmulator(seed=3, size=5, api_key=key))) as srv:
        cfg = _two_sources(tmp_path, srv.url, key)
        command = " ".join([sys.executable, "-c", "'from ltc.cli import main; main()'", "sync", "--source", "good",
                            "--config", str(cfg)])
        res = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True,
                             env={**_env(tmp_path, key), "TERM": "xterm"}, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stdout
    out: Any = res.stdout
    assert "\x1b[" in out and "good.charges" in out and "records ·" in out and "rec/s" in out
    assert "sync good.charges:" not in out  # no plain lines on a terminal


def test_json_lines_say_the_same_at_the_same_moments_for_a_log_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--progress json`` (or ``LTC_PROGRESS=json``): each plain line as one JSON object: UTC time, event, counts."""
    import json
    from datetime import UTC, datetime, timedelta

    from rich.console import Console

    from ltc.cli.progress import Json, resolve_mode

    clock, lines = Clock(), []
    plain = PlainProgress(lines.append, every=5.0, clock=clock, lines=Json)
    timer = StreamTimer(plain, clock=clock)
    with pytest.raises(RuntimeError), stage("sync 简道云", plain, clock=clock):
        result = StreamResult("jdy", "订单")
        timer(result)
        clock.now += 6.0
        result.pages, result.records = 3, 1200
        timer(result)
        clock.now += 1.0
        result.status, result.message = "failed", "HTTP 503"
        timer(result)
        raise RuntimeError("server down")
    got = [json.loads(line) for line in lines]
    assert [(g["event"], g.get("state") or g.get("status")) for g in got] == [
        ("stage", "start"), ("stream", "running"), ("stream", "failed"), ("stage", "failed")]
    assert got[2] == {**got[2], "source": "jdy", "stream": "订单", "records": 1200, "pages": 3, "message": "HTTP 503",
                      "elapsed": 7.0}
    assert got[3]["stage"] == "sync 简道云" and got[3]["detail"] == "server down" and got[3]["elapsed"] == 7.0
    stamps = [datetime.fromisoformat(g["ts"]) for g in got]
    assert all(s.tzinfo is not None and abs(datetime.now(UTC) - s) < timedelta(minutes=1) for s in stamps)
    assert "简道云" in lines[0]  # not \\u escapes: readable in the collector
    monkeypatch.setenv("LTC_PROGRESS", "json")
    assert resolve_mode("auto", Console()) == "json" and resolve_mode("plain", Console()) == "plain"

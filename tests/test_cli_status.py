"""`ltc status`: full messages (never cut) and each stream's freshness against its source's schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canonical.errors import ConfigError
from canonical.store import RawRecord, Store
from ltc.app.config import Config, SourceConfig, load_config
from ltc.app.status import Schedule, freshness, parse_schedule, source_schedules
from ltc.cli import app

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def test_interval_schedule_fresh_then_late() -> None:
    hourly = parse_schedule("1h", "test")
    assert freshness(hourly, T0, T0 + timedelta(minutes=50)) == "fresh"
    assert freshness(hourly, T0, T0 + timedelta(minutes=85)) == "fresh"  # within the grace (30 min)
    assert freshness(hourly, T0, T0 + timedelta(hours=3)) == "late by 2h"
    assert freshness(hourly, None, T0) == "never synced"
    assert freshness(None, T0, T0) == "no schedule"


def test_cron_schedule_counts_from_the_run_after_the_last_success() -> None:
    at_half_past = parse_schedule("30 * * * *", "test")
    assert at_half_past.cron == "30 * * * *"
    # last success 10:00 -> the next run was due 10:30; at 13:45 that is 3h 15m ago
    assert freshness(at_half_past, T0, T0 + timedelta(hours=3, minutes=45)) == "late by 3h 15m"
    assert freshness(at_half_past, T0, T0 + timedelta(minutes=40)) == "fresh"
    daily = parse_schedule("0 6 * * *", "test")
    assert freshness(daily, T0, T0 + timedelta(hours=20)) == "fresh"  # due tomorrow 06:00
    assert freshness(daily, T0, T0 + timedelta(days=2)) == "late by 1d 4h"


@pytest.mark.parametrize("bad", ["every hour", "61 * * * *", "off"])
def test_bad_schedule_in_ltc_yaml_is_a_config_error(bad: str, tmp_path: Path) -> None:
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text(f"sources:\n  pay:\n    kind: stripe\n    schedule: '{bad}'\n")
    res = CliRunner().invoke(app, ["config", "check", "--config", str(cfg)])
    assert res.exit_code == 2
    assert res.stderr.startswith(f"{cfg}:4: sources.pay.schedule: ")
    with pytest.raises(ConfigError):
        load_config(cfg)


def test_schedules_from_ltc_yaml_then_prefect_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LTC_HOME", raising=False)
    (tmp_path / "none").mkdir()
    monkeypatch.chdir(tmp_path / "none")
    (tmp_path / "prefect.yaml").write_text(
        "deployments:\n"
        "  - name: pipeline\n    entrypoint: flows/pipeline.py:pipeline\n    parameters: {sync: true}\n"
        "    schedules: [{cron: '30 * * * *', timezone: UTC}]\n"
        "  - name: crm-often\n    entrypoint: flows/sync.py:sync_source\n    parameters: {source: crm}\n"
        "    schedules: [{interval: 900}]\n"
        "  - name: off\n    entrypoint: flows/sync.py:sync_all\n"
        "    schedules: [{cron: '* * * * *', active: false}]\n"
    )
    cfg_path = tmp_path / "ltc.yaml"
    cfg_path.write_text("sources:\n  crm: {kind: hubspot}\n  pay: {kind: stripe}\n  erp: {kind: odoo, schedule: 6h}\n"
                        "  bank: {kind: camt053}\n")
    found = source_schedules(load_config(cfg_path), cfg_path)
    assert found["erp"] == Schedule("ltc.yaml sources.erp.schedule", interval=timedelta(hours=6))
    assert found["crm"].interval == timedelta(minutes=15) and "crm-often" in found["crm"].origin
    assert found["pay"].cron == "30 * * * *" and "pipeline" in found["pay"].origin  # the inactive one is ignored
    assert "bank" not in found
    assert source_schedules(Config(sources={"x": SourceConfig(kind="stripe")}), tmp_path / "none" / "ltc.yaml") == {}


def test_status_shows_the_whole_message_and_freshness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setenv("LTC_DATABASE_URL", url)
    store = Store.open(url)
    hint = ("INVALID_SESSION_ID: the session expired and a new login was refused; check sources.crm.credentials "
            "(client_id, client_secret) and that the connected app is still approved for this integration user")
    for stream, status, msg in (("deals", "failed", hint), ("companies", "success", None)):
        run_id = store.begin_run("sync", "crm")
        store.start_stream("crm", stream, run_id)
        store.commit_page("crm", stream, [RawRecord(stream, "1", {"id": "1"})], {"hw": None}, run_id=run_id)
        store.finish_stream("crm", stream, status, message=msg)
    run_id = store.begin_run("sync", "pay")
    store.start_stream("pay", "charges", run_id)
    store.finish_stream("pay", "charges", "success")
    store.close()
    with Store.open(url).engine.begin() as conn:  # pay last succeeded three hours ago
        import sqlalchemy as sa

        from canonical.tables import stream_state
        conn.execute(sa.update(stream_state).where(stream_state.c.connector == "pay")
                     .values(last_success_at=datetime.now(UTC) - timedelta(hours=3, minutes=5)))
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("sources:\n  crm: {kind: hubspot, schedule: 1h}\n  pay: {kind: stripe, schedule: 1h}\n"
                   "  erp: {kind: odoo}\n")
    res = CliRunner().invoke(app, ["status", "--config", str(cfg)], terminal_width=100)
    assert res.exit_code == 0, res.output
    assert hint in res.output  # the whole hint, on one logical line
    rows = {line.split("│")[2].strip(): line for line in res.output.splitlines() if line.count("│") > 5}
    assert "fresh" in rows["companies"] and "late" not in rows["companies"]
    assert "never synced" in rows["deals"]
    assert "late by 2h" in rows["charges"]
    assert "schedule of crm: every 1h (ltc.yaml sources.crm.schedule)" in res.output
    assert "erp: never synced (`ltc sync --source erp`)" in res.output

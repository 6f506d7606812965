"""Notifications through apprise to a local HTTP receiver: each service's payload, dedup, routing, failures.

The vendors' webhook hosts are fixed inside apprise's plugins (hooks.slack.com, open.feishu.cn,
qyapi.weixin.qq.com, the Teams workflow host); the ``receiver`` fixture (tests/receiver.py) sends every
HTTP request that leaves the process to a local ``http.server`` instead, so the payloads asserted here
are the ones apprise's real plugins (and ours for WeCom) build.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from canonical.errors import ConfigError
from canonical.store import Store
from ltc.app.config import Config, load_config
from ltc.app.notify import RunOutcome, SourceOutcome, check_targets, notify_run, send_test
from ltc.app.notify_tables import notify_sent
from reconcile.tables import recon_exception
from tests.receiver import Receiver, receiving

SLACK = "slack://T0ABCDEFG/B0ABCDEFG/sEcReTsLaCkToKeN0123456789"
FEISHU = "feishu://fEiShUsEcReTtOkEn0123456789abcdef"
WECOM = "wecombot://wEcOmSeCrEtKeY-0123456789"
TEAMS = "workflows://prod-00.westus.logic.azure.com/wfid0123456789abcdef/sIgNaTuReSeCrEt0123456789"
SECRETS = ("sEcReTsLaCkToKeN0123456789", "fEiShUsEcReTtOkEn0123456789abcdef", "wEcOmSeCrEtKeY-0123456789",
           "sIgNaTuReSeCrEt0123456789")


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with receiving(monkeypatch) as state:
        yield state


def _cfg(targets: list[dict[str, Any]], **extra: Any) -> Config:
    return Config.model_validate({"notifications": {"targets": targets, **extra}})


def _exception(store: Store, fp: str, code: str, severity: str, owner: str | None = "alice",
               amount: str | None = "1200.00", currency: str = "EUR", converted: bool = True) -> None:
    now = datetime(2026, 11, 30, 8, tzinfo=UTC)
    with store.engine.begin() as conn:
        conn.execute(sa.insert(recon_exception).values(
            fingerprint=fp, code=code, status="open", severity=severity, chain_id=f"chain-{fp}", subject_ids=[fp],
            source_ids=[fp], owner=owner, currency=currency, amount_at_risk=Decimal(amount) if amount else None,
            reporting_currency="USD" if converted else None,
            amount_reporting=(Decimal(amount) * Decimal("1.10")) if amount and converted else None,
            evidence={}, first_seen_at=now, last_seen_at=now))


OUTCOME = RunOutcome(as_of=date(2026, 11, 30), run_id="r1", kpis={"DSO (days)": "41.2"},
                     report_path="/srv/ltc/reports/report.html")


def test_each_service_gets_its_own_payload_shape(receiver: Receiver) -> None:
    cfg = _cfg([{"url": SLACK}, {"url": FEISHU}, {"url": WECOM}, {"url": TEAMS, "name": "finance teams"},
                {"url": "json://hooks.example.test/ltc/alerts"}])
    result = send_test(cfg)
    assert [d.ok for d in result.deliveries] == [True] * 5

    [slack] = receiver.to("hooks.slack.com")
    assert slack.path == "/services/T0ABCDEFG/B0ABCDEFG/sEcReTsLaCkToKeN0123456789"
    body = slack.json()
    attachment = body["attachments"][0]
    for r in receiver.requests:  # the payloads, for the record (pytest -s)
        print(r.host, r.body.decode()[:600])
    assert attachment["title"] == "ltc-hub: test message" and "reach this channel" in attachment["text"]

    [feishu] = receiver.to("open.feishu.cn")
    assert feishu.path == "/open-apis/bot/v2/hook/fEiShUsEcReTtOkEn0123456789abcdef/"
    assert feishu.json()["msg_type"] == "text"
    text = feishu.json()["content"]["text"]
    assert "reach this channel" in text and "**" not in text  # plain text: Feishu bots render no markdown

    [wecom] = receiver.to("qyapi.weixin.qq.com")
    assert wecom.path == "/cgi-bin/webhook/send" and wecom.query["key"] == ["wEcOmSeCrEtKeY-0123456789"]
    assert wecom.json()["msgtype"] == "markdown"
    assert wecom.json()["markdown"]["content"].startswith("### ltc-hub: test message\n**ltc-hub test message**")

    [teams] = receiver.to("prod-00.westus.logic.azure.com")
    assert teams.path == "/workflows/wfid0123456789abcdef/triggers/manual/paths/invoke"
    assert teams.query["sig"] == ["sIgNaTuReSeCrEt0123456789"]
    card = teams.json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert "reach this channel" in json.dumps(card["content"]["body"])

    [hook] = receiver.to("hooks.example.test")
    assert hook.path == "/ltc/alerts"
    assert {"title", "message", "type"} <= set(hook.json()) and "reach this channel" in hook.json()["message"]


def test_new_high_severity_exceptions_are_announced_once(receiver: Receiver, sqlite_store: Store) -> None:
    cfg = _cfg([{"url": WECOM, "events": ["new_exceptions"]}])
    _exception(sqlite_store, "a" * 32, "AMOUNT_MISMATCH", "high")
    _exception(sqlite_store, "b" * 32, "DUPLICATE_INVOICE", "critical", owner="bob")
    _exception(sqlite_store, "c" * 32, "INVOICE_OVERDUE", "medium")  # below high: not an alert
    first = notify_run(OUTCOME, cfg, sqlite_store)
    assert [(d.event, d.ok) for d in first.deliveries] == [("new_exceptions", True)]
    [msg] = receiver.requests
    content = msg.json()["markdown"]["content"]
    assert "2 new exception(s)" in content and "`DUPLICATE_INVOICE` critical" in content
    assert "AMOUNT_MISMATCH" in content and "INVOICE_OVERDUE" not in content
    assert content.index("DUPLICATE_INVOICE") < content.index("AMOUNT_MISMATCH")  # most severe first

    second = notify_run(OUTCOME, cfg, sqlite_store)  # nothing new: nothing sent
    assert second.deliveries == [] and len(receiver.requests) == 1

    _exception(sqlite_store, "d" * 32, "WON_NOT_ORDERED", "high", owner="carol")
    notify_run(OUTCOME, cfg, sqlite_store)
    content = receiver.requests[-1].json()["markdown"]["content"]
    assert "1 new exception(s)" in content and "WON_NOT_ORDERED" in content and "AMOUNT_MISMATCH" not in content
    with sqlite_store.engine.connect() as conn:
        keys = set(conn.execute(sa.select(notify_sent.c.key)).scalars())
    assert keys == {"a" * 32, "b" * 32, "d" * 32}


def test_an_undelivered_alert_is_sent_on_the_next_run(receiver: Receiver, sqlite_store: Store) -> None:
    cfg = _cfg([{"url": SLACK, "events": ["new_exceptions"]}])
    _exception(sqlite_store, "a" * 32, "AMOUNT_MISMATCH", "high")
    receiver.status["hooks.slack.com"] = 500
    failed = notify_run(OUTCOME, cfg, sqlite_store)
    assert [(d.event, d.ok) for d in failed.deliveries] == [("new_exceptions", False)]
    receiver.status.clear()
    again = notify_run(OUTCOME, cfg, sqlite_store)
    assert [(d.event, d.ok) for d in again.deliveries] == [("new_exceptions", True)]
    assert "AMOUNT_MISMATCH" in receiver.requests[-1].json()["attachments"][0]["text"]


def test_routing_by_event_code_severity_and_owner(receiver: Receiver, sqlite_store: Store) -> None:
    cfg = _cfg([
        {"url": "json://ops.test/all"},  # only a url: every event
        {"url": "json://ops.test/paused", "events": ["run_paused", "run_failed"]},
        {"url": "json://ops.test/dup", "codes": ["DUPLICATE_INVOICE"], "events": ["new_exceptions"]},
        {"url": "json://ops.test/critical", "min_severity": "critical"},
        {"url": "json://ops.test/bob", "owners": ["bob"], "events": ["new_exceptions", "digest"]},
    ])
    _exception(sqlite_store, "a" * 32, "AMOUNT_MISMATCH", "high", owner="alice")
    _exception(sqlite_store, "b" * 32, "DUPLICATE_INVOICE", "high", owner="bob")
    outcome = RunOutcome(as_of=date(2026, 11, 30), status="partial", sources=[
        SourceOutcome("crm", "paused", "HubSpot daily quota reached", "wait for the quota reset or raise the limit",
                      datetime(2026, 11, 29, 23, 30, tzinfo=UTC))])
    notify_run(outcome, cfg, sqlite_store)
    got: dict[str, list[str]] = {}
    for r in receiver.to("ops.test"):
        got.setdefault(r.path, []).append(r.json()["title"])
    assert got["/all"] == ["ltc-hub: source paused", "ltc-hub: new exceptions", "ltc-hub: daily finance digest"]
    assert got["/paused"] == ["ltc-hub: source paused"]
    assert got["/dup"] == ["ltc-hub: new exceptions"]
    # a pause is high, the exceptions high: below critical; its daily digest counts critical ones only
    assert got["/critical"] == ["ltc-hub: daily finance digest"]
    critical = next(r.json()["message"] for r in receiver.to("ops.test") if r.path == "/critical")
    assert "0 open exception(s)" in critical
    assert got["/bob"] == ["ltc-hub: new exceptions", "ltc-hub: daily finance digest"]
    bob = [r.json()["message"] for r in receiver.to("ops.test") if r.path == "/bob"]
    assert all("DUPLICATE_INVOICE" in m and "AMOUNT_MISMATCH" not in m for m in bob)
    dup = next(r.json()["message"] for r in receiver.to("ops.test") if r.path == "/dup")
    assert "DUPLICATE_INVOICE" in dup and "AMOUNT_MISMATCH" not in dup
    paused = next(r.json()["message"] for r in receiver.to("ops.test") if r.path == "/paused")
    assert "crm" in paused and "HubSpot daily quota reached" in paused
    assert "fix: wait for the quota reset" in paused and "2026-11-29 23:30" in paused


def test_run_failure_gap_and_quarantine_events(receiver: Receiver, sqlite_store: Store) -> None:
    cfg = _cfg([{"url": FEISHU, "events": ["run_failed", "completeness_gap", "quarantine"]}], quarantine_threshold=10)
    outcome = RunOutcome(as_of=date(2026, 11, 30), status="failed", quarantined=11,
                         gaps=["erp.invoices: 120 at the source, 118 in the store"],
                         sources=[SourceOutcome("erp", "failed", "401 credentials rejected",
                                                "set TRYTON_PASSWORD and run `ltc sync erp`")])
    result = notify_run(outcome, cfg, sqlite_store)
    assert [d.event for d in result.deliveries] == ["run_failed", "completeness_gap", "quarantine"]
    texts = [r.json()["content"]["text"] for r in receiver.requests]
    assert "erp failed: 401 credentials rejected — fix: set TRYTON_PASSWORD" in texts[0]
    assert "erp.invoices: 120 at the source, 118 in the store" in texts[1]
    assert "11 records quarantined in this run (threshold 10)" in texts[2]
    receiver.requests.clear()
    outcome.quarantined = 10  # at the threshold: no alert
    outcome.gaps, outcome.sources, outcome.status = [], [], "complete"
    assert notify_run(outcome, cfg, sqlite_store).deliveries == [] and receiver.requests == []


def test_digest_once_a_day_with_unconverted_amounts_apart(receiver: Receiver, sqlite_store: Store) -> None:
    cfg = _cfg([{"url": SLACK, "events": ["digest"]}], report_url="https://reports.example.test/ltc/report.html")
    _exception(sqlite_store, "a" * 32, "AMOUNT_MISMATCH", "high", owner="alice", amount="1000.00")
    _exception(sqlite_store, "b" * 32, "INVOICE_OVERDUE", "medium", owner="bob", amount="500.00")
    _exception(sqlite_store, "c" * 32, "INVOICE_OVERDUE", "medium", owner="bob", amount="7000",
               currency="JPY", converted=False)
    now = datetime(2026, 12, 1, 7, tzinfo=UTC)
    notify_run(OUTCOME, cfg, sqlite_store, now=now)
    notify_run(OUTCOME, cfg, sqlite_store, now=now + timedelta(hours=5))  # same day: no second digest
    [digest] = receiver.requests
    text = digest.json()["attachments"][0]["text"]
    assert "3 open exception(s), 1,650.00 USD at risk (excluding 1 unconverted: 7,000.00 JPY)" in text
    assert "- `INVOICE_OVERDUE`: 2 · 550.00 USD + 7,000.00 JPY unconverted · bob 2" in text
    assert "*ltc-hub daily digest*" in text and "**" not in text  # Slack's mrkdwn bold
    assert "DSO (days): 41.2" in text
    assert "https://reports.example.test/ltc/report.html" in text
    notify_run(OUTCOME, cfg, sqlite_store, now=now + timedelta(days=1))
    assert len(receiver.requests) == 2


def test_the_digest_follows_the_companys_day(receiver: Receiver, sqlite_store: Store) -> None:
    """23:00 and 01:00 in Shanghai are two business days but one UTC day: two digests (one before: fails on
    622ca45)."""
    cfg = Config.model_validate({"timezone": "Asia/Shanghai",
                                 "notifications": {"targets": [{"url": SLACK, "events": ["digest"]}]}})
    _exception(sqlite_store, "a" * 32, "AMOUNT_MISMATCH", "high")
    notify_run(OUTCOME, cfg, sqlite_store, now=datetime(2026, 12, 1, 15, tzinfo=UTC))  # 23:00 on the 1st there
    notify_run(OUTCOME, cfg, sqlite_store, now=datetime(2026, 12, 1, 17, tzinfo=UTC))  # 01:00 on the 2nd there
    assert len(receiver.requests) == 2
    notify_run(OUTCOME, cfg, sqlite_store, now=datetime(2026, 12, 2, 3, tzinfo=UTC))  # 11:00 on the 2nd: sent
    assert len(receiver.requests) == 2


def test_a_dead_target_never_fails_the_run_nor_leaks_its_key(receiver: Receiver, sqlite_store: Store,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg([{"url": WECOM}, {"url": SLACK}, {"url": FEISHU}])
    receiver.status["qyapi.weixin.qq.com"] = 404
    receiver.status["open.feishu.cn"] = 500
    outcome = RunOutcome(as_of=date(2026, 11, 30), sources=[SourceOutcome("crm", "paused", "quota")])
    with caplog.at_level(logging.DEBUG):
        result = notify_run(outcome, cfg, sqlite_store)
    assert {d.target for d in result.failures} == {"target 1 (wecombot://…)", "target 3 (feishu://…)"}
    assert any(d.ok for d in result.deliveries if d.target.startswith("target 2"))
    logged = caplog.text + " ".join(str(d) for d in result.deliveries)
    assert "notification run_paused to target 1 (wecombot://…) failed" in caplog.text
    assert not any(secret in logged for secret in SECRETS)


def test_urls_from_env_and_config_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    from ltc.cli.commands import app

    path = tmp_path / "ltc.yaml"
    path.write_text("notifications:\n  targets:\n    - url: {env: LTC_TEST_WECOM_URL}\n      name: ops group\n"
                    "    - url: 'json://hooks.example.test/x'\n      codes: [NOT_A_CODE]\n")
    monkeypatch.delenv("LTC_TEST_WECOM_URL", raising=False)
    problems = check_targets(load_config(path))
    assert problems == [
        "notifications.targets[0] (ops group): environment variable LTC_TEST_WECOM_URL is not set "
        "(a credential ltc.yaml refers to)",
        "notifications.targets[1] (target 2 (json://…)): unknown exception code(s) NOT_A_CODE",
    ]
    runner = CliRunner()
    res = runner.invoke(app, ["config", "check", "--config", str(path)])
    assert res.exit_code == 2  # every problem on its own line, then how many
    assert res.stderr.splitlines() == [f"{path}: {p}" for p in problems] + [f"2 problem(s) in {path}"]
    monkeypatch.setenv("LTC_TEST_WECOM_URL", WECOM)
    path.write_text(path.read_text().replace("[NOT_A_CODE]", "[AMOUNT_MISMATCH]"))
    res = runner.invoke(app, ["config", "check", "--config", str(path)])
    assert res.exit_code == 0, res.output
    assert "2 notification target(s)" in res.output and WECOM not in res.output
    res = runner.invoke(app, ["notify", "test", "--config", str(path)])
    assert res.exit_code == 0, res.output
    assert "sent: ops group" in res.output and "sent: target 2 (json://…)" in res.output
    assert receiver.to("qyapi.weixin.qq.com") and receiver.to("hooks.example.test")
    receiver.status["hooks.example.test"] = 500
    res = runner.invoke(app, ["notify", "test", "--config", str(path)])
    assert isinstance(res.exception, ConfigError) and res.exception.exit_code == 2


def test_the_old_list_form_and_bad_urls_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ltc.yaml"
    path.write_text("notifications:\n  - {kind: slack, target: {env: X}}\n")
    with pytest.raises(ConfigError, match=r"notifications is a mapping"):
        load_config(path)
    path.write_text("notifications:\n  targets:\n    - url: hooks.slack.com/services/x\n")
    with pytest.raises(ConfigError, match=r"ltc.yaml:3: notifications.targets.0.url.*apprise URL"):
        load_config(path)
    path.write_text("notifications:\n  targets:\n    - {url: 'json://x.test/', events: [sometimes]}\n")
    with pytest.raises(ConfigError, match=r"notifications.targets.0.events.0"):
        load_config(path)


def test_email_goes_out_over_smtp(sqlite_store: Store) -> None:
    from email import message_from_bytes
    from email.message import Message as Mail

    from tests.receiver import smtp_receiving

    with smtp_receiving() as (port, messages):
        url = f"mailto://127.0.0.1:{port}?mode=insecure&from=ltc@example.test&to=finance@example.test"
        cfg = _cfg([{"url": url, "events": ["new_exceptions"], "name": "finance mail"}])
        _exception(sqlite_store, "a" * 32, "OVER_INVOICED", "high", owner="alice")
        result = notify_run(OUTCOME, cfg, sqlite_store)
    assert [(d.target, d.event, d.ok) for d in result.deliveries] == [("finance mail", "new_exceptions", True)]
    [raw] = messages
    mail = message_from_bytes(raw)
    assert mail["Subject"] == "ltc-hub: new exceptions" and "finance@example.test" in mail["To"]
    parts = [p for p in mail.walk() if isinstance(p, Mail) and p.get_content_type() == "text/html"]
    html = parts[0].get_payload(decode=True).decode() if parts else ""  # type: ignore[union-attr]
    assert "OVER_INVOICED" in html and "<strong>" in html  # the markdown arrives as HTML


def test_any_result_object_with_the_attributes_will_do() -> None:
    from types import SimpleNamespace

    from ltc.app.notify import outcome_from

    result = SimpleNamespace(as_of=date(2026, 11, 30), partial=True, run_id="r9",
                             sources={"crm": {"status": "paused", "message": "quota"}, "erp": {"status": "ok"}},
                             kpis=[{"kpi": "dso", "variant": "default", "value": Decimal("41.204"), "unit": "days"}],
                             report_path=Path("/srv/r.html"), held_back=["f" * 32])
    out = outcome_from(result)
    assert str(out.status) == "partial" and [(s.name, s.status) for s in out.sources] == [("crm", "paused"), ("erp", "ok")]
    assert out.kpis == {"dso": "41.20 days"} and out.report_path == "/srv/r.html" and out.held_back == {"f" * 32}


def test_the_pipeline_result_shape_without_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   receiver: Receiver) -> None:
    """``notify_run(result, cfg)`` as ltc.app.pipeline's notify stage calls it: the store is ltc.yaml's."""
    from types import SimpleNamespace

    monkeypatch.setenv("LTC_DATABASE_URL", f"sqlite:///{tmp_path / 'ltc.db'}")
    crm = SimpleNamespace(name="crm", kind="hubspot", status="paused", message="deals: daily quota",
                          since=datetime(2026, 11, 29, 23, 30, tzinfo=UTC),
                          streams=[{"stream": "deals", "status": "paused", "quarantined": 7}])
    erp = SimpleNamespace(name="erp", kind="tryton", status="incomplete", message="invoices: 120 vs 118",
                          since=None, streams=[])
    result = SimpleNamespace(as_of=date(2026, 11, 30), status="paused", sources={"crm": crm, "erp": erp},
                             mapping={"quarantined": 4}, kpis={"dso": "41.2"}, report="/srv/report.html",
                             held_back=[], run_id=None)
    cfg = _cfg([{"url": "json://ops.test/all", "events": ["run_paused", "completeness_gap", "quarantine"]}],
               quarantine_threshold=10)
    sent = notify_run(result, cfg)
    assert [(d.event, d.ok) for d in sent.deliveries] == [
        ("run_paused", True), ("completeness_gap", True), ("quarantine", True)]
    assert str(sent).startswith("run_paused → target 1 (json://…): sent")
    messages = [r.json()["message"] for r in receiver.to("ops.test")]
    assert "last complete sync 2026-11-29 23:30 UTC" in messages[0]
    assert "erp: invoices: 120 vs 118" in messages[1] and "11 records quarantined" in messages[2]

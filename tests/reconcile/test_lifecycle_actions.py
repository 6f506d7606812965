"""People's actions on exceptions (ack, resolve, reopen, assign, comment, snooze; one or many), the audit
rows naming who did them, the CLI over the same function, and the migration that added them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from recon_helpers import in_process_cli

from canonical import db
from canonical.errors import InputError
from canonical.store import Store
from ltc.app.config import Config
from reconcile import lifecycle
from reconcile.engine import run_reconciliation
from reconcile.tables import kpi_snapshot, recon_exception
from sandbox.scenario import generate

WORLD = generate(60, seed=4)


def _fps(store: Store) -> list[str]:
    return [r["fingerprint"] for r in lifecycle.list_exceptions(store, status="open")]


def test_actions_change_what_they_say_and_write_the_trail(store: Store) -> None:
    WORLD.load(store)
    run_reconciliation(store, Config(), WORLD.as_of)
    fps = _fps(store)
    a, b, c = fps[:3]
    res = lifecycle.act(store, [a[:8]], "assign", "carol", owner="dave@example.com", note="AR team")
    assert res == [{"fingerprint": a, "from": "open", "to": "open", "skipped": None}]
    lifecycle.act(store, [a], "comment", "carol", note="called the customer")
    tomorrow = date.today() + timedelta(days=1)
    lifecycle.act(store, [a], "snooze", "carol", until=tomorrow, note="promised payment")
    with pytest.raises(InputError, match="after today"):
        lifecycle.act(store, [a], "snooze", "carol", until=date.today())
    behind = datetime.now(UTC).date() - timedelta(days=1)  # the company's day behind UTC's (America, early in UTC's)
    with pytest.raises(InputError, match=rf"after today \({behind.isoformat()}\)"):
        lifecycle.act(store, [a], "snooze", "carol", until=behind, today=behind)
    with pytest.raises(InputError, match="comment needs text"):
        lifecycle.act(store, [a], "comment", "carol", note="  ")
    with pytest.raises(InputError, match="note is required"):
        lifecycle.act(store, [a], "resolve", "carol")
    with pytest.raises(InputError, match="acting user"):
        lifecycle.act(store, [a], "comment", " ", note="x")
    row = next(r for r in lifecycle.list_exceptions(store) if r["fingerprint"] == a)
    assert (row["assignee"], row["snoozed_until"], row["status"]) == ("dave@example.com", tomorrow, "open")
    trail = lifecycle.audit_trail(store, a)
    assert [(t["action"], t["actor"]) for t in trail] == [
        ("detected", "reconcile"), ("assign", "carol"), ("comment", "carol"), ("snooze", "carol")]
    assert trail[1]["reason"] == "assigned to dave@example.com: AR team"
    assert trail[2]["reason"] == "called the customer" and trail[2]["from_status"] == trail[2]["to_status"] == "open"

    # bulk: one transaction, the ones the action does not apply to are skipped with the reason
    lifecycle.act(store, [b], "resolve", "erin", note="credit note issued")
    out = lifecycle.act(store, [a, b, c], "acknowledge", "erin", note="batch")
    assert [r["skipped"] is None for r in out] == [True, False, True]
    assert "is resolved" in (out[1]["skipped"] or "")
    statuses = {r["fingerprint"]: r["status"] for r in lifecycle.list_exceptions(store)}
    assert (statuses[a], statuses[b], statuses[c]) == ("acknowledged", "resolved", "acknowledged")

    # a reconcile run keeps what people set: the assignee and the snooze survive, the derived owner is refreshed
    run_reconciliation(store, Config(), WORLD.as_of)
    row = next(r for r in lifecycle.list_exceptions(store) if r["fingerprint"] == a)
    assert row["assignee"] == "dave@example.com" and row["snoozed_until"] == tomorrow
    assert statuses[a] == row["status"]
    reopened = lifecycle.audit_trail(store, b)[-1]
    assert (reopened["action"], reopened["actor"]) == ("reopened", "reconcile")  # the break is still there


def test_each_run_keeps_the_open_book_as_kpis(sqlite_store: Store) -> None:
    WORLD.load(sqlite_store)
    first = run_reconciliation(sqlite_store, Config(), WORLD.as_of)
    lifecycle.act(sqlite_store, _fps(sqlite_store)[:2], "resolve", "x", note="fixed")
    second = run_reconciliation(sqlite_store, Config(), WORLD.as_of)
    with sqlite_store.engine.connect() as conn:
        rows = conn.execute(sa.select(kpi_snapshot.c.run_id, kpi_snapshot.c.value, kpi_snapshot.c.unit)
                            .where(kpi_snapshot.c.kpi == "open_exceptions")).all()
        risk = conn.execute(sa.select(recon_exception.c.amount_reporting)
                            .where(recon_exception.c.status != "resolved")).scalars().all()
    by_run = {r.run_id: r.value for r in rows}
    assert by_run[first.run_id] == WORLD.truth.height and by_run[second.run_id] == WORLD.truth.height
    stored = first.kpis.filter(first.kpis["kpi"] == "amount_at_risk")["value"][0]
    assert stored == sum((a for a in risk if a is not None), start=stored - stored)


def test_cli_assign_comment_snooze(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    WORLD.load(sqlite_store)
    run_reconciliation(sqlite_store, Config(), WORLD.as_of)
    monkeypatch.setenv("LTC_DATABASE_URL", sqlite_store.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("COLUMNS", "200")

    ltc = in_process_cli(monkeypatch, capsys)

    a, b = _fps(sqlite_store)[:2]
    out = ltc("exceptions", "assign", a[:10], b[:10], "--owner", "frank", "--actor", "gina")
    assert out.returncode == 0 and out.stdout.count("assign (by gina)") == 2
    assert ltc("exceptions", "comment", a, "--text", "waiting for the PO", "--actor", "gina").returncode == 0
    until = (date.today() + timedelta(days=3)).isoformat()
    assert ltc("exceptions", "snooze", a, "--until", until, "--actor", "gina").returncode == 0
    bad = ltc("exceptions", "snooze", a, "--until", "31.12.2030")
    assert bad.returncode == 2 and "is not a date" in bad.stderr
    trail = lifecycle.audit_trail(sqlite_store, a)
    assert [t["action"] for t in trail[-3:]] == ["assign", "comment", "snooze"]
    assert all(t["actor"] == "gina" for t in trail[-3:])


def test_migration_names_the_action_of_older_audit_rows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = db.make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    db.upgrade(engine, "0003_reconcile")
    rows = [("detected", None, "open", "reconcile"), ("acknowledge", "open", "acknowledged", "amy"),
            ("resolve", "acknowledged", "resolved", "amy"), ("reopened", "resolved", "open", "reconcile"),
            ("auto_resolved", "open", "resolved", "reconcile"), ("reopen", "resolved", "open", "amy")]
    with engine.begin() as conn:
        for i, (_, frm, to, actor) in enumerate(rows):
            conn.execute(sa.text("INSERT INTO recon_exception_audit (fingerprint, at, actor, from_status, to_status, "
                                 "reason) VALUES (:fp, '2026-01-01 00:00:00', :actor, :frm, :to, 'r')"),
                         {"fp": f"fp{i}", "actor": actor, "frm": frm, "to": to})
    db.upgrade(engine)
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT action FROM recon_exception_audit ORDER BY id")).scalars().all()
    assert got == [r[0] for r in rows]
    engine.dispose()


def test_sync_writes_the_same_rows_from_rows_prepared_before_its_transaction(store: Store) -> None:
    """:func:`lifecycle.prepare` with the store's dialect converts the rows beforehand (the store path does it while
    its links are committed): the sync then writes what it writes from unprepared rows, for new, kept, reopened and
    auto-resolved exceptions alike, audit trail included."""
    import polars as pl

    from canonical.store import now
    from reconcile.core import Settings, reconcile_frames
    from reconcile.frames import load_frames

    WORLD.load(store)
    ex = reconcile_frames(load_frames(store), Settings.from_config(Config()), WORLD.as_of).exceptions
    assert ex.height > 6
    at = now()

    def synced(frame: pl.DataFrame, run_id: str, dialect: sa.Dialect | None) -> tuple[Any, ...]:
        found = lifecycle.prepare(frame, run_id, at, dialect)
        assert isinstance(found, lifecycle.Found) == (dialect is not None)
        with store.engine.connect() as conn:
            trans = conn.begin()
            counts = lifecycle.sync(conn, frame, run_id, at, found)
            rows = sorted(repr(tuple(r)) for r in conn.execute(sa.select(recon_exception)).all())
            audit = sorted(repr(tuple(r)[1:]) for r in conn.execute(sa.select(lifecycle.audit_t)).all())
            trans.rollback()
        return counts, rows, audit

    assert synced(ex, "r1", None) == synced(ex, "r1", store.engine.dialect)  # every one new
    with store.engine.begin() as conn:  # a first run stored; one of its exceptions resolved since
        lifecycle.sync(conn, ex, "r0", at)
        conn.execute(sa.update(recon_exception).where(recon_exception.c.fingerprint == ex["fingerprint"][0])
                     .values(status="resolved"))
    later = ex.slice(0, ex.height - 3)  # three fixed: auto-resolved; the first found again: reopened
    plain = synced(later, "r2", None)
    assert plain == synced(later, "r2", store.engine.dialect)
    assert plain[0] == {"new": 0, "reopened": 1, "still_open": ex.height - 4, "auto_resolved": 3}


def test_sync_stores_every_value_as_found_whatever_the_text(store: Store) -> None:
    """What a run finds is stored value for value on either backend (PostgreSQL: by COPY, SQLite: executemany):
    texts with the characters COPY escapes (tab, newline, backslash, quote) and non-ASCII, missing owners and
    amounts, exact decimals, the run's instant; kept, reopened and auto-resolved rows updated, the audit trail
    written."""
    from datetime import UTC, datetime
    from decimal import Decimal

    import polars as pl

    texts = ["tab\there", "line\nbreak", "back\\slash \\N", 'quote " and \'', "客户 Ünïcode", ""]
    n = len(texts)
    ex = pl.DataFrame({
        "fingerprint": [f"{i:032x}" for i in range(n)], "code": ["INVOICE_AMOUNT_MISMATCH"] * n,
        "severity": ["high"] * n, "chain_id": [f"deal:{t}" for t in texts],
        "records": [[f"deal:{t}", f"invoice:{i}"] for i, t in enumerate(texts)],
        "owner": [None, *texts[1:]], "currency": ["EUR"] * n,
        "amount": [None, *(Decimal(f"{i}.0001") for i in range(1, n))],
        "reporting_currency": ["USD"] * n, "amount_reporting": [Decimal("-12345678901234.5678")] * n,
        "keys": [[t] for t in texts], "detail": texts, "bucket": list(range(n)),
    }, schema_overrides={"amount": pl.Decimal(38, 4), "amount_reporting": pl.Decimal(38, 4)})
    at = datetime(2026, 12, 7, 8, 30, 15, 123456, tzinfo=UTC)

    def stored() -> dict[str, dict[str, Any]]:
        return {r["fingerprint"]: r for r in lifecycle.list_exceptions(store)}

    with store.engine.begin() as conn:
        assert lifecycle.sync(conn, ex, "r1", at, lifecycle.prepare(ex, "r1", at, store.engine.dialect))["new"] == n
    rows = stored()
    for i, t in enumerate(texts):
        r = rows[f"{i:032x}"]
        assert (r["chain_id"], r["owner"], r["status"], r["last_run_id"]) == (f"deal:{t}", t if i else None, "open", "r1")
        assert r["subject_ids"] == [f"deal:{t}", f"invoice:{i}"] and r["source_ids"] == [f"deal:{t}", f"invoice:{i}"]
        assert r["evidence"] == {"keys": [t], "detail": t, "bucket": i}
        assert r["amount_at_risk"] == (Decimal(f"{i}.0001") if i else None)
        assert r["amount_reporting"] == Decimal("-12345678901234.5678")
        assert r["first_seen_at"] == r["last_seen_at"] == at
    with store.engine.begin() as conn:
        conn.execute(sa.update(recon_exception).where(recon_exception.c.fingerprint == f"{1:032x}")
                     .values(status="resolved"))
    later = at + timedelta(days=1)
    again = ex.slice(0, n - 2).with_columns(pl.lit("changed\tdetail").alias("detail"))
    with store.engine.begin() as conn:
        counts = lifecycle.sync(conn, again, "r2", later, lifecycle.prepare(again, "r2", later, store.engine.dialect))
    assert counts == {"new": 0, "reopened": 1, "still_open": n - 3, "auto_resolved": 2}
    rows = stored()
    for i in range(n):
        r = rows[f"{i:032x}"]
        if i < n - 2:
            assert (r["status"], r["last_seen_at"], r["first_seen_at"], r["last_run_id"]) == ("open", later, at, "r2")
            assert r["evidence"]["detail"] == "changed\tdetail" and r["resolved_at"] is None
        else:
            assert (r["status"], r["resolved_at"], r["last_seen_at"], r["last_run_id"]) == ("resolved", later, at, "r2")
    trail = lifecycle.audit_trail(store, f"{1:032x}")
    assert [(t["action"], t["from_status"], t["to_status"], t["run_id"], t["at"]) for t in trail] == [
        ("detected", None, "open", "r1", at), ("reopened", "resolved", "open", "r2", later)]
    assert [t["action"] for t in lifecycle.audit_trail(store, f"{n - 1:032x}")] == ["detected", "auto_resolved"]


def _exception(fingerprint: str) -> dict[str, Any]:
    at = datetime(2026, 10, 1, tzinfo=UTC)
    return {"fingerprint": fingerprint, "code": "UNAPPLIED_PAYMENT", "status": "open", "severity": "medium",
            "subject_ids": [], "source_ids": [], "evidence": {}, "first_seen_at": at, "last_seen_at": at}


def test_an_exception_id_is_a_literal_prefix_not_a_like_pattern(store: Store) -> None:
    """Ids were matched with LIKE: ``ltc exceptions ack '%c862735'`` (and the work queue's actions, which resolve ids
    the same way) acted on 0433c78f…2735, whose id does not start so. %, _ and the escape character are characters
    of the prefix now, on SQLite and PostgreSQL."""
    fp = "0433c78fea6adac475608e3f7c862735"
    with store.engine.begin() as conn:
        conn.execute(recon_exception.insert(), [_exception(fp), _exception("0433d" + "0" * 27)])
    for pattern in ("%c862735", "0433c_8f", "0433_7", "%%%%%%", "______", "0433c/8f", "0433c\\8f"):
        with pytest.raises(InputError, match="no exception with id"):
            lifecycle.act(store, [pattern], "acknowledge", "carol", note="seen")
    assert [r["status"] for r in lifecycle.list_exceptions(store, status="open")] == ["open", "open"]
    assert lifecycle.act(store, ["0433c78f"], "acknowledge", "carol", note="seen")[0]["fingerprint"] == fp


def test_two_people_acting_at_once_do_not_both_move_an_exception(store: Store) -> None:
    """Ada resolves an exception between the moment Fiona's acknowledge read its status (open) and its update: the
    acknowledge used to be applied anyway (its update had no condition on the status), leaving a resolved exception
    acknowledged and a trail with two transitions from "open". Now it is skipped, with the reason, and not in the
    trail; the other exception of the same bulk action goes on."""
    WORLD.load(store)
    run_reconciliation(store, Config(), WORLD.as_of)
    a, b = _fps(store)[:2]
    done: list[Any] = []

    def meanwhile(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if not done and statement.lstrip().upper().startswith("UPDATE RECON_EXCEPTION "):
            done.append(None)  # once: Ada's own update comes here too
            done[0] = lifecycle.act(store, [a], "resolve", "ada", note="paid, closing")

    sa.event.listen(store.engine, "before_cursor_execute", meanwhile)
    try:
        out = lifecycle.act(store, [a, b], "acknowledge", "fiona", note="looking")
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", meanwhile)
    assert done and done[0][0]["skipped"] is None
    assert out[0]["fingerprint"] == a and out[0]["skipped"] == (
        f"exception {a[:12]} was changed by someone else meanwhile: reload")
    assert out[1] == {"fingerprint": b, "from": "open", "to": "acknowledged", "skipped": None}
    status = {r["fingerprint"]: r["status"] for r in lifecycle.list_exceptions(store)}
    assert (status[a], status[b]) == ("resolved", "acknowledged")
    trail = [(t["actor"], t["from_status"], t["to_status"]) for t in lifecycle.audit_trail(store, a)]
    assert trail == [("reconcile", None, "open"), ("ada", "open", "resolved")]

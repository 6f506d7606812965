"""The store path on SQLite and PostgreSQL: lifecycle (open/ack/resolve/auto-resolve/reopen), audit, CLI."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from recon_helpers import in_process_cli

from canonical import columnar, tables
from canonical.errors import InputError
from canonical.store import Store
from ltc.app.config import Config
from reconcile import lifecycle
from reconcile.core import Settings, reconcile_frames
from reconcile.engine import run_reconciliation
from reconcile.frames import load_frames
from reconcile.kpi import compute_kpis
from reconcile.tables import kpi_snapshot, recon_allocation, recon_link
from sandbox.scenario import generate

WORLD = generate(120, seed=21)


def _one(store: Store, code: str) -> dict:  # type: ignore[type-arg]
    rows = lifecycle.list_exceptions(store, code=code)
    assert len(rows) == 1, rows
    return rows[0]


def test_lifecycle_round_trip_with_audit(store: Store, tmp_path: Path) -> None:
    WORLD.load(store)
    first = run_reconciliation(store, Config(), WORLD.as_of, keep=tmp_path / "out")
    first_links, first_allocs = first.frame("links"), first.frame("allocations")
    assert first.lifecycle["new"] == WORLD.truth.height
    assert {r["code"] for r in lifecycle.list_exceptions(store, status="open")} == set(WORLD.truth["code"])
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(recon_link)).scalar_one() > 0
        assert conn.execute(sa.select(sa.func.count()).select_from(recon_allocation)).scalar_one() > 0
        assert conn.execute(sa.select(sa.func.count()).select_from(kpi_snapshot)).scalar_one() > 0
        # what is stored is exactly the run's frames: exact decimals, evidence as JSON, dates as dates
        links = {(r.from_id, r.to_id, r.rule_id): r for r in conn.execute(sa.select(recon_link))}
        allocs = {(r.payment_id, r.invoice_id): r for r in conn.execute(sa.select(recon_allocation))}
        kpis = {(r.kpi, r.variant, r.owner): r for r in conn.execute(sa.select(kpi_snapshot))}
    assert len(links) == first_links.height and len(allocs) == first_allocs.height
    for row in first_links.iter_rows(named=True):
        got = links[(row["from_id"], row["to_id"], row["rule_id"])]
        assert got.evidence == {"text": row["evidence"]} and got.confidence == row["confidence"]
        assert isinstance(got.confidence, Decimal) and got.margin == row["margin"]
    for row in first_allocs.iter_rows(named=True):
        got = allocs[(row["payment_id"], row["invoice_id"])]
        assert (got.amount, got.payment_amount, got.currency, got.fx_rate, got.writeoff) == (
            row["amount"], row["payment_amount"], row["currency"], row["fx_rate"], row["writeoff"])
    for row in first.kpis.iter_rows(named=True):
        got = kpis[(row["kpi"], row["variant"], row["owner"])]
        assert (got.value, got.period_start, got.as_of) == (row["value"], row["period_start"], WORLD.as_of)

    overdue = _one(store, "INVOICE_OVERDUE")
    lifecycle.transition(store, overdue["fingerprint"][:10], "acknowledged", "customer promised to pay", "alice")
    with pytest.raises(InputError, match="cannot move it to acknowledged"):
        lifecycle.transition(store, overdue["fingerprint"], "acknowledged", "again", "alice")
    again = run_reconciliation(store, Config(), WORLD.as_of)
    assert again.lifecycle == {"new": 0, "reopened": 0, "still_open": WORLD.truth.height, "auto_resolved": 0}
    assert _one(store, "INVOICE_OVERDUE")["status"] == "acknowledged"  # a run keeps the human's status

    # the data is fixed: the customer pays the overdue invoice -> resolved automatically
    inv_id = overdue["subject_ids"][0]
    with store.engine.connect() as conn:
        inv = conn.execute(sa.select(tables.table_for("invoice")).where(
            tables.table_for("invoice").c.id == inv_id)).one()._mapping
    pay = {c.name: None for c in tables.table_for("payment").columns}
    pay.update(id="camt053:payment:FIX", source_system="camt053", source_object="payment", source_id="FIX",
               attributes={}, kind="payment", currency=inv["currency"], amount=inv["total"],
               payment_date=WORLD.as_of, remittance=f"paying {inv['number']}", status="succeeded")
    with store.engine.begin() as conn:
        store.upsert_entities(conn, "payment", [pay])
    fixed = run_reconciliation(store, Config(), WORLD.as_of)
    assert fixed.lifecycle["auto_resolved"] == 1
    assert _one(store, "INVOICE_OVERDUE")["status"] == "resolved"

    # it breaks again (the payment is reversed) -> the same exception reopens
    with store.engine.begin() as conn:
        t = tables.table_for("payment")
        conn.execute(t.update().where(t.c.id == "camt053:payment:FIX").values(deleted_at=datetime.now(UTC)))
    back = run_reconciliation(store, Config(), WORLD.as_of)
    assert back.lifecycle["reopened"] == 1
    row = _one(store, "INVOICE_OVERDUE")
    assert row["status"] == "open" and row["fingerprint"] == overdue["fingerprint"]

    trail = lifecycle.audit_trail(store, overdue["fingerprint"])
    assert [(a["from_status"], a["to_status"], a["actor"]) for a in trail] == [
        (None, "open", "reconcile"), ("open", "acknowledged", "alice"), ("acknowledged", "resolved", "reconcile"),
        ("resolved", "open", "reconcile")]
    assert trail[1]["reason"] == "customer promised to pay"
    assert row["amount_at_risk"] == inv["total"] and isinstance(row["amount_at_risk"], Decimal)


def test_cli_reconcile_list_ack_resolve(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    WORLD.load(sqlite_store)
    monkeypatch.setenv("LTC_DATABASE_URL", sqlite_store.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("LTC_CONFIG", raising=False)

    ltc = in_process_cli(monkeypatch, capsys)

    out = ltc("reconcile", "--as-of", WORLD.as_of.isoformat())
    assert out.returncode == 0, out.stderr
    assert "exceptions: AMBIGUOUS_MATCH=" in out.stdout and "lifecycle: new=" in out.stdout
    listed = json.loads(ltc("exceptions", "list", "--json", "--code", "UNAPPLIED_PAYMENT").stdout)
    assert len(listed) == 1
    item = listed[0]
    assert set(item) >= {"code", "fingerprint", "status", "severity", "source_ids", "amount_at_risk", "owner"}
    assert item["source_ids"][0].startswith("U") and Decimal(item["amount_at_risk"]) > 0
    # the table shows the amount in its currency's decimals (the store's 4 places only where they are not zeros)
    table = ltc("exceptions", "list", "--code", "UNAPPLIED_PAYMENT").stdout
    cents = Decimal(item["amount_at_risk"]).quantize(Decimal("0.01"))
    assert cents == Decimal(item["amount_at_risk"]) and item["currency"] in ("USD", "EUR", "GBP")
    stored = f"{Decimal(item['amount_at_risk']):f}"  # 8553.2700: the cell may wrap before its currency
    assert stored != str(cents) and str(cents) in table and stored not in table
    ack = ltc("exceptions", "ack", item["fingerprint"][:8], "--note", "looking into it", "--actor", "bob")
    assert ack.returncode == 0 and "open -> acknowledged (by bob)" in ack.stdout
    assert json.loads(ltc("exceptions", "list", "--json", "--status", "acknowledged").stdout)[0]["fingerprint"] == \
        item["fingerprint"]
    res = ltc("exceptions", "resolve", item["fingerprint"], "--note", "refunded to sender")
    assert res.returncode == 0
    # the default view is what is still to read (open + acknowledged); --status all shows the resolved one too
    default = json.loads(ltc("exceptions", "list", "--json").stdout)
    assert item["fingerprint"] not in {x["fingerprint"] for x in default}
    assert {x["status"] for x in default} <= {"open", "acknowledged"} and default
    assert all("detail" in x for x in default)
    every = json.loads(ltc("exceptions", "list", "--json", "--status", "all").stdout)
    assert {x["fingerprint"] for x in every} == {x["fingerprint"] for x in default} | {item["fingerprint"]}
    bad = ltc("exceptions", "ack", "zzzzzzzz", "--note", "x")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: no exception with id 'zzzzzzzz' (see `ltc exceptions list`)"
    bad_code = ltc("exceptions", "list", "--code", "NOPE")
    assert bad_code.returncode == 2 and "is not an exception code" in bad_code.stderr


def _sorted(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(df.columns, nulls_last=True)


@pytest.mark.parametrize("partitions", [1, 3])  # one bucket: every table by two readers; several: the lines last
def test_bucketed_store_run_equals_the_one_shot_run(store: Store, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, partitions: int) -> None:
    """`ltc reconcile`'s path (store -> Parquet, table by table -> buckets -> store) gives what the one-shot
    in-memory core gives on the same rows: every result frame (as sets), exceptions, totals, KPIs and what is
    stored."""
    monkeypatch.setattr(columnar, "SMALL", 0)  # SQLite: the helper-process I/O of large stores
    world = generate(900, seed=4)
    world.load(store)
    fr = load_frames(store)
    s = Settings.from_config(Config())
    core = reconcile_frames(fr, s, world.as_of, partitions=1)
    kpis = compute_kpis(fr, core, s, world.as_of)
    got = run_reconciliation(store, Config(), world.as_of, partitions=partitions, keep=tmp_path / "out")
    assert got.partitions == partitions
    for name in ("chains", "links", "allocations", "invoice_balances", "payment_balances", "states"):
        assert _sorted(got.frame(name)).equals(_sorted(getattr(core, name))), name
    assert got.exceptions.equals(core.exceptions) and got.totals == core.totals
    assert got.kpis.slice(0, kpis.height).equals(kpis)  # then the open book after the lifecycle (exposure)
    assert got.kpis["kpi"].slice(kpis.height).to_list() == ["open_exceptions", "amount_at_risk"]
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(recon_allocation.c.payment_id, recon_allocation.c.invoice_id,
                                        recon_allocation.c.amount)).all()
        n_links = conn.execute(sa.select(sa.func.count()).select_from(recon_link)).scalar_one()
    assert sorted(stored) == sorted(core.allocations.select("payment_id", "invoice_id", "amount").rows())
    assert n_links == core.links.height


def _stored_links(store: Store) -> list[tuple]:  # type: ignore[type-arg]
    with store.engine.connect() as conn:
        return sorted(conn.execute(sa.select(recon_link.c.from_id, recon_link.c.to_id)).all())


def test_bucket_links_written_as_buckets_finish_replace_the_last_run_or_roll_back(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each bucket's links go to the store as the bucket finishes (one transaction for the run): a second run
    replaces the first run's rows whatever the mapper (one that hands the buckets back only at the end too), and
    a run that fails after some buckets were handed to the writer leaves the last run's rows as they were."""
    from reconcile.stream import sequential

    monkeypatch.setattr(columnar, "SMALL", 0)  # SQLite: the helper-process writer
    world = generate(300, seed=5)
    world.load(store)
    run_reconciliation(store, Config(), world.as_of, partitions=3)
    links = _stored_links(store)
    assert links and len(set(links)) == len(links)
    with store.engine.begin() as conn:  # a row the second run must put back (rows name no run: 0010_i17links)
        conn.execute(sa.delete(recon_link).where(recon_link.c.from_id == links[0][0],
                                                 recon_link.c.to_id == links[0][1]))

    def at_the_end(fn, buckets):  # type: ignore[no-untyped-def]
        return list(sequential(fn, buckets))

    run_reconciliation(store, Config(), world.as_of, partitions=3, mapper=at_the_end)
    again = _stored_links(store)
    assert again == links  # replaced, not appended to

    def failing(fn, buckets):  # type: ignore[no-untyped-def]
        for k in buckets:
            if k == 2:
                raise RuntimeError("bucket 2 failed")
            yield fn(k)

    with pytest.raises(RuntimeError, match="bucket 2 failed"):
        run_reconciliation(store, Config(), world.as_of, partitions=3, mapper=failing)
    assert _stored_links(store) == again
    with store.engine.connect() as conn:
        assert {ix["name"] for ix in sa.inspect(conn).get_indexes("recon_link")} == {
            ix.name for ix in recon_link.indexes}
        assert not [t for t in sa.inspect(conn).get_table_names() if t.endswith("__new")]  # SQLite's swap dropped


def test_bucket_links_go_to_the_store_as_they_are_made_in_the_core_order(
        store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A bucket hands its links to the writer in three parts as they are made: the order and invoice links before the
    payments are allocated, the payment links with the allocations after the settlement, the quote and delivery links
    after its checks; each file once, and the stored rows are in the order of the core's frames (parts 0, 1, 2,
    bucket by bucket)."""
    import reconcile.core as core_mod

    monkeypatch.setattr(columnar, "SMALL", 0)  # SQLite: the helper-process writer
    world = generate(300, seed=5)
    world.load(store)
    events: list[tuple[str, ...]] = []
    add, checks = columnar.BulkWriter.add, core_mod.check_chains

    def recorded_add(self: columnar.BulkWriter, jobs: list[columnar.Load]) -> None:
        events.append(("add", *sorted(f"{j.table.name}/{Path(f).name}" for j in jobs for f in j.files)))
        add(self, jobs)

    def recorded_checks(*args: object, **kw: object) -> object:
        events.append(("checks",))
        return checks(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(columnar.BulkWriter, "add", recorded_add)
    monkeypatch.setattr(core_mod, "check_chains", recorded_checks)
    got = run_reconciliation(store, Config(), world.as_of, partitions=2, keep=tmp_path / "out")
    assert [e for e in events if len(e) > 1] == [
        ("add", "recon_link/00000.arrow"), ("add", "recon_allocation/00000-1.arrow", "recon_link/00000-1.arrow"),
        ("add", "recon_link/00000-2.arrow"),
        ("add", "recon_link/00001.arrow"), ("add", "recon_allocation/00001-1.arrow", "recon_link/00001-1.arrow"),
        ("add", "recon_link/00001-2.arrow")]
    # each bucket's quote and delivery links once its checks ran (they run beside the linking stages)
    last = [events.index(("add", f"recon_link/0000{k}-2.arrow")) for k in range(2)]
    assert ("checks",) in events[:last[0]] and ("checks",) in events[last[0] + 1:last[1]]
    out = tmp_path / "out"
    parts = [columnar.read_file(out / "links" / f"0000{k}{part}.arrow") for k in range(2) for part in ("", "-1", "-2")]
    assert all(p.height for p in parts)
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(recon_link.c.from_id, recon_link.c.to_id, recon_link.c.rule_id)
                              .order_by(recon_link.c.id)).all()
    assert [tuple(r) for r in stored] == pl.concat(parts).select("from_id", "to_id", "rule_id").rows()
    assert got.frame("links").height == len(stored)


def test_a_run_keeping_no_frames_writes_only_what_it_stores(sqlite_store: Store, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``keep`` the buckets write the links and allocations (stored) and the KPI inputs, not the chains,
    balances and states frames nobody reads; the stored rows are those of a run that keeps them all."""
    monkeypatch.setattr(columnar, "SMALL", 0)  # SQLite: the helper-process writer
    world = generate(300, seed=5)
    world.load(sqlite_store)
    written: list[str] = []
    write, write_ipc = pl.DataFrame.write_parquet, pl.DataFrame.write_ipc

    def recorded(self: pl.DataFrame, file: Path, *args: object, **kw: object) -> None:
        written.append(Path(file).parent.name)
        write(self, file, *args, **kw)  # type: ignore[arg-type]

    def recorded_ipc(self: pl.DataFrame, file: Path, *args: object, **kw: object) -> None:
        written.append(Path(file).parent.name)
        write_ipc(self, file, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pl.DataFrame, "write_parquet", recorded)
    monkeypatch.setattr(pl.DataFrame, "write_ipc", recorded_ipc)
    run_reconciliation(sqlite_store, Config(), world.as_of, partitions=2)
    assert {"links", "allocations"} <= set(written)
    assert not {"chains", "invoice_balances", "payment_balances", "states"} & set(written)
    lean = _stored_links(sqlite_store)
    written.clear()
    kept = run_reconciliation(sqlite_store, Config(), world.as_of, partitions=2, keep=tmp_path / "kept")
    assert {"chains", "invoice_balances", "payment_balances", "states"} <= set(written)
    assert kept.frame("states").height
    assert [r[1:] for r in _stored_links(sqlite_store)] == [r[1:] for r in lean]


def test_bucket_count_before_the_export_stops_counting_at_one_bucket(store: Store,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether the store path exports in two steps depends on 1 bucket or more: the live payments and invoices are
    counted no further than one bucket holds (a full count read every page of the tables before the export)."""
    import reconcile.core as core_mod
    import reconcile.engine as engine_mod

    world = generate(300, seed=5)
    world.load(store)
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        for mod in (core_mod, engine_mod):
            monkeypatch.setattr(mod, "ROWS_PER_PARTITION", 10)
        assert engine_mod._buckets(store, None) > 1
        counts = [s for s in seen if "count" in s.lower()]
        assert len(counts) == 1 and "LIMIT" in counts[0].upper()  # stopped within the payments
        for mod in (core_mod, engine_mod):
            monkeypatch.setattr(mod, "ROWS_PER_PARTITION", 10**6)
        assert engine_mod._buckets(store, None) == 1
        assert engine_mod._buckets(store, 4) == 4
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)


def test_the_scratch_directory_is_gone_when_the_run_returns(store: Store, tmp_path: Path) -> None:
    """The scratch directory is removed in the background during the lifecycle step, and is gone when the run returns
    (or fails)."""
    world = generate(300, seed=5)
    world.load(store)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run_reconciliation(store, Config(), world.as_of, partitions=2, scratch=scratch)
    assert list(scratch.iterdir()) == []

    def failing(fn, buckets):  # type: ignore[no-untyped-def]
        yield fn(buckets[0])
        raise RuntimeError("bucket 1 failed")

    with pytest.raises(RuntimeError, match="bucket 1 failed"):
        run_reconciliation(store, Config(), world.as_of, partitions=2, scratch=scratch, mapper=failing)
    assert list(scratch.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_THP_DISABLE is Linux's")
def test_one_bucket_runs_in_small_pages_several_in_huge_pages(store: Store, tmp_path: Path) -> None:
    """A one-bucket run's memory is nearly all new: no transparent huge pages while it runs (store path and world
    directory alike); a run of several buckets uses memory again and keeps them; either way as before afterwards."""
    from canonical.interpreter import _huge_pages_off
    from reconcile.stream import reconcile_world

    world = generate(300, seed=5)
    world.load(store)
    world.save(tmp_path / "world")
    seen: list[bool | None] = []
    before = _huge_pages_off()  # what the process started with (off only where its parent had them off)

    def watching(fn, buckets):  # type: ignore[no-untyped-def]
        for k in buckets:
            seen.append(_huge_pages_off())
            yield fn(k)

    for partitions, off in ((None, True), (2, before)):
        seen.clear()
        run_reconciliation(store, Config(), world.as_of, partitions=partitions, mapper=watching)
        reconcile_world(tmp_path / "world", Settings(), world.as_of, partitions=partitions, mapper=watching)
        assert seen and set(seen) == {off}, (partitions, seen)
        assert _huge_pages_off() is before


def test_the_lifecycle_is_applied_beside_the_links_commit_on_postgresql(store: Store,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: the exception lifecycle's transaction commits while the links' commit (their index builds) is still
    under way, the old links still what other sessions see; SQLite: after the links' commit (one writer at a time).
    Either way both are stored in full."""
    import threading

    monkeypatch.setattr(columnar, "SMALL", 0)  # SQLite: the helper-process writer
    world = generate(150, seed=9)
    world.load(store)
    run_reconciliation(store, Config(), world.as_of)
    first_links = _stored_links(store)
    with store.engine.begin() as conn:  # a row the second run must put back
        conn.execute(sa.delete(recon_link).where(recon_link.c.from_id == first_links[0][0],
                                                 recon_link.c.to_id == first_links[0][1]))
    pg = store.engine.dialect.name == "postgresql"
    synced, order, seen = threading.Event(), [], []
    real_finish, real_sync = columnar.BulkWriter.finish, lifecycle.sync

    def finish(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if pg:  # the commit held until the lifecycle has committed beside it (the run would hang if it waited)
            assert synced.wait(30), "the lifecycle did not run while the links were being committed"
        out = real_finish(self, *args, **kwargs)
        order.append("links")
        return out

    def sync(conn, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = real_sync(conn, *args, **kwargs)
        order.append("lifecycle")
        seen.append(len(_stored_links(store)))  # what another session sees of the links meanwhile
        synced.set()
        return out

    monkeypatch.setattr(columnar.BulkWriter, "finish", finish)
    monkeypatch.setattr(lifecycle, "sync", sync)
    second = run_reconciliation(store, Config(), world.as_of)
    assert order == (["lifecycle", "links"] if pg else ["links", "lifecycle"])
    assert seen == [len(first_links) - 1 if pg else len(first_links)]  # PG: the first run's, less the deleted row
    assert _stored_links(store) == first_links
    assert second.lifecycle["still_open"] == len(lifecycle.list_exceptions(store, status="open")) > 0


def test_a_large_postgresql_run_computes_its_kpis_after_its_last_links_are_appended(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL appends the links in this process (COPY): with several buckets the KPIs wait for the last appends
    (their frames and the KPIs' in memory at once set the peak of a large run); on SQLite, whose appends run in the
    helper, and in a run of one bucket they do not wait. The links are stored in full either way."""
    import reconcile.engine as engine

    monkeypatch.setattr(columnar, "SMALL", 0)  # SQLite: the helper-process writer
    world = generate(300, seed=5)
    world.load(store)
    events: list[str] = []
    real_drain, real_kpis = columnar.BulkWriter.drain, engine.kpis_from_inputs

    def drain(self):  # type: ignore[no-untyped-def]
        real_drain(self)
        assert all(f.done() for f in self.futures)
        events.append("drained")

    def kpis(*args, **kwargs):  # type: ignore[no-untyped-def]
        events.append("kpis")
        return real_kpis(*args, **kwargs)

    monkeypatch.setattr(columnar.BulkWriter, "drain", drain)
    monkeypatch.setattr(engine, "kpis_from_inputs", kpis)
    pg = store.engine.dialect.name == "postgresql"
    several = run_reconciliation(store, Config(), world.as_of, partitions=3)
    assert events == (["drained", "kpis"] if pg else ["kpis"])
    stored = _stored_links(store)
    events.clear()
    one = run_reconciliation(store, Config(), world.as_of, partitions=1)
    assert events == ["kpis"]
    assert _stored_links(store) == stored and several.totals == one.totals


def test_cli_list_shows_the_largest_first_within_a_limit_and_filters_by_owner(
        sqlite_store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A store with many exceptions: the table shows the largest amounts at risk first, at most ``--limit`` (100 by
    default: rendering 5,700 rows took 10 s), and says how many more; --json lists all unless limited."""
    from ltc.cli import reconcile as cli

    WORLD.load(sqlite_store)
    run_reconciliation(sqlite_store, Config(), WORLD.as_of)
    monkeypatch.setenv("LTC_DATABASE_URL", sqlite_store.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("LTC_CONFIG", raising=False)
    ltc = in_process_cli(monkeypatch, capsys)
    every = json.loads(ltc("exceptions", "list", "--json").stdout)
    assert len(every) > 5
    largest = sorted((x for x in every if x["amount_reporting"] is not None),
                     key=lambda x: -Decimal(x["amount_reporting"]))[:3]
    three = json.loads(ltc("exceptions", "list", "--json", "--limit", "3").stdout)
    assert [x["fingerprint"] for x in three] == [x["fingerprint"] for x in largest]
    table = ltc("exceptions", "list", "--limit", "3")
    assert f"3 of {len(every)} exception(s), the largest amounts at risk" in table.stdout
    assert f"… {len(every) - 3} more: --limit 0 lists all" in table.stdout
    assert all(x["fingerprint"][:6] in table.stdout for x in largest)  # (a narrow console cuts the ids short)
    monkeypatch.setattr(cli, "TABLE_LIMIT", 4)
    assert f"4 of {len(every)} exception(s)" in ltc("exceptions", "list").stdout
    assert f"{len(every)} exception(s)" in ltc("exceptions", "list", "--limit", "0").stdout
    mine = every[0]["fingerprint"]
    assert ltc("exceptions", "assign", mine, "--owner", "dora@example.com").returncode == 0
    owned = json.loads(ltc("exceptions", "list", "--json", "--owner", "dora@example.com").stdout)
    assert [x["fingerprint"] for x in owned] == [mine]
    unowned = json.loads(ltc("exceptions", "list", "--json", "--owner", "none").stdout)
    assert mine not in {x["fingerprint"] for x in unowned} and all(not x["owner"] for x in unowned)

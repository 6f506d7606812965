"""The mapping stage's bulk paths (SQLite and PostgreSQL): pending rows read along raw_pending's key,
cleared in one statement per batch, bad records quarantined inside a bulk batch, upserts of existing
rows, and the same canonical rows on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from mapping_fixtures import SYSTEMS, fixture_records, land

from canonical import model, tables
from canonical.store import RawRecord, Store
from mappings.engine import mark_pending, run_mapping


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """Every SQL statement the store's engine sends meanwhile (one entry per execute/executemany)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)


def entry(i: int, amount: str = "100.00") -> RawRecord:
    """A bank statement entry (camt.053 shape) with its own reference."""
    payload = {**fixture_records("camt053")[0].payload, "entry_reference": f"B{i}", "amount": amount}
    return RawRecord("camt053.entry", f"STMT-BULK/B{i}/0", payload)


def canonical_rows(store: Store) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    with store.engine.connect() as conn:
        for entity in model.ENTITIES:
            table = tables.table_for(entity)
            out[entity] = {r.id: dict(r._mapping) for r in conn.execute(sa.select(table))}
    return out


def pending_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(tables.raw_pending)).scalar_one())


def test_pending_is_cleared_in_one_statement_per_batch(store: Store) -> None:
    land(store, "camt053", [entry(i) for i in range(250)])
    with statements(store) as seen:
        counts = run_mapping(store, "camt053", batch_size=100)
    assert counts["camt053"]["records"] == 250 and counts["camt053"]["mapped"] == 250
    clears = [s for s in seen if s.lstrip().upper().startswith("DELETE FROM RAW_PENDING")]
    assert len(clears) == 3  # batches of 100, 100 and 50: one DELETE each, not one per row
    assert not [s for s in seen if s.lstrip().upper().startswith("UPDATE RAW_RECORD")]  # the raw rows stay as they are
    assert pending_count(store) == 0


def test_the_pending_batches_are_read_along_the_pending_key(store: Store) -> None:
    from mappings.engine import _PENDING_SQL

    land(store, "camt053", [entry(i) for i in range(3)])
    with store.engine.connect() as conn:
        name = conn.dialect.name
        if name == "postgresql":
            # a tiny table, whose costs say little: seq scans and sorts are made dear, so the plan shows whether
            # the query can be served in id order by raw_pending's primary key (system, raw_id)
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_sort = off")
            plan = [r[0] for r in conn.exec_driver_sql("EXPLAIN " + _PENDING_SQL[name], ("camt053", 0, 10))]
            conn.exec_driver_sql("RESET enable_seqscan")
            conn.exec_driver_sql("RESET enable_sort")
        else:
            plan = [
                r[-1]
                for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + _PENDING_SQL[name], ("camt053", 0, 10))
            ]
    text = " ".join(plan)
    assert "pk_raw_pending" in text if name == "postgresql" else "SEARCH p USING PRIMARY KEY (system=? AND raw_id>?)" in text
    assert "TEMP B-TREE" not in text and "Sort" not in text  # read in id order, not sorted per batch


def test_a_bad_record_inside_a_bulk_batch_is_quarantined_and_the_rest_written(store: Store) -> None:
    recs = [entry(i) for i in range(120)]
    recs[57] = entry(57, amount="12,34,56")  # not an amount
    land(store, "camt053", recs)
    counts = run_mapping(store, "camt053", batch_size=50)["camt053"]
    assert counts["records"] == 120 and counts["mapped"] == 119 and counts["quarantined"] == 1
    q = [x for x in store.quarantined("camt053") if x["resolved_at"] is None]
    assert [(x["source_id"], x["stage"], x["field"]) for x in q] == [("STMT-BULK/B57/0", "map", "amount")]
    assert q[0]["reason"] and q[0]["payload"]["amount"] == "12,34,56"
    payments = canonical_rows(store)["payment"]
    assert len(payments) == 119 and "camt053:payment:STMT-BULK/B57/0" not in payments
    assert pending_count(store) == 0  # the bad record is not left pending either


def test_an_existing_row_is_updated_in_place_with_its_lineage_kept(store: Store) -> None:
    land(store, "camt053", [entry(i) for i in range(10)])
    run_mapping(store, "camt053")
    before = canonical_rows(store)["payment"]["camt053:payment:STMT-BULK/B3/0"]
    land(store, "camt053", [entry(3, amount="0.10")])  # a new version of one record
    counts = run_mapping(store, "camt053")["camt053"]
    assert counts["records"] == 1 and counts["payment"] == 1
    after = canonical_rows(store)["payment"]
    assert len(after) == 10
    row = after["camt053:payment:STMT-BULK/B3/0"]
    assert row["amount"] == Decimal("0.10") and str(row["amount"]) == "0.10"
    assert before["amount"] == Decimal("100.00") and row["raw_id"] == before["raw_id"]
    with store.engine.connect() as conn:
        links = (
            conn.execute(
                sa.select(tables.lineage.c.raw_id).where(
                    tables.lineage.c.canonical_id == "camt053:payment:STMT-BULK/B3/0"
                )
            )
            .scalars()
            .all()
        )
    assert links == [before["raw_id"]]  # one lineage row, not a second one for the re-mapping


def test_rows_without_every_column_and_values_that_need_the_converter(store: Store) -> None:
    """The upsert's in-line conversion falls back to each column's checks: a row with only some keys
    (the others NULL), an instant in another zone (stored as UTC), an int amount; floats and naive
    instants are refused."""
    table = tables.table_for("payment")
    paris = datetime(2026, 3, 1, 10, 30, 0, 123456, tzinfo=ZoneInfo("Europe/Paris"))
    row = {
        "id": "x:payment:1",
        "source_system": "x",
        "source_object": "p",
        "source_id": "1",
        "amount": 12,
        "currency": "EUR",
        "source_updated_at": paris,
        "attributes": {"k": "v"},
    }
    with store.engine.begin() as conn:
        store.upsert_entities(conn, "payment", [row])
    with store.engine.connect() as conn:
        got = dict(conn.execute(sa.select(table)).one()._mapping)
    assert got["amount"] == Decimal("12") and got["fee"] is None and got["attributes"] == {"k": "v"}
    assert got["source_updated_at"] == datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC) == paris
    assert got["source_updated_at"].tzinfo == UTC
    for bad in ({"amount": 1.5}, {"source_updated_at": datetime(2026, 3, 1, 9, 30)}):
        with pytest.raises((TypeError, ValueError)), store.engine.begin() as conn:
            store.upsert_entities(conn, "payment", [{**row, **bad}])


@pytest.mark.postgres
def test_postgresql_and_sqlite_give_identical_canonical_rows(
    sqlite_store: Store, pg_new_database: Any
) -> None:
    pg_store = Store.open(pg_new_database())
    try:
        got = []
        for store in (sqlite_store, pg_store):
            for system in SYSTEMS:
                land(store, system)
            run_mapping(store, batch_size=7)  # several batches per system
            mark_pending(store)
            run_mapping(store, batch_size=7)  # and again: every row is now an update
            got.append(canonical_rows(store))
    finally:
        pg_store.close()
    lite, pg = got
    assert sum(len(rows) for rows in lite.values()) > 50 and all(
        lite[e] for e in ("deal", "invoice", "payment")
    )
    assert lite.keys() == pg.keys()
    for entity in lite:
        assert lite[entity].keys() == pg[entity].keys(), entity
        for cid, row in lite[entity].items():
            other = pg[entity][cid]
            # the raw ids are each database's own sequence; everything else is the same value and type
            assert {k: v for k, v in row.items() if k != "raw_id"} == {
                k: v for k, v in other.items() if k != "raw_id"
            }
            for k, v in row.items():
                assert type(v) is type(other[k]) or v is None, (entity, cid, k)
                if isinstance(v, Decimal):
                    assert str(v) == str(other[k]), (entity, cid, k)
                if isinstance(v, datetime):
                    assert v.tzinfo == UTC == other[k].tzinfo, (entity, cid, k)


def test_on_sqlite_the_stage_runs_with_a_short_switch_interval_and_restores_it(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from mappings import engine

    seen: list[float] = []
    real = engine.map_records

    def spy(*args: Any) -> Any:
        seen.append(sys.getswitchinterval())
        return real(*args)

    monkeypatch.setattr(engine, "map_records", spy)
    before = sys.getswitchinterval()
    land(sqlite_store, "camt053", [entry(i) for i in range(30)])
    assert run_mapping(sqlite_store, "camt053", batch_size=10)["camt053"]["mapped"] == 30
    assert seen == [engine._SWITCH_INTERVAL] * 3 and sys.getswitchinterval() == before

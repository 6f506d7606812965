"""The stage's bulk canonical upsert (driver-level; column arrays on PostgreSQL), on both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from canonical import model, tables
from canonical.money import Money
from canonical.store import Store


def _deal(i: int, name: str, amount: str | None) -> dict[str, object]:
    row = model.to_row(model.Deal(
        id=model.canonical_id("sf", "deal", f"006{i}"), source_system="sf", source_object="Opportunity",
        source_id=f"006{i}", source_updated_at=datetime(2026, 11, 1, 12, i % 60, tzinfo=UTC), name=name,
        amount=None if amount is None else Money.of(amount, "EUR"), close_date=date(2026, 10, 1 + i % 28),
        attributes={"n": i},
    ))
    row["raw_id"] = i + 1
    return row


def test_repeated_id_in_one_call_keeps_the_last_version_and_values_are_exact(store: Store) -> None:
    rows = [_deal(i, f"deal {i}", None if i % 3 == 0 else f"{i}.10") for i in range(1200)]
    rows.append(_deal(5, "deal 5, second version", "0.01"))
    with store.engine.begin() as conn:
        assert store.upsert_entities(conn, "deal", rows) == 1201
    deal = tables.table_for("deal")
    with store.engine.connect() as conn:
        got = {r.id: r for r in conn.execute(sa.select(deal))}
        links = conn.execute(sa.select(sa.func.count()).select_from(tables.lineage)).scalar_one()
    assert len(got) == 1200 and links == 1200
    five = got[model.canonical_id("sf", "deal", "0065")]
    assert five.name == "deal 5, second version" and five.amount == Decimal("0.01")
    seven = got[model.canonical_id("sf", "deal", "0067")]
    assert seven.amount == Decimal("7.10") and str(seven.amount) == "7.10"
    assert got[model.canonical_id("sf", "deal", "0063")].amount is None
    assert seven.close_date == date(2026, 10, 8) and seven.attributes == {"n": 7}
    assert seven.source_updated_at == datetime(2026, 11, 1, 12, 7, tzinfo=UTC)


def test_sqlite_rows_go_in_a_few_multi_row_statements_of_fixed_sizes(sqlite_store: Store) -> None:
    # 1301 rows: 10 x 128 + 2 x 8 + 2 x 2 + 1 in 15 statements of the deal table (not one per row, and only
    # sizes that repeat from batch to batch, prepared once); lineage alike; every row and link written
    rows = [_deal(i, f"deal {i}", f"{i}.01") for i in range(1301)]
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    sa.event.listen(sqlite_store.engine, "before_cursor_execute", record)
    try:
        with sqlite_store.engine.begin() as conn:
            assert sqlite_store.upsert_entities(conn, "deal", rows) == 1301
    finally:
        sa.event.remove(sqlite_store.engine, "before_cursor_execute", record)
    deals = [s for s in seen if s.startswith('INSERT INTO "deal"')]
    links = [s for s in seen if s.startswith("INSERT INTO lineage")]
    assert [s.count("), (") + 1 for s in deals] == [128] * 10 + [8, 8, 2, 2, 1]
    assert [s.count("), (") + 1 for s in links] == [128] * 10 + [8, 8, 2, 2, 1]
    with sqlite_store.engine.connect() as conn:
        deal = tables.table_for("deal")
        names = {sid: name for sid, name in conn.execute(sa.select(deal.c.source_id, deal.c.name))}
        count = conn.execute(sa.select(sa.func.count()).select_from(tables.lineage)).scalar_one()
    assert len(names) == 1301 and names["0061300"] == "deal 1300" and count == 1301


@given(st.datetimes(timezones=st.just(UTC)))
def test_sqlite_instants_written_in_line_are_the_stored_text(at: datetime) -> None:
    from canonical import store as store_module

    payment = tables.table_for("payment")
    _sql, params = store_module._upsert_statement(payment, "sqlite")
    row = {c.name: None for c in payment.columns} | {"received_at": at, "attributes": {}}
    names = [c.name for c in payment.columns]
    assert params([row])[0][names.index("received_at")] == store_module._sqlite_instant(at)
    # the stage's flat parameters (the mapping stage's path) alike
    assert store_module._stage_params(payment, [row])[names.index("received_at")] == store_module._sqlite_instant(at)


@given(st.dates())
def test_sqlite_dates_written_in_line_are_their_iso_text(day: date) -> None:
    from canonical import store as store_module

    invoice = tables.table_for("invoice")
    names = [c.name for c in invoice.columns]
    row = {c.name: None for c in invoice.columns} | {"issue_date": day, "attributes": {}}
    _sql, params = store_module._upsert_statement(invoice, "sqlite")
    assert params([row])[0][names.index("issue_date")] == day.isoformat()
    assert store_module._stage_params(invoice, [row])[names.index("issue_date")] == day.isoformat()


def _stored(store: Store) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    deal = tables.table_for("deal")
    with store.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.select(deal).order_by(deal.c.id))]
        links = [tuple(r) for r in conn.execute(sa.select(tables.lineage).order_by(*tables.lineage.c))]
    return rows, links


def test_staged_upserts_write_what_upsert_entities_writes(store: Store, sqlite_store: Store) -> None:
    """The stage's upserts (rows staged before the writers' turn on SQLite) store the same rows and lineage as
    the direct upsert, the last version of a repeated id included; staging twice on one connection replaces
    the first batch's staged rows."""
    first = [_deal(i, f"deal {i}", None if i % 3 == 0 else f"{i}.10") for i in range(1100)]
    second = [_deal(i, f"deal {i} again", f"{i}.20") for i in range(1000, 1300)]
    second.append(_deal(1005, "deal 1005, last version", "0.01"))
    second.append({**_deal(2000, "no lineage", "1.00"), "raw_id": None})
    with store.engine.connect() as conn:
        for rows in (first, second):
            statements = store.staged_upserts(conn, {"deal": rows, "payment": []})
            with conn.begin():
                for sql, params in statements:
                    conn.exec_driver_sql(sql, params)
    with sqlite_store.engine.begin() as conn:
        sqlite_store.upsert_entities(conn, "deal", first)
        sqlite_store.upsert_entities(conn, "deal", second)
    got, expected = _stored(store), _stored(sqlite_store)
    assert got == expected
    assert len(got[0]) == 1301 and len(got[1]) == 1300  # the row without a raw id has no lineage


def test_sqlite_staging_does_not_wait_for_the_store_writer(sqlite_store: Store) -> None:
    """Rows are staged (and committed in the attached in-memory database) while another connection holds the
    store's write lock: only the statements that copy them in need it."""
    with sqlite_store.engine.connect() as other, sqlite_store.engine.connect() as conn:
        other.exec_driver_sql("PRAGMA busy_timeout=0")
        conn.exec_driver_sql("PRAGMA busy_timeout=0")
        conn.commit()
        other.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            statements = sqlite_store.staged_upserts(conn, {"deal": [_deal(1, "one", "1.00")]})
        finally:
            other.exec_driver_sql("ROLLBACK")
        with conn.begin():
            for sql, params in statements:
                conn.exec_driver_sql(sql, params)
    rows, links = _stored(sqlite_store)
    assert [r[0] for r in rows] == [model.canonical_id("sf", "deal", "0061")] and len(links) == 1


def _typed(store: Store) -> list[tuple[object, ...]]:
    deal = tables.table_for("deal")
    cols = ", ".join(f'typeof("{c.name}"), "{c.name}"' for c in deal.columns)
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(f'SELECT {cols} FROM "deal" ORDER BY id')]


def test_sqlite_stage_stores_nulls_as_null(sqlite_store: Store, tmp_path: Path) -> None:
    """The stage binds a missing value as NaN (SQLite's NULL, bound without Python's adaptation of None): every
    column holds what the direct upsert stores, NULL (not a REAL) included, from rows with every column and from
    rows lacking some."""
    direct = Store.open(f"sqlite:///{tmp_path / 'direct.db'}")
    full = [_deal(i, f"deal {i}", None if i % 2 else f"{i}.10") for i in range(40)]
    sparse = [{k: v for k, v in _deal(i, f"sparse {i}", None).items() if k not in ("amount", "close_date")}
              for i in range(40, 45)]
    try:
        for rows in (full, sparse):
            with sqlite_store.engine.connect() as conn:
                statements = sqlite_store.staged_upserts(conn, {"deal": rows})
                with conn.begin():
                    for sql, params in statements:
                        conn.exec_driver_sql(sql, params)
            with direct.engine.begin() as conn:
                direct.upsert_entities(conn, "deal", rows)
        got = _typed(sqlite_store)
        assert got == _typed(direct) and len(got) == 45
        assert "real" not in got[0] and got[1].count("null") > 0
    finally:
        direct.close()


def test_stage_parameters_keep_booleans_and_bind_missing_values_as_null() -> None:
    """A Boolean column (none of the canonical tables has one yet) keeps True and False in the stage's flat
    parameters, as in the upsert's; only a missing value becomes the NULL NaN."""
    import math

    import sqlalchemy as sa

    from canonical.store import _row_params

    table = sa.Table("flags", sa.MetaData(), sa.Column("id", sa.Text, primary_key=True), sa.Column("on", sa.Boolean))
    rows = [{"id": "a", "on": True}, {"id": "b", "on": False}, {"id": "c", "on": None}, {"id": "d", "on": 1}]
    flat = _row_params(table, "sqlite", flat=True)(rows)
    assert flat[:6] == ["a", True, "b", False, "c", flat[5]] and math.isnan(flat[5])
    assert flat[6:] == ["d", True] and type(flat[7]) is bool
    assert _row_params(table, "sqlite")(rows) == [("a", True), ("b", False), ("c", None), ("d", True)]


def test_staging_another_entity_later_leaves_the_stage_schema_as_it_was(sqlite_store: Store) -> None:
    """Every entity's stage table exists once the stage is attached: staging an entity for the first time later
    does not change the stage's schema (which would make SQLite prepare the cached statements again)."""
    with sqlite_store.engine.connect() as conn:
        conn.commit()
        sqlite_store.staged_upserts(conn, {"deal": [_deal(1, "one", "1.00")]})
        version = conn.exec_driver_sql("PRAGMA ltc_stage.schema_version").scalar_one()
        conn.commit()
        payment = model.to_row(model.Payment(
            id=model.canonical_id("sf", "payment", "p1"), source_system="sf", source_object="Payment",
            source_id="p1", amount=Money.of("2.00", "EUR")))
        sqlite_store.staged_upserts(conn, {"payment": [payment]})
        assert conn.exec_driver_sql("PRAGMA ltc_stage.schema_version").scalar_one() == version
        conn.commit()

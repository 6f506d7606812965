"""Store guarantees, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from canonical import model, tables
from canonical.money import Money
from canonical.store import RawRecord, Rejected, Store

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def recs(n: int, *, version: int = 1, obj: str = "Opportunity") -> list[RawRecord]:
    return [
        RawRecord(
            obj,
            f"006{i:05d}",
            {"Id": f"006{i:05d}", "Amount": Decimal("1000.10") + i, "v": version, "Name": f"Deal {i}"},
            source_updated_at=T0 + timedelta(minutes=i),
        )
        for i in range(n)
    ]


def raw_rows(store: Store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(tables.raw_record).order_by("source_id"))]


def pending_ids(store: Store) -> set[int]:
    with store.engine.connect() as conn:
        return set(conn.execute(sa.select(tables.raw_pending.c.raw_id)).scalars())


def test_upsert_is_idempotent_and_same_hash_writes_nothing(store: Store) -> None:
    first = store.commit_page("sf", "Opportunity", recs(50), {"ts": "a"})
    assert (first.written, first.unchanged) == (50, 0)
    before = raw_rows(store)
    again = store.commit_page("sf", "Opportunity", recs(50), {"ts": "b"})
    assert (again.written, again.unchanged) == (0, 50)
    after = raw_rows(store)
    assert after == before  # not even fetched_at moved: nothing was written
    assert store.count_raw("sf", "Opportunity") == 50
    assert store.get_cursor("sf", "Opportunity") == {"ts": "b"}


def test_changed_payload_is_rewritten_and_marked_for_mapping(store: Store) -> None:
    store.commit_page("sf", "Opportunity", recs(3), None)
    with store.engine.begin() as conn:
        conn.execute(tables.raw_pending.delete())
    changed = recs(3)
    changed[1] = RawRecord("Opportunity", changed[1].source_id, {**changed[1].payload, "Name": "Renamed"})
    res = store.commit_page("sf", "Opportunity", changed, None)
    assert (res.written, res.unchanged) == (1, 2)
    rows = {r["source_id"]: r for r in raw_rows(store)}
    assert rows["00600001"]["payload"]["Name"] == "Renamed"
    assert pending_ids(store) == {rows["00600001"]["id"]}
    with store.engine.connect() as conn:  # pending with the hash of the new version
        assert conn.execute(sa.select(tables.raw_pending.c.content_hash)).scalar_one() == rows["00600001"]["content_hash"]


def test_every_landed_version_is_pending_with_its_hash(store: Store) -> None:
    odd = "odd\u00e9\U0001f600" if store.engine.dialect.name == "postgresql" else "odd\x00id"  # SQLite keeps a NUL
    store.commit_page("sf", "Lead", [RawRecord("Lead", "L1", {"v": 1}), RawRecord("Lead", odd, {"v": 2})], None)
    rows = {r["source_id"]: r for r in raw_rows(store)}
    with store.engine.connect() as conn:
        pending = set(conn.execute(sa.select(tables.raw_pending.c.raw_id, tables.raw_pending.c.content_hash)))
    assert pending == {(r["id"], r["content_hash"]) for r in rows.values()} and len(pending) == 2


def test_payload_decimals_are_kept_exactly(store: Store) -> None:
    store.commit_page("sf", "Opportunity", [RawRecord("Opportunity", "1", {"Amount": Decimal("0.10")})], None)
    assert store.get_raw("sf", "Opportunity", "1")["payload"]["Amount"] == "0.10"  # type: ignore[index]


def test_duplicates_within_a_page_keep_the_last_version(store: Store) -> None:
    page = [RawRecord("Lead", "L1", {"v": 1}), RawRecord("Lead", "L1", {"v": 2})]
    res = store.commit_page("sf", "Lead", page, None)
    assert res.written == 1
    assert store.get_raw("sf", "Lead", "L1")["payload"] == {"v": 2}  # type: ignore[index]


def test_tombstone(store: Store) -> None:
    store.commit_page("hs", "deals", [RawRecord("deals", "9", {"id": "9", "archived": False})], None)
    res = store.commit_page("hs", "deals", [RawRecord("deals", "9", {"id": "9", "archived": False}, deleted=True)], None)
    assert res.written == 1  # same payload, but now deleted: a change
    row = store.get_raw("hs", "deals", "9")
    assert row is not None and row["deleted"] is True and pending_ids(store) == {row["id"]}
    assert store.count_raw("hs", "deals") == 0
    assert store.count_raw("hs", "deals", include_deleted=True) == 1


def test_cursor_atomicity(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.commit_page("sf", "Opportunity", recs(5), {"page": 1})
    before = raw_rows(store)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("crash between records and cursor")

    monkeypatch.setattr(store, "_advance_cursor", boom)
    with pytest.raises(RuntimeError, match="crash"):
        store.commit_page("sf", "Opportunity", recs(10, version=2), {"page": 2},
                          rejected=[Rejected("Opportunity", "bad", source_id="x")])
    assert raw_rows(store) == before  # records rolled back with the cursor
    assert store.get_cursor("sf", "Opportunity") == {"page": 1}
    assert store.quarantined() == []


def test_quarantine_keeps_record_reason_and_run(store: Store) -> None:
    run_id = store.begin_run("sync", "sf")
    bad = Rejected("Opportunity", "Amount is not a number: 'abc'", source_id="006X", payload={"Amount": "abc"},
                   field="Amount")
    res = store.commit_page("sf", "Opportunity", recs(2), {"c": 1}, run_id=run_id, rejected=[bad])
    assert (res.written, res.quarantined) == (2, 1)
    [q] = store.quarantined("sf")
    assert (q["source_id"], q["field"], q["run_id"], q["stage"]) == ("006X", "Amount", run_id, "fetch")
    assert q["payload"] == {"Amount": "abc"} and "not a number" in q["reason"]
    [state] = store.stream_states()
    assert (state["records_seen"], state["records_written"], state["quarantined"]) == (2, 2, 1)


def test_stream_lifecycle_counts_and_completeness(store: Store) -> None:
    run_id = store.begin_run("sync", "sf")
    store.start_stream("sf", "Opportunity", run_id)
    store.commit_page("sf", "Opportunity", recs(3), {"c": 1}, run_id=run_id)
    store.commit_page("sf", "Opportunity", recs(3), {"c": 2}, run_id=run_id)
    store.finish_stream("sf", "Opportunity", "success", source_count=3, store_count=3)
    store.finish_run(run_id, "success", {"records": 6})
    [s] = store.stream_states()
    assert (s["status"], s["records_seen"], s["records_written"], s["cursor"]) == ("success", 6, 3, {"c": 2})
    assert (s["source_count"], s["store_count"]) == (3, 3)
    assert s["last_success_at"] is not None and s["last_success_at"].tzinfo is not None
    store.start_stream("sf", "Opportunity", store.begin_run("sync", "sf"))
    [s] = store.stream_states()
    assert (s["status"], s["records_seen"], s["cursor"]) == ("running", 0, {"c": 2})


def test_canonical_round_trip_money_dates_instants(store: Store) -> None:
    deal = model.Deal(
        id=model.canonical_id("sf", "deal", "006A"), source_system="sf", source_object="Opportunity",
        source_id="006A", source_updated_at=datetime(2026, 11, 1, 13, 0, tzinfo=timezone(timedelta(hours=1))),
        name="Big deal", stage="closed_won", amount=Money.of("1234.10", "KWD"),
        close_date=date(2026, 10, 31), attributes={"region": "EMEA"},
    )
    with store.engine.begin() as conn:
        store.upsert_entities(conn, "deal", [model.to_row(deal)])
        store.upsert_entities(conn, "deal", [model.to_row(deal)])  # idempotent
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(tables.table_for("deal"))).mappings().all()
    assert len(rows) == 1
    back = model.from_row(model.Deal, rows[0])
    assert isinstance(back, model.Deal)
    assert back.amount == Money.of("1234.10", "KWD") and back.amount.amount == Decimal("1234.10")
    assert back.close_date == date(2026, 10, 31) and type(back.close_date) is date
    assert back.source_updated_at == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert back.source_updated_at.tzinfo is not None
    assert back.attributes == {"region": "EMEA"}


def test_naive_datetimes_and_floats_are_refused(store: Store) -> None:
    t = tables.table_for("payment")
    with pytest.raises(sa.exc.StatementError, match="no timezone"), store.engine.begin() as conn:
        conn.execute(t.insert().values(id="p", source_system="s", source_object="o", source_id="p",
                                       attributes={}, received_at=datetime(2026, 1, 1)))
    with pytest.raises(sa.exc.StatementError, match="Decimal"), store.engine.begin() as conn:
        conn.execute(t.insert().values(id="p", source_system="s", source_object="o", source_id="p",
                                       attributes={}, amount=0.1))


def test_entity_currency_must_match_its_money_fields() -> None:
    inv = model.Invoice(id="i", source_system="s", source_object="o", source_id="i", currency="EUR",
                        total=Money.of("10", "USD"))
    with pytest.raises(ValueError, match="USD"):
        model.to_row(inv)


def test_landed_instants_are_the_same_instant_whatever_their_zone(store: Store) -> None:
    """A record's timestamp lands as the same UTC instant whether it comes in UTC (the connectors'
    own) or in another zone, to the microsecond, and reads back aware."""
    ist = timezone(timedelta(hours=5, minutes=30))
    stamps = [T0 + timedelta(microseconds=7), (T0 + timedelta(seconds=1)).astimezone(ist), T0.replace(microsecond=0)]
    store.commit_page("s", "Opportunity", [RawRecord("Opportunity", f"id{i}", {"Id": i}, source_updated_at=t)
                                           for i, t in enumerate(stamps)], {"c": 1})
    got = [r["source_updated_at"] for r in raw_rows(store)]
    assert got == stamps and all(t.tzinfo is not None for t in got)
    with store.engine.connect() as conn:
        texts = conn.exec_driver_sql("SELECT CAST(source_updated_at AS TEXT) FROM raw_record "
                                     "ORDER BY source_id").scalars().all()
    if store.engine.dialect.name == "sqlite":  # the text SQLAlchemy writes for a DateTime on SQLite
        assert texts == ["2026-11-01 12:00:00.000007", "2026-11-01 12:00:01.000000", "2026-11-01 12:00:00.000000"]


def test_sqlite_landing_connections_keep_a_large_page_cache_and_checkpoint_seldom(tmp_path: Path) -> None:
    """A page's landing writes scattered index leaves: a connection that lands pages caches them (64 MiB),
    others keep SQLite's default cache; the WAL collects several pages' commits before one checkpoint."""
    from canonical.db import SQLITE_CACHE_KIB, SQLITE_CHECKPOINT_PAGES

    s = Store.open(f"sqlite:///{tmp_path / 'ltc.db'}")
    s.engine.pool.dispose()
    try:
        with s.engine.connect() as conn:
            default = conn.exec_driver_sql("PRAGMA cache_size").scalar()
            assert default != -SQLITE_CACHE_KIB
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == SQLITE_CHECKPOINT_PAGES
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        s.commit_page("hubspot", "deals", [RawRecord("deal", "1", {"id": "1"})], cursor="c1")
        with s.engine.connect() as conn:  # the pool's one connection, now a landing one
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -SQLITE_CACHE_KIB
    finally:
        s.close()


def test_insert_rows_stores_what_the_table_insert_stores(store: Store) -> None:
    """insert_rows (the identity stage's bulk write) stores each value as SQLAlchemy's insert of the table does:
    exact decimals, the canonical JSON (text that COPY must escape included), the UTC instant."""
    from canonical.store import insert_rows

    evidence = {"names": ["Acme\tCorp", "back\\slash", "new\nline"], "sim": Decimal("0.9150"), "n": 3, "é": None}
    base = [
        {"method": "fuzzy", "confidence": Decimal("0.9150"), "evidence": evidence,
         "created_at": datetime(2026, 11, 1, 13, 0, 7, 123456, tzinfo=timezone(timedelta(hours=1)))},
        {"method": "self", "confidence": Decimal("1"), "evidence": {}, "created_at": T0},
        {"method": "tax_id", "confidence": Decimal("0.70"), "evidence": {"tax_ids": ["DE1", "DE2"]}, "created_at": T0},
    ]

    def rows(entity: str) -> list[dict]:
        return [dict(r, entity=entity, left_id=f"a:{i}", right_id=f"b:{i}") for i, r in enumerate(base)]

    def stored(conn: sa.Connection, entity: str) -> list[tuple]:
        t = tables.identity_candidate
        return [
            (r.left_id, r.right_id, r.method, r.confidence, str(r.confidence), r.evidence, r.created_at, r.raw_conf)
            for r in conn.execute(sa.select(t, sa.cast(t.c.confidence, sa.Text).label("raw_conf"))
                                  .where(t.c.entity == entity).order_by(t.c.left_id))
        ]

    with store.engine.begin() as conn:
        conn.execute(tables.identity_candidate.insert(), rows("orm"))
        insert_rows(conn, tables.identity_candidate, rows("bulk"))
        insert_rows(conn, tables.identity_candidate, [])
    with store.engine.connect() as conn:
        orm, bulk = stored(conn, "orm"), stored(conn, "bulk")
    assert bulk == orm and len(bulk) == 3
    assert [r[7] for r in bulk] == ["0.9150", "1", "0.70"]  # the decimals' own text: scale kept
    assert bulk[0][5]["names"] == ["Acme\tCorp", "back\\slash", "new\nline"]
    assert bulk[0][6] == datetime(2026, 11, 1, 12, 0, 7, 123456, tzinfo=UTC)

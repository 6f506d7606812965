"""Raw landing with paths left out of the content hash (a stream's ``hash_ignore``): a record whose only
changes are there is not landed again as a change (not re-mapped), but its payload and timestamp are
refreshed; any other change is a change. On each backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from canonical.store import RawRecord, Store, content_hash, without
from canonical.tables import raw_pending

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
IGNORE = ("updatedAt", "properties.hs_lastmodifieddate", "properties.ltc_status")


def deal(at: datetime, **props: str) -> RawRecord:
    payload = {"id": "9001", "updatedAt": at.isoformat(), "properties": {
        "dealname": "Big deal", "amount": "100.00", "hs_lastmodifieddate": at.isoformat(), **props}}
    return RawRecord("deals", "9001", payload, source_updated_at=at, hash_ignore=IGNORE)


def land(store: Store, rec: RawRecord) -> tuple[int, int, int]:
    res = store.commit_page("hs", "deals", [rec], {"hw": None})
    return res.written, res.unchanged, res.touched


def pending(store: Store) -> bool:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(raw_pending.c.raw_id)).first() is not None


def clear_pending(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(raw_pending.delete())


def test_without_drops_only_the_named_paths() -> None:
    payload = {"a": 1, "b": {"c": 2, "d": 3}, "e": {"f": 4}}
    assert without(payload, ["b.c", "e"]) == {"a": 1, "b": {"d": 3}}
    assert payload == {"a": 1, "b": {"c": 2, "d": 3}, "e": {"f": 4}}  # the payload itself is left alone
    assert content_hash(payload, ignore=["b.c"]) == content_hash({"a": 1, "b": {"d": 3}, "e": {"f": 4}})


def test_a_change_of_ignored_paths_only_refreshes_the_payload(store: Store) -> None:
    assert land(store, deal(T0)) == (1, 0, 0)
    clear_pending(store)
    later = T0 + timedelta(minutes=5)
    assert land(store, deal(later, ltc_status="paid")) == (0, 1, 1)  # our own write-back: no change
    raw = store.get_raw("hs", "deals", "9001")
    assert raw is not None and raw["payload"]["properties"]["ltc_status"] == "paid"
    assert raw["source_updated_at"] == later and not pending(store)
    assert land(store, deal(later, ltc_status="paid")) == (0, 1, 0)  # re-read as is: nothing at all
    even_later = later + timedelta(minutes=5)
    assert land(store, deal(even_later, ltc_status="paid", amount="120.00")) == (1, 0, 0)  # a business change
    assert pending(store)
    raw = store.get_raw("hs", "deals", "9001")
    assert raw is not None and raw["payload"]["properties"]["amount"] == "120.00"
    assert raw["source_updated_at"] == even_later


def test_records_without_ignored_paths_hash_everything(store: Store) -> None:
    rec = RawRecord("deals", "1", {"id": "1", "updatedAt": T0.isoformat()}, source_updated_at=T0)
    assert store.commit_page("hs", "deals", [rec], {"hw": None}).written == 1
    moved = RawRecord("deals", "1", {"id": "1", "updatedAt": (T0 + timedelta(1)).isoformat()},
                      source_updated_at=T0 + timedelta(1))
    assert store.commit_page("hs", "deals", [moved], {"hw": None}).written == 1

"""The sync engine on an in-memory source: checkpoints, resume, lookback, dedupe, tombstones, pause."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from canonical.store import Store
from connectors.base import parse_instant, sync, sync_stream
from connectors.errors import ConnectorError
from tests.connectors.fake import T0, KeysetConnector, Source, TokenConnector, seeded


@pytest.fixture(params=[KeysetConnector, TokenConnector])
def conn_cls(request: pytest.FixtureRequest) -> type[KeysetConnector]:
    return request.param  # type: ignore[no-any-return]


def test_full_then_incremental_rereads_only_the_lookback(store: Store, conn_cls: type[KeysetConnector]) -> None:
    src = seeded(35)
    c = conn_cls(src, lookback=timedelta(seconds=5))
    [r1] = sync(c, store)
    # keyset streams read one more page: the probe for records stamped ahead of our clock
    pages = 5 if conn_cls is KeysetConnector else 4
    assert (r1.status, r1.records, r1.written, r1.pages) == ("success", 35, 35, pages)
    assert (r1.source_count, r1.store_count) == (35, 35)
    src.put("d9999", T0 + timedelta(seconds=100))
    [r2] = sync(c, store)
    # re-read from hw - 5 s inclusive (seconds 29..34: six old rows, unchanged, nothing written) + the new one
    assert (r2.records, r2.written, r2.unchanged) == (7, 1, 6)
    assert store.count_raw("fake", "deals") == 36


def test_late_visible_record_is_captured_by_the_lookback(store: Store, conn_cls: type[KeysetConnector]) -> None:
    src = seeded(20)
    c = conn_cls(src, lookback=timedelta(minutes=10))
    sync(c, store)
    # committed late: its timestamp is older than the high-water mark we already passed
    src.put("late", T0 + timedelta(seconds=3))
    sync(c, store)
    assert store.get_raw("fake", "deals", "late") is not None


def test_interrupted_run_resumes_where_it_stopped(store: Store, conn_cls: type[KeysetConnector]) -> None:
    src = seeded(45)
    src.fail_at_page = 3
    c = conn_cls(src)
    with pytest.raises(ConnectorError, match="connection dropped"):
        sync(c, store)
    assert store.count_raw("fake", "deals") == 20  # two pages committed with their cursor
    [state] = store.stream_states()
    assert state["status"] == "failed" and state["cursor"]["run"] is not None
    src.fail_at_page = None
    served_before = src.pages_served
    [r] = sync(c, store)
    assert r.status == "success" and store.count_raw("fake", "deals") == 45
    # pages 3, 4, 5 only (+ the future probe of a keyset): no restart from scratch
    assert src.pages_served - served_before == (4 if conn_cls is KeysetConnector else 3)
    assert r.unchanged == 0


def test_quota_pause_saves_state_and_never_reports_success(store: Store, conn_cls: type[KeysetConnector]) -> None:
    src = seeded(30)
    src.pause_at_page = 2
    c = conn_cls(src)
    [r] = sync(c, store)
    assert r.status == "paused" and "quota" in (r.message or "")
    [state] = store.stream_states()
    assert state["status"] == "paused" and state["last_success_at"] is None
    assert state["cursor"]["hw"] is None  # the high-water mark only moves after a complete run
    src.pause_at_page = None
    [r] = sync(c, store)
    assert r.status == "success" and store.count_raw("fake", "deals") == 30


def test_tombstones_and_records_without_id_go_where_they_belong(store: Store) -> None:
    src = seeded(3)
    src.put("d0001", T0 + timedelta(seconds=50), archived=True)
    src.rows["noid"] = {"updatedAt": (T0 + timedelta(seconds=60)).isoformat()}
    c = KeysetConnector(src)
    [r] = sync(c, store)
    assert r.deleted == 1 and r.quarantined == 1
    raw = store.get_raw("fake", "deals", "d0001")
    assert raw is not None and raw["deleted"] is True
    [q] = store.quarantined()
    assert q["field"] == "id" and "no 'id'" in q["reason"]


def test_same_millisecond_burst_larger_than_a_page_is_not_lost(store: Store) -> None:
    src = Source()
    for i in range(37):  # 37 rows share one timestamp: keyset must page on the id within it
        src.put(f"b{i:03d}", T0)
    [r] = sync(KeysetConnector(src), store)
    assert r.status == "success" and store.count_raw("fake", "deals") == 37


def test_max_pages_stops_resumably(store: Store) -> None:
    src = seeded(50)
    c = KeysetConnector(src)
    run_id = store.begin_run("sync", "fake")
    r = sync_stream(c, c.streams[0], store, run_id=run_id, max_pages=2)
    assert r.status == "paused" and store.count_raw("fake", "deals") == 20
    [r] = sync(c, store)
    assert r.status == "success" and store.count_raw("fake", "deals") == 50


def test_parse_instant_vendor_formats() -> None:
    expect = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_instant("2026-11-01T12:00:00.000+0000") == expect  # Salesforce
    assert parse_instant("2026-11-01T12:00:00Z") == expect  # HubSpot v3
    assert parse_instant(1793534400) == expect  # Stripe epoch seconds
    assert parse_instant("1793534400000") == expect  # HubSpot v1 epoch ms
    assert parse_instant("2026-11-01T13:00:00+01:00") == expect
    with pytest.raises(ValueError):
        parse_instant("2026-11-01T12:00:00")  # naive: refused

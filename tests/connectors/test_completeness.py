"""The sync engine's guarantees against the misses of issue 13: a future stamp never freezes the
cursor, every keyset window is bounded above, the deep check finds what the lookback cannot (late
records, hard deletes), and a run that cannot vouch for its data is ``incomplete``, not ``success``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from canonical.store import Store
from connectors.base import Page, StreamSpec, Window, deep_check, sync
from tests.connectors.fake import T0, KeysetConnector, Source, TokenConnector, seeded

FUTURE = datetime(2099, 1, 1, tzinfo=UTC)


def _state(store: Store) -> dict[str, Any]:
    [state] = store.stream_states()
    return state


@pytest.mark.parametrize("conn_cls", [KeysetConnector, TokenConnector])
def test_a_future_stamp_is_landed_warned_once_and_never_moves_the_cursor(store: Store,
                                                                         conn_cls: type[KeysetConnector]) -> None:
    src = seeded(12)
    src.put("f2099", FUTURE)
    c = conn_cls(src, lookback=timedelta(minutes=1))
    c.deep_check_every = timedelta(hours=24) if conn_cls is KeysetConnector else None
    before = datetime.now(UTC)
    [r1] = sync(c, store)
    hw = datetime.fromisoformat(_state(store)["cursor"]["hw"][0])
    assert hw <= before + timedelta(seconds=5), "the high-water mark passed the run's start"
    if conn_cls is KeysetConnector:  # the future probe lands it (a token-paged source reads what it lists)
        assert r1.future == 1 and store.get_raw("fake", "deals", "f2099") is not None
        warned = [q for q in store.quarantined() if q["stage"] == "cursor"]
        assert len(warned) == 1 and "in the future" in warned[0]["reason"] and warned[0]["source_id"] == "f2099"
    # new and edited records keep arriving (stamped now, as a source stamps them)
    src.put("d0100", datetime.now(UTC) - timedelta(seconds=1))
    src.put("d0003", datetime.now(UTC) - timedelta(seconds=1), name="edited")
    for _ in range(2):
        [r] = sync(c, store)
        assert r.status == "success"
    assert store.get_raw("fake", "deals", "d0100") is not None
    assert store.get_raw("fake", "deals", "d0003")["payload"]["name"] == "edited"  # type: ignore[index]
    assert len([q for q in store.quarantined() if q["stage"] == "cursor"]) == (conn_cls is KeysetConnector)


def test_every_keyset_query_of_the_window_has_an_upper_bound(store: Store) -> None:
    src = seeded(25)
    c = KeysetConnector(src)
    start = datetime.now(UTC)
    sync(c, store)
    sync(c, store)
    window_reads = [w for w in src.windows if w[0] is None or w[0] < start]
    probes = [w for w in src.windows if w not in window_reads]
    assert window_reads and all(until is not None and until <= datetime.now(UTC) for _s, until in window_reads)
    # the probe for records stamped ahead of our clock starts past the run's start
    assert probes and all(since is not None and since > start and until is None for since, until in probes)


def test_a_record_visible_later_than_the_lookback_is_found_by_the_deep_check(store: Store) -> None:
    src = seeded(30)
    c = KeysetConnector(src, lookback=timedelta(0))
    c.deep_check_every = None
    sync(c, store)
    # committed very late: its stamp is far behind the high-water mark
    src.put("late", T0 + timedelta(seconds=2))
    [r] = sync(c, store)
    assert store.get_raw("fake", "deals", "late") is None  # no window can see it
    [r] = sync(c, store, deep=True)
    assert r.status == "success" and r.deep_landed == 1 and r.deep_tombstoned == 0
    assert store.get_raw("fake", "deals", "late") is not None
    # completeness now compares the whole stream, truthfully
    state = _state(store)
    assert state["source_count"] == state["store_count"] == 31
    assert "deep check repaired" in (state["message"] or "")


def test_the_deep_check_tombstones_hard_deletes_and_refreshes_stale_versions(store: Store) -> None:
    src = seeded(10)
    c = KeysetConnector(src)
    sync(c, store)
    del src.rows["d0004"]  # purged at the source: no tombstone record ever comes
    src.rows["d0002"]["name"] = "changed without a newer stamp in our window"
    src.rows["d0002"]["updatedAt"] = (T0 + timedelta(seconds=2, milliseconds=1)).isoformat()
    result = deep_check(c, c.streams[0], store)
    assert result is not None and (result.landed, result.tombstoned, result.unresolved) == (1, 1, [])
    gone = store.get_raw("fake", "deals", "d0004")
    assert gone is not None and gone["deleted"] is True and gone["payload"]["id"] == "d0004"
    assert store.count_raw("fake", "deals") == 9


def test_the_deep_check_runs_on_its_schedule(store: Store) -> None:
    src = seeded(5)
    c = KeysetConnector(src)
    c.deep_check_every = timedelta(hours=24)
    [first] = sync(c, store)
    assert first.deep_landed is None and _state(store)["cursor"]["deep_at"]  # a full read counts as one
    [second] = sync(c, store)
    assert second.deep_landed is None  # not due yet
    state = _state(store)["cursor"]
    state["deep_at"] = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    store.commit_page("fake", "deals", [], state)
    [third] = sync(c, store)
    assert third.deep_landed == 0 and third.deep_tombstoned == 0
    assert datetime.fromisoformat(_state(store)["cursor"]["deep_at"]) > datetime.now(UTC) - timedelta(minutes=5)


def test_a_page_of_which_nothing_lands_is_not_a_success(store: Store) -> None:
    src = Source()
    for i in range(25):
        src.rows[f"x{i}"] = {"updatedAt": (T0 + timedelta(seconds=i)).isoformat(), "name": f"no id {i}"}
    [r] = sync(TokenConnector(src), store)
    assert r.status == "incomplete" and r.message is not None and "0 of 10 records landed" in r.message
    assert _state(store)["status"] == "incomplete"


def test_a_full_keyset_page_of_unreadable_stamps_stops_the_stream_honestly(store: Store) -> None:
    src = seeded(3)
    for i in range(10):
        src.put(f"bad{i}", T0)
        src.rows[f"bad{i}"]["updatedAt"] = "0 not a time"  # sorts first: a whole page of them
    c = KeysetConnector(src)
    [r] = sync(c, store)
    assert r.status == "incomplete" and "cannot move past" in (r.message or "")
    state = _state(store)
    assert state["cursor"]["hw"] is None and state["cursor"]["run"] is not None  # nothing skipped
    assert len([q for q in store.quarantined() if q["stage"] == "fetch"]) == 10
    [again] = sync(c, store)  # the same place, the same answer, no duplicate quarantine
    assert again.status == "incomplete" and len(store.quarantined()) == 10


class _Blind(KeysetConnector):
    """A source that counts more than it lists, and has no id listing to find the difference."""

    def count(self, stream: StreamSpec, window: Window) -> int | None:
        return (super().count(stream, window) or 0) + 3

    def source_ids(self, stream: StreamSpec) -> dict[str, datetime | None] | None:
        return None


def test_a_count_gap_without_an_id_listing_is_incomplete(store: Store) -> None:
    [r] = sync(_Blind(seeded(4)), store)
    assert r.status == "incomplete" and "source has 7, store has 4" in (r.message or "")


class _Missing(KeysetConnector):
    """The source lists an id it then cannot return (deleted in between, or broken)."""

    def source_ids(self, stream: StreamSpec) -> dict[str, datetime | None] | None:
        ids = super().source_ids(stream) or {}
        return {**ids, "ghost": T0}

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        return super().read_page(stream, window, token)


def test_a_gap_the_deep_check_cannot_close_is_incomplete(store: Store) -> None:
    [r] = sync(_Missing(seeded(4)), store, deep=True)
    assert r.status == "incomplete" and "ghost" in (r.message or "")
    assert (r.source_count, r.store_count) == (5, 4)


class _CutShort(KeysetConnector):
    """A source whose id listing ends early (a vendor dropping its paging mid-way)."""

    listed: int | None = None

    def source_ids(self, stream: StreamSpec) -> dict[str, datetime | None] | None:
        ids = super().source_ids(stream) or {}
        return ids if self.listed is None else dict(sorted(ids.items())[:self.listed])


def test_a_deep_check_that_would_tombstone_too_many_refuses_and_is_incomplete(store: Store) -> None:
    c = _CutShort(seeded(40))
    sync(c, store)
    c.listed = 10
    [r] = sync(c, store, deep=True)
    assert r.status == "incomplete" and r.deep_tombstoned == 0
    assert "30 of 40 live record(s)" in (r.message or "") and "deep_delete_max_share" in (r.message or "")
    assert store.count_raw("fake", "deals") == 40 and _state(store)["status"] == "incomplete"
    assert "deep_at" not in _state(store)["cursor"]  # due again next run
    c.deep_delete_max_share = 1.0  # the operator says the deletions are real
    [r] = sync(c, store, deep=True)
    assert (r.status, r.deep_tombstoned) == ("success", 30) and store.count_raw("fake", "deals") == 10


def test_a_deep_check_may_tombstone_a_few_records_and_trusts_the_source_count(store: Store) -> None:
    c = _CutShort(seeded(40))
    sync(c, store)
    c.listed = 25  # 15 gone: under the floor of 20, tombstoned
    [r] = sync(c, store, deep=True)
    assert (r.status, r.deep_tombstoned) == ("success", 15)
    c2 = _CutShort(seeded(40))
    c2.source_total = lambda stream: 40  # type: ignore[method-assign]  # the source counts more than it listed
    sync(c2, store, full_refresh=True)
    c2.listed = 39
    [r] = sync(c2, store, deep=True)
    assert r.status == "incomplete" and r.deep_tombstoned == 0 and "counts 40 live records" in (r.message or "")

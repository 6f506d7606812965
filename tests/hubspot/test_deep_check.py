"""Deep completeness against the HubSpot emulator: a hard delete (GDPR delete, or an archived record
past its 90 days) is tombstoned, and a record the search index shows later than the lookback is
landed; the status tells what was repaired (issue 13)."""

from __future__ import annotations

from canonical.store import Store
from connectors.base import sync
from tests.hubspot.conftest import make_connector


def test_hard_delete_and_late_visibility_are_repaired_by_the_deep_check(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    emu, server = hubspot(size=60)
    c = make_connector(server, streams=["deals"])
    sync(c, store)
    gone = emu.live_ids("deals")[3]
    emu.purge("deals", [gone])  # in neither the list nor archived=true any more
    now = emu.now_ms()
    oldest = min(rec.updated for rec in emu.objects["deals"].values())
    late = emu.create("deals", {"dealname": "late"}, at_ms=oldest - 3_600_000, visible_at_ms=now + 10**9)
    sync(c, store)
    emu.reveal("deals", [late])  # visible now, stamped long before the high-water mark and its lookback
    [r] = sync(c, store)
    assert store.get_raw("hubspot", "deals", str(late)) is None
    assert store.get_raw("hubspot", "deals", str(gone))["deleted"] is False  # type: ignore[index]
    [r] = sync(c, store, deep=True)
    assert (r.status, r.deep_landed, r.deep_tombstoned) == ("success", 1, 1)
    assert store.get_raw("hubspot", "deals", str(late)) is not None
    assert store.get_raw("hubspot", "deals", str(gone))["deleted"] is True  # type: ignore[index]
    assert r.source_count == r.store_count == len(emu.live_ids("deals"))
    assert "deep check repaired the store" in (r.message or "")
    [again] = sync(c, store, deep=True)
    assert (again.deep_landed, again.deep_tombstoned, again.message) == (0, 0, None)


def test_a_deep_check_on_a_listing_cut_short_tombstones_nothing(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    emu, server = hubspot(size=300)
    c = make_connector(server, streams=["deals"])
    sync(c, store)
    emu.drop_list_paging = True  # the id listing ends after its first 100 ids
    [r] = sync(c, store, deep=True)
    assert r.status == "incomplete" and r.deep_tombstoned == 0
    assert "200 of 300 live record(s)" in (r.message or "") and "cut short" in (r.message or "")
    assert len(store.live_stamps("hubspot", "deals")) == len(emu.live_ids("deals")) == 300
    emu.drop_list_paging = False
    [again] = sync(c, store)  # the refused check is due again, and passes
    assert (again.status, again.deep_tombstoned) == ("success", 0)

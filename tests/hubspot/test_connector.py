"""The HubSpot connector against the emulator over real HTTP: full and incremental loads, the search
cap, late visibility, limits, tombstones, associations and wide property lists."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from canonical.store import Store
from canonical.tables import raw_record
from connectors.base import sync
from connectors.errors import ConnectorError
from sandbox.hubspot import HubSpotEmulator, iso_ms
from tests.hubspot.conftest import make_connector


def live_ids(store: Store, obj: str) -> set[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(raw_record.c.source_id).where(
            raw_record.c.system == "hubspot", raw_record.c.object == obj, raw_record.c.deleted.is_(False)))
        return {r[0] for r in rows}


def emu_ids(emu: HubSpotEmulator, obj: str) -> set[str]:
    return {str(i) for i in emu.live_ids(obj)}


def test_full_load_then_incremental_via_search(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    emu, server = hubspot(size=240)
    c = make_connector(server)
    results = {r.stream: r for r in sync(c, store)}
    assert all(r.status == "success" for r in results.values()), results
    for obj in ("contacts", "companies", "deals", "line_items", "products"):
        assert live_ids(store, obj) == emu_ids(emu, obj), obj
        assert (results[obj].source_count, results[obj].store_count) == (len(emu_ids(emu, obj)),) * 2
    assert store.count_raw("hubspot", "owners") == 10
    [pipeline] = [store.get_raw("hubspot", "deal_pipelines", "default")]
    assert pipeline is not None and {s["id"] for s in pipeline["payload"]["stages"]} >= {"closedwon", "closedlost"}
    assert store.count_raw("hubspot", "associations.deals") == 240

    # amounts arrive and stay as exact strings
    deal_id = emu.live_ids("deals")[0]
    raw = store.get_raw("hubspot", "deals", str(deal_id))
    assert raw is not None
    amount = raw["payload"]["properties"]["amount"]
    assert isinstance(amount, str) and Decimal(amount) == Decimal(emu.objects["deals"][deal_id].props["amount"])

    lists_before, searches_before = emu.served.get("objects", 0), emu.served.get("search", 0)
    touched_deals = emu.live_ids("deals")[5:9]
    emu.touch("deals", touched_deals, dealname="renamed")
    contact = emu.live_ids("contacts")[3]
    emu.touch("contacts", [contact], email="new@example.com")  # contacts: lastmodifieddate
    new_deal = emu.create("deals", {"dealname": "fresh", "amount": "10.10"})
    again = {r.stream: r for r in sync(c, store, streams=["deals", "contacts"])}
    assert again["deals"].written == 5 and again["contacts"].written == 1
    assert emu.served["search"] > searches_before
    assert emu.served["objects"] - lists_before == 2  # only the two archived=true passes listed
    for d in touched_deals:
        stored = store.get_raw("hubspot", "deals", str(d))
        assert stored is not None and stored["payload"]["properties"]["dealname"] == "renamed"
    contact_raw = store.get_raw("hubspot", "contacts", str(contact))
    assert contact_raw is not None and contact_raw["payload"]["properties"]["email"] == "new@example.com"
    assert store.get_raw("hubspot", "deals", str(new_deal)) is not None


def test_record_visible_after_its_timestamp_is_captured(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    emu, server = hubspot(size=40)
    c = make_connector(server, streams=["deals"])
    sync(c, store)
    now = emu.now_ms()
    emu.touch("deals", emu.live_ids("deals")[:2], at_ms=now - 30_000)
    # committed with a timestamp 60 s in the past, visible only later (index lag)
    late = emu.create("deals", {"dealname": "late"}, at_ms=now - 60_000, visible_at_ms=now + 10**9)
    [r1] = sync(c, store)
    assert r1.status == "success" and store.get_raw("hubspot", "deals", str(late)) is None
    emu.reveal("deals", [late])
    [r2] = sync(c, store)
    assert r2.status == "success" and store.get_raw("hubspot", "deals", str(late)) is not None


def test_25000_deals_modified_within_one_hour_are_all_captured_once(sqlite_store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    emu, server = hubspot(size=25_000, products=5, owners=2, companies=1, contacts=1, line_items=False)
    c = make_connector(server, streams=["deals"])
    c.properties_wanted["deals"] = ["dealname", "amount", "dealstage"]
    touched = emu.burst("deals", 25_000, within_ms=3_600_000, same_ms_share=0.45)  # 11,250 in one ms
    assert len(touched) == 25_000
    # a previous run left its high-water mark two hours ago: this run's window holds exactly the burst
    hw = datetime.now(UTC) - timedelta(hours=2)
    sqlite_store.commit_page("hubspot", "deals", [], {"hw": [hw.isoformat(), ""], "run": None})
    [r] = sync(c, sqlite_store)
    assert r.status == "success", r.message
    assert r.records == 25_000 and r.written == 25_000  # nothing fetched twice
    assert live_ids(sqlite_store, "deals") == {str(i) for i in touched}
    assert emu.statuses.get(400) is None  # never paged into the 10,000 cap
    with sqlite_store.engine.connect() as conn:
        names = conn.execute(sa.text(
            "SELECT count(*) FROM raw_record WHERE object = 'deals' AND payload LIKE '%bulk edit%'")).scalar_one()
    assert names == 25_000


def test_bisection_state_is_checkpointed_and_a_paused_run_resumes_inside_it(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    # the cap shrunk to 50 (and pages to 10) so that a 400-record burst needs several levels of bisection
    emu, server = hubspot(size=500, search_cap=50, rate_limits=True, oauth=True, daily_limit=10**6)
    c = make_connector(server, streams=["deals"], pages_per_commit=1, read_ahead=False)
    c.search_cap, c.search_page = 50, 10
    c.properties_wanted["deals"] = ["dealname"]
    touched = emu.burst("deals", 400, within_ms=600_000, same_ms_share=0.3)  # 120 deals in one ms
    hw = datetime.now(UTC) - timedelta(hours=1)
    store.commit_page("hubspot", "deals", [], {"hw": [hw.isoformat(), ""], "run": None})
    emu.daily_limit = emu.daily_used + 25  # the daily limit strikes mid-window
    [r1] = sync(c, store)
    assert r1.status == "paused"
    state = store.get_cursor("hubspot", "deals")["run"]["token"]
    assert state["p"] == "search" and len(state["wins"]) >= 2  # a bisected window stack was saved
    emu.reset_daily()
    emu.daily_limit = 10**6
    [r2] = sync(c, store)
    assert r2.status == "success"
    assert live_ids(store, "deals") >= {str(i) for i in touched}
    assert r1.records + r2.records == 400  # resumed inside the stack: nothing read twice
    assert emu.statuses.get(400) is None


def test_search_without_paging_goes_on_by_total_and_never_ends_short_as_success(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    emu, server = hubspot(size=30)
    c = make_connector(server, streams=["deals"], read_ahead=False)
    c.search_page = 5
    sync(c, store)
    changed = list(emu.objects["deals"])[:23]
    emu.touch("deals", changed, at_ms=emu.now_ms() - 2000, dealname="changed")
    emu.drop_search_paging = True  # full pages, the right total, but no paging
    [r] = sync(c, store)
    assert r.status == "success"
    assert all(store.get_raw("hubspot", "deals", str(i))["payload"]["properties"]["dealname"] == "changed"  # type: ignore[index]
               for i in changed)
    hw = store.get_cursor("hubspot", "deals")["hw"]
    emu.touch("deals", changed, at_ms=emu.now_ms() - 1000, dealname="again")
    emu.search_results_max = 3  # short pages: fewer results than the total, and no way to the rest
    [r] = sync(c, store)
    assert r.status == "incomplete" and "returned 3 of 23 results and no paging" in (r.message or "")
    assert store.get_cursor("hubspot", "deals")["hw"] == hw  # the mark did not move past what was missed
    emu.drop_search_paging, emu.search_results_max = False, None
    [r] = sync(c, store)  # the next run reads the window again
    assert r.status == "success"
    assert all(store.get_raw("hubspot", "deals", str(i))["payload"]["properties"]["dealname"] == "again"  # type: ignore[index]
               for i in changed)


def test_search_refuses_paging_past_10000_like_hubspot(hubspot) -> None:  # type: ignore[no-untyped-def]
    _emu, server = hubspot(size=20)
    c = make_connector(server)
    with pytest.raises(ConnectorError, match="400"):
        c.search_http.json("POST", "/crm/v3/objects/deals/search", json={"limit": 200, "after": "10000"})
    with pytest.raises(ConnectorError, match="400"):
        c.search_http.json("POST", "/crm/v3/objects/deals/search", json={"limit": 201})


def test_429_storm_is_survived_without_loss(sqlite_store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    # other apps on the portal take 16 of its 20 requests per rolling second: our pace, learnt from
    # X-HubSpot-RateLimit-Max, is far too fast, and 429 TEN_SECONDLY_ROLLING answers pile up
    emu, server = hubspot(size=300, rate_limits=True, burst_max=20, burst_interval_ms=1_000, other_apps_rps=16)
    c = make_connector(server, streams=["deals", "deal_associations"])
    results = sync(c, sqlite_store)
    assert all(r.status == "success" for r in results)
    assert emu.statuses.get(429, 0) >= 3 and c.http_429 == emu.statuses[429]
    assert live_ids(sqlite_store, "deals") == emu_ids(emu, "deals")
    assert sqlite_store.count_raw("hubspot", "associations.deals") == 300


def test_daily_429_pauses_and_the_next_run_resumes(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    # OAuth-authorised calls carry no daily headers: the first sign of the daily limit is the 429 itself
    emu, server = hubspot(size=700, rate_limits=True, oauth=True, daily_limit=6)
    c = make_connector(server, streams=["deals"])
    [r1] = sync(c, store)
    assert r1.status == "paused" and "DAILY" in (r1.message or "")
    assert emu.statuses[429] == 1  # paused at once, no retrying against the daily limit
    [state] = store.stream_states()
    assert state["status"] == "paused" and state["last_success_at"] is None and state["cursor"]["run"]
    landed = store.count_raw("hubspot", "deals")
    assert 0 < landed < 700
    served = emu.served["objects"]
    emu.reset_daily()
    emu.daily_limit = 1_000_000
    [r2] = sync(c, store)
    assert r2.status == "success" and live_ids(store, "deals") == emu_ids(emu, "deals")
    assert emu.served["objects"] - served <= 7 - (landed // 100)  # resumed, not restarted


def test_daily_headers_pause_before_the_limit_is_hit(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    emu, server = hubspot(size=900, rate_limits=True, daily_limit=10)
    c = make_connector(server, streams=["deals"])
    [r] = sync(c, store)
    assert r.status == "paused" and "daily API allocation" in (r.message or "")
    assert emu.statuses.get(429) is None


def test_archived_records_become_tombstones(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    emu, server = hubspot(size=60)
    c = make_connector(server, streams=["deals", "deal_associations"])
    sync(c, store)
    gone = emu.live_ids("deals")[10:13]
    emu.archive("deals", gone)
    results = {r.stream: r for r in sync(c, store)}
    assert results["deals"].deleted == 3 and results["deal_associations"].deleted == 3
    for d in gone:
        for obj in ("deals", "associations.deals"):
            raw = store.get_raw("hubspot", obj, str(d))
            assert raw is not None and raw["deleted"] is True
    again = {r.stream: r for r in sync(c, store)}
    assert again["deals"].written == 0 and again["deal_associations"].written == 0


def test_association_only_edit_reaches_the_store_within_the_sweep_bound(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    emu, server = hubspot(size=50)
    c = make_connector(server, streams=["deals", "deal_associations"], full_sweep_every=timedelta(hours=6))
    sync(c, store)
    deal, other, edited = emu.live_ids("deals")[7], emu.live_ids("deals")[8], emu.live_ids("deals")[9]
    company = emu.live_ids("companies")[-1]
    line = next(iter(emu.associations("deals", other, "line_items")))
    emu.associate("deals", deal, "companies", company)  # hs_lastmodifieddate does not move
    emu.dissociate("deals", other, "line_items", line)
    eline = next(iter(emu.associations("deals", edited, "line_items")))
    emu.dissociate("deals", edited, "line_items", eline)
    emu.touch("deals", [edited], dealname="Renamed deal")  # also edited: its associations are read at once
    sent = c.http.requests_sent + c.search_http.requests_sent
    results = {r.stream: r for r in sync(c, store)}
    assert results["deals"].written == 1
    assert results["deal_associations"].written == 1  # within the bound, only the modified deal's
    assert c.http.requests_sent + c.search_http.requests_sent - sent < 20  # no sweep of all 50 deals
    rec = store.get_raw("hubspot", "associations.deals", str(edited))
    assert rec is not None and str(eline) not in {e["id"] for e in rec["payload"]["line_items"]}
    # the bound passes: the next run sweeps every deal and the association-only edits are in the store
    c.clock = lambda: time.time() + 6 * 3600 + 1
    results = {r.stream: r for r in sync(c, store)}
    assert results["deals"].written == 0  # invisible to any timestamp cursor
    assert results["deal_associations"].written == 2
    rec = store.get_raw("hubspot", "associations.deals", str(deal))
    assert rec is not None and {"id": str(company), "types": [5, 341]} in rec["payload"]["companies"]
    rec = store.get_raw("hubspot", "associations.deals", str(other))
    assert rec is not None and rec["payload"]["line_items"] == []


def test_deal_with_more_associations_than_a_batch_page(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    emu, server = hubspot(size=30, assoc_page=3)
    deal = emu.live_ids("deals")[2]
    contacts = emu.live_ids("contacts")[:8]
    for contact in contacts:
        emu.associate("deals", deal, "contacts", contact)
    c = make_connector(server, streams=["deal_associations"])
    sync(c, store)
    rec = store.get_raw("hubspot", "associations.deals", str(deal))
    assert rec is not None
    assert {e["id"] for e in rec["payload"]["contacts"]} == {str(i) for i in emu.associations("deals", deal, "contacts")}
    assert len(rec["payload"]["contacts"]) >= 8


def test_wide_property_list_is_chunked_under_the_url_limit(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    emu, server = hubspot(size=30, custom_properties=400, custom_property_name_len=40, max_url=8_192)
    c = make_connector(server, streams=["deals"])
    assert len(c.property_chunks("deals")) >= 3
    [r] = sync(c, store)
    assert r.status == "success" and emu.statuses.get(414) is None
    odd = next(i for i in emu.live_ids("deals") if i % 2)
    raw = store.get_raw("hubspot", "deals", str(odd))
    assert raw is not None
    props = raw["payload"]["properties"]
    assert props["custom_field_0399_" + "x" * 22] == f"0399-{odd}"  # from the last chunk
    assert props["dealname"] and props["hs_lastmodifieddate"]
    # the same list in one GET is what the chunking avoids
    unchunked = make_connector(server, streams=["deals"], url_budget=1_000_000)
    with pytest.raises(ConnectorError, match="414"):
        sync(unchunked, store, full_refresh=True)


def test_random_5xx_and_timeouts_are_retried(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    emu, server = hubspot(size=400, error_rate=0.15, timeout_rate=0.05, timeout_s=0.6)
    c = make_connector(server, streams=["deals", "deal_associations"], timeout=0.3)
    results = sync(c, store)
    assert all(r.status == "success" for r in results)
    assert sum(v for k, v in emu.statuses.items() if k >= 500) > 0
    assert live_ids(store, "deals") == emu_ids(emu, "deals")


def test_bad_token_is_one_clear_line(store: Store, hubspot) -> None:  # type: ignore[no-untyped-def]
    _, server = hubspot(size=5)
    c = make_connector(server, token="pat-na1-wrong-secret", streams=["deals"])
    with pytest.raises(ConnectorError) as err:
        sync(c, store)
    assert "credentials.token" in str(err.value) and "wrong-secret" not in str(err.value)


def test_emulator_instants_are_hubspot_format() -> None:
    assert iso_ms(1767225600123) == "2026-01-01T00:00:00.123Z"

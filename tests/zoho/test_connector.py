"""The Zoho connector against the emulator: OAuth, keyset, page_token, deletions, limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from canonical.errors import ConfigError
from canonical.store import Store
from connectors.base import sync, sync_stream
from connectors.errors import AuthenticationError, ConnectorError
from connectors.zoho import ZohoConnector, keyset_query
from sandbox.server import RunningServer
from sandbox.zoho import ZohoEmulator, zoho_time
from tests.zoho.conftest import make_connector

Start = Callable[..., tuple[ZohoEmulator, RunningServer]]


def _stamps(store: Store, obj: str) -> dict[str, Any]:
    return store.live_stamps("zoho", obj)


def test_data_centres_pick_the_matching_accounts_server() -> None:
    for dc, accounts in (("com", "https://accounts.zoho.com"), ("eu", "https://accounts.zoho.eu"),
                         ("in", "https://accounts.zoho.in"), ("com.au", "https://accounts.zoho.com.au"),
                         ("jp", "https://accounts.zoho.jp"), ("com.cn", "https://accounts.zoho.com.cn")):
        conn = ZohoConnector("z", client_id="c", client_secret="s", refresh_token="r", dc=dc)
        assert conn.accounts_url == accounts
        assert conn._default_api == accounts.replace("accounts.zoho", "www.zohoapis")
        conn.close()
    with pytest.raises(ConfigError, match="not a Zoho data centre"):
        ZohoConnector("z", client_id="c", client_secret="s", refresh_token="r", dc="de")


def test_refresh_token_flow_header_and_invalid_token_retry(zoho: Start, sqlite_store: Store) -> None:
    emu, srv = zoho(size=20, modules=["Deals", "Accounts"])
    conn = make_connector(srv, streams=["deals"])
    [first] = sync(conn, sqlite_store)
    assert first.status == "success" and first.records == 20
    assert emu.token_requests == 1 and conn.token_refreshes == 1
    # every access token expires (an hour in Zoho): the next call gets 401 INVALID_TOKEN, refreshes once, repeats
    emu.expire_tokens()
    calls_before = len(emu.requests)
    [again] = sync(conn, sqlite_store, full_refresh=True)
    assert again.status == "success" and again.records == 20
    assert conn.token_refreshes == 2 and emu.token_requests == 2
    assert len(emu.requests) > calls_before
    conn.close()
    # the header is Zoho's own scheme: a Bearer token is refused
    token = next(iter(emu.tokens))
    answer = httpx.get(f"{srv.url}/crm/v8/Deals", params={"fields": "Deal_Name"},
                       headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401


def test_a_refused_refresh_token_is_one_clear_line_without_the_secret(zoho: Start, sqlite_store: Store) -> None:
    _emu, srv = zoho(size=2, modules=["Deals"])
    conn = make_connector(srv, refresh_token="1000.wrong-refresh", streams=["deals"])
    with pytest.raises(AuthenticationError) as info:
        sync(conn, sqlite_store)
    text = str(info.value)
    assert "invalid_code" in text and "refresh_token" in text
    assert "1000.wrong-refresh" not in text and "ltc-sandbox-zoho-secret" not in text
    conn.close()


def test_listing_pages_past_2000_records_with_page_token(zoho: Start) -> None:
    emu, srv = zoho(size=2345, modules=["Deals"])
    conn = make_connector(srv, streams=["deals"])
    ids = conn.source_ids(conn.stream("deals"))
    assert ids is not None and set(ids) == set(emu.records["Deals"])
    assert all(ts is not None for ts in ids.values())
    assert sum(1 for _m, p in emu.requests if p == "/crm/v8/Deals") == 12  # 2,345 / 200 pages
    assert emu._page_tokens  # the pages past 2,000 were asked for by page_token
    token = next(iter(emu.tokens))
    # page numbers stop at 2,000 records (Zoho's discrete-pagination limit): beyond, only page_token pages
    refused = httpx.get(f"{srv.url}/crm/v8/Deals", params={"fields": "Deal_Name", "page": 11, "per_page": 200},
                        headers={"Authorization": f"Zoho-oauthtoken {token}"})
    assert refused.status_code == 400 and refused.json()["code"] == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"
    conn.close()


def test_an_expired_page_token_fails_with_the_reason(zoho: Start) -> None:
    emu, srv = zoho(size=450, modules=["Deals"])
    emu.page_token_ttl_s = -1  # every token is born expired
    conn = make_connector(srv, streams=["deals"])
    with pytest.raises(ConnectorError, match="page token has expired"):
        conn.source_ids(conn.stream("deals"))
    conn.close()


def test_keyset_is_gap_free_when_many_records_share_a_modified_time(zoho: Start, sqlite_store: Store) -> None:
    # edit_gap_s=0: every deal stamped in the same second; pages of 7 split that second many times
    emu, srv = zoho(size=60, modules=["Deals"], edit_gap_s=0)
    assert len({r["Modified_Time"] for r in emu.records["Deals"].values()}) == 1
    conn = make_connector(srv, streams=["deals"], keyset_limit=7)
    [result] = sync(conn, sqlite_store)
    assert result.status == "success"
    assert set(_stamps(sqlite_store, "Deals")) == set(emu.records["Deals"])
    assert result.records == 60 and result.pages == 9  # 8 full pages of 7 and a last one of 4
    conn.close()


def test_keyset_misses_nothing_when_records_change_during_the_run(zoho: Start, sqlite_store: Store) -> None:
    emu, srv = zoho(size=40, modules=["Deals"], edit_gap_s=0)
    conn = make_connector(srv, streams=["deals"], keyset_limit=5, read_ahead=False)
    ordered = sorted(emu.records["Deals"], key=int)
    past = zoho_time(datetime.now(UTC) - timedelta(minutes=1), emu.tz)
    real_read = conn.read_page
    seen_pages = []

    def read(stream: Any, window: Any, token: Any) -> Any:
        page = real_read(stream, window, token)
        if len(seen_pages) == 1:
            # after the second page: a record already read and one not yet read are both edited; with
            # offset paging the later records would shift one place forward and one would be skipped
            emu.modify("Deals", ordered[0], Amount=1, Modified_Time=past)
            emu.modify("Deals", ordered[20], Amount=2, Modified_Time=past)
        seen_pages.append(len(page.records))
        return page

    conn.read_page = read  # type: ignore[method-assign]
    [result] = sync(conn, sqlite_store)
    assert result.status == "success"
    assert set(_stamps(sqlite_store, "Deals")) == set(ordered)
    # 40 + 1: the edited record already read is read again at its new stamp; the one not yet read moved
    # ahead of the keyset and is read once, at its new place; no record was skipped
    assert sum(seen_pages) == 41
    conn.close()


def test_offset_paging_by_modified_time_skips_a_record_that_moves(zoho: Start) -> None:
    """Why the connector does not page If-Modified-Since results: a record edited between two pages
    moves to the end, the rest shift forward, and the record at the boundary is never returned."""
    emu, srv = zoho(size=10, modules=["Deals"])
    conn = make_connector(srv, streams=["deals"])
    conn._access()  # obtains an access token from the emulator
    token = next(iter(emu.tokens))
    headers = {"Authorization": f"Zoho-oauthtoken {token}", "If-Modified-Since": "2025-01-01T00:00:00+00:00"}
    params = {"fields": "Deal_Name", "per_page": 4, "sort_by": "Modified_Time", "sort_order": "asc"}
    first = httpx.get(f"{srv.url}/crm/v8/Deals", params={**params, "page": 1}, headers=headers).json()["data"]
    emu.modify("Deals", first[0]["id"], Amount=1)  # now the newest
    rest = []
    for page in (2, 3, 4):
        got = httpx.get(f"{srv.url}/crm/v8/Deals", params={**params, "page": page}, headers=headers)
        rest += got.json()["data"] if got.status_code == 200 else []
    seen = {r["id"] for r in first + rest}
    assert len(seen) == 9  # one of the ten was skipped
    conn.close()


def test_second_run_reads_only_changes_and_deletions_become_tombstones(zoho: Start, sqlite_store: Store) -> None:
    emu, srv = zoho(size=30, modules=["Deals"])
    conn = make_connector(srv, streams=["deals"], lookback=timedelta(0))
    [first] = sync(conn, sqlite_store)
    assert first.records == 30
    ids = sorted(emu.records["Deals"], key=int)
    recent = zoho_time(datetime.now(UTC) - timedelta(seconds=30), emu.tz)
    emu.modify("Deals", ids[3], Amount=999, Modified_Time=recent)
    emu.delete("Deals", ids[5], when=datetime.now(UTC) - timedelta(seconds=20))
    emu.delete("Deals", ids[6], permanent=True, when=datetime.now(UTC) - timedelta(seconds=20))
    [second] = sync(conn, sqlite_store)
    assert second.status == "success"
    assert second.deleted == 2
    # the edited deal, two tombstones, and the last deal of the first run (the window starts at the mark,
    # inclusive: it is re-read and, unchanged, writes nothing)
    assert (second.records, second.written, second.unchanged) == (4, 3, 1)
    live = _stamps(sqlite_store, "Deals")
    assert ids[5] not in live and ids[6] not in live and ids[3] in live
    assert len(live) == 28
    payload = sqlite_store.raw_payloads("zoho", "Deals", [ids[3]])[ids[3]]
    assert str(payload["Amount"]) == "999"
    # the deletions endpoint was asked with If-Modified-Since for type=all
    assert ("GET", "/crm/v8/Deals/deleted") in emu.requests
    conn.close()


def test_concurrency_429_is_retried_and_the_run_completes(zoho: Start, sqlite_store: Store) -> None:
    emu, srv = zoho(size=600, modules=["Deals"], concurrency=1, latency_ms=20)
    conn = make_connector(srv, streams=["deals"], concurrency=4)  # more than the org allows
    [result] = sync(conn, sqlite_store)
    assert result.status == "success" and result.records == 600
    assert emu.http_429 > 0 and conn.http_429 == emu.http_429
    conn.close()


def test_within_the_concurrency_limit_no_429(zoho: Start, sqlite_store: Store) -> None:
    emu, srv = zoho(size=600, modules=["Deals"], concurrency=3, latency_ms=20)
    conn = make_connector(srv, streams=["deals"], concurrency=3)
    [result] = sync(conn, sqlite_store)
    assert result.status == "success" and result.records == 600
    assert emu.http_429 == 0 and emu.max_in_flight == 3
    conn.close()


def test_credits_exhausted_pauses_with_state_saved(zoho: Start, sqlite_store: Store) -> None:
    _emu, srv = zoho(size=30, modules=["Deals"], daily_credits=2)
    conn = make_connector(srv, streams=["deals"])
    [result] = sync(conn, sqlite_store)
    assert result.status == "paused"
    assert "credits" in (result.message or "")


def test_credit_share_past_the_pause_threshold_pauses_before_reading(zoho: Start, sqlite_store: Store) -> None:
    emu, srv = zoho(size=30, modules=["Deals"], daily_credits=100)
    emu.credits_used = 85  # other integrations of the org used 85 %
    conn = make_connector(srv, streams=["deals"], keyset_limit=10)
    [result] = sync(conn, sqlite_store)
    assert result.status == "paused" and "daily API allocation" in (result.message or "")
    assert result.records <= 10  # stopped at the first page after the headers showed the share
    conn.close()


def test_custom_fields_and_wide_modules_are_read_in_field_chunks(zoho: Start, sqlite_store: Store) -> None:
    emu, srv = zoho(size=5, modules=["Accounts"])
    rid = next(iter(emu.records["Accounts"]))
    emu.modify("Accounts", rid, **{f"Custom_{i}": f"v{i}" for i in range(60)},
               Modified_Time=zoho_time(datetime.now(UTC) - timedelta(minutes=1), emu.tz))
    conn = make_connector(srv, streams=["accounts"])
    assert len(conn.fields("Accounts")) > 50
    [result] = sync(conn, sqlite_store)
    assert result.status == "success"
    payload = sqlite_store.raw_payloads("zoho", "Accounts", [rid])[rid]
    assert payload["Custom_0"] == "v0" and payload["Custom_59"] == "v59" and payload["Account_Name"]
    conn.close()


def test_line_items_land_inside_their_record(zoho: Start, sqlite_store: Store) -> None:
    emu, srv = zoho(size=40, modules=["Deals", "Sales_Orders", "Invoices", "Quotes"])
    conn = make_connector(srv, streams=["sales_orders", "invoices", "quotes"])
    results = sync(conn, sqlite_store)
    assert all(r.status == "success" for r in results)
    for module, items in (("Sales_Orders", "Ordered_Items"), ("Invoices", "Invoiced_Items"),
                          ("Quotes", "Quoted_Items")):
        rid = next(iter(emu.records[module]))
        payload = sqlite_store.raw_payloads("zoho", module, [rid])[rid]
        assert payload[items] and payload[items][0]["Product_Name"]["id"]
    conn.close()


def test_keyset_query_text() -> None:
    q = keyset_query("Deals", since=datetime(2026, 1, 1, 10, 0, 0, 500_000, tzinfo=UTC), until=None, after=None,
                     limit=2000)
    assert "where (Modified_Time >= '2026-01-01T10:00:00+00:00')" in q
    assert q.endswith("order by Modified_Time asc, id asc limit 2000")
    q = keyset_query("Deals", since=None, until=datetime(2026, 2, 1, tzinfo=UTC),
                     after=("2026-01-05T10:00:00+05:30", "5725767000000416001"), limit=2000)
    assert ("((Modified_Time > '2026-01-05T10:00:00+05:30') or ((Modified_Time = '2026-01-05T10:00:00+05:30') "
            "and (id > 5725767000000416001))) and (Modified_Time < '2026-02-01T00:00:00+00:00')") in q
    with pytest.raises(ConnectorError):
        keyset_query("Deals", since=None, until=None, after=("2026-01-05T10:00:00+05:30", "1 or 1=1"), limit=1)


def test_sync_stream_resumes_after_max_pages(zoho: Start, sqlite_store: Store) -> None:
    emu, srv = zoho(size=25, modules=["Deals"])
    conn = make_connector(srv, streams=["deals"], keyset_limit=10, read_ahead=False)
    run = sqlite_store.begin_run("sync", "zoho")
    first = sync_stream(conn, conn.stream("deals"), sqlite_store, run_id=run, max_pages=1)
    assert first.status == "paused" and first.records == 10
    rest = sync_stream(conn, conn.stream("deals"), sqlite_store, run_id=run)
    assert rest.status == "success" and rest.records == 15
    assert set(_stamps(sqlite_store, "Deals")) == set(emu.records["Deals"])
    conn.close()


def test_nothing_changed_is_204_no_content_and_a_clean_run(zoho: Start, sqlite_store: Store) -> None:
    emu, srv = zoho(size=12, modules=["Deals"])
    conn = make_connector(srv, streams=["deals"], lookback=timedelta(0))
    sync(conn, sqlite_store)
    token = next(iter(emu.tokens))
    empty = httpx.get(f"{srv.url}/crm/v8/Deals/deleted", params={"type": "all"},
                      headers={"Authorization": f"Zoho-oauthtoken {token}"})
    assert empty.status_code == 204 and empty.content == b""
    emu.requests.clear()
    [again] = sync(conn, sqlite_store)
    assert again.status == "success" and again.written == 0
    assert again.records == 1  # the window starts at the mark, inclusive: the last deal, unchanged
    assert emu.requests == [("GET", "/crm/v8/Deals/deleted"), ("POST", "/crm/v8/coql"), ("GET", "/crm/v8/Deals")]
    conn.close()


def test_config_builds_the_connector_and_refuses_plain_http_accounts(monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.registry import build
    from ltc.app.config import SecretRef, SourceConfig

    for k, v in (("ZC_ID", "1000.X"), ("ZC_SECRET", "s3cret"), ("ZC_REFRESH", "1000.r")):
        monkeypatch.setenv(k, v)
    creds = {"client_id": SecretRef(env="ZC_ID"), "client_secret": SecretRef(env="ZC_SECRET"),
             "refresh_token": SecretRef(env="ZC_REFRESH")}
    conn = build("crm", SourceConfig(kind="zoho", credentials=creds, options={"dc": "com.au", "concurrency": 3}))
    assert isinstance(conn, ZohoConnector)
    assert conn.accounts_url == "https://accounts.zoho.com.au" and conn.concurrency == 3
    assert [s.name for s in conn.streams] == ["leads", "accounts", "contacts", "deals", "products", "quotes",
                                              "sales_orders", "invoices"]
    conn.close()
    with pytest.raises(ConfigError, match="refresh_token"):
        build("crm", SourceConfig(kind="zoho", credentials={"client_id": creds["client_id"]}))
    with pytest.raises(ValueError, match="unencrypted"):
        SourceConfig(kind="zoho", credentials=creds, options={"accounts_url": "http://accounts.example.com"})

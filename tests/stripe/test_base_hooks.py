"""The small generic base extensions the Stripe connector relies on: Page.high_water, Page.memo /
Window.memo, and the HttpClient ``should_retry`` hook; plus resume of an interrupted Stripe run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from canonical.store import Store
from connectors.base import Connector, Page, StartingAfter, StreamSpec, Window, sync, sync_stream
from connectors.errors import ConnectorError
from connectors.http import HttpClient, RetryPolicy
from connectors.stripe import stripe_should_retry
from tests.stripe.conftest import Sandbox

FEED_END = datetime(2026, 11, 20, 12, tzinfo=UTC)


class Feed(Connector):
    """Two pages; remembers what it saw in the memo; reports the feed end as high water."""

    kind = "feed"
    streams = (StreamSpec("things", "thing", cursor_field="created", paginator=StartingAfter()),)

    def __init__(self) -> None:
        super().__init__("feed")
        self.memos: list[Any] = []
        self.sinces: list[datetime | None] = []

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        self.memos.append(window.memo)
        if token is None:
            self.sinces.append(window.since)
            return Page([{"id": "a", "created": 1_700_000_000}], next_token="p2", memo={"seen": ["a"]})
        return Page([{"id": "b", "created": 1_700_000_100}], high_water=(FEED_END, ""))


def test_high_water_and_memo_are_kept_across_runs(store: Store) -> None:
    feed = Feed()
    sync(feed, store)
    [state] = store.stream_states()
    assert state["cursor"]["hw"][0].startswith("2026-11-20T12:00:00") and state["cursor"]["memo"] == {"seen": ["a"]}
    sync(feed, store)
    assert feed.memos == [None, {"seen": ["a"]}, {"seen": ["a"]}, {"seen": ["a"]}]
    assert feed.sinces[1] == FEED_END - feed.lookback  # the mark is the feed end, not the newest record


@respx.mock
def test_should_retry_hook_overrides_the_status_rule() -> None:
    route = respx.get("https://api.stripe.test/v1/x").mock(side_effect=[
        httpx.Response(409, headers={"Stripe-Should-Retry": "true"}, json={"error": {"message": "lock"}}),
        httpx.Response(200, json={"ok": True})])
    sleeps: list[float] = []
    client = HttpClient("stripe", "https://api.stripe.test", policy=RetryPolicy(sleep=sleeps.append),
                        should_retry=stripe_should_retry)
    assert client.json("GET", "/v1/x") == {"ok": True} and route.call_count == 2
    respx.get("https://api.stripe.test/v1/y").mock(return_value=httpx.Response(
        503, headers={"Stripe-Should-Retry": "false"}, json={"error": {"message": "no"}}))
    with pytest.raises(ConnectorError, match="must not be retried"):
        client.json("GET", "/v1/y")


def test_interrupted_stripe_run_resumes_at_its_checkpoint(sandbox: Sandbox, sqlite_store: Store) -> None:
    conn = sandbox.connector(page_size=3, window_days=400)
    run_id = sqlite_store.begin_run("sync", "stripe")
    r = sync_stream(conn, conn.stream("charges"), sqlite_store, run_id=run_id, max_pages=2)
    assert r.status == "paused" and sqlite_store.count_raw("stripe", "charge") == 6
    before = len(sandbox.calls("/v1/charges"))
    [r] = sync(conn, sqlite_store, streams=["charges"])
    assert r.status == "success" and r.unchanged == 0
    assert sqlite_store.count_raw("stripe", "charge") == len(sandbox.emu.store["charges"])
    resumed = sandbox.calls("/v1/charges")[before]
    assert "starting_after" in resumed  # continued inside the window, not from the top


def _event(eid: str, created: int, name: str) -> dict[str, Any]:
    return {"id": eid, "object": "event", "type": "customer.updated", "created": created,
            "data": {"object": {"id": "cus_1", "object": "customer", "created": 1_700_000_000, "name": name}}}


@pytest.mark.parametrize("oldest_first", [False, True])
@respx.mock
def test_same_second_events_apply_in_the_servers_order(oldest_first: bool, sqlite_store: Store) -> None:
    from connectors.governor import RateGovernor
    from connectors.stripe import StripeConnector

    now = 1_795_000_000
    events = [_event("evt_a", now - 100, "first"), _event("evt_b", now - 100, "second")]  # same second
    data = events if oldest_first else events[::-1]
    respx.get("https://stripe.test/v1/customers").mock(return_value=httpx.Response(
        200, json={"object": "list", "data": [], "has_more": False}))
    respx.get("https://stripe.test/v1/events").mock(return_value=httpx.Response(
        200, json={"object": "list", "data": data, "has_more": False}))
    conn = StripeConnector("stripe", api_key="sk_test_x", base_url="https://stripe.test", streams=["customers"],
                           oldest_first=oldest_first, clock=lambda: now,
                           governor=RateGovernor("t", capacity=100, interval_s=1.0))
    sync(conn, sqlite_store)  # initial load: empty list, mark = now
    sync(conn, sqlite_store)  # events since now - lookback
    raw = sqlite_store.get_raw("stripe", "customer", "cus_1")
    assert raw is not None and raw["payload"]["name"] == "second"

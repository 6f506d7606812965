"""Stripe paging that does not move forward ends the stream incomplete with one line, never a hang."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import respx

from canonical.store import Store
from connectors.base import StreamResult, sync
from connectors.governor import RateGovernor
from connectors.http import RetryPolicy, parse_retry_after
from connectors.stripe import StripeConnector
from tests.connectors.deadline import within

NOW = 1_795_000_000


def charge(i: int, created: Any = NOW - 1000) -> dict[str, Any]:
    return {"id": f"ch_{i}", "object": "charge", "created": created, "amount": 100, "currency": "usd",
            "status": "succeeded"}


def run_sync(store: Store, handler: Callable[[httpx.Request], httpx.Response]) -> StreamResult:
    """One charges sync against ``handler``, failing the test if it does not end within 5 s."""
    def go() -> StreamResult:
        with respx.mock:
            respx.route(host="stripe.test").mock(side_effect=handler)
            conn = StripeConnector("stripe", api_key="sk_test_x", base_url="https://stripe.test",
                                   streams=["charges"], clock=lambda: NOW,
                                   governor=RateGovernor(f"t-{uuid.uuid4().hex}", capacity=10**6, interval_s=1e-6),
                                   policy=RetryPolicy(max_attempts=2, sleep=lambda s: None))
            return sync(conn, store)[0]

    result = within(go)
    assert isinstance(result, StreamResult), result
    return result


def page(data: list[dict[str, Any]], more: bool) -> httpx.Response:
    return httpx.Response(200, json={"object": "list", "data": data, "has_more": more})


def test_server_ignoring_created_ends_incomplete(sqlite_store: Store) -> None:
    result = run_sync(sqlite_store, lambda req: page([charge(1), charge(2)], False))
    assert result.status == "incomplete"
    assert "ignores the created filter" in (result.message or "") and "created_filter: false" in (result.message or "")


def test_starting_after_ignored_ends_incomplete(sqlite_store: Store) -> None:
    result = run_sync(sqlite_store, lambda req: page([charge(1), charge(2)], req.url.params.get("limit") == "100"))
    assert result.status == "incomplete"
    assert "returned the same page token twice" in (result.message or "")
    assert "\n" not in (result.message or "")


def test_has_more_with_empty_page_is_not_success(sqlite_store: Store) -> None:
    result = run_sync(sqlite_store, lambda req: page([], req.url.params.get("limit") == "100"))
    assert result.status == "incomplete"
    assert "empty page with has_more true" in (result.message or "")


def test_last_record_without_id_is_quarantined_and_paging_goes_on(sqlite_store: Store) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        q = req.url.params
        if q.get("limit") == "1":
            return page([], False)
        if "starting_after" not in q:
            nameless = charge(3)
            del nameless["id"]
            return page([charge(1), nameless], True)
        assert q["starting_after"] == "ch_1"
        return page([charge(2)], False)

    result = run_sync(sqlite_store, handler)
    assert result.status == "success"
    assert (result.records, result.quarantined) == (2, 1)


def test_probe_object_with_unreadable_created_ends_with_one_line(sqlite_store: Store) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.params.get("limit") == "1":
            return page([charge(9, created="2026-01-01")], True)
        return page([charge(1)], False)

    result = run_sync(sqlite_store, handler)
    assert result.status == "incomplete"
    assert "not epoch seconds" in (result.message or "")


def test_huge_created_is_quarantined(sqlite_store: Store) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.params.get("limit") == "1":
            return page([], False)
        return page([charge(1), charge(2, created=10**30)], False)

    result = run_sync(sqlite_store, handler)
    assert result.status == "success"
    assert (result.records, result.quarantined) == (1, 1)


def test_odd_and_duplicate_ids_are_quarantined(sqlite_store: Store) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.params.get("limit") == "1":
            return page([], False)
        body = (b'{"object":"list","has_more":false,"data":['
                b'{"id":"ch_1","created":1794999000,"n":1},{"id":"ch_1","created":1794999000,"n":2},'
                b'{"id":1,"created":1794999000},{"id":"1","created":1794999000},'
                b'{"id":true,"created":1794999000},{"id":{"a":1},"created":1794999000},'
                b'{"id":1e3,"created":1794999000}]}')
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    result = run_sync(sqlite_store, handler)
    assert result.status == "success"
    assert (result.records, result.quarantined) == (2, 5)
    raw = sqlite_store.get_raw("stripe", "charge", "ch_1")
    assert raw is not None and raw["payload"]["n"] == 1  # the first is kept
    assert sqlite_store.get_raw("stripe", "charge", "True") is None


def test_retry_after_bad_values_are_ignored() -> None:
    for value in ("sNaN", "NaN", "1e400", "Infinity", "abc"):
        assert parse_retry_after(value) is None, value
    assert parse_retry_after("2") == 2.0

"""The Stripe connector against the emulator: windows, lines, events, retention fallback, hot set, errors."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from canonical.errors import ConfigError
from canonical.money import Money
from canonical.store import Store
from connectors.base import sync
from connectors.errors import AuthenticationError, ConnectorError, PermissionDenied
from connectors.stripe import STREAMS, from_config
from ltc.app.config import SourceConfig
from tests.stripe.conftest import KEY, T_NOW, Sandbox

OBJECTS = {"customers": "customer", "invoices": "invoice", "charges": "charge", "payment_intents": "payment_intent",
           "refunds": "refund", "balance_transactions": "balance_transaction", "payouts": "payout"}


def payload(store: Store, obj: str, oid: str) -> dict[str, Any]:
    raw = store.get_raw("stripe", obj, oid)
    assert raw is not None, f"{obj} {oid} not landed"
    return raw  # type: ignore[no-any-return]


def test_initial_load_lands_every_object_with_all_invoice_lines(sandbox: Sandbox, sqlite_store: Store) -> None:
    results = sync(sandbox.connector(), sqlite_store)
    assert [r.status for r in results] == ["success"] * len(STREAMS)
    assert [r.stream for r in results] == [s.name for s in STREAMS]  # credit_notes too (none seeded here)
    for resource, obj in OBJECTS.items():
        assert sqlite_store.count_raw("stripe", obj) == len(sandbox.emu.store[resource]) > 0, resource
    long = [i for i in sandbox.emu.store["invoices"].values() if len(i["_lines"]) > 10]
    assert long
    for inv in long:
        lines = payload(sqlite_store, "invoice", inv["id"])["payload"]["lines"]
        assert [x["id"] for x in lines["data"]] == [x["id"] for x in inv["_lines"]] and lines["has_more"] is False
    # amounts stay integer minor units; zero-decimal currencies convert exactly
    jpy = next(i for i in sandbox.emu.store["invoices"].values() if i["currency"] == "jpy")
    p = payload(sqlite_store, "invoice", jpy["id"])["payload"]
    assert isinstance(p["total"], int)
    assert Money.from_minor(p["total"], p["currency"], convention="stripe") == Money(Decimal(jpy["total"]), "JPY")


def test_initial_load_walks_created_windows_without_empty_requests(sandbox: Sandbox, sqlite_store: Store) -> None:
    sync(sandbox.connector(window_days=30), sqlite_store, streams=["payouts"])
    calls = sandbox.calls("/v1/payouts")
    assert all("created" in q and set(q["created"]) <= {"gte", "lt"} for q in calls)
    pages = [q for q in calls if q["limit"] == "100"]
    # one window per payout month at most (seeded monthly), never one per empty month since 2010
    assert len(pages) <= len(sandbox.emu.store["payouts"]) + 1
    # a window with more than a page is paged with starting_after inside the window
    sync(sandbox.connector(page_size=5, window_days=400), sqlite_store, streams=["charges"], full_refresh=True)
    assert any("starting_after" in q for q in sandbox.calls("/v1/charges"))
    assert sqlite_store.count_raw("stripe", "charge") == len(sandbox.emu.store["charges"])


def test_incremental_reads_events_newest_state_wins_and_deletes_are_tombstones(
        sandbox: Sandbox, sqlite_store: Store) -> None:
    conn = sandbox.connector()
    sync(conn, sqlite_store)
    emu = sandbox.emu
    emu.advance(days=1)
    cus = emu.create_customer({"name": "First name"})
    emu.advance(seconds=5)
    emu.update_customer(cus["id"], {"name": "Final name"})
    emu.create_invoiceitem({"customer": cus["id"], "amount": "1999", "currency": "eur"})
    paid = emu.create_invoice({"customer": cus["id"]})
    emu.pay(paid["id"])
    emu.create_invoiceitem({"customer": cus["id"], "amount": "500", "currency": "eur"})
    draft = emu.create_invoice({"customer": cus["id"]})
    emu.advance(seconds=5)
    emu.delete("invoices", draft["id"])
    emu.advance(seconds=1)  # a run covers events created strictly before its start
    before = len(emu.requests)
    results = {r.stream: r for r in sync(conn, sqlite_store)}
    new_lists = [q for m, p, q in emu.requests[before:] if p in ("/v1/customers", "/v1/invoices")]
    assert new_lists == [], "an incremental run inside the retention window reads events, not lists"
    assert payload(sqlite_store, "customer", cus["id"])["payload"]["name"] == "Final name"
    inv = payload(sqlite_store, "invoice", paid["id"])["payload"]
    assert (inv["status"], inv["amount_remaining"], inv["amount_paid"]) == ("paid", 0, 1999)
    gone = payload(sqlite_store, "invoice", draft["id"])
    assert gone["deleted"] is True and results["invoices"].deleted == 1
    charge = payload(sqlite_store, "charge", paid["_charge"])["payload"]
    # balance transactions have no events: listed by created since the mark
    assert payload(sqlite_store, "balance_transaction", charge["balance_transaction"])["payload"]["amount"] == 1999
    txn_lists = [q for m, p, q in emu.requests[before:] if p == "/v1/balance_transactions"]
    assert txn_lists and all(int(q["created"]["gte"]) >= T_NOW - 600 for q in txn_lists)
    again = sync(conn, sqlite_store)
    assert [r.written for r in again] == [0] * len(STREAMS)


def test_cursor_older_than_event_retention_relists_recent_windows(sandbox: Sandbox, sqlite_store: Store) -> None:
    conn = sandbox.connector(relist_margin_days=10)
    sync(conn, sqlite_store)
    emu = sandbox.emu
    emu.advance(days=45)  # every event since the last run is past retention
    cus = emu.create_customer({"name": "Joined during the gap"})
    open_invoice = next(i for i in emu.store["invoices"].values() if i["status"] == "open")
    emu.pay(open_invoice["id"])
    emu.advance(days=1)
    before = len(emu.requests)
    results = sync(conn, sqlite_store)
    assert all(r.status == "success" for r in results)
    assert payload(sqlite_store, "customer", cus["id"])["payload"]["name"] == "Joined during the gap"
    assert payload(sqlite_store, "invoice", open_invoice["id"])["payload"]["status"] == "paid"  # via the hot set
    lists = [q for m, p, q in emu.requests[before:] if p == "/v1/customers"]
    floor = int(emu.now() - 47 * 86400 - 10 * 86400 - 600)
    # only the windows since (mark - margin) are listed, not the whole history
    assert lists and all(int(q["created"]["gte"]) >= floor - 86400 for q in lists if "gte" in q.get("created", {}))
    assert not [p for m, p, q in emu.requests[before:] if p == "/v1/events"]


def test_hot_set_catches_changes_no_event_reports(sandbox: Sandbox, sqlite_store: Store) -> None:
    emu = sandbox.emu
    cus = emu.create_customer({"name": "Hot"})
    pi = emu.create_payment_intent({"amount": "4200", "currency": "usd", "customer": cus["id"]})
    emu.confirm(pi["id"], processing=True)
    emu.advance(seconds=1)
    conn = sandbox.connector()
    sync(conn, sqlite_store)
    assert payload(sqlite_store, "payment_intent", pi["id"])["payload"]["status"] == "processing"
    open_inv = next(i for i in emu.store["invoices"].values() if i["status"] == "open")
    emu.advance(days=2)
    emu.faults.drop_events = True  # the changes below leave no event behind
    emu.confirm(pi["id"])
    emu.pay(open_inv["id"])
    sync(conn, sqlite_store)
    assert payload(sqlite_store, "payment_intent", pi["id"])["payload"]["status"] == "succeeded"
    assert payload(sqlite_store, "invoice", open_inv["id"])["payload"]["status"] == "paid"
    fetched = {p for m, p, q in emu.requests if p in (f"/v1/invoices/{open_inv['id']}", f"/v1/payment_intents/{pi['id']}")}
    assert len(fetched) == 2


def test_429_is_retried_unless_stripe_says_not_to(sandbox: Sandbox, sqlite_store: Store) -> None:
    sandbox.emu.faults.rate_limited = 2
    [r] = sync(sandbox.connector(), sqlite_store, streams=["customers"])
    assert r.status == "success" and len(sandbox.sleeps) == 2
    sandbox.emu.faults.rate_limited, sandbox.emu.faults.should_retry = 5, "false"
    n = len(sandbox.emu.requests)
    with pytest.raises(ConnectorError, match="must not be retried") as err:
        sync(sandbox.connector(), sqlite_store, streams=["customers"], full_refresh=True)
    assert len(sandbox.emu.requests) == n + 1
    assert "rate limit" in str(err.value).lower()


def test_errors_name_the_endpoint_and_stripes_message_never_the_key(sandbox: Sandbox, sqlite_store: Store) -> None:
    sandbox.emu.faults.errors["/v1/charges"] = (403, "This API key cannot access charges.", "secret_key_required")
    with pytest.raises(PermissionDenied) as err:
        sync(sandbox.connector(), sqlite_store, streams=["charges"])
    text = str(err.value)
    assert "/v1/charges" in text and "cannot access charges" in text and "secret_key_required" in text
    sandbox.emu.faults.errors["/v1/refunds"] = (400, "Received unknown parameter: created", "parameter_unknown")
    with pytest.raises(ConnectorError, match=r"/v1/refunds answered 400: Received unknown parameter") as err:
        sync(sandbox.connector(), sqlite_store, streams=["refunds"])
    assert "options.created_filter: false" in str(err.value)
    bad = "sk_test_thisIsNotTheRightKey9999"
    with pytest.raises(AuthenticationError) as err2:
        sync(sandbox.connector(api_key=bad), sqlite_store, streams=["customers"])
    assert "Invalid API Key" in str(err2.value) and bad not in str(err2.value) and "9999" not in str(err2.value)


def test_from_config_reads_key_options_and_refuses_unknown_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_KEY", KEY)
    cfg = SourceConfig(kind="stripe", base_url="http://127.0.0.1:9", credentials={"api_key": {"env": "STRIPE_KEY"}},
                       options={"created_filter": False, "api_version": "2024-06-20"}, streams=["customers"])
    conn = from_config("pay", cfg)
    assert conn.created_filter is False and [s.name for s in conn.streams] == ["customers"]
    assert conn.http.client.headers["Stripe-Version"] == "2024-06-20"
    with pytest.raises(ConfigError, match=r"options.colour: unknown Stripe option"):
        from_config("pay", cfg.model_copy(update={"options": {"colour": 1}}))
    with pytest.raises(ConfigError, match=r"credentials\.api_key is required"):
        from_config("pay", cfg.model_copy(update={"credentials": {}}))

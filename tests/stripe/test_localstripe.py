"""The Stripe connector against the real localstripe peer (customers, subscriptions -> invoices, payment
intents, charges, refunds, events, balance transactions).

localstripe lists oldest first, rejects ``created[...]`` on most lists and has no ``ending_before``:
the connector is configured with ``created_filter=False`` (one pass per list); its incremental path
uses ``/v1/events?created[gte]/[lt]``, which localstripe supports.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from canonical.store import Store
from connectors.base import sync
from connectors.governor import RateGovernor
from connectors.http import RetryPolicy
from connectors.stripe import STREAMS, StripeConnector
from tests.stripe.conftest import LOCALSTRIPE_KEY as KEY

pytestmark = pytest.mark.peer


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.is_success, r.text
    return r.json()  # type: ignore[no-any-return]


def all_ids(http: httpx.Client, path: str) -> set[str]:
    return {o["id"] for o in ok(http.get(path, params={"limit": 1000}))["data"]}


@pytest.fixture(scope="module")
def scenario(localstripe: httpx.Client) -> dict[str, Any]:
    http = localstripe
    cus = [ok(http.post("/v1/customers", data={"name": f"Peer {i}", "email": f"p{i}@example.test",
                                               "payment_method": "pm_card_visa"})) for i in range(3)]
    for c in cus:
        [pm] = ok(http.get("/v1/payment_methods", params={"customer": c["id"], "type": "card"}))["data"]
        ok(http.post(f"/v1/customers/{c['id']}", data={"invoice_settings[default_payment_method]": pm["id"]}))
    prod = ok(http.post("/v1/products", data={"name": "Service"}))
    plan = ok(http.post("/v1/plans", data={"product": prod["id"], "amount": 0, "currency": "usd",
                                           "interval": "month"}))
    invoices = []
    for c in cus[:2]:
        ok(http.post("/v1/subscriptions", data={"customer": c["id"], "items[0][plan]": plan["id"],
                                                "trial_period_days": 3650}))
        for amount in (1250, 990):
            ok(http.post("/v1/invoiceitems", data={"customer": c["id"], "amount": amount, "currency": "usd",
                                                   "description": f"Work {amount}"}))
        invoices.append(ok(http.post("/v1/invoices", data={"customer": c["id"]})))
    ok(http.post(f"/v1/invoices/{invoices[0]['id']}/pay"))
    charge = ok(http.post("/v1/charges", data={"customer": cus[2]["id"], "amount": 5000, "currency": "eur"}))
    ok(http.post("/v1/refunds", data={"charge": charge["id"], "amount": 1500}))
    pi = ok(http.post("/v1/payment_intents", data={"customer": cus[2]["id"], "amount": 777, "currency": "usd",
                                                   "payment_method": "pm_card_visa"}))
    return {"customers": cus, "invoices": invoices, "charge": charge, "pi": pi}


def peer_connector(http: httpx.Client) -> StripeConnector:
    return StripeConnector("localstripe", api_key=KEY, base_url=str(http.base_url).rstrip("/"),
                           created_filter=False, oldest_first=True,
                           streams=[s.name for s in STREAMS if s.name != "credit_notes"],  # localstripe has none
                           clock=lambda: time.time() + 2,  # events of this very second are inside the run
                           policy=RetryPolicy(max_attempts=2, sleep=lambda s: None),
                           governor=RateGovernor("localstripe", capacity=1000, interval_s=1.0))


def test_full_load_matches_what_localstripe_holds(localstripe: httpx.Client, scenario: dict[str, Any],
                                                  sqlite_store: Store) -> None:
    results = sync(peer_connector(localstripe), sqlite_store)
    assert all(r.status == "success" for r in results), [(r.stream, r.message) for r in results]
    for path, obj in [("/v1/customers", "customer"), ("/v1/invoices", "invoice"), ("/v1/charges", "charge"),
                      ("/v1/payment_intents", "payment_intent"), ("/v1/refunds", "refund"),
                      ("/v1/balance_transactions", "balance_transaction")]:
        ids = all_ids(localstripe, path)
        assert ids, path
        landed = {r["source_id"] for r in _raws(sqlite_store, obj)}
        assert landed == ids, path
    paid = sqlite_store.get_raw("localstripe", "invoice", scenario["invoices"][0]["id"])
    assert paid is not None and paid["payload"]["status"] == "paid"
    assert paid["payload"]["amount_paid"] == 2240 and isinstance(paid["payload"]["amount_paid"], int)
    assert {line["amount"] for line in paid["payload"]["lines"]["data"]} >= {1250, 990}
    ch = sqlite_store.get_raw("localstripe", "charge", scenario["charge"]["id"])
    assert ch is not None and ch["payload"]["amount_refunded"] == 1500


def test_incremental_run_reads_events_and_catches_the_hot_invoice(localstripe: httpx.Client, scenario: dict[str, Any],
                                                                   sqlite_store: Store) -> None:
    conn = peer_connector(localstripe)
    sync(conn, sqlite_store)
    c0 = scenario["customers"][0]
    ok(localstripe.post(f"/v1/customers/{c0['id']}", data={"name": "Renamed by peer test"}))
    new = ok(localstripe.post("/v1/customers", data={"name": "Arrived later"}))
    draft = scenario["invoices"][1]
    ok(localstripe.post(f"/v1/invoices/{draft['id']}/pay"))  # a draft seen in the first run: in the hot set
    results = {r.stream: r for r in sync(conn, sqlite_store)}
    assert all(r.status == "success" for r in results.values())
    assert sqlite_store.get_raw("localstripe", "customer", c0["id"])["payload"]["name"] == "Renamed by peer test"  # type: ignore[index]
    assert sqlite_store.get_raw("localstripe", "customer", new["id"]) is not None
    inv = sqlite_store.get_raw("localstripe", "invoice", draft["id"])
    assert inv is not None and inv["payload"]["status"] == "paid"


def _raws(store: Store, obj: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from canonical.tables import raw_record
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(raw_record.c.source_id).where(raw_record.c.system == "localstripe",
                                                                    raw_record.c.object == obj))
        return [{"source_id": r[0]} for r in rows]

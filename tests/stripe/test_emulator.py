"""The Stripe emulator behaves like Stripe where a connector can tell (api_facts §3.2-3.7)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.stripe.conftest import KEY, Sandbox

AUTH = {"Authorization": f"Bearer {KEY}"}


def get(sb: Sandbox, path: str, **params: Any) -> httpx.Response:
    return sb.http.get(path, params=params, headers=AUTH)


def post(sb: Sandbox, path: str, data: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    return sb.http.post(path, data=data or {}, headers={**AUTH, **headers})


def test_lists_are_newest_first_capped_at_100_and_page_both_ways(sandbox: Sandbox) -> None:
    body = get(sandbox, "/v1/balance_transactions", limit=100).json()
    created = [t["created"] for t in body["data"]]
    assert created == sorted(created, reverse=True) and "total_count" not in body
    assert body["object"] == "list" and body["url"] == "/v1/balance_transactions"
    page1 = get(sandbox, "/v1/charges", limit=3).json()
    page2 = get(sandbox, "/v1/charges", limit=3, starting_after=page1["data"][-1]["id"]).json()
    back = get(sandbox, "/v1/charges", limit=3, ending_before=page2["data"][0]["id"]).json()
    assert [c["id"] for c in back["data"]] == [c["id"] for c in page1["data"]]
    assert back["has_more"] is False and page1["has_more"] is True

    r = get(sandbox, "/v1/customers", limit=101)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == "limit" and "100" in err["message"]
    assert err["request_log_url"].endswith(r.headers["Request-Id"])
    r = get(sandbox, "/v1/customers", starting_after="cus_nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"
    r = get(sandbox, "/v1/customers", starting_after="a", ending_before="b")
    assert r.status_code == 400 and "only specify one" in r.json()["error"]["message"]
    r = get(sandbox, "/v1/customers", colour="blue")
    assert r.status_code == 400 and r.json()["error"]["message"] == "Received unknown parameter: colour"


def test_created_filters_on_every_list(sandbox: Sandbox) -> None:
    for resource in ("customers", "invoices", "charges", "payment_intents", "refunds", "balance_transactions",
                     "payouts", "events"):
        everything = get(sandbox, f"/v1/{resource}", limit=100).json()["data"]
        if not everything:
            continue
        pivot = everything[len(everything) // 2]["created"]
        newer = get(sandbox, f"/v1/{resource}", limit=100, **{"created[gte]": pivot}).json()["data"]
        older = get(sandbox, f"/v1/{resource}", limit=100, **{"created[lt]": pivot}).json()["data"]
        assert {o["id"] for o in newer} | {o["id"] for o in older} == {o["id"] for o in everything}
        assert all(o["created"] >= pivot for o in newer) and all(o["created"] < pivot for o in older)


def test_one_off_invoice_lifecycle_and_lines_paging(sandbox: Sandbox) -> None:
    cus = post(sandbox, "/v1/customers", {"name": "Acme", "metadata[crm_account_id]": "ACC-9"}).json()
    assert cus["metadata"] == {"crm_account_id": "ACC-9"}
    for i in range(13):
        assert post(sandbox, "/v1/invoiceitems", {"customer": cus["id"], "amount": 100 + i, "currency": "usd"}).is_success
    inv = post(sandbox, "/v1/invoices", {"customer": cus["id"], "collection_method": "send_invoice",
                                         "days_until_due": 14}).json()
    assert (inv["status"], inv["number"], inv["due_date"]) == ("draft", None, None)
    assert len(inv["lines"]["data"]) == 10 and inv["lines"]["has_more"] is True and inv["lines"]["total_count"] == 13
    rest = get(sandbox, inv["lines"]["url"], limit=100, starting_after=inv["lines"]["data"][-1]["id"]).json()
    assert len(rest["data"]) == 3 and rest["has_more"] is False
    fin = post(sandbox, f"/v1/invoices/{inv['id']}/finalize").json()
    assert fin["status"] == "open" and fin["number"] and fin["due_date"] == fin["status_transitions"]["finalized_at"] + 14 * 86400
    assert fin["amount_remaining"] == sum(range(100, 113))
    paid = post(sandbox, f"/v1/invoices/{inv['id']}/pay").json()
    assert (paid["status"], paid["amount_remaining"], paid["amount_paid"]) == ("paid", 0, sum(range(100, 113)))
    r = post(sandbox, f"/v1/invoices/{inv['id']}/void")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invoice_not_open"
    types = [e["type"] for e in get(sandbox, "/v1/events", limit=20).json()["data"]]
    assert {"invoice.created", "invoice.finalized", "invoice.paid", "charge.succeeded"} <= set(types)


def test_events_are_gone_after_30_days(sandbox: Sandbox) -> None:
    events = get(sandbox, "/v1/events", limit=100).json()["data"]
    assert events and all(e["created"] >= sandbox.emu.now() - 30 * 86400 for e in events)
    oldest = events[-1]["id"]
    assert get(sandbox, f"/v1/events/{oldest}").status_code == 200
    sandbox.emu.advance(days=31)
    assert get(sandbox, f"/v1/events/{oldest}").status_code == 404
    assert get(sandbox, "/v1/events", limit=100).json()["data"] == []


def test_auth_idempotency_and_rate_limit_faults(sandbox: Sandbox) -> None:
    r = sandbox.http.get("/v1/customers", headers={"Authorization": "Bearer sk_test_wrongwrongwrong1234"})
    assert r.status_code == 401 and "sk_test_" in r.json()["error"]["message"] and "wrongwrong" not in r.text
    assert sandbox.http.get("/v1/customers").status_code == 401
    a = post(sandbox, "/v1/customers", {"name": "Once"}, **{"Idempotency-Key": "k1"})
    b = post(sandbox, "/v1/customers", {"name": "Once"}, **{"Idempotency-Key": "k1"})
    assert a.json()["id"] == b.json()["id"] and b.headers["Idempotent-Replayed"] == "true"
    c = post(sandbox, "/v1/customers", {"name": "Twice"}, **{"Idempotency-Key": "k1"})
    assert c.status_code == 400 and c.json()["error"]["type"] == "idempotency_error"
    sandbox.emu.faults.rate_limited, sandbox.emu.faults.should_retry = 1, "false"
    r = get(sandbox, "/v1/customers")
    assert r.status_code == 429 and r.headers["Stripe-Should-Retry"] == "false"
    assert r.json()["error"]["code"] == "rate_limit"
    assert get(sandbox, "/v1/customers").status_code == 200


@pytest.mark.parametrize("seed", [0, 7])
def test_seeding_is_deterministic(make_sandbox: Any, seed: int) -> None:
    a, b = make_sandbox(seed=seed), make_sandbox(seed=seed)
    ids = [sorted(x.emu.store["invoices"]) for x in (a, b)]
    assert ids[0] == ids[1] and ids[0]
    assert any(len(i["_lines"]) > 10 for i in a.emu.store["invoices"].values())
    assert any(i["currency"] == "jpy" for i in a.emu.store["invoices"].values())


def test_registry_factory_takes_seed_size_and_faults() -> None:
    from sandbox.registry import EMULATORS

    app = EMULATORS["stripe"](seed=1, size=3, rate_limited=2, should_retry="true")
    emu = app.state.stripe
    assert len(emu.store["customers"]) == 3 and emu.faults.rate_limited == 2 and emu.faults.should_retry == "true"

"""`push_orders` end to end against a respx-mocked Odoo (both transports, store on SQLite and
PostgreSQL): create, idempotent re-push, draft update, conflict on a confirmed order, dry run,
currency through pricelists, and `make_target` from ltc.yaml."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import respx

from canonical.money import Money
from canonical.store import Store
from connectors.http import RetryPolicy
from connectors.odoo import OdooClient, OdooTarget
from connectors.push import PushConflict, make_target, push_orders
from ltc.app.config import load_config
from tests.odoo.fake_odoo import KEY, URL, FakeOdoo
from tests.push.deals import put_deal


@pytest.fixture(params=["jsonrpc", "json2"])
def target(request: pytest.FixtureRequest, odoo: FakeOdoo) -> OdooTarget:
    client = OdooClient(URL, db="ltc", api_key=KEY, transport=request.param, login="sync@example.test",
                        policy=RetryPolicy(max_attempts=2, sleep=lambda s: None))
    return OdooTarget(client, name="odoo")


@pytest.fixture
def odoo() -> Iterator[FakeOdoo]:
    fake = FakeOdoo()
    fake.models["res.currency"] = [{"id": 1, "name": "EUR"}, {"id": 2, "name": "USD"}, {"id": 3, "name": "GBP"}]
    fake.models["product.pricelist"] = [{"id": 1, "name": "Public Pricelist", "currency_id": [1, "EUR"]},
                                        {"id": 5, "name": "USD list", "currency_id": [2, "USD"]}]
    fake.models["product.product"] = [{"id": 41, "name": "Widget", "default_code": "SKU-1"}]
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{URL}/jsonrpc").mock(side_effect=fake.jsonrpc)
        mock.route(method="POST", url__startswith=f"{URL}/json/2/").mock(side_effect=fake.json2)
        yield fake


def _orders(odoo: FakeOdoo, ref: str) -> list[dict[str, Any]]:
    return [o for o in odoo.models.get("sale.order", []) if o["client_order_ref"] == ref]


def _lines(odoo: FakeOdoo, order: dict[str, Any]) -> list[tuple[int, float, float]]:
    return sorted((ln["product_id"][0], ln["product_uom_qty"], ln["price_unit"])
                  for ln in odoo.models["sale.order.line"] if ln["id"] in order["order_line"])


def test_push_creates_partner_product_and_a_confirmed_order_once(store: Store, odoo: FakeOdoo,
                                                                  target: OdooTarget) -> None:
    put_deal(store, "D1", [("SKU-1", "Widget", "3", "19.99"), ("SKU-2", "Setup", "1", "250.10")],
             account_name="Acme SA")
    report = push_orders(store, target)
    [r] = report.results
    assert (r.action, r.done, r.sale_state, r.message) == ("create", True, "sale", None)
    assert r.amount == Money.of("310.07", "EUR")
    [so] = _orders(odoo, "D1")
    assert (so["state"], so["currency_id"], so["pricelist_id"][0], r.sale_number) == ("sale", [1, "EUR"], 1, so["name"])
    [partner] = odoo.models["res.partner"]
    assert (partner["ref"], partner["name"], partner["email"]) == ("ACC-D1", "Acme SA", "billing@acc-d1.test")
    assert so["partner_id"][0] == partner["id"]
    [new_product] = [p for p in odoo.models["product.product"] if p["default_code"] == "SKU-2"]
    assert (new_product["name"], new_product["type"]) == ("Setup", "service")
    assert _lines(odoo, so) == sorted([(41, 3, 19.99), (new_product["id"], 1, 250.10)])
    create_body = next(b for b in odoo.bodies if b"\"order_line\": [[0, 0" in b).decode()
    assert '"price_unit": 19.99' in create_body and '"price_unit": 250.10' in create_body  # exact, no float noise

    sale = target.find_sale_by_reference("D1")
    assert sale is not None and (sale.confirmed, sale.editable, sale.currency) == (True, False, "EUR")
    assert (sale.untaxed, sale.total) == (Money.of("310.07", "EUR"), Money.of("372.08", "EUR"))
    assert sale.line_keys() == [("SKU-1", Decimal(3), Decimal("19.99")), ("SKU-2", Decimal(1), Decimal("250.1"))]

    again = push_orders(store, target)
    assert [(x.action, x.done) for x in again.results] == [("unchanged", False)]
    assert len(_orders(odoo, "D1")) == 1 and len(odoo.models["res.partner"]) == 1
    assert len(odoo.models["product.product"]) == 2


def test_changed_deal_updates_a_quotation_and_conflicts_on_a_confirmed_order(store: Store, odoo: FakeOdoo,
                                                                              target: OdooTarget) -> None:
    put_deal(store, "D1", [("SKU-1", "Widget", "2", "10.00")])
    put_deal(store, "D2", [("SKU-1", "Widget", "2", "10.00")])
    push_orders(store, target, confirm=False, deal_ids=["salesforce:deal:D1"])
    push_orders(store, target, deal_ids=["salesforce:deal:D2"])
    [so1], [so2] = _orders(odoo, "D1"), _orders(odoo, "D2")
    so1["state"] = "sent"  # the quotation was e-mailed: still editable
    old_line = so1["order_line"][0]
    put_deal(store, "D1", [("SKU-1", "Widget", "3", "10.00"), ("SKU-3", "Extra", "1", "5")])
    put_deal(store, "D2", [("SKU-1", "Widget", "2", "9.00")])

    report = push_orders(store, target, confirm=False)
    by_ref = {r.reference: r for r in report.results}
    assert (by_ref["D1"].action, by_ref["D1"].done, by_ref["D1"].sale_state) == ("update", True, "sent")
    assert old_line not in [ln["id"] for ln in odoo.models["sale.order.line"]]  # replaced, not appended
    [sku3] = [p["id"] for p in odoo.models["product.product"] if p["default_code"] == "SKU-3"]
    assert _lines(odoo, so1) == [(41, 3, 10.0), (sku3, 1, 5.0)]
    assert so1["amount_untaxed"] == 35.0 and len(_orders(odoo, "D1")) == 1
    assert by_ref["D2"].action == "conflict" and not by_ref["D2"].done
    [conflict] = report.conflicts
    assert isinstance(conflict, PushConflict) and conflict.sale_number == so2["name"] and conflict.state == "sale"
    assert "SKU-1 x2 @ 10" in str(conflict) and "SKU-1 x2 @ 9" in str(conflict)
    assert _lines(odoo, so2) == [(41, 2, 10.0)]  # the confirmed order is untouched


def test_dry_run_only_reads(store: Store, odoo: FakeOdoo, target: OdooTarget) -> None:
    put_deal(store, "D1", [("SKU-9", "New", "2", "10.00")])
    report = push_orders(store, target, dry_run=True)
    assert [(r.action, r.done, r.amount) for r in report.results] == [("create", False, Money.of("20.00", "EUR"))]
    assert {(m, meth) for m, meth, _ in odoo.calls} == {("sale.order", "search_read")}
    assert "sale.order" not in odoo.models or odoo.models["sale.order"] == []


def test_currency_comes_from_a_pricelist_and_a_missing_one_is_refused(store: Store, odoo: FakeOdoo,
                                                                      target: OdooTarget) -> None:
    put_deal(store, "DUSD", [("SKU-1", "Widget", "1", "12.00")], currency="USD")
    put_deal(store, "DGBP", [("SKU-1", "Widget", "1", "12.00")], currency="GBP")
    report = push_orders(store, target)
    by_ref = {r.reference: r for r in report.results}
    assert by_ref["DUSD"].action == "create" and by_ref["DUSD"].done
    [usd] = _orders(odoo, "DUSD")
    assert (usd["pricelist_id"][0], usd["currency_id"], usd["state"]) == (5, [2, "USD"], "sale")
    assert by_ref["DGBP"].action == "error" and not by_ref["DGBP"].done
    assert "no pricelist in GBP" in (by_ref["DGBP"].message or "")
    assert _orders(odoo, "DGBP") == []  # the draft that came out in EUR was removed


def test_refused_confirmation_is_an_error_result(store: Store, odoo: FakeOdoo, target: OdooTarget) -> None:
    put_deal(store, "D1", [("SKU-1", "Widget", "1", "12.00")])
    odoo.errors[("sale.order", "action_confirm")] = ("odoo.exceptions.UserError", "A payment term is required")
    [r] = push_orders(store, target).results
    assert r.action == "error" and "Odoo refused to confirm" in (r.message or "")
    assert "A payment term is required" in (r.message or "") and "Traceback" not in (r.message or "")
    [so] = _orders(odoo, "D1")
    assert so["state"] == "draft"
    del odoo.errors[("sale.order", "action_confirm")]
    [r2] = push_orders(store, target).results  # the next run confirms the existing quotation
    assert (r2.action, r2.done, r2.sale_state) == ("confirm", True, "sale") and len(_orders(odoo, "D1")) == 1


def test_make_target_builds_an_odoo_target_from_ltc_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODOO_KEY", KEY)
    path = tmp_path / "ltc.yaml"
    path.write_text(f"sources:\n  erp1:\n    kind: odoo\n    base_url: {URL}\n"
                    "    credentials: {api_key: {env: ODOO_KEY}}\n"
                    "    options: {transport: json2, database: ltc, confirm_orders: false}\nerp: {source: erp1}\n")
    target, confirm = make_target(load_config(path))
    assert isinstance(target, OdooTarget) and target.name == "erp1" and confirm is False
    assert target.client.transport == "json2"

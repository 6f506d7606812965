"""Quotes, contracts, Salesforce orders and ERP deliveries: the shipped mappings on vendor-shaped fixtures."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from test_shipped import mapped

from mappings.engine import compile_for, map_records


def test_salesforce_quotes_lines_contracts_and_orders() -> None:
    rows, rejected = mapped("salesforce")
    q = rows["quote"]["salesforce:quote:0Q0000000000001AAA"]
    assert q["deal_id"] == "salesforce:deal:006000000000001AAA" and q["status"] == "accepted"
    # the net is TotalPrice (after line discounts, before tax), the total GrandTotal
    assert (q["untaxed"], q["tax"], q["total"]) == (Decimal("12500.50"), Decimal("1000.04"), Decimal("13500.54"))
    assert q["valid_until"] == date(2026, 4, 30) and q["quote_date"] == date(2026, 3, 20)
    assert q["attributes"]["subtotal"] == Decimal("12500.50")
    draft = rows["quote"]["salesforce:quote:0Q0000000000002AAA"]
    assert draft["status"] == "draft" and draft["source_status"] == "In Review"
    line = rows["quote_line"]["salesforce:quote_line:0QL000000000001AAA"]
    assert line["quote_id"] == "salesforce:quote:0Q0000000000001AAA" and line["product_code"] is None
    assert line["discount"] == Decimal("500.00") and line["attributes"]["product_id"] == "01t000000000001AAA"
    c = rows["contract"]["salesforce:contract:800000000000001AAA"]
    assert c["deal_id"] == "salesforce:deal:006000000000001AAA" and c["value"] == Decimal("12500.50")
    assert c["status"] == "activated" and c["signed_date"] == date(2026, 3, 28)
    assert c["start_date"] == date(2026, 4, 1) and c["end_date"] == date(2027, 3, 31)
    assert rows["contract"]["salesforce:contract:800000000000002AAA"]["status"] == "draft"
    o = rows["order"]["salesforce:order:801000000000001AAA"]
    assert o["deal_ref"] == "006000000000001AAA" and o["state"] == "confirmed" and o["total"] == Decimal("12500.50")
    assert rows["order_line"]["salesforce:order_line:802000000000001AAA"]["order_id"] == o["id"]
    assert not [k for k in rejected if k[0] in ("Quote", "QuoteLineItem", "Contract", "Order", "OrderItem")]


def test_tryton_customer_shipments_and_moves() -> None:
    rows, rejected = mapped("tryton")
    done = rows["delivery"]["tryton:delivery:5"]
    assert done["state"] == "delivered" and done["source_state"] == "done"
    assert done["order_ref"] == "1"  # the first of its sales' numbers (origins "1, 9")
    assert done["account_id"] == "tryton:account:2" and done["order_id"] is None
    assert (done["planned_date"], done["delivered_date"]) == (date(2026, 4, 3), date(2026, 4, 4))
    packed = rows["delivery"]["tryton:delivery:6"]
    assert packed["state"] == "ready" and packed["delivered_date"] is None
    move = rows["delivery_line"]["tryton:delivery_line:51"]
    assert move["delivery_id"] == "tryton:delivery:5" and move["order_line_id"] == "tryton:order_line:1"
    assert move["product_code"] == "WIDGET" and move["quantity"] == Decimal("4.0")
    assert rows["delivery_line"]["tryton:delivery_line:52"]["order_line_id"] is None
    assert not rejected
    # a state the map does not know is quarantined, naming it
    result = map_records(compile_for("tryton"), [(1, "stock.shipment.out", "7", {
        "id": 7, "number": "CS/0007", "state": "lost-in-space", "customer": 2, "origins": "3"}, None)])
    [bad] = result.rejected
    assert bad.field == "state" and "lost-in-space" in bad.reason


def test_odoo_outgoing_pickings_and_moves() -> None:
    rows, _ = mapped("odoo")
    done = rows["delivery"]["odoo:delivery:8"]
    assert done["order_id"] == "odoo:order:42" and done["order_ref"] == "SO0042"
    assert done["state"] == "delivered" and done["delivered_date"] == date(2026, 4, 3)
    assert done["planned_date"] == date(2026, 4, 2)  # scheduled_date (no deadline)
    waiting = rows["delivery"]["odoo:delivery:9"]
    assert waiting["order_id"] is None and waiting["state"] == "waiting"
    assert waiting["planned_date"] == date(2026, 4, 12)  # the deadline first
    move = rows["delivery_line"]["odoo:delivery_line:81"]
    assert move["delivery_id"] == "odoo:delivery:8" and move["order_line_id"] == "odoo:order_line:101"
    assert move["product_code"] == "WIDGET" and move["quantity"] == Decimal("2.0")


def test_hubspot_quotes_with_their_deal_association() -> None:
    rows, rejected = mapped("hubspot")
    q = rows["quote"]["hubspot:quote:7001"]
    assert q["deal_id"] == "hubspot:deal:9001" and q["status"] == "sent" and q["source_status"] == "APPROVED"
    assert q["currency"] == "EUR" and q["total"] == Decimal("1500.50") and q["untaxed"] == Decimal("1500.50")
    assert q["valid_until"] == date(2026, 4, 30) and q["quote_date"] == date(2026, 3, 1)
    draft = rows["quote"]["hubspot:quote:7002"]
    assert draft["status"] == "draft" and draft["deal_id"] is None and draft["currency"] == "USD"
    assert not [k for k in rejected if k[0] == "quotes"]


def test_an_invoice_without_its_total_is_quarantined_for_validation_and_a_deal_without_amount_is_not() -> None:
    from mapping_fixtures import fixture_records

    stripe = compile_for("stripe")
    invoice = next(r for r in fixture_records("stripe") if r.object == "invoice")
    charge = next(r for r in fixture_records("stripe") if r.object == "charge")
    no_total = {**invoice.payload, "total": None}
    result = map_records(stripe, [(1, "invoice", invoice.source_id, no_total, None),
                                  (2, "charge", charge.source_id, charge.payload, None)])
    assert [(r.stage, r.field, r.reason) for r in result.rejected] == [
        ("validate", "total", "a invoice without its total cannot be reconciled")]
    assert result.ok_raw == [("charge", charge.source_id)] and "invoice" not in result.rows
    assert "invoice_line" not in result.rows  # the invoice's lines go with it
    sf = compile_for("salesforce")
    deal = next(r for r in fixture_records("salesforce") if r.object == "Opportunity")
    result = map_records(sf, [(3, "Opportunity", deal.source_id, {**deal.payload, "Amount": None}, None)])
    assert not result.rejected and len(result.rows["deal"]) == 1 and result.rows["deal"][0]["amount"] is None

"""Each shipped mapping applied to records shaped as the vendor sends them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from mapping_fixtures import SYSTEMS, as_stored, fixture_records

from mappings.engine import compile_for, map_records


def mapped(system: str) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[tuple[str, str], Any]]:
    mset = compile_for(system)
    recs = [(i, r.object, r.source_id, as_stored(r.payload), None) for i, r in enumerate(fixture_records(system), 1)]
    result = map_records(mset, recs)
    rows = {e: {r["id"]: r for r in rs} for e, rs in result.rows.items()}
    rejected = {(r.object, r.source_id or ""): r for r in result.rejected}
    return rows, rejected


@pytest.mark.parametrize("system", SYSTEMS)
def test_every_shipped_mapping_compiles_and_maps_its_fixtures(system: str) -> None:
    rows, _ = mapped(system)
    assert rows, f"{system}: nothing mapped"
    for entity_rows in rows.values():
        for row in entity_rows.values():
            assert row["source_system"] == system
            assert row["id"].startswith(f"{system}:")
            for value in row.values():
                assert not isinstance(value, float), f"{row['id']}: float leaked into {row}"


def test_salesforce() -> None:
    rows, rejected = mapped("salesforce")
    acme = rows["account"]["salesforce:account:001000000000001AAA"]
    assert acme["name"] == "Acme Corporation"
    assert acme["domain"] == "acme.example"
    assert acme["country"] == "US"
    assert acme["attributes"]["industry"] == "Manufacturing"
    assert acme["source_updated_at"] == datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
    # Name is required: the nameless account is quarantined with field and reason
    bad = rejected[("Account", "001000000000003AAA")]
    assert bad.field == "name" and "required" in bad.reason and bad.stage == "map"

    deal = rows["deal"]["salesforce:deal:006000000000001AAA"]
    assert deal["account_id"] == "salesforce:account:001000000000001AAA"
    assert deal["stage"] == "closed_won" and deal["source_stage"] == "Closed Won"
    assert deal["amount"] == Decimal("12500.50") and deal["currency"] == "USD"
    assert deal["close_date"] == date(2026, 3, 31)
    assert rows["deal"]["salesforce:deal:006000000000002AAA"]["stage"] == "negotiation"
    assert rows["deal"]["salesforce:deal:006000000000002AAA"]["currency"] == "EUR"
    # an org-specific stage not in the value map is quarantined, naming the value
    custom = rejected[("Opportunity", "006000000000003AAA")]
    assert custom.field == "stage" and "Verbal Yes" in custom.reason

    line = rows["deal_line"]["salesforce:deal_line:00k000000000001AAA"]
    assert line["deal_id"] == "salesforce:deal:006000000000001AAA"
    assert line["quantity"] == Decimal("10.0")
    assert line["unit_price"] == Decimal("1000.00")
    assert line["discount"] == Decimal("500.00")
    assert line["amount"] == Decimal("9500.00")
    assert rows["deal_line"]["salesforce:deal_line:00k000000000002AAA"]["discount"] == Decimal("0.00")

    contact = rows["contact"]["salesforce:contact:003000000000001AAA"]
    assert contact["name"] == "Wile E. Coyote" and contact["email"] == "wile.coyote@acme.example"
    lead = rows["lead"]["salesforce:lead:00Q000000000001AAA"]
    assert lead["converted_deal_id"] == "salesforce:deal:006000000000001AAA"
    assert lead["converted_at"] == datetime(2026, 2, 15, tzinfo=UTC)


def test_hubspot() -> None:
    rows, rejected = mapped("hubspot")
    acme = rows["account"]["hubspot:account:5001"]
    assert acme["name"] == "ACME Corp." and acme["domain"] == "acme.example" and acme["country"] == "US"
    assert rows["account"]["hubspot:account:5002"]["deleted_at"] == datetime(2026, 3, 2, 11, 12, 13, 456000, tzinfo=UTC)
    assert acme["deleted_at"] is None
    deal = rows["deal"]["hubspot:deal:9001"]
    # the primary (labelled) association wins over the unlabeled one
    assert deal["account_id"] == "hubspot:account:5001"
    assert deal["amount"] == Decimal("1500.50") and deal["currency"] == "EUR"
    assert deal["stage"] == "closed_won" and deal["pipeline"] == "default"
    assert deal["close_date"] == date(2026, 3, 31)
    # a pipeline whose stage ids the shipped map does not know: quarantined, naming the pipeline
    assert "enterprise" in rejected[("deals", "9002")].reason
    assert rows["contact"]["hubspot:contact:7001"]["account_id"] == "hubspot:account:5001"
    line = rows["deal_line"]["hubspot:deal_line:8001"]
    assert line["deal_id"] == "hubspot:deal:9001" and line["unit_price"] == Decimal("500.1666")
    inv = rows["invoice"]["hubspot:invoice:4001"]
    assert inv["deal_ref"] == "9001" and inv["amount_paid"] == Decimal("1000.00") and inv["status"] == "open"


def test_hubspot_v4_association_shape_and_epoch_millisecond_dates() -> None:
    mset = compile_for("hubspot")
    rec = as_stored(fixture_records("hubspot")[1].payload)  # placeholder to get shape
    deal = {
        "id": "9003", "createdAt": "2026-02-01T10:00:00.000Z", "updatedAt": "2026-02-01T10:00:00.000Z",
        "archived": False,
        "properties": {"dealname": "x", "amount": "7", "dealstage": "contractsent", "pipeline": "default",
                       "closedate": "1774915200000", "deal_currency_code": "JPY"},
        "associations": {"companies": [{"toObjectId": 5002, "associationTypes": [{"typeId": 341}]},
                                       {"toObjectId": 5001, "associationTypes": [{"typeId": 5}]}]},
    }
    assert rec is not None
    result = map_records(mset, [(1, "deals", "9003", deal, None)])
    row = result.rows["deal"][0]
    assert row["account_id"] == "hubspot:account:5001"
    assert row["close_date"] == date(2026, 3, 31)
    assert row["stage"] == "negotiation" and row["amount"] == Decimal("7")


def test_stripe() -> None:
    rows, rejected = mapped("stripe")
    inv = rows["invoice"]["stripe:invoice:in_0001"]
    assert inv["currency"] == "USD" and inv["total"] == Decimal("12500.50")
    assert inv["amount_paid"] == Decimal("2500.00") and inv["amount_due"] == Decimal("10000.50")
    assert inv["deal_ref"] == "006000000000001AAA" and inv["order_ref"] == "SO0042"
    assert inv["account_id"] == "stripe:account:cus_Acme0001"
    assert inv["issue_date"] == date(2026, 3, 31) and inv["due_date"] == date(2026, 4, 30)
    assert inv["tax"] == Decimal("0.00")
    # one invoice yields several canonical rows: its lines
    lines = rows["invoice_line"]
    assert lines["stripe:invoice_line:il_0001"]["invoice_id"] == "stripe:invoice:in_0001"
    assert lines["stripe:invoice_line:il_0001"]["unit_price"] == Decimal("950.00")
    assert lines["stripe:invoice_line:il_0002"]["amount"] == Decimal("3000.50")
    # JPY is zero-decimal: 55000 minor units are 55000 yen; old API: amount_due - amount_paid
    jpy = rows["invoice"]["stripe:invoice:in_0002"]
    assert jpy["total"] == Decimal("55000") and jpy["tax"] == Decimal("5000") and jpy["amount_due"] == 0
    assert jpy["number"] is None and jpy["status"] == "paid"
    assert lines["stripe:invoice_line:il_0003"]["unit_price"] == Decimal("50000")

    pay = rows["payment"]["stripe:payment:ch_0001"]
    assert pay["amount"] == Decimal("2500.00") and pay["fee"] == Decimal("72.80")
    assert pay["invoice_ref"] == "in_0001" and pay["deal_ref"] == "006000000000001AAA"
    assert pay["settlement_ref"] == "txn_0001" and pay["payment_date"] == date(2026, 4, 1)
    assert rows["payment"]["stripe:payment:ch_0002"]["account_id"] == "stripe:account:cus_Tokyo0001"
    refund = rows["payment"]["stripe:payment:re_0001"]
    assert refund["kind"] == "refund" and refund["amount"] == Decimal("100.00") and refund["reference"] == "ch_0001"
    # a non-integer minor-unit amount is refused, not rounded
    assert rejected[("charge", "ch_0003")].field == "amount"
    cus = rows["account"]["stripe:account:cus_Acme0001"]
    assert cus["attributes"]["account_ref"] == "001000000000001AAA" and cus["domain"] == "acme.example"
    assert rows["account"]["stripe:account:cus_Tokyo0001"]["currency"] == "JPY"


def test_tryton() -> None:
    rows, rejected = mapped("tryton")
    assert not rejected
    sale = rows["order"]["tryton:order:1"]
    assert sale["number"] == "1" and sale["deal_ref"] == "006000000000001AAA"
    assert sale["account_id"] == "tryton:account:2" and sale["state"] == "processing"
    assert sale["total"] == Decimal("12500.50") and sale["currency"] == "USD"
    assert sale["order_date"] == date(2026, 4, 1)
    assert sale["source_updated_at"] == datetime(2026, 4, 1, 9, 30, tzinfo=UTC)
    assert rows["order"]["tryton:order:2"]["currency"] == "EUR"
    assert set(rows["order_line"]) == {"tryton:order_line:11"}  # the comment line is not an order line
    line = rows["order_line"]["tryton:order_line:11"]
    assert line["order_id"] == "tryton:order:1" and line["product_code"] == "ANVIL-XL"
    inv = rows["invoice"]["tryton:invoice:1"]
    assert inv["order_ref"] == "1" and inv["deal_ref"] == "006000000000001AAA"
    assert inv["status"] == "open" and inv["amount_paid"] == Decimal("2500.00")
    assert rows["invoice"]["tryton:invoice:2"]["kind"] == "credit_note"
    assert "tryton:invoice:3" not in rows["invoice"]  # supplier invoice
    assert rows["invoice_line"]["tryton:invoice_line:21"]["currency"] == "USD"
    party = rows["account"]["tryton:account:3"]
    assert party["tax_id"] == "DE123456789" and party["domain"] == "globex.example"
    assert rows["account"]["tryton:account:2"]["attributes"]["account_ref"] == "001000000000001AAA"
    # `active` not read by the connector: the party is not taken for archived
    bare = map_records(compile_for("tryton"), [(1, "party.party", "9", {"id": 9, "name": "Bare"}, None)])
    assert bare.rows["account"][0]["deleted_at"] is None
    archived = map_records(compile_for("tryton"), [(1, "party.party", "9", {"id": 9, "name": "B", "active": False}, None)])
    assert archived.rows["account"][0]["deleted_at"] is not None


def test_odoo() -> None:
    rows, rejected = mapped("odoo")
    acme = rows["account"]["odoo:account:7"]
    assert acme["tax_id"] == "US123456789" and acme["country"] == "US" and acme["domain"] == "acme.example"
    assert acme["attributes"]["account_ref"] == "001000000000001AAA"
    assert "odoo:account:8" not in rows["account"]  # a person under a company
    assert rows["contact"]["odoo:contact:8"]["account_id"] == "odoo:account:7"
    assert rows["account"]["odoo:account:9"]["country"] == "FR"
    assert rows["account"]["odoo:account:9"]["deleted_at"] is not None  # archived partner
    so = rows["order"]["odoo:order:42"]
    assert so["number"] == "SO0042" and so["state"] == "confirmed" and so["deal_ref"] == "006000000000001AAA"
    assert so["total"] == Decimal("12500.5") and so["currency"] == "USD" and so["order_date"] == date(2026, 4, 1)
    assert rows["order"]["odoo:order:43"]["deal_ref"] is None and rows["order"]["odoo:order:43"]["state"] == "quotation"
    assert set(rows["order_line"]) == {"odoo:order_line:101"}
    assert rows["order_line"]["odoo:order_line:101"]["product_code"] == "ANVIL-XL"
    inv = rows["invoice"]["odoo:invoice:301"]
    assert inv["order_ref"] == "SO0042" and inv["status"] == "open"
    assert inv["amount_due"] == Decimal("10000.5") and inv["amount_paid"] == Decimal("2500.0")
    draft = rows["invoice"]["odoo:invoice:302"]
    assert draft["number"] is None and draft["kind"] == "credit_note" and draft["status"] == "draft"
    assert "odoo:invoice:303" not in rows["invoice"]
    assert "weird_new_state" in rejected[("account.move", "304")].reason
    assert set(rows["invoice_line"]) == {"odoo:invoice_line:401"}
    pay = rows["payment"]["odoo:payment:501"]
    assert pay["invoice_ref"] == "INV/2026/00001" and pay["payer_name"] == "Acme Corporation"


def test_camt053() -> None:
    rows, rejected = mapped("camt053")
    pays = rows["payment"]
    p1 = pays["camt053:payment:STMT-2026-04-10/E1/0"]
    assert p1["amount"] == Decimal("2500.00") and p1["currency"] == "USD" and p1["kind"] == "payment"
    assert p1["invoice_ref"] == "INV/2026/00001" and p1["reference"] is None
    assert p1["payer_name"] == "ACME CORP" and p1["remittance"] == "Payment invoice INV/2026/00001 thank you"
    assert p1["payment_date"] == date(2026, 4, 10) and p1["settlement_ref"] == "BANKREF-0001"
    p2 = pays["camt053:payment:STMT-2026-04-10/E2/0"]
    assert p2["invoice_ref"] == "RF18539007547034" and p2["reference"] == "E2E-42"
    assert p2["attributes"]["value_date"] == "2026-04-11"
    assert pays["camt053:payment:STMT-2026-04-10/E3/0"]["kind"] == "refund"
    assert "camt053:payment:STMT-2026-04-10/E4/0" not in pays  # pending entry
    assert rejected[("camt053.entry", "STMT-2026-04-10/E5/0")].field == "amount"

"""Read-back from a real trytond: sale -> confirm -> invoice -> post -> pay (partial, then in
full), an open invoice and its credit note; then the Tryton streams land exactly that in the
store: amounts exact, states, references, credit notes, payments; incremental re-runs write only
what changed, and deletes become tombstones."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from canonical import tables
from canonical.store import Store
from connectors.base import sync
from connectors.tryton.connector import TrytonConnector
from connectors.tryton.rpc import TrytonClient
from ltc.app import runtime
from ltc.app.config import Config
from mappings.engine import run_mapping
from sandbox import tryton_peer

from .conftest import Scenario

pytestmark = pytest.mark.peer


def _payload(store: Store, obj: str, sid: int | str) -> dict[str, Any]:
    row = store.get_raw("tryton", obj, str(sid))
    assert row is not None, f"{obj} {sid} not landed"
    payload = row["payload"]
    return json.loads(payload) if isinstance(payload, str) else payload


def test_streams_land_sales_invoices_credit_notes_and_payments_exactly(
    scenario: Scenario, tryton: TrytonClient, store: Store
) -> None:
    connector = TrytonConnector("tryton", tryton, store=store)
    results = {r.stream: r for r in sync(connector, store)}
    assert {s: r.status for s, r in results.items()} == dict.fromkeys(
        ["party.party", "sale.sale", "sale.line", "account.invoice", "account.invoice.line", "payments",
         "currency.currency.rate", "stock.shipment.out", "shipment_moves"], "success")
    for r in results.values():  # completeness: everything the source has for the window is stored
        assert r.source_count == r.store_count, r

    sale = _payload(store, "sale.sale", scenario.paid_sale["id"])
    assert (sale["reference"], sale["number"]) == (scenario.paid_ref, scenario.paid_sale["number"])
    assert sale["state"] == "done"  # invoiced and paid, nothing to ship
    assert sale["currency."]["code"] == "EUR"
    assert (sale["untaxed_amount"], sale["tax_amount"], sale["total_amount"]) == ("137.49", "13.75", "151.24")
    assert sale["invoices"] == [scenario.paid_invoice]

    lines = [_payload(store, "sale.line", i) for i in
             tryton.read("sale.sale", [scenario.paid_sale["id"]], ["lines"])[0]["lines"]]
    assert sorted((ln["product."]["code"], ln["quantity"], ln["unit_price"], ln["amount"]) for ln in lines) == [
        ("SKU-P1", "3.0", "12.50", "37.50"), ("SKU-P2", "1.0", "99.99", "99.99")]

    paid = _payload(store, "account.invoice", scenario.paid_invoice)
    assert (paid["state"], paid["type"], paid["total_amount"], paid["amount_to_pay"]) == ("paid", "out", "151.24", "0")
    assert paid["number"] and paid["reconciled"] is not None
    assert paid["origins"] == f"{scenario.paid_sale['number']} [{scenario.paid_ref}]"
    assert paid["sales"] == [scenario.paid_sale["id"]]
    assert len(paid["payment_lines"]) == 2

    payments = [_payload(store, "account.move.line", i) for i in paid["payment_lines"]]
    assert sorted(p["amount_second_currency"] for p in payments) == ["-100.00", "-51.24"]  # EUR, what was paid
    assert {p["second_currency."]["code"] for p in payments} == {"EUR"}
    assert {p["currency."]["code"] for p in payments} == {"USD"}  # company currency, credit at the EUR rate
    assert sorted(p["credit"] for p in payments) == ["111.11", "56.93"]
    assert all(p["invoice_payment"] == scenario.paid_invoice for p in payments)
    assert all(p["move."]["journal."]["type"] == "cash" for p in payments)
    assert {p["move_description_used"] for p in payments} == {f"wire {scenario.paid_ref} part 1",
                                                            f"wire {scenario.paid_ref} part 2"}

    open_inv = _payload(store, "account.invoice", scenario.open_invoice)
    assert (open_inv["state"], open_inv["total_amount"], open_inv["amount_to_pay"]) == ("posted", "110.00", "110.00")
    assert open_inv["lines_to_pay."][0]["maturity_date"] == open_inv["invoice_date"]  # "Direct" payment term
    credit = _payload(store, "account.invoice", scenario.credit_note)
    assert (credit["state"], credit["type"], credit["total_amount"]) == ("posted", "out", "-110.00")
    assert credit["origin_invoices"] == [scenario.open_invoice]
    assert credit["number"] and credit["number"] != open_inv["number"]
    credit_lines = [_payload(store, "account.invoice.line", i) for i in credit["lines"]]
    assert [(ln["quantity"], ln["unit_price"], ln["amount"]) for ln in credit_lines] == [("-8.0", "12.50", "-100.00")]

    party = _payload(store, "party.party", scenario.paid_sale["party"])
    assert party["name"] == "Paid Customer"
    assert [i["code"] for i in party["identifiers."]] == [f"CRM-ACC-{scenario.paid_ref}"]
    raw = store.get_raw("tryton", "account.invoice", str(scenario.paid_invoice))
    assert raw is not None and raw["source_updated_at"] is not None and raw["source_updated_at"].tzinfo is not None

    # the shipped mapping turns the receivable cash lines into the customer's payments, in what was paid
    counts = run_mapping(store, "tryton", config=None)
    assert counts["tryton"]["quarantined"] == 0
    table = tables.table_for("payment")
    with store.engine.connect() as conn:
        pays = conn.execute(sa.select(table).where(table.c.source_system == "tryton")).mappings().all()
    mine = sorted((p for p in pays if p["invoice_ref"] == paid["number"]), key=lambda p: p["amount"])
    assert [(p["kind"], p["amount"], p["currency"]) for p in mine] == [
        ("payment", Decimal("51.24"), "EUR"), ("payment", Decimal("100.00"), "EUR")]
    assert {p["account_id"] for p in mine} == {f"tryton:account:{scenario.paid_sale['party']}"}


def test_incremental_runs_write_only_changes_and_tombstone_deletes(
    scenario: Scenario, tryton: TrytonClient, sqlite_store: Store, tryton_server: tryton_peer.TrytonPeer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # built from ltc.yaml settings through the registry, as `ltc sync` and the flows do
    monkeypatch.setenv("T_LOGIN", tryton_peer.ADMIN_LOGIN)
    monkeypatch.setenv("T_PASSWORD", tryton_peer.ADMIN_PASSWORD)
    cfg = Config.model_validate({"sources": {"tryton": {
        "kind": "tryton", "base_url": tryton_server.base_url, "lookback_minutes": 5,
        "options": {"database": tryton_server.database},
        "credentials": {"login": {"env": "T_LOGIN"}, "password": {"env": "T_PASSWORD"}}}}})
    connector = runtime.build_connector(cfg, "tryton")
    assert isinstance(connector, TrytonConnector) and connector.lookback == timedelta(minutes=5)
    sync(connector, sqlite_store)
    again = {r.stream: r for r in sync(connector, sqlite_store)}
    assert all(r.written == 0 and r.deleted == 0 for r in again.values()), again  # lookback re-read, unchanged

    party = scenario.open_sale["party"]
    tryton.write("party.party", [party], {"name": "Open Customer Renamed"})
    (draft,) = tryton.create("sale.sale", [{"party": party, "currency": 1, "reference": "TO-DELETE",
                                            "invoice_address": tryton.read("party.party", [party], ["addresses"])[0]["addresses"][0]}])
    third = {r.stream: r for r in sync(connector, sqlite_store, streams=["party.party", "sale.sale"])}
    assert (third["party.party"].written, third["sale.sale"].written) == (1, 1)
    assert _payload(sqlite_store, "party.party", party)["name"] == "Open Customer Renamed"

    tryton.delete("sale.sale", [draft])
    fourth = {r.stream: r for r in sync(connector, sqlite_store, streams=["sale.sale"])}
    assert (fourth["sale.sale"].deleted, fourth["sale.sale"].written) == (1, 1)
    row = sqlite_store.get_raw("tryton", "sale.sale", str(draft))
    assert row is not None and row["deleted"] is True
    assert sqlite_store.get_raw("tryton", "sale.sale", str(scenario.paid_sale["id"]))["deleted"] is False  # type: ignore[index]
    connector.close()


def test_keyset_pages_through_ties_without_loss(scenario: Scenario, tryton: TrytonClient, sqlite_store: Store) -> None:
    small = TrytonConnector("tryton", tryton, store=sqlite_store, page_size=2)
    results = {r.stream: r for r in sync(small, sqlite_store, streams=["account.invoice.line", "sale.line"])}
    for stream, model, domain in (("sale.line", "sale.line", []),
                                  ("account.invoice.line", "account.invoice.line", [["invoice.type", "=", "out"]])):
        assert results[stream].pages >= 2
        assert sqlite_store.count_raw("tryton", model) == tryton.search_count(model, domain)

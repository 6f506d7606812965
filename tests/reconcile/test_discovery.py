"""Reference discovery: references found by value in texts the mapping keeps (reconcile/discovery.py).

Records are shaped as the vendors document them: a Stripe charge names its invoice by id
(``charge.invoice`` = ``in_...``, "ID of the invoice this charge is for"), Stripe ``metadata`` is a
free string -> string object whose keys the company chooses, a camt.053 entry carries
``RmtInf/Ustrd`` lines and ``Refs/EndToEndId``.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from recon_helpers import AS_OF, deal, invoice, order, payment, world

from mappings.engine import compile_for, map_records
from reconcile.core import Settings, reconcile_frames
from reconcile.discovery import discover, key_expr
from reconcile.stream import reconcile_world

S = Settings()


def run(fr):  # type: ignore[no-untyped-def]
    return reconcile_frames(fr, S, AS_OF)


def codes(res) -> list[tuple[str, list[str]]]:  # type: ignore[no-untyped-def]
    return [(c, list(k)) for c, k in res.exceptions.select("code", "keys").iter_rows()]


def allocs(res) -> dict[tuple[str, str], Decimal]:  # type: ignore[no-untyped-def]
    return {(p, i): a for p, i, a in res.allocations.select("payment_id", "invoice_id", "amount").iter_rows()}


def links(res, to_entity: str) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    return {r["to_id"]: r for r in res.links.filter(pl.col("to_entity") == to_entity).iter_rows(named=True)}


@pytest.mark.parametrize(("a", "b"), [
    ("INV-10023", "inv 10023"), ("INV/2026/0042", "INV 2026/0042"), ("SO-0077", "#0077"), ("Order SO77", "so-77"),
    ("RE-2026-1", "Rechnung 20261"),
])
def test_keys_meet_across_case_punctuation_and_prefixes(a: str, b: str) -> None:
    got = pl.DataFrame({"v": [a, b]}).select(key_expr(pl.col("v")))["v"].to_list()
    assert got[0] is not None and got[0] == got[1]


@pytest.mark.parametrize("text", ["thank you", "INV", "12", "-", ""])
def test_words_and_short_numbers_are_not_references(text: str) -> None:
    assert pl.DataFrame({"v": [text]}).select(key_expr(pl.col("v")))["v"].item() is None


def _stripe_invoice(i: str, total: str, metadata: dict[str, str], **extra: Any) -> dict[str, Any]:
    inv = invoice(i, None, total)
    inv.update(id=f"stripe:invoice:in_{i}", source_id=f"in_{i}", account_id="stripe:account:S", **extra)
    inv["ref_text"] = " | ".join(metadata.values())
    return inv


def test_invoice_metadata_under_the_company_own_keys_links_order_and_deal() -> None:
    # the shipped mapping reads metadata.order_number / metadata.deal_id; this company uses other keys
    fr = world(deal=[deal("006A", "100.00")], order=[order("SO-0042", "006A", "100.00")],
               invoice=[_stripe_invoice("1", "100.00", {"erp_so": "so 0042", "opp": "006A"})])
    res = run(fr)
    assert codes(res) == [("INVOICE_OVERDUE", ["stripe:invoice:in_1"])]  # linked: no INVOICE_WITHOUT_ORDER
    link = links(res, "invoice")["stripe:invoice:in_1"]
    assert link["from_id"] == "erp:order:SO-0042" and link["rule_id"] == "invoice.discovered_ref"
    assert link["chain_id"] == "sf:deal:006A" and "ref_text=so 0042" in link["evidence"]


def test_an_invoice_that_names_its_deal_still_finds_the_order_it_bills() -> None:
    # deal_ref resolves (a configured or discovered key), the description names the order: the invoice
    # bills that order, so the order is not "ordered, not invoiced" (the deal-level link would say so)
    old = date(2026, 8, 1)
    fr = world(deal=[deal("006A", "100.00")], order=[order("S00003", "006A", "100.00", od=old)],
               invoice=[dict(invoice("I1", None, "100.00", due=date(2026, 12, 1)), deal_ref="006A",
                             ref_text="SRV-IMPL as per order S00003")])
    res = run(fr)
    assert codes(res) == []
    link = links(res, "invoice")["erp:invoice:I1"]
    assert link["from_id"] == "erp:order:S00003" and link["rule_id"] == "invoice.discovered_ref"


def test_configured_reference_stays_first() -> None:
    # order_ref names SO1 (configured); the memo names SO2: the configured one is used
    fr = world(deal=[deal("D1", "100.00"), deal("D2", "100.00")],
               order=[order("SO1", "D1", "100.00"), order("SO2", "D2", "100.00")],
               invoice=[dict(invoice("I1", "SO1", "100.00"), ref_text="see SO2")])
    link = links(run(fr), "invoice")["erp:invoice:I1"]
    assert link["from_id"] == "erp:order:SO1" and link["rule_id"] == "invoice.order_ref"


def test_a_value_that_fits_several_targets_is_reported_never_used() -> None:
    # two ERPs both number an order 0042: "SO 0042" in a memo could be either
    fr = world(deal=[deal("D1", "100.00"), deal("D2", "100.00")],
               order=[order("SO-0042", "D1", "100.00"), dict(order("X", "D2", "100.00"), id="erp2:order:42",
                                                                   number="0042")],
               invoice=[dict(invoice("I1", None, "100.00"), ref_text="SO 0042")])
    res = run(fr)
    assert "erp:invoice:I1" not in links(res, "invoice")
    amb = res.exceptions.filter(pl.col("code") == "AMBIGUOUS_MATCH").row(0, named=True)
    assert amb["keys"] == ["erp:invoice:I1"]
    assert set(amb["records"]) == {"erp:invoice:I1", "erp:order:SO-0042", "erp2:order:42"}
    assert "INVOICE_WITHOUT_ORDER" not in {c for c, _ in codes(res)}


def test_remittance_naming_two_invoices_pays_both() -> None:
    fr = world(deal=[deal("D0", "100.00"), deal("D1", "250.00")],
               order=[order("SO0", "D0", "100.00"), order("SO1", "D1", "250.00")],
               invoice=[invoice("INV-10023", "SO0", "100.00"), invoice("INV-10024", "SO1", "250.00")],
               payment=[payment("P", "350.00", payer=None, remittance="INV 10023 + 10024")])
    res = run(fr)
    assert allocs(res) == {("bank:payment:P", "erp:invoice:INV-10023"): Decimal("100.00"),
                           ("bank:payment:P", "erp:invoice:INV-10024"): Decimal("250.00")}
    assert set(res.allocations["rule_id"]) == {"payment.discovered_ref"}
    assert codes(res) == []


def test_payment_for_an_order_lands_in_that_order_chain() -> None:
    # "payment for order SO-77": two open invoices of one amount; the order names the chain
    fr = world(deal=[deal("D1", "100.00"), deal("D2", "100.00")],
               order=[order("SO-77", "D1", "100.00"), order("SO-78", "D2", "100.00")],
               invoice=[invoice("I1", "SO-77", "100.00"), invoice("I2", "SO-78", "100.00")],
               payment=[payment("P", "100.00", remittance="payment for order SO-77")])
    res = run(fr)
    assert allocs(res) == {("bank:payment:P", "erp:invoice:I1"): Decimal("100.00")}
    assert codes(res) == [("INVOICE_OVERDUE", ["erp:invoice:I2"])]


def test_stripe_charge_names_its_invoice_by_id_before_any_heuristic() -> None:
    # two open invoices of one amount for one customer: by amount it is ambiguous, by charge.invoice it is not
    inv = [_stripe_invoice("A1", "100.00", {}, number="ACME-0001"),
           _stripe_invoice("A2", "100.00", {}, number="ACME-0002", issue_date=date(2026, 9, 4))]
    fr = world(deal=[deal("D1", "200.00")], invoice=[dict(i, deal_ref="D1") for i in inv],
               payment=[dict(payment("ch_1", "100.00", account="stripe:account:S", payer=None, ref="in_A2"),
                             id="stripe:payment:ch_1")])
    res = run(fr)
    assert allocs(res) == {("stripe:payment:ch_1", "stripe:invoice:in_A2"): Decimal("100.00")}
    assert set(res.allocations["rule_id"]) == {"payment.vendor_id"}
    assert links(res, "payment")["stripe:payment:ch_1"]["evidence"] == "rule=payment.vendor_id found in invoice_ref=in_A2"
    assert "AMBIGUOUS_MATCH" not in {c for c, _ in codes(res)}


def test_vendor_ids_only_meet_records_of_their_own_system() -> None:
    # an ERP payment line naming invoice record 7 does not pay the Stripe invoice whose id happens to be "7"
    fr = world(invoice=[dict(_stripe_invoice("x", "100.00", {}), id="stripe:invoice:7", source_id="7", number=None,
                             deal_ref=None)],
               payment=[dict(payment("L1", "55.00", ref="7", payer=None), id="erp:payment:L1")])
    d = discover(fr)
    assert d.payment["found_invoice_ids"].to_list() == [None]


def test_discovery_indexes_once_and_is_idempotent() -> None:
    fr = world(deal=[deal("006A", "100.00")], order=[order("SO-0042", "006A", "100.00")],
               invoice=[_stripe_invoice("1", "100.00", {"k": "SO-0042"})])
    once = discover(fr)
    twice = discover(once)
    assert once.invoice.equals(twice.invoice)
    row = once.invoice.row(0, named=True)
    assert row["order_ref"] == "SO-0042" and row["ref_rule"] == "invoice.discovered_ref"
    assert row["ref_evidence"] == "ref_text=SO-0042"


# --- through the shipped mappings: what lands in ref_text -------------------------------------------

def _map(system: str, obj: str, payload: dict[str, Any]) -> dict[str, Any]:
    result = map_records(compile_for(system), [(1, obj, str(payload.get("id", "x")), payload, None)])
    assert not result.rejected, result.rejected
    (rows,) = [rs for rs in result.rows.values() if rs]
    return rows[0]


def test_stripe_mapping_keeps_every_metadata_value_and_the_descriptors() -> None:
    row = _map("stripe", "invoice", {
        "id": "in_1", "object": "invoice", "customer": "cus_1", "currency": "usd", "status": "open", "total": 10000,
        "number": "ACME-0001", "created": 1767225600, "description": "Order SO-0042",
        "statement_descriptor": "ACME SO0042", "metadata": {"netsuite_so": "SO-0042", "sfdc_opp": "006A00000001"},
        "lines": {"object": "list", "data": [], "has_more": False}})
    assert row["ref_text"] is not None
    for value in ("SO-0042", "006A00000001", "Order SO-0042", "ACME SO0042"):
        assert value in row["ref_text"]
    charge = _map("stripe", "charge", {
        "id": "ch_1", "object": "charge", "amount": 10000, "currency": "usd", "created": 1767225600,
        "status": "succeeded", "invoice": "in_1", "metadata": {"x": "PO 4711"}, "description": None,
        "calculated_statement_descriptor": "ACME* INV 0001"})
    assert charge["invoice_ref"] == "in_1"
    assert "PO 4711" in charge["ref_text"] and "ACME* INV 0001" in charge["ref_text"]


def test_camt053_mapping_keeps_remittance_lines_and_end_to_end_id() -> None:
    row = _map("camt053", "camt053.entry", {
        "statement_id": "S1", "account_iban": "DE89370400440532013000", "entry_reference": "E1", "amount": "350.00",
        "currency": "EUR", "credit_debit": "CRDT", "reversal": False, "status": "BOOK", "booking_date": "2026-04-10",
        "value_date": "2026-04-10", "account_servicer_ref": "B1", "end_to_end_id": "E2E-SO-77",
        "debtor_name": "深圳市腾达科技有限公司", "debtor_iban": None,
        "remittance_unstructured": ["INV 10023 + 10024", "thanks"], "creditor_reference": None, "bank_tx_code": None})
    assert "INV 10023 + 10024" in row["ref_text"] and "E2E-SO-77" in row["ref_text"]


def test_ref_text_of_a_camt053_entry_links_by_end_to_end_id() -> None:
    fr = world(deal=[deal("D1", "100.00"), deal("D2", "100.00")],
               order=[order("SO1", "D1", "100.00"), order("SO2", "D2", "100.00")],
               invoice=[invoice("RF-2026-0815", "SO1", "100.00"), invoice("RF-2026-0816", "SO2", "100.00",
                                                                          due=date(2026, 12, 1))],
               payment=[dict(payment("E1", "100.00"), ref_text="NOTPROVIDED | RF 2026 0815")])
    res = run(fr)
    assert allocs(res) == {("bank:payment:E1", "erp:invoice:RF-2026-0815"): Decimal("100.00")}
    assert set(res.allocations["rule_id"]) == {"payment.discovered_ref"}


@pytest.mark.parametrize("n", [1, 2])
def test_the_bucketed_path_discovers_too(tmp_path: Path, n: int) -> None:
    # two customers' chains; one invoice and one payment linked only by what discovery finds
    fr = world(deal=[deal("006A", "100.00"), deal("006B", "70.00")],
               order=[order("SO-0042", "006A", "100.00"), order("SO-0043", "006B", "70.00")],
               invoice=[_stripe_invoice("1", "100.00", {"erp_so": "SO 0042"}), invoice("INV-0009", "SO-0043", "70.00")],
               payment=[dict(payment("P", "70.00", payer=None), ref_text="our ref inv 0009")])
    for f in fields(fr):
        getattr(fr, f.name).write_parquet(tmp_path / f"{f.name}.parquet")
    got = reconcile_world(tmp_path, S, AS_OF, out=tmp_path / "out", partitions=n, scratch=tmp_path)
    one = run(fr)
    assert got.exceptions.equals(one.exceptions)
    rules = set(got.frame("links")["rule_id"])
    assert {"invoice.discovered_ref", "payment.discovered_ref"} <= rules


def test_erp_payment_lines_name_their_invoice_by_record_id() -> None:
    # Odoo account.payment.reconciled_invoice_ids: the invoices (account.move ids) it pays
    odoo = _map("odoo", "account.payment", {
        "id": 31, "name": "PBNK1/2026/0031", "partner_id": [7, "Acme"], "amount": 100.0, "currency_id": [1, "USD"],
        "date": "2026-09-20", "payment_type": "inbound", "partner_type": "customer", "state": "posted",
        "reconciled_invoice_ids": [12], "write_date": "2026-09-20 10:00:00"})
    assert odoo["invoice_ref"] == "12"
    # Tryton account.move.line.invoice_payment: a Many2One (an id) when the dotted number is not read
    tryton = _map("tryton", "account.move.line", {
        "id": 5, "party": 7, "credit": "100.00", "debit": "0", "currency.": {"id": 1, "code": "USD"}, "date":
        "2026-09-20", "move_state": "posted", "invoice_payment": 12, "move.": {"id": 9, "number": "M9"}})
    assert tryton["invoice_ref"] == "12"


def test_the_store_path_discovers_references_in_the_texts_it_exports(sqlite_store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``ltc reconcile`` (export to Parquet, discovery pre-pass, buckets): the texts discovery reads are
    exported (the buckets leave them out afterwards), so an order number in a Stripe description links."""
    import sqlalchemy as sa

    from canonical.model import Account, Deal, Invoice, Order, to_row
    from canonical.money import Money
    from reconcile.engine import run_reconciliation
    from reconcile.tables import recon_link

    acct = Account(id="sf:account:A", source_system="sf", source_object="Account", source_id="A", name="Acme")
    rows = {
        "account": [to_row(acct)],
        "deal": [to_row(Deal(id="sf:deal:006A", source_system="sf", source_object="Opportunity", source_id="006A",
                             account_id=acct.id, stage="closed_won", currency="USD",
                             amount=Money.of("100.00", "USD"), close_date=date(2026, 7, 1)))],
        "order": [to_row(Order(id="odoo:order:1", source_system="odoo", source_object="sale.order", source_id="1",
                               number="S00003", deal_ref="006A", account_id=acct.id, order_date=date(2026, 7, 2),
                               state="confirmed", currency="USD", total=Money.of("100.00", "USD")))],
        "invoice": [to_row(Invoice(id="stripe:invoice:in_1", source_system="stripe", source_object="invoice",
                                   source_id="in_1", number="A1-0003", deal_ref="006A", account_id=acct.id,
                                   issue_date=date(2026, 7, 3), due_date=date(2026, 12, 1), status="open",
                                   currency="USD", total=Money.of("100.00", "USD"),
                                   ref_text="006A | SRV-IMPL as per order S00003"))],
    }
    with sqlite_store.engine.begin() as conn:
        for entity, batch in rows.items():
            sqlite_store.upsert_entities(conn, entity, batch)
    res = run_reconciliation(sqlite_store, S, AS_OF, partitions=1)
    assert "ORDERED_NOT_INVOICED" not in res.totals["exceptions"]
    with sqlite_store.engine.connect() as conn:
        link = conn.execute(sa.select(recon_link.c.from_id, recon_link.c.rule_id)
                            .where(recon_link.c.to_id == "stripe:invoice:in_1")).one()
    assert tuple(link) == ("odoo:order:1", "invoice.discovered_ref")

"""Each reconcile stage alone, on small hand-written frames (the stages of reconcile.stages)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest
from recon_helpers import AS_OF, deal, frame, invoice, order, payment, world

from canonical.names import normalize_name
from reconcile.settings import Settings
from reconcile.stages.billing import check_billing, check_stage_conflicts
from reconcile.stages.chains import check_chains
from reconcile.stages.contract import EXCEPTION_COLUMNS, LINK_COLUMNS, ContractError, expect
from reconcile.stages.credits import apply_credits
from reconcile.stages.customers import check_customers
from reconcile.stages.exceptions import finish_exceptions
from reconcile.stages.identity import resolve_identity
from reconcile.stages.invoices import link_invoices
from reconcile.stages.lines import check_lines
from reconcile.stages.orders import link_orders
from reconcile.stages.payments import allocate_payments
from reconcile.stages.settlement import settle

S = Settings()


def codes(parts: list[pl.DataFrame]) -> list[tuple[str, list[str]]]:
    for p in parts:
        assert tuple(p.columns) == EXCEPTION_COLUMNS
    return sorted((c, sorted(k)) for p in parts for c, k in p.select("code", "keys").iter_rows())


def upto_payments(fr):  # type: ignore[no-untyped-def]
    ident = resolve_identity(fr)
    orders = link_orders(fr, ident, S)
    invoices = link_invoices(fr, ident, orders)
    credits = apply_credits(invoices)
    return ident, orders, invoices, credits, allocate_payments(fr, ident, orders, invoices, credits, S, AS_OF)


def test_identity_maps_accounts_and_unique_names_to_their_cluster() -> None:
    fr = world(account=[
        {"id": "sf:account:A", "source_system": "sf", "name": "Acme Inc", "owner": "ann"},
        {"id": "erp:account:E", "source_system": "erp", "name": "ACME, INC.", "owner": "bob"},
        {"id": "sf:account:B", "source_system": "sf", "name": "Beta GmbH"},
        {"id": "erp:account:B2", "source_system": "erp", "name": "Beta"},
    ], cross_ref=[{"entity": "account", "member_id": m, "cluster_id": "sf:account:A"}
                  for m in ("sf:account:A", "erp:account:E")])
    ident = resolve_identity(fr)
    clusters = dict(ident.acct.select("id", "cluster_id").iter_rows())
    assert clusters == {"sf:account:A": "sf:account:A", "erp:account:E": "sf:account:A",
                        "sf:account:B": "sf:account:B", "erp:account:B2": "erp:account:B2"}
    names = dict(ident.name_to_cluster.iter_rows())
    # the keys are canonical.names' (the one name normaliser of identity and reconciliation)
    assert names[normalize_name("Acme Inc")] == "sf:account:A"  # two accounts of one name, one cluster
    assert normalize_name("Beta") not in names  # "Beta GmbH" and "Beta": one name, two clusters: no payer match
    assert dict(ident.cluster_owner.iter_rows()) == {"sf:account:A": "ann"}


def test_link_orders_by_reference_then_by_customer_and_amount() -> None:
    fr = world(deal=[deal("D1", "100.00"), deal("D2", "250.00")],
               order=[order("SO1", "d1", "100.00"), order("SO2", None, "250.00"), order("SO3", None, "999.00")])
    res = link_orders(fr, resolve_identity(fr), S)
    got = {r["id"]: (r["deal_id"], r["rule_id"]) for r in res.order.iter_rows(named=True)}
    assert got == {"erp:order:SO1": ("sf:deal:D1", "order.deal_ref"),
                   "erp:order:SO2": ("sf:deal:D2", "order.identity_amount"),
                   "erp:order:SO3": (None, None)}
    assert codes(res.exceptions) == [("ORDER_WITHOUT_DEAL", ["erp:order:SO3"])]
    links = pl.concat(res.links)
    assert tuple(links.columns) == LINK_COLUMNS
    assert dict(links.select("to_id", "confidence").iter_rows()) == {"erp:order:SO1": Decimal(1),
                                                                      "erp:order:SO2": Decimal("0.8")}


def test_link_orders_two_equal_fits_are_ambiguous_never_guessed() -> None:
    fr = world(deal=[deal("D1", "100.00"), deal("D2", "100.00")], order=[order("SO1", None, "100.00")])
    res = link_orders(fr, resolve_identity(fr), S)
    assert res.order["deal_id"].to_list() == [None]
    assert codes(res.exceptions) == [("AMBIGUOUS_MATCH", ["erp:order:SO1"])]


def test_link_invoices_by_order_then_deal_and_flags_duplicates() -> None:
    # the two bills of 100 exceed the order of 150: a copy (bills that stay within it are instalments)
    fr = world(deal=[deal("D1", "150.00")], order=[order("SO1", "D1", "150.00")],
               invoice=[invoice("I1", "SO1", "100.00"), invoice("I2", "SO1", "100.00"),
                        invoice("I3", None, "50.00") | {"deal_ref": "D1"}, invoice("I4", "nope", "10.00")])
    ident = resolve_identity(fr)
    res = link_invoices(fr, ident, link_orders(fr, ident, S))
    rules = dict(res.inv.select("id", "rule_id").iter_rows())
    assert rules == {"erp:invoice:I1": "invoice.order_ref", "erp:invoice:I2": "invoice.order_ref",
                     "erp:invoice:I3": "invoice.deal_ref", "erp:invoice:I4": None}
    assert codes(res.exceptions) == [("DUPLICATE_INVOICE", ["erp:invoice:I1", "erp:invoice:I2"]),
                                     ("INVOICE_WITHOUT_ORDER", ["erp:invoice:I4"])]
    assert sorted(res.targets["id"]) == ["erp:invoice:I1", "erp:invoice:I3", "erp:invoice:I4"]  # not the copy


def test_apply_credits_spreads_a_credit_note_in_due_date_order() -> None:
    fr = world(deal=[deal("D1", "300.00")], order=[order("SO1", "D1", "300.00")],
               invoice=[invoice("I1", "SO1", "100.00", due=date(2026, 10, 1)),
                        invoice("I2", "SO1", "200.00", due=date(2026, 11, 1), issue=date(2026, 9, 4)),
                        invoice("C1", "SO1", "150.00", kind="credit_note")])
    ident = resolve_identity(fr)
    res = apply_credits(link_invoices(fr, ident, link_orders(fr, ident, S)))
    assert dict(res.credit_by_inv.iter_rows()) == {"erp:invoice:I1": Decimal(100), "erp:invoice:I2": Decimal(50)}
    assert dict(res.credit_applied.iter_rows()) == {"erp:invoice:C1": Decimal(150)}


def test_allocate_payments_reference_first_then_unique_amount_then_subset() -> None:
    fr = world(deal=[deal("D1", "600.00")], order=[order("SO1", "D1", "600.00")],
               invoice=[invoice("I1", "SO1", "100.00"), invoice("I2", "SO1", "120.00"),
                        invoice("I3", "SO1", "130.00"), invoice("I4", "SO1", "250.00", issue=date(2026, 9, 5))],
               payment=[payment("P1", "100.00", remittance="pay I1 thanks"), payment("P2", "250.00"),
                        payment("P3", "250.00")])
    *_, res = upto_payments(fr)
    got = {(p, i): (r, a) for p, i, r, a in res.alloc.select("payment_id", "invoice_id", "rule_id", "signed").iter_rows()}
    # P2 and P3 (250 each) both fit I4 alone and I2+I3: neither is guessed
    assert got == {("bank:payment:P1", "erp:invoice:I1"): ("payment.invoice_ref", Decimal(100))}
    assert sorted(res.ambiguous["id"]) == ["bank:payment:P2", "bank:payment:P3"]
    assert dict(res.bal.select("invoice_id", "residual").iter_rows())["erp:invoice:I1"] == 0


def test_allocate_payments_subset_sum_when_no_single_invoice_fits() -> None:
    fr = world(deal=[deal("D1", "350.00")], order=[order("SO1", "D1", "350.00")],
               invoice=[invoice("I1", "SO1", "100.00"), invoice("I2", "SO1", "120.00"), invoice("I3", "SO1", "130.00")],
               payment=[payment("P1", "250.00")])
    *_, res = upto_payments(fr)
    rows = sorted(res.alloc.select("invoice_id", "rule_id", "signed").iter_rows())
    assert rows == [("erp:invoice:I2", "payment.subset_sum", Decimal(120)),
                    ("erp:invoice:I3", "payment.subset_sum", Decimal(130))]


def test_settle_unapplied_overdue_and_short_paid() -> None:
    fr = world(deal=[deal("D1", "300.00")], order=[order("SO1", "D1", "300.00")],
               invoice=[invoice("I1", "SO1", "100.00", due=date(2026, 10, 1)),
                        invoice("I2", "SO1", "200.00", due=date(2026, 10, 2), issue=date(2026, 9, 4))],
               payment=[payment("P1", "150.00", ref="I2"), payment("P9", "77.00", payer="Nobody Ltd")])
    _, _, invoices, _, pays = upto_payments(fr)
    res = settle(invoices, pays, S, AS_OF)
    assert codes(res.exceptions) == [("INVOICE_OVERDUE", ["erp:invoice:I1"]),
                                     ("PAYMENT_MISMATCH", ["erp:invoice:I2"]),
                                     ("UNAPPLIED_PAYMENT", ["bank:payment:P9"])]
    ib = {r["invoice_id"]: r for r in res.ib.iter_rows(named=True)}
    assert ib["erp:invoice:I2"]["open_amount"] == Decimal(50) and ib["erp:invoice:I1"]["bucket"] == "1-30"
    assert dict(res.last_alloc.iter_rows()) == {"erp:invoice:I2": "bank:payment:P1"}


def test_check_chains_amount_currency_and_unordered() -> None:
    fr = world(deal=[deal("D1", "100.00"), deal("D2", "100.00"), deal("D3", "100.00"), deal("D4", "100.00")],
               order=[order("SO1", "D1", "100.00"), order("SO2", "D2", "140.00"), order("SO3", "D3", "100.00", ccy="EUR")])
    res = check_chains(fr, link_orders(fr, resolve_identity(fr), S), S, AS_OF)
    assert codes(res.exceptions) == [("AMOUNT_MISMATCH", ["sf:deal:D2"]), ("CURRENCY_MISMATCH", ["sf:deal:D3"]),
                                     ("WON_NOT_ORDERED", ["sf:deal:D4"])]
    assert dict(res.ch.select("id", "n_orders").iter_rows())["sf:deal:D4"] == 0


def test_check_lines_compares_per_product() -> None:
    fr = world(deal=[deal("D1", "100.00")], order=[order("SO1", "D1", "100.00")],
               deal_line=[{"id": "dl1", "deal_id": "sf:deal:D1", "product_code": "P", "quantity": "2", "amount": "100.00"}],
               order_line=[{"id": "ol1", "order_id": "erp:order:SO1", "product_code": "P", "quantity": "3",
                            "amount": "100.00"}])
    chains = check_chains(fr, link_orders(fr, resolve_identity(fr), S), S, AS_OF)
    assert codes(check_lines(fr, chains, S)) == [("LINE_MISMATCH", ["sf:deal:D1"])]


def test_check_billing_not_invoiced_over_invoiced_and_stage_conflict() -> None:
    old = date(2026, 8, 1)
    fr = world(deal=[deal("D1", "100.00"), deal("D2", "100.00"), deal("D3", "80.00", stage="closed_lost")],
               order=[order("SO1", "D1", "100.00", od=old), order("SO2", "D2", "100.00")],
               invoice=[invoice("I2", "SO2", "130.00"), invoice("I3", None, "80.00") | {"deal_ref": "D3"}])
    ident = resolve_identity(fr)
    orders = link_orders(fr, ident, S)
    invoices = link_invoices(fr, ident, orders)
    chains = check_chains(fr, orders, S, AS_OF)
    assert codes(check_billing(fr, orders, invoices, chains, S, AS_OF)) == [
        ("ORDERED_NOT_INVOICED", ["erp:order:SO1"]), ("OVER_INVOICED", ["erp:order:SO2"])]
    credits = apply_credits(invoices)
    pays = allocate_payments(fr, ident, orders, invoices, credits, S, AS_OF)
    assert codes(check_stage_conflicts(orders, invoices, pays)) == [("STAGE_CONFLICT", ["sf:deal:D3"])]


def test_check_customers_flags_clusters_that_disagree_on_tax_id() -> None:
    fr = world(account=[
        {"id": "sf:account:A", "source_system": "sf", "name": "Acme", "tax_id": "DE-123", "country": "de"},
        {"id": "erp:account:E", "source_system": "erp", "name": "Acme", "tax_id": "de 123", "country": "DE"},
        {"id": "sf:account:B", "source_system": "sf", "name": "Beta", "tax_id": "X1"},
        {"id": "erp:account:F", "source_system": "erp", "name": "Beta", "tax_id": "X2"},
    ], cross_ref=[{"entity": "account", "member_id": m, "cluster_id": c} for m, c in
                  (("sf:account:A", "A"), ("erp:account:E", "A"), ("sf:account:B", "B"), ("erp:account:F", "B"))])
    assert codes(check_customers(resolve_identity(fr))) == [("CUSTOMER_MISMATCH", ["B"])]


def test_finish_exceptions_owner_severity_fingerprint_and_reporting_amount() -> None:
    fr = world(deal=[deal("D1", "100.00", owner="zoe")],
               fx_rate=[{"base": "EUR", "quote": "USD", "rate_date": date(2026, 1, 1), "rate": "1.1"}])
    part = pl.DataFrame({"code": ["WON_NOT_ORDERED", "UNAPPLIED_PAYMENT"], "chain_id": ["sf:deal:D1", None],
                         "keys": [["sf:deal:D1"], ["bank:payment:P"]], "records": [["sf:deal:D1"], ["bank:payment:P"]],
                         "currency": ["USD", "EUR"], "amount": [Decimal("100"), Decimal("200000")],
                         "cluster_id": ["sf:account:A", "sf:account:A"], "detail": ["x", "y"]})
    ident = resolve_identity(fr)
    orders = link_orders(fr, ident, S)
    ib = pl.DataFrame(schema={"invoice_id": pl.String, "bucket": pl.String})
    ex = finish_exceptions([part, part], orders.deal, ident.cluster_owner, ib, fr, S, AS_OF)
    assert ex.height == 2  # the same fingerprint twice is one exception
    rows = {r["code"]: r for r in ex.iter_rows(named=True)}
    assert rows["WON_NOT_ORDERED"]["owner"] == "zoe"
    assert rows["UNAPPLIED_PAYMENT"]["owner"] == "ann"  # the cluster's owner when the row has no chain
    assert rows["UNAPPLIED_PAYMENT"]["amount_reporting"] == Decimal("220000.00")
    assert rows["UNAPPLIED_PAYMENT"]["severity"] == "critical"  # >= 100,000 in the reporting currency
    assert len({r["fingerprint"] for r in rows.values()}) == 2


def test_a_stage_given_a_frame_without_a_needed_column_names_it() -> None:
    fr = world(deal=[deal("D1", "100.00")])
    fr.order = frame("order", []).drop("deal_ref")
    with pytest.raises(ContractError, match="link_orders: frame order lacks deal_ref"):
        link_orders(fr, resolve_identity(fr), S)
    expect("x", "y", pl.DataFrame({"a": [1]}), ["a"])  # present: no error

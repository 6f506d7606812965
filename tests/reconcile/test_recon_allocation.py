"""Allocation rules on hand-built worlds: references, 1:1, subset sum, partials, tolerance, FX, credits."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest
from recon_helpers import AS_OF, deal, frame, invoice, order, payment, world

from reconcile.core import ConservationError, Settings, reconcile_frames
from reconcile.stages.conservation import conservation as _conservation

S = Settings()


def run(fr):  # type: ignore[no-untyped-def]
    return reconcile_frames(fr, S, AS_OF)


def allocs(res) -> dict[tuple[str, str], Decimal]:  # type: ignore[no-untyped-def]
    return {(p, i): a for p, i, a in res.allocations.select("payment_id", "invoice_id", "amount").iter_rows()}


def codes(res) -> list[tuple[str, list[str]]]:  # type: ignore[no-untyped-def]
    return [(c, list(k)) for c, k in res.exceptions.select("code", "keys").iter_rows()]


def chain(n: int = 1, amount: str | list[str] = "100.00") -> dict[str, list]:  # type: ignore[type-arg]
    amounts = amount if isinstance(amount, list) else [amount] * n
    return {
        "deal": [deal(f"D{i}", a) for i, a in enumerate(amounts)],
        "order": [order(f"SO{i}", f"D{i}", a) for i, a in enumerate(amounts)],
    }


def test_explicit_reference_with_stripe_fee_settles_the_invoice() -> None:
    fr = world(**chain(), invoice=[invoice("INV0", "SO0", "100.00")],
               payment=[payment("P1", "100.00", ref="inv0", account="stripe:account:S", payer=None, fee="3.20")])
    res = run(fr)
    assert allocs(res) == {("bank:payment:P1", "erp:invoice:INV0"): Decimal("100.00")}
    assert codes(res) == []
    link = res.links.filter(pl.col("to_entity") == "payment").row(0, named=True)
    assert link["rule_id"] == "payment.invoice_ref" and link["confidence"] == 1
    assert res.payment_balances.row(0, named=True)["fee"] == Decimal("3.20")


def test_one_payment_to_several_invoices_by_unique_subset_sum() -> None:
    fr = world(**chain(3, ["120.00", "45.50", "80.25"]),
               invoice=[invoice("I0", "SO0", "120.00"), invoice("I1", "SO1", "45.50"), invoice("I2", "SO2", "80.25")],
               payment=[payment("P", "200.25")])  # = I0 + I2, no reference, payer name only
    res = run(fr)
    got = allocs(res)
    assert got == {("bank:payment:P", "erp:invoice:I0"): Decimal("120.00"),
                   ("bank:payment:P", "erp:invoice:I2"): Decimal("80.25")}
    assert {r for r in res.allocations["rule_id"]} == {"payment.subset_sum"}
    assert codes(res) == [("INVOICE_OVERDUE", ["erp:invoice:I1"])]  # the one left open, past due


def test_equal_candidates_are_ambiguous_never_load_order() -> None:
    fr = world(**chain(2, "100.00"),
               invoice=[invoice("I0", "SO0", "100.00", due=date(2026, 12, 1)),
                        invoice("I1", "SO1", "100.00", due=date(2026, 12, 1))],
               payment=[payment("P", "100.00")])
    res = run(fr)
    assert res.allocations.height == 0
    assert codes(res) == [("AMBIGUOUS_MATCH", ["bank:payment:P"])]
    row = res.exceptions.row(0, named=True)
    assert set(row["records"]) == {"bank:payment:P", "erp:invoice:I0", "erp:invoice:I1"}


def test_partials_and_tolerance_writeoff() -> None:
    fr = world(**chain(2, "100.00"),
               invoice=[invoice("I0", "SO0", "100.00"), invoice("I1", "SO1", "100.00", due=date(2026, 12, 1))],
               payment=[payment("P1", "40.00", remittance="part 1 of I0"), payment("P2", "60.00", remittance="I0 rest"),
                        payment("P3", "99.99", ref="I1")])
    res = run(fr)
    ib = {r["invoice_id"]: r for r in res.invoice_balances.iter_rows(named=True)}
    assert ib["erp:invoice:I0"]["settled"] and ib["erp:invoice:I0"]["paid"] == Decimal("100.00")
    assert ib["erp:invoice:I1"]["settled"] and ib["erp:invoice:I1"]["writeoff"] == Decimal("0.01")
    assert codes(res) == []


def test_short_payment_past_due_is_payment_mismatch_and_unpaid_is_overdue() -> None:
    fr = world(**chain(2, "100.00"),
               invoice=[invoice("I0", "SO0", "100.00"), invoice("I1", "SO1", "100.00")],
               payment=[payment("P1", "90.00", ref="I0")])
    res = run(fr)
    got = dict((c, k[0]) for c, k in codes(res))
    assert got == {"PAYMENT_MISMATCH": "erp:invoice:I0", "INVOICE_OVERDUE": "erp:invoice:I1"}
    amounts = dict(res.exceptions.select("code", "amount").iter_rows())
    assert amounts["PAYMENT_MISMATCH"] == Decimal("10.00")
    assert res.exceptions.filter(pl.col("code") == "INVOICE_OVERDUE")["bucket"].to_list() == ["1-30"]


def test_fx_payment_leaves_an_explicit_fx_difference() -> None:
    rates = [{"base": "EUR", "quote": "USD", "rate_date": date(2026, 9, 19), "rate": "1.0812345678"}]
    fr = world(**chain(), invoice=[invoice("I0", "SO0", "100.00")],
               payment=[payment("P", "92.49", ccy="EUR", remittance="I0")], fx_rate=rates)
    res = run(fr)
    a = res.allocations.row(0, named=True)
    assert a["payment_currency"] == "EUR" and a["payment_amount"] == Decimal("92.49")
    assert a["amount"] == Decimal("100.00")  # 92.49 x 1.0812345678 = 100.0034 -> 100.00
    ib = res.invoice_balances.row(0, named=True)
    assert ib["settled"] and ib["fx"]
    fr2 = world(**chain(), invoice=[invoice("I0", "SO0", "100.00")],
                payment=[payment("P", "91.00", ccy="EUR", remittance="I0")], fx_rate=rates)
    ib2 = run(fr2).invoice_balances.row(0, named=True)
    assert ib2["settled"] and ib2["fx_difference"] == Decimal("1.61")  # 100 - round(91 x 1.0812..., 2)


def test_credit_note_and_refund_net_to_zero() -> None:
    fr = world(**chain(), invoice=[invoice("I0", "SO0", "100.00"), invoice("CN0", "SO0", "10.00", kind="credit_note")],
               payment=[payment("P", "100.00", ref="I0"), payment("R", "10.00", ref="I0", kind="refund")])
    res = run(fr)
    ib = res.invoice_balances.row(0, named=True)
    assert (ib["credited"], ib["paid"], ib["residual"]) == (Decimal("10.00"), Decimal("90.00"), Decimal("0"))
    assert codes(res) == []


def test_unapplied_and_orders_without_deals() -> None:
    fr = world(**chain(), order_extra=None) if False else world(
        deal=[deal("D0", "100.00")], order=[order("SO0", " d0 ", "100.00"), order("SOX", "NOPE", "55.00")],
        invoice=[invoice("I0", "SO0", "100.00", due=date(2026, 12, 1)), invoice("IW", "SOW", "5.00", due=date(2026, 12, 1))],
        payment=[payment("U", "77.77", payer="Somebody Else")])
    res = run(fr)
    assert sorted(codes(res)) == [("INVOICE_WITHOUT_ORDER", ["erp:invoice:IW"]),
                                  ("ORDER_WITHOUT_DEAL", ["erp:order:SOX"]),
                                  ("UNAPPLIED_PAYMENT", ["bank:payment:U"])]
    assert res.totals["cash"]["USD"]["unapplied"] == "77.7700"


def test_chain_checks_amount_line_currency_stage() -> None:
    lines = [{"id": "sf:dl:1", "deal_id": "sf:deal:D0", "product_code": "P1", "quantity": "2", "amount": "100.00"}]
    olines = [{"id": "erp:ol:1", "order_id": "erp:order:SO0", "product_code": "P2", "quantity": "2", "amount": "100.00"}]
    fr = world(deal=[deal("D0", "100.00"), deal("D1", "200.00"), deal("D2", "50.00", ccy="EUR"),
                     deal("D3", "10.00", stage="closed_lost"), deal("D4", "10.00", close=date(2026, 10, 1))],
               order=[order("SO0", "D0", "100.00"), order("SO1", "D1", "180.00"), order("SO2", "D2", "50.00", ccy="GBP"),
                      order("SO3", "D3", "10.00")],
               deal_line=lines, order_line=olines,
               invoice=[invoice(f"I{i}", f"SO{i}", t, due=date(2026, 12, 1), ccy=c)
                        for i, t, c in ((0, "100.00", "USD"), (1, "180.00", "USD"), (2, "50.00", "GBP"),
                                        (3, "10.00", "USD"))])
    got = sorted(codes(run(fr)))
    assert got == [("AMOUNT_MISMATCH", ["sf:deal:D1"]), ("CURRENCY_MISMATCH", ["sf:deal:D2"]),
                   ("LINE_MISMATCH", ["sf:deal:D0"]), ("STAGE_CONFLICT", ["sf:deal:D3"]),
                   ("WON_NOT_ORDERED", ["sf:deal:D4"])]


def test_conservation_failure_is_loud() -> None:
    fr = world(**chain(), invoice=[invoice("I0", "SO0", "100.00")], payment=[payment("P", "100.00", ref="I0")])
    res = run(fr)
    broken = res.states.filter(pl.col("entity") != "payment")  # a payment row without a state
    with pytest.raises(ConservationError, match="payment: 1 rows in, 0 states out") as err:
        _conservation(fr, frame("invoice", []), frame("invoice", []), frame("invoice", []),
                      pl.DataFrame(schema={"cn": pl.String, "applied": pl.Decimal(38, 4)}),
                      frame("payment", []), res.payment_balances.clear(), res.allocations.clear().rename(
                          {"amount": "signed"}), res.invoice_balances.clear(), res.exceptions.clear(), broken)
    assert err.value.exit_code == 1  # a failed stage; 3 is a pause on a vendor quota, which `ltc run` resumes


def test_a_reference_that_names_two_deals_is_ambiguous() -> None:
    twin = deal("X1", "100.00") | {"id": "hubspot:deal:X1"}
    fr = world(deal=[deal("X1", "100.00"), twin], order=[order("SO0", "x1", "100.00")],
               invoice=[invoice("I0", "SO0", "100.00", due=date(2026, 12, 1))])
    res = run(fr)
    amb = res.exceptions.filter(pl.col("code") == "AMBIGUOUS_MATCH").row(0, named=True)
    assert amb["keys"] == ["erp:order:SO0"]
    assert set(amb["records"]) == {"erp:order:SO0", "sf:deal:X1", "hubspot:deal:X1"}


def test_line_check_sums_per_product_and_never_pairs_missing_products() -> None:
    def dl(i: str, d: str, p: str | None, q: str, a: str) -> dict:  # type: ignore[type-arg]
        return {"id": f"sf:dl:{i}", "deal_id": f"sf:deal:{d}", "product_code": p, "quantity": q, "amount": a}

    def ol(i: str, o: str, p: str | None, q: str, a: str) -> dict:  # type: ignore[type-arg]
        return {"id": f"erp:ol:{i}", "order_id": f"erp:order:{o}", "product_code": p, "quantity": q, "amount": a}

    fr = world(deal=[deal("D0", "100.00"), deal("D1", "100.00")],
               order=[order("SO0", "D0", "100.00"), order("SO1", "D1", "100.00")],
               # D0: two deal lines of P1 are the one order line of P1; D1: a line without a product on each
               # side is not a pair (as in a join, a missing key matches nothing)
               deal_line=[dl("1", "D0", "P1", "1", "40.00"), dl("2", "D0", "P1", "1", "60.00"),
                          dl("3", "D1", None, "1", "100.00")],
               order_line=[ol("1", "SO0", "P1", "2", "100.00"), ol("2", "SO1", None, "1", "100.00")],
               invoice=[invoice(f"I{i}", f"SO{i}", "100.00", due=date(2026, 12, 1)) for i in (0, 1)])
    res = run(fr)
    assert codes(res) == [("LINE_MISMATCH", ["sf:deal:D1"])]
    assert res.exceptions["amount"].to_list() == [Decimal("200.0000")]


@pytest.mark.parametrize(("amount", "settings"), [
    ("0.01", S),  # a verification deposit within the absolute tolerance
    ("40.00", Settings(tolerance_abs=Decimal("500"))),  # any receipt under a wide absolute tolerance
    ("40.00", Settings(tolerance_rel=Decimal("1"))),  # any receipt at all under a 100 % relative one
])
def test_cash_applied_to_nothing_is_unapplied_whatever_the_tolerance(amount: str, settings: Settings) -> None:
    """Before, a payment that paid nothing and lay within tolerance was 'matched' with nothing applied, and the
    conservation check stopped every reconciliation of the store (exit 3) until someone deleted the payment."""
    fr = world(**chain(), invoice=[invoice("I0", "SO0", "100.00")],
               payment=[payment("P0", "100.00", ref="I0"), payment("MICRO", amount, payer="Nobody Known GmbH")])
    res = reconcile_frames(fr, settings, AS_OF)
    assert codes(res) == [("UNAPPLIED_PAYMENT", ["bank:payment:MICRO"])]
    assert res.exceptions.row(0, named=True)["amount"] == Decimal(amount)
    states = {(r["entity"], r["id"]): r["state"] for r in res.states.iter_rows(named=True)}
    assert states[("payment", "bank:payment:MICRO")] == "exception"
    assert states[("payment", "bank:payment:P0")] == "matched" and states[("invoice", "erp:invoice:I0")] == "matched"
    cash = {k: Decimal(v) for k, v in res.totals["cash"]["USD"].items()}
    assert cash == {"received": Decimal("100.00") + Decimal(amount), "applied": Decimal("100.00"),
                    "unapplied": Decimal(amount)}


def test_a_cent_over_on_a_payment_that_paid_its_invoice_stays_forgiven() -> None:
    fr = world(**chain(), invoice=[invoice("I0", "SO0", "100.00")], payment=[payment("P0", "100.01", ref="I0")])
    res = run(fr)
    assert codes(res) == []
    assert {r["id"]: r["state"] for r in res.states.filter(pl.col("entity") == "payment").iter_rows(named=True)} == {
        "bank:payment:P0": "matched"}


def test_a_three_decimal_chain_that_agrees_to_the_mill_raises_nothing() -> None:
    # KWD keeps three decimals; tolerance 0.001 is what such a company configures (found by test_recon_fuzz.py): the
    # same-currency "conversion" rounded every figure to cents, so deal, order, bills and payments that agree to
    # the mill were AMOUNT_MISMATCH / ORDERED_NOT_INVOICED, the instalments short and over, the transfer unapplied
    kwd = {"ccy": "KWD"}
    fr = world(deal=[deal("D0", "4.015", **kwd)], order=[order("SO0", "D0", "4.015", od=date(2026, 8, 1), **kwd)],
               invoice=[invoice("I1", "SO0", "1.005", **kwd), invoice("I2", "SO0", "2.005", due=date(2026, 10, 4),
                                                                      **kwd),
                        invoice("I3", "SO0", "1.005", issue=date(2026, 9, 4), due=date(2026, 10, 5), **kwd)],
               payment=[payment("P", "3.010", remittance="I1 I2", **kwd), payment("Q", "1.005", **kwd)])
    res = reconcile_frames(fr, Settings(tolerance_abs=Decimal("0.001"), tolerance_rel=Decimal(0)), AS_OF)
    assert codes(res) == []
    assert res.invoice_balances["settled"].all() and (res.invoice_balances["residual"] == 0).all()
    assert allocs(res) == {("bank:payment:P", "erp:invoice:I1"): Decimal("1.005"),
                           ("bank:payment:P", "erp:invoice:I2"): Decimal("2.005"),
                           ("bank:payment:Q", "erp:invoice:I3"): Decimal("1.005")}


def test_stage_conflict_amount_at_risk_is_in_the_deal_currency_billed_else_paid() -> None:
    # (found by test_recon_fuzz.py) a lost USD deal billed JPY 1,000,000 was a STAGE_CONFLICT of "USD 1,000,000",
    # critical; a lost deal paid but never billed carried no amount at all
    rate = [{"base": "JPY", "quote": "USD", "rate_date": date(2026, 9, 1), "rate": "0.0066"}]
    fr = world(deal=[deal("D0", "7000.00", stage="closed_lost"), deal("D1", "80.00", stage="negotiation"),
                     deal("D2", "20.00", stage="closed_lost", ccy="EUR")],
               invoice=[invoice("I0", None, "1000000", ccy="JPY") | {"deal_ref": "D0"},
                        invoice("I2", None, "3000", ccy="JPY") | {"deal_ref": "D2"}],
               payment=[payment("P1", "50.00", deal_ref="D1", payer="Nobody"),
                        payment("P2", "5000", ccy="JPY", ref="I0")], fx_rate=rate)
    got = {c: (ccy, a, sev) for c, ccy, a, sev in run(fr).exceptions.filter(pl.col("code") == "STAGE_CONFLICT")
           .select("chain_id", "currency", "amount", "severity").iter_rows()}
    # no JPY -> EUR rate: the bills' own figure in their own currency, not a yen figure called euros
    assert got == {"sf:deal:D0": ("USD", Decimal("6600.00"), "high"), "sf:deal:D1": ("USD", Decimal("50.00"), "high"),
                   "sf:deal:D2": ("JPY", Decimal("3000"), "high")}


@pytest.mark.xfail(strict=True, reason="open product decision: what an invoice without a total is (HubSpot "
                   "hs_amount_billed left empty); a payment naming one makes an allocation with no amount, which "
                   "recon_allocation.amount (NOT NULL) refuses, and ltc reconcile stops with an IntegrityError")
def test_an_invoice_without_a_total_named_by_a_payment_stops_no_reconciliation() -> None:
    no_total = invoice("I0", "SO0", "100.00") | {"total": None}
    res = run(world(**chain(), invoice=[no_total], payment=[payment("P", "100.00", ref="I0")]))
    assert res.allocations.filter(pl.col("amount").is_null() | pl.col("payment_amount").is_null()).is_empty()


def test_a_return_order_without_a_deal_reports_a_positive_amount_at_risk() -> None:
    # a Tryton return sale totals -250 (found by test_recon_fuzz.py): ORDER_WITHOUT_DEAL carried -250, below every
    # severity threshold and against "amount at risk" everywhere else
    res = run(world(order=[order("SO-R", None, "-250000.00")]))
    got = res.exceptions.filter(pl.col("code") == "ORDER_WITHOUT_DEAL").select("amount", "severity").row(0)
    assert got == (Decimal("250000.00"), "critical")

"""Bank credits on hand-built frames: bank charges (camt fields and the configured tolerance), transfers
without remittance from a known payer (one fitting invoice: applied; several: AMBIGUOUS_MATCH), payer
names several customers carry, Chinese payer names."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl
from recon_helpers import AS_OF, deal, frame, invoice, order, payment, world

from connectors.camt053 import parse_camt053
from reconcile.core import Settings, reconcile_frames
from reconcile.frames import prepare
from sandbox.camt053 import Entry, Statement, Tx, render

D = Decimal
PAST_DUE = {"issue": date(2026, 8, 1), "due": date(2026, 8, 31)}
NOT_DUE = {"issue": date(2026, 10, 20), "due": date(2026, 11, 19)}


def chain(*amounts: str) -> dict[str, list[Any]]:
    return {"deal": [deal(f"D{i}", a) for i, a in enumerate(amounts)],
            "order": [order(f"SO{i}", f"D{i}", a) for i, a in enumerate(amounts)]}


def codes(res: Any) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for code, recs in res.exceptions.select("code", "records").iter_rows():
        out.setdefault(code, []).append(sorted(recs))
    return out


def allocs(res: Any) -> dict[tuple[str, str], tuple[str, Decimal]]:
    return {(p, i): (r, a) for p, i, r, a in res.allocations.select("payment_id", "invoice_id", "rule_id", "amount")
            .iter_rows()}


def evidence(res: Any, invoice_id: str) -> str:
    return res.links.filter((pl.col("from_id") == invoice_id) & (pl.col("to_entity") == "payment"))["evidence"].item()


# -- bank charges ---------------------------------------------------------------------------------------
def _camt_payment(amount: str, **tx: Any) -> dict[str, Any]:
    """A payment row as the camt.053 mapping makes it: amount = gross_amount, fee = charges."""
    stmt = Statement("S", "DE89370400440532013000", "USD", D("0"), date(2026, 9, 1), [
        Entry(D(amount), "CRDT", date(2026, 9, 20), "ASR-1", details=[Tx(debtor_name="Acme Inc.", **tx)])])
    (parsed,) = parse_camt053(render([stmt], message_id="M"), "s.xml")
    got = dict(parsed.entries)["ASR-1"]
    row = payment("ASR-1", str(got["gross_amount"]), ref=got["remittance_unstructured"])
    row["fee"] = got["charges"]
    return row


def test_charges_in_the_camt_fields_settle_the_invoice_at_gross_and_record_the_fee() -> None:
    pay = _camt_payment("992.50", remittance="INV0", instructed=(D("1000.00"), "USD"), charges=D("7.50"))
    res = reconcile_frames(world(**chain("1000.00"), invoice=[invoice("INV0", "SO0", "1000.00", **PAST_DUE)],
                                 payment=[pay]), Settings(), AS_OF)
    assert codes(res) == {}
    assert allocs(res) == {("bank:payment:ASR-1", "erp:invoice:INV0"): ("payment.invoice_ref", D("1000.00"))}
    assert res.payment_balances.row(0, named=True)["fee"] == D("7.50")
    assert "fee=7.50 USD" in evidence(res, "erp:invoice:INV0")


def test_without_the_charge_fields_the_same_credit_is_a_short_payment() -> None:
    pay = _camt_payment("992.50", remittance="INV0")
    res = reconcile_frames(world(**chain("1000.00"), invoice=[invoice("INV0", "SO0", "1000.00", **PAST_DUE)],
                                 payment=[pay]), Settings(), AS_OF)
    assert codes(res) == {"PAYMENT_MISMATCH": [["bank:payment:ASR-1", "erp:invoice:INV0"]]}


def _short(paid: str, *, fee: str | None = None, total: str = "1000.00") -> Any:
    return world(**chain(total), invoice=[invoice("INV0", "SO0", total, **PAST_DUE)],
                 payment=[payment("P1", paid, ref="INV0", fee=fee)])


CHARGES = Settings(bank_charge_max={"USD": D("25.00")})


def test_configured_bank_charge_tolerance_settles_a_short_payment_and_names_the_charge() -> None:
    res = reconcile_frames(_short("988.00"), CHARGES, AS_OF)
    assert codes(res) == {}
    ib = res.invoice_balances.row(0, named=True)
    assert ib["settled"] and ib["bank_charge"] == D("12.00") and ib["open_amount"] == 0
    assert res.allocations.row(0, named=True)["writeoff"] == D("12.00")
    assert "bank_charge=12.00 USD written off" in evidence(res, "erp:invoice:INV0")


def test_bank_charge_tolerance_has_limits() -> None:
    for world_, settings in (
        (_short("988.00"), Settings()),  # not configured: a short payment
        (_short("970.00"), CHARGES),  # short by more than the cap
        (_short("988.00"), Settings(bank_charge_max={"EUR": D("25.00")})),  # another currency's cap
        (_short("988.00", fee="7.50"), CHARGES),  # the bank itemised its charges: the rest is no charge
        (_short("88.00", total="100.00"), Settings(bank_charge_max={"USD": D("25.00")}, bank_charge_rel=D("0.05"))),
    ):
        res = reconcile_frames(world_, settings, AS_OF)
        assert codes(res) == {"PAYMENT_MISMATCH": [["bank:payment:P1", "erp:invoice:INV0"]]}, settings
        assert res.invoice_balances.row(0, named=True)["bank_charge"] is None


def test_bank_charge_tolerance_within_the_relative_cap() -> None:
    res = reconcile_frames(_short("988.00"), Settings(bank_charge_max={"USD": D("25.00")},
                                                       bank_charge_rel=D("0.02")), AS_OF)
    assert codes(res) == {} and res.invoice_balances.row(0, named=True)["bank_charge"] == D("12.00")


# -- transfers without remittance ---------------------------------------------------------------------------
def test_no_remittance_from_a_known_payer_applies_to_the_one_open_invoice_of_that_amount() -> None:
    fr = world(**chain("1200.00", "800.00"), invoice=[invoice("I0", "SO0", "1200.00", **PAST_DUE),
                                                      invoice("I1", "SO1", "800.00", **NOT_DUE)],
               payment=[payment("P1", "1200.00", payer="ACME INC")])
    res = reconcile_frames(fr, Settings(), AS_OF)
    assert allocs(res) == {("bank:payment:P1", "erp:invoice:I0"): ("payment.customer_amount", D("1200.00"))}
    assert codes(res) == {}


def test_no_remittance_fitting_two_open_invoices_is_ambiguous_and_settles_neither() -> None:
    fr = world(**chain("900.00", "900.00"), invoice=[invoice("I0", "SO0", "900.00", **NOT_DUE),
                                                     invoice("I1", "SO1", "900.00", **NOT_DUE)],
               payment=[payment("P1", "900.00", payer="Acme Inc.")])
    res = reconcile_frames(fr, Settings(), AS_OF)
    assert allocs(res) == {}
    assert codes(res) == {"AMBIGUOUS_MATCH": [["bank:payment:P1", "erp:invoice:I0", "erp:invoice:I1"]]}
    assert res.invoice_balances["settled"].to_list() == [False, False]


def _homonyms(amount_de: str, amount_at: str, paid: str) -> Any:
    """Two customers of one name in two countries (different tax ids: not one customer), an invoice each;
    a transfer naming only the payer."""
    acc = [{"id": f"erp:account:{c}", "source_system": "erp", "name": "Vega Optics GmbH", "tax_id": f"T-{c}",
            "country": c} for c in ("DE", "AT")]
    inv = [{**invoice(f"I{c}", None, a, **NOT_DUE), "account_id": f"erp:account:{c}"}
           for c, a in (("DE", amount_de), ("AT", amount_at))]
    pay = [payment("P1", paid, payer="VEGA OPTICS GMBH", ccy="USD")]
    return prepare(account=frame("account", acc), invoice=frame("invoice", inv), payment=frame("payment", pay))


def test_a_payer_name_two_customers_carry_applies_when_one_open_invoice_of_theirs_fits() -> None:
    res = reconcile_frames(_homonyms("750.00", "310.00", "750.00"), Settings(), AS_OF)
    assert allocs(res) == {("bank:payment:P1", "erp:invoice:IDE"): ("payment.payer_name_amount", D("750.00"))}
    assert "carried by several customers" in evidence(res, "erp:invoice:IDE")
    assert "UNAPPLIED_PAYMENT" not in codes(res) and "AMBIGUOUS_MATCH" not in codes(res)


def test_a_payer_name_two_customers_carry_is_ambiguous_when_both_have_the_amount_open() -> None:
    res = reconcile_frames(_homonyms("750.00", "750.00", "750.00"), Settings(), AS_OF)
    assert allocs(res) == {}
    assert codes(res)["AMBIGUOUS_MATCH"] == [["bank:payment:P1", "erp:invoice:IAT", "erp:invoice:IDE"]]


def test_a_payer_name_two_customers_carry_is_never_split_over_their_invoices() -> None:
    # 750 + 310 = 1060: a subset of two different customers' invoices is no batch payment of one payer
    res = reconcile_frames(_homonyms("750.00", "310.00", "1060.00"), Settings(), AS_OF)
    assert allocs(res) == {} and codes(res)["UNAPPLIED_PAYMENT"] == [["bank:payment:P1"]]


# -- Chinese payer names ------------------------------------------------------------------------------------
def test_chinese_payer_without_remittance_meets_the_erp_party_with_another_legal_form() -> None:
    acc = [{"id": "erp:account:C", "source_system": "erp", "name": "苏州嘉禾贸易有限公司", "country": "CN"},
           {"id": "erp:account:X", "source_system": "erp", "name": "广州白云电器有限公司", "country": "CN"}]
    inv = [{**invoice("I1", None, "3922.64", **NOT_DUE), "account_id": "erp:account:C"},
           {**invoice("I2", None, "3922.64", **NOT_DUE), "account_id": "erp:account:X"}]
    pay = [payment("P1", "3922.64", payer="苏州嘉禾贸易有限责任公司")]
    res = reconcile_frames(prepare(account=frame("account", acc), invoice=frame("invoice", inv),
                                   payment=frame("payment", pay)), Settings(), AS_OF)
    assert allocs(res) == {("bank:payment:P1", "erp:invoice:I1"): ("payment.customer_amount", D("3922.64"))}


def test_bank_charge_caps_from_the_configuration() -> None:
    import pytest
    from pydantic import ValidationError

    from ltc.app.config import ReconcileConfig

    s = Settings.from_config(ReconcileConfig(bank_charge_max={"eur": "25.00"}, bank_charge_rel="0.005"))
    assert s.bank_charge_max == {"EUR": D("25.00")} and s.bank_charge_rel == D("0.005")
    assert Settings.from_config(ReconcileConfig()).bank_charge_max == {}
    for bad in ({"EUR": 25.0}, {"EURO": "25"}, {"EUR": "-1"}):
        with pytest.raises(ValidationError):
            ReconcileConfig(bank_charge_max=bad)


def test_payer_name_keys_are_computed_once_per_distinct_name(monkeypatch: Any) -> None:
    """The core's payer key (a Polars expression) runs the Python normaliser at most once per distinct name, not
    per row (plain ASCII names are keyed column-wise and never reach it)."""
    import canonical.names as names
    from reconcile.stages.expr import normalize_name

    calls: list[str] = []
    real = names.normalize_name.__wrapped__  # type: ignore[attr-defined]
    monkeypatch.setattr(names, "normalize_name", lambda n: calls.append(n) or real(n))
    raw = ["ACME, Inc.", "苏州嘉禾贸易有限责任公司", None, "Ａｃｍｅ Inc"] * 5000
    got = pl.DataFrame({"payer_name": raw}).select(normalize_name("payer_name"))["payer_name"].to_list()
    assert sorted(calls) == sorted(["Ａｃｍｅ Inc", "苏州嘉禾贸易有限责任公司"])
    assert got[:4] == ["acme", real("苏州嘉禾贸易有限责任公司"), None, "acme"] and len(got) == len(raw)

"""Breaks named the way companies keep their data, not the way the engine first expected it:

- a CRM deal that keeps the ERP order number in a custom field (the order names no deal);
- a deal's figure ordered in another currency (USD 10,000 keyed as EUR 10,000): CURRENCY_MISMATCH,
  even when an FX rate exists, not AMOUNT_MISMATCH;
- an order billed twice for its total a day apart under two numbers (DUPLICATE_INVOICE, not OVER_INVOICED),
  while instalments that add up to the order are no duplicates;
- a Chinese legal name against its English name is no CUSTOMER_MISMATCH when nothing else disagrees.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
from recon_helpers import AS_OF, deal, frame, invoice, order, world

from reconcile.core import Settings, reconcile_frames
from reconcile.frames import prepare

S = Settings()


def _codes(fr, s: Settings = S) -> dict[str, list[list[str]]]:  # type: ignore[no-untyped-def]
    res = reconcile_frames(fr, s, AS_OF)
    out: dict[str, list[list[str]]] = {}
    for code, records in res.exceptions.select("code", "records").iter_rows():
        out.setdefault(code, []).append(sorted(records))
    return out


def _deal_naming(i: str, amount: str, order_ref: str | None) -> dict[str, object]:
    return dict(deal(i, amount), order_ref=order_ref)


# --- the order named from the deal's side ------------------------------------------------------------------

def test_deal_custom_field_with_the_order_number_links_the_order() -> None:
    fr = world(deal=[_deal_naming("006A", "100.00", "so-0042")],
               order=[order("SO-0042", None, "100.00")], invoice=[invoice("INV-1", "SO-0042", "100.00")])
    res = reconcile_frames(fr, S, AS_OF)
    assert res.exceptions.filter(pl.col("code").is_in(["WON_NOT_ORDERED", "ORDER_WITHOUT_DEAL"])).is_empty()
    link = res.links.filter((pl.col("to_entity") == "order") & (pl.col("to_id") == "erp:order:SO-0042")).row(
        0, named=True)
    assert link["from_id"] == "sf:deal:006A"
    assert link["rule_id"] == "order.deal_order_ref"
    assert "order_ref=so-0042" in link["evidence"]


def test_two_deals_naming_one_order_are_ambiguous_not_linked() -> None:
    fr = world(deal=[_deal_naming("006A", "100.00", "SO-0042"), _deal_naming("006B", "100.00", "SO 0042")],
               order=[order("SO-0042", None, "100.00")])
    got = _codes(fr)
    assert ["erp:order:SO-0042", "sf:deal:006A", "sf:deal:006B"] in [sorted(r) for r in got["AMBIGUOUS_MATCH"]]
    assert "AMOUNT_MISMATCH" not in got


def test_deals_naming_one_order_are_named_by_their_record_ids() -> None:
    # the amounts differ, so only the deals' field makes it ambiguous (found by tests/reconcile/test_recon_fuzz.py):
    # the exception named the deals by their CRM ids ('006A'), rows no work queue page or state could find
    fr = world(deal=[_deal_naming("006A", "100.00", "SO-0042"), _deal_naming("006B", "100.00", "SO-0042")],
               order=[order("SO-0042", None, "250.00")])
    assert _codes(fr)["AMBIGUOUS_MATCH"] == [["erp:order:SO-0042", "sf:deal:006A", "sf:deal:006B"]]


def test_the_order_own_deal_reference_wins_over_the_deal_side() -> None:
    # the order names deal 006A; another deal's stale field names the same order: the order's reference stands
    fr = world(deal=[deal("006A", "100.00"), _deal_naming("006B", "100.00", "SO-0042")],
               order=[order("SO-0042", "006A", "100.00")], invoice=[invoice("INV-1", "SO-0042", "100.00")])
    res = reconcile_frames(fr, S, AS_OF)
    link = res.links.filter(pl.col("to_id") == "erp:order:SO-0042").row(0, named=True)
    assert link["from_id"] == "sf:deal:006A"
    assert res.exceptions.filter(pl.col("code") == "WON_NOT_ORDERED")["chain_id"].to_list() == ["sf:deal:006B"]


# --- currency keyed wrong -----------------------------------------------------------------------------------

def _fx(*rates: tuple[str, str, str]) -> list[dict[str, object]]:
    return [{"base": b, "quote": q, "rate_date": date(2026, 9, 1), "rate": Decimal(r)} for b, q, r in rates]


def test_same_figure_in_another_currency_is_a_currency_mismatch_even_with_a_rate() -> None:
    fr = world(deal=[deal("D1", "10000.00", ccy="USD")], order=[order("SO1", "D1", "10000.00", ccy="EUR")],
               invoice=[invoice("I1", "SO1", "10000.00", ccy="EUR")], fx_rate=_fx(("EUR", "USD", "1.08")))
    got = _codes(fr)
    assert got.get("CURRENCY_MISMATCH") == [["erp:order:SO1", "sf:deal:D1"]]
    assert "AMOUNT_MISMATCH" not in got


def test_a_converted_amount_that_agrees_is_no_exception_and_a_different_one_is_an_amount_mismatch() -> None:
    ok = world(deal=[deal("D1", "10800.00", ccy="USD")], order=[order("SO1", "D1", "10000.00", ccy="EUR")],
               invoice=[invoice("I1", "SO1", "10000.00", ccy="EUR")], fx_rate=_fx(("EUR", "USD", "1.08")))
    assert not {"CURRENCY_MISMATCH", "AMOUNT_MISMATCH"} & set(_codes(ok))
    bad = world(deal=[deal("D1", "10800.00", ccy="USD")], order=[order("SO1", "D1", "7000.00", ccy="EUR")],
                invoice=[invoice("I1", "SO1", "7000.00", ccy="EUR")], fx_rate=_fx(("EUR", "USD", "1.08")))
    got = _codes(bad)
    assert "AMOUNT_MISMATCH" in got and "CURRENCY_MISMATCH" not in got


# --- billed twice -----------------------------------------------------------------------------------------------

def test_an_order_billed_twice_a_day_apart_is_a_duplicate_not_over_invoiced() -> None:
    fr = world(deal=[deal("D1", "500.00")], order=[order("SO1", "D1", "500.00")],
               invoice=[invoice("AR-10049", "SO1", "500.00", issue=date(2026, 9, 3)),
                        invoice("AR-10050", "SO1", "500.00", issue=date(2026, 9, 4))])
    got = _codes(fr)
    assert got.get("DUPLICATE_INVOICE") == [["erp:invoice:AR-10049", "erp:invoice:AR-10050"]]
    assert "OVER_INVOICED" not in got


def test_instalments_adding_up_to_the_order_are_no_duplicates() -> None:
    fr = world(deal=[deal("D1", "1000.00")], order=[order("SO1", "D1", "1000.00")],
               invoice=[invoice("I1", "SO1", "500.00", issue=date(2026, 9, 3)),
                        invoice("I2", "SO1", "500.00", issue=date(2026, 9, 5))])
    got = _codes(fr)
    assert "DUPLICATE_INVOICE" not in got and "OVER_INVOICED" not in got


def test_two_instalments_of_one_order_on_one_day_are_no_duplicates() -> None:
    fr = world(deal=[deal("D1", "1000.00")], order=[order("SO1", "D1", "1000.00")],
               invoice=[invoice("I1", "SO1", "500.00"), invoice("I2", "SO1", "500.00")])
    assert "DUPLICATE_INVOICE" not in _codes(fr)
    twice = world(deal=[deal("D1", "500.00")], order=[order("SO1", "D1", "500.00")],
                  invoice=[invoice("I1", "SO1", "500.00"), invoice("I2", "SO1", "500.00")])
    assert _codes(twice).get("DUPLICATE_INVOICE") == [["erp:invoice:I1", "erp:invoice:I2"]]


def test_a_second_bill_outside_the_window_is_over_invoicing() -> None:
    fr = world(deal=[deal("D1", "500.00")], order=[order("SO1", "D1", "500.00")],
               invoice=[invoice("I1", "SO1", "500.00", issue=date(2026, 9, 3)),
                        invoice("I2", "SO1", "500.00", issue=date(2026, 10, 3))])
    got = _codes(fr)
    assert "DUPLICATE_INVOICE" not in got and "OVER_INVOICED" in got
    wider = _codes(fr, Settings(duplicate_window_days=45))
    assert "DUPLICATE_INVOICE" in wider and "OVER_INVOICED" not in wider


# --- names in two scripts --------------------------------------------------------------------------------------

def _with_party(name: str, tax: str | None):  # type: ignore[no-untyped-def]
    fr = world(deal=[deal("D1", "100.00")], order=[dict(order("SO1", "D1", "100.00"), account_id="erp:account:X")],
               invoice=[dict(invoice("I1", "SO1", "100.00"), account_id="erp:account:X")])
    crm = fr.account.with_columns(pl.when(pl.col("id") == "sf:account:A")
                                  .then(pl.lit("Shenzhen Hengrui Technology Co., Ltd.")).otherwise(pl.col("name"))
                                  .alias("name"), pl.when(pl.col("id") == "sf:account:A").then(None)
                                  .otherwise(pl.col("tax_id")).alias("tax_id"))
    acct = crm.vstack(frame("account", [{"id": "erp:account:X", "source_system": "erp", "name": name,
                                         "tax_id": tax, "country": "US"}]))
    return prepare(**{**{f: getattr(fr, f) for f in fr.__dataclass_fields__}, "account": acct})


def test_a_chinese_legal_name_against_its_english_name_is_no_customer_mismatch() -> None:
    assert "CUSTOMER_MISMATCH" not in _codes(_with_party("深圳市恒瑞科技有限公司", None))


def test_two_latin_names_that_differ_are_still_a_customer_mismatch() -> None:
    assert "CUSTOMER_MISMATCH" in _codes(_with_party("Globex Trading GmbH", None))

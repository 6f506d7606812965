"""Quotes, contracts and deliveries on small hand-written frames: each rule fires on its break and only there."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
from recon_helpers import AS_OF, deal, invoice, order, world

from reconcile.core import Settings, reconcile_frames
from reconcile.kpi import compute_kpis


def quote(i: str, deal_id: str, net: str, *, status: str = "accepted", ccy: str = "USD") -> dict[str, Any]:
    return {"id": f"sf:quote:{i}", "deal_id": f"sf:deal:{deal_id}", "status": status, "currency": ccy,
            "untaxed": net, "total": net, "quote_date": date(2026, 8, 20)}


def qline(i: str, q: str, code: str | None, qty: str) -> dict[str, Any]:
    return {"id": f"sf:quote_line:{i}", "quote_id": f"sf:quote:{q}", "product_code": code, "quantity": qty}


def dline(i: str, d: str, code: str, qty: str) -> dict[str, Any]:
    return {"id": f"sf:deal_line:{i}", "deal_id": f"sf:deal:{d}", "product_code": code, "quantity": qty,
            "currency": "USD", "amount": "1"}


def contract(i: str, deal_ref: str, value: str, *, status: str = "activated") -> dict[str, Any]:
    return {"id": f"sf:contract:{i}", "number": i, "deal_ref": deal_ref, "status": status, "currency": "USD",
            "value": Decimal(value), "signed_date": date(2026, 8, 25)}


def delivery(i: str, order_no: str, out: date | None, *, state: str = "delivered", by_id: bool = True,
             planned: date | None = None) -> dict[str, Any]:
    return {"id": f"erp:delivery:{i}", "number": i, "order_id": f"erp:order:{order_no}" if by_id else None,
            "order_ref": None if by_id else f" {order_no.lower()} ", "state": state, "planned_date": planned,
            "shipped_date": out, "delivered_date": out}


def run(**tables: list[dict[str, Any]]) -> tuple[pl.DataFrame, Any]:
    fr = world(**tables)
    res = reconcile_frames(fr, Settings(), AS_OF)
    return res.exceptions, res


def codes(ex: pl.DataFrame, code: str) -> list[list[str]]:
    return ex.filter(pl.col("code") == code)["keys"].to_list()


def test_accepted_quote_vs_deal_amount_and_lines() -> None:
    ex, res = run(
        deal=[deal("D1", "100.00"), deal("D2", "200.00"), deal("D3", "300.00"), deal("D4", "400.00")],
        deal_line=[dline("L1", "D1", "P1", "2"), dline("L3", "D3", "P1", "1"), dline("L4", "D4", "P1", "1")],
        quote=[quote("Q1", "D1", "100.00"),  # matches (lines too)
               quote("Q2", "D2", "210.00"),  # amount off
               quote("Q2b", "D2", "150.00", status="rejected"),  # not accepted: never compared
               quote("Q3", "D3", "300.00"),  # lines differ (quantity)
               quote("Q4", "D4", "400.00")],  # its line has no product code: lines not compared
        quote_line=[qline("a", "Q1", "P1", "2"), qline("b", "Q3", "P1", "3"), qline("c", "Q4", None, "9")],
    )
    assert sorted(codes(ex, "QUOTE_MISMATCH")) == [["sf:quote:Q2"], ["sf:quote:Q3"]]
    row = ex.filter(pl.col("keys").list.first() == "sf:quote:Q2").row(0, named=True)
    assert row["chain_id"] == "sf:deal:D2" and row["amount"] == Decimal("210.00")
    chains = res.chains.filter(pl.col("chain_id") == "sf:deal:D2").row(0, named=True)
    assert chains["n_quotes"] == 2 and chains["accepted_quote"] == "sf:quote:Q2"


def test_quote_lines_compared_per_quote_also_when_a_quote_is_listed_twice() -> None:
    from reconcile.stages.quotes import _lines_differ

    acc = pl.DataFrame({"id": ["q1", "q2", "q3", "q4"], "chain_id": ["d1", "d2", "d3", "d4"]})
    quote_line = pl.DataFrame({"quote_id": ["q1", "q1", "q2", "q3", "q4"], "product_code": ["P1", "P2", "P1", None, "P1"],
                               "quantity": [Decimal(2), Decimal(1), Decimal(5), Decimal(1), Decimal(1)]})
    deal_line = pl.DataFrame({"deal_id": ["d1", "d1", "d1", "d2", "d3"], "product_code": ["P1", "P2", "P3", "P1", "P1"],
                              "quantity": [Decimal(2), Decimal(3), Decimal(1), Decimal(5), Decimal(1)]})
    # q1: P2 differs, P3 only on the deal; q2 agrees; q3 has an uncoded line; q4's deal has no lines
    want = {"q1": 2}
    for a in (acc, pl.concat([acc, acc.head(1)])):  # numbered quotes, and by id when one is repeated
        got = _lines_differ(a, quote_line, deal_line)
        assert dict(got.select("quote_id", "n_lines").iter_rows()) == want


def test_quote_in_another_currency_is_a_mismatch_within_tolerance_is_not() -> None:
    ex, _ = run(deal=[deal("D1", "100.00"), deal("D2", "1000.00")],
                quote=[quote("Q1", "D1", "100.00", ccy="EUR"), quote("Q2", "D2", "1000.90")])  # 0.1% tolerance
    assert codes(ex, "QUOTE_MISMATCH") == [["sf:quote:Q1"]]


def test_contract_value_vs_ordered_total() -> None:
    ex, res = run(
        deal=[deal("D1", "100.00"), deal("D2", "200.00"), deal("D3", "300.00"), deal("D4", "50.00")],
        order=[order("SO1", "D1", "100.00"), order("SO2a", "D2", "120.00"), order("SO2b", "D2", "80.00"),
               order("SO3", "D3", "300.00")],
        contract=[contract("C1", "d1", "150.00"),  # deal_ref, case-insensitive: 150 vs 100
                  contract("C2", "D2", "200.00"),  # two orders sum to it
                  contract("C3", "D3", "999.00", status="draft"),  # a draft is not compared
                  contract("C4", "D4", "50.00")],  # no order: WON_NOT_ORDERED's case, not this one
    )
    assert codes(ex, "CONTRACT_MISMATCH") == [["sf:contract:C1"]]
    row = ex.filter(pl.col("code") == "CONTRACT_MISMATCH").row(0, named=True)
    assert row["amount"] == Decimal("50.00") and set(row["records"]) == {"sf:contract:C1", "erp:order:SO1"}
    assert res.links.filter(pl.col("to_entity") == "contract").height == 4


def test_delivered_not_invoiced_after_the_grace_period() -> None:
    old, fresh = AS_OF - timedelta(days=8), AS_OF - timedelta(days=3)
    recent = AS_OF - timedelta(days=10)
    ex, res = run(
        deal=[deal(f"D{i}", "100.00", close=recent) for i in range(1, 6)],
        order=[order(f"SO{i}", f"D{i}", "100.00", od=recent) for i in range(1, 6)],
        invoice=[invoice("I3", "SO3", "100.00", issue=AS_OF - timedelta(days=2)),
                 invoice("CN4", "SO4", "10.00", kind="credit_note", issue=AS_OF - timedelta(days=2))],
        delivery=[delivery("OUT1", "SO1", old),  # 8 days out, no invoice -> break
                  delivery("OUT2", "SO2", fresh),  # within the 7-day grace
                  delivery("OUT3", "SO3", old),  # invoiced
                  delivery("OUT4", "SO4", old, by_id=False),  # found by number; a credit note is not a bill
                  delivery("OUT5", "SO5", None, state="ready")],  # not out yet
    )
    assert sorted(codes(ex, "DELIVERED_NOT_INVOICED")) == [["erp:order:SO1"], ["erp:order:SO4"]]
    assert res.links.filter((pl.col("to_entity") == "delivery") & (pl.col("to_id") == "erp:delivery:OUT4"))[
        "rule_id"].to_list() == ["delivery.order_ref"]
    assert codes(ex, "ORDERED_NOT_INVOICED") == []  # ordered 10 days ago: that grace is 30 days


def test_goods_out_long_ago_and_never_billed_is_reported_once_as_delivered_not_invoiced() -> None:
    ordered, out = AS_OF - timedelta(days=45), AS_OF - timedelta(days=43)
    ex, _ = run(
        deal=[deal("D1", "100.00", close=ordered), deal("D2", "100.00", close=ordered)],
        order=[order("SO1", "D1", "100.00", od=ordered), order("SO2", "D2", "100.00", od=ordered)],
        delivery=[delivery("OUT1", "SO1", out), delivery("OUT2", "SO2", None, state="ready")],
    )
    assert codes(ex, "DELIVERED_NOT_INVOICED") == [["erp:order:SO1"]]
    # the order whose goods did not leave is still ordered and not invoiced after 30 days
    assert codes(ex, "ORDERED_NOT_INVOICED") == [["erp:order:SO2"]]


def test_invoiced_not_delivered_with_severity_by_amount() -> None:
    issued = AS_OF - timedelta(days=20)
    ex, _ = run(
        deal=[deal("D1", "500.00"), deal("D2", "50000.00"), deal("D3", "100.00"), deal("D4", "100.00")],
        order=[order("SO1", "D1", "500.00"), order("SO2", "D2", "50000.00"), order("SO3", "D3", "100.00"),
               order("SO4", "D4", "100.00")],
        invoice=[invoice("I1", "SO1", "500.00", issue=issued), invoice("I2", "SO2", "50000.00", issue=issued),
                 invoice("I3", "SO3", "100.00", issue=issued),
                 invoice("I4", "SO4", "100.00", issue=AS_OF - timedelta(days=2))],  # within the grace
        delivery=[delivery("OUT3", "SO3", issued)],
    )
    got = {r["keys"][0]: r["severity"] for r in ex.filter(pl.col("code") == "INVOICED_NOT_DELIVERED").iter_rows(
        named=True)}
    assert got == {"erp:order:SO1": "low", "erp:order:SO2": "high"}


def test_no_delivery_data_from_a_system_means_no_invoiced_not_delivered() -> None:
    ex, _ = run(deal=[deal("D1", "500.00")], order=[order("SO1", "D1", "500.00")],
                invoice=[invoice("I1", "SO1", "500.00", issue=AS_OF - timedelta(days=60))],
                delivery=[{"id": "other:delivery:X", "order_ref": "nothing", "state": "delivered",
                           "delivered_date": AS_OF}])
    assert codes(ex, "INVOICED_NOT_DELIVERED") == []


def test_delivery_kpis_on_time_in_full_otif() -> None:
    d = AS_OF - timedelta(days=20)
    fr = world(
        deal=[deal(f"D{i}", "100.00") for i in range(1, 4)],
        order=[order(f"SO{i}", f"D{i}", "100.00") for i in range(1, 4)],
        order_line=[{"id": f"erp:order_line:{i}", "order_id": f"erp:order:SO{i}", "product_code": "P", "quantity":
                     Decimal(2)} for i in range(1, 4)],
        delivery=[delivery("A", "SO1", d, planned=d), delivery("B", "SO2", d, planned=d - timedelta(days=1)),
                  delivery("C", "SO3", d, planned=d)],
        delivery_line=[{"id": "l1", "delivery_id": "erp:delivery:A", "product_code": "P", "quantity": Decimal(2)},
                       {"id": "l2", "delivery_id": "erp:delivery:B", "product_code": "P", "quantity": Decimal(2)},
                       {"id": "l3", "delivery_id": "erp:delivery:C", "product_code": "P", "quantity": Decimal(1)}],
    )
    s = Settings()
    k = compute_kpis(fr, reconcile_frames(fr, s, AS_OF), s, AS_OF).filter(pl.col("owner").is_null())
    val = dict(zip(k["kpi"].to_list(), k["value"].to_list(), strict=False))
    # SO1 on time and in full; SO2 late (out after its planned day); SO3 short by one
    assert val["order_delivery_on_time"] == Decimal("66.6667")
    assert val["order_delivery_in_full"] == Decimal("66.6667")
    assert val["order_delivery_otif"] == Decimal("33.3333")

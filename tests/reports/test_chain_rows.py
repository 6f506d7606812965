"""The chain table's rows from what the store holds, at the edges a generated world seldom reaches: a link to
an order whose row is gone, a credit note and its refund, several quotes, a payment whose row is gone."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from reports.finance import _chain_rows, _ChainSources
from reports.links import SourceLinks
from reports.model import Record


def _row(id: str, system: str, obj: str, sid: str, **kw: Any) -> SimpleNamespace:
    return SimpleNamespace(id=id, source_system=system, source_object=obj, source_id=sid, **kw)


def _sources(**over: Any) -> _ChainSources:
    deal = _row("sf:deal:1", "sf", "Opportunity", "0061", name="Big deal", account_id="sf:account:1", owner="ann",
                stage="closed_won", close_date=date(2026, 3, 1), currency="JPY", amount=Decimal("1000.0"))
    lost = _row("sf:deal:2", "sf", "Opportunity", "0062", name=None, account_id=None, owner=None, stage="closed_lost",
                close_date=None, currency="EUR", amount=None)
    won = _row("sf:deal:3", "sf", "Opportunity", "0063", name="Won", account_id=None, owner=None, stage="closed_won",
               close_date=None, currency="EUR", amount=Decimal("5.00"))
    data = dict(
        deals={deal.id: deal, lost.id: lost, won.id: won},
        orders_of={deal.id: ["t:order:9", "t:order:1", "t:order:1"]},
        invoices_of={deal.id: ["t:invoice:2", "t:invoice:1"], "t:invoice:7": ["t:invoice:7"]},
        stages_of={(deal.id, "quote"): ["t:quote:2", "t:quote:1", "t:quote:2"], (deal.id, "contract"): ["t:c:1"]},
        stage_text={"t:quote:1": "Q1 (accepted)", "t:quote:2": "Q2 (draft)"},
        order_rows={"t:order:1": _row("t:order:1", "t", "sale.sale", "1", number=None, total=Decimal("1000"),
                                      currency="JPY", order_date=date(2026, 3, 2))},
        inv_rows={"t:invoice:1": _row("t:invoice:1", "t", "account.invoice", "1", number="INV1", kind="invoice",
                                      total=Decimal("1000"), currency="JPY", status="paid", issue_date=None),
                  "t:invoice:2": _row("t:invoice:2", "t", "account.invoice", "2", number="CN1", kind="credit_note",
                                      total=Decimal("-400"), currency="JPY", status="paid", issue_date=None),
                  "t:invoice:7": _row("t:invoice:7", "t", "account.invoice", "7", number="INV7", kind="invoice",
                                      total=Decimal("50.5"), currency="EUR", status="open", issue_date=None)},
        pay_rows={"st:payment:ch_1": _row("st:payment:ch_1", "st", "charge", "ch_1", amount=Decimal("1000"),
                                          currency="JPY", payment_date=None, payer_reference="REF 1")},
        paid_on={"t:invoice:1": Decimal("1000"), "t:invoice:2": Decimal("-400")},
        pays_on={"t:invoice:1": ["st:payment:ch_1"], "t:invoice:2": ["st:payment:re_gone"]},
        names={"sf:account:1": "Acme KK"},
        codes_of={won.id: {"B2", "A1"}},
    )
    data.update(over)
    return _ChainSources(**data)


IDS = ["sf:deal:1", "sf:deal:3", "t:invoice:7"]  # the chains shown: see the test of _chain_ids below


def test_chain_rows_at_the_edges() -> None:
    records: dict[str, Record] = {}
    rows = {r["chain_id"]: r for r in _chain_rows(_sources(), IDS, SourceLinks(), records)}
    assert list(rows) == IDS
    big = rows["sf:deal:1"]
    # an order without a number: its canonical id in the list, its source id as its record's label; JPY: 0 places
    assert big["orders"] == "t:order:1" and big["ordered"] == Decimal("1000") and str(big["ordered"]) == "1000"
    assert big["invoices"] == "INV1 CN1"
    assert big["invoiced"] == Decimal("600") and big["paid"] == Decimal("600") and big["open"] == 0
    assert big["payments"] == "st:ch_1 st:payment:re_gone"  # a payment whose row is gone: named by its id
    assert big["quotes"] == "Q1 (accepted); Q2 (draft)" and big["contract"] == "t:c:1" and big["deliveries"] == ""
    assert big["status"] == "paid" and big["customer"] == "Acme KK" and str(big["deal_amount"]) == "1000"
    assert big["record_ids"] == ["sf:deal:1", "t:order:1", "t:invoice:1", "t:invoice:2", "st:payment:ch_1"]
    assert records["t:order:1"].label == "1" and records["st:payment:ch_1"].label == "REF 1"
    assert records["sf:deal:1"].amount == Decimal("1000") and records["sf:deal:1"].status == "closed_won"
    assert rows["sf:deal:3"]["status"] == "exception" and rows["sf:deal:3"]["exceptions"] == "A1 B2"
    orphan = rows["t:invoice:7"]  # an invoice chain without a deal: no deal fields, no currency to round to
    assert orphan["deal"] is None and orphan["currency"] is None and orphan["status"] == "invoiced, unpaid"
    assert orphan["record_ids"] == ["t:invoice:7"] and str(orphan["invoiced"]) == "50.50"
    assert str(records["t:invoice:7"].amount) == "50.50"  # its own currency's two places


def test_a_link_to_an_order_whose_row_is_gone_still_counts_as_ordered() -> None:
    data = _sources(orders_of={"sf:deal:1": ["t:order:gone"]}, invoices_of={})
    row = next(r for r in _chain_rows(data, IDS, SourceLinks(), {}) if r["chain_id"] == "sf:deal:1")
    assert row["status"] == "ordered, not invoiced" and row["orders"] == "" and row["ordered"] == 0
    data = _sources(orders_of={}, invoices_of={})
    row = next(r for r in _chain_rows(data, IDS, SourceLinks(), {}) if r["chain_id"] == "sf:deal:1")
    assert row["status"] == "won, not ordered"
    data = _sources(paid_on={"t:invoice:1": Decimal("100")}, pays_on={})
    row = next(r for r in _chain_rows(data, IDS, SourceLinks(), {}) if r["chain_id"] == "sf:deal:1")
    assert row["status"] == "partly paid" and row["open"] == Decimal("500")

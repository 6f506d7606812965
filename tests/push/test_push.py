"""The ERP-agnostic push: candidate selection from the store (SQLite and PostgreSQL) and the
create / unchanged / update / conflict / error decisions, against an in-memory ERP target."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from canonical.money import Money
from canonical.store import Store
from connectors.push import (
    DEFAULT_PRODUCT_CODE,
    ErpSale,
    ErpSaleLine,
    PushAccount,
    PushConflict,
    PushError,
    PushOrder,
    push_orders,
    select_deals,
)

from .deals import put_deal, put_order


class MemoryErp:
    """An ErpTarget keeping sales in a dict, counting calls."""

    name = "erp"

    def __init__(self) -> None:
        self.sales: dict[str, ErpSale] = {}
        self.parties: dict[str, str] = {}
        self.calls: list[str] = []
        self._ids = itertools.count(1)
        self.refuse: set[str] = set()

    def find_sale_by_reference(self, reference: str) -> ErpSale | None:
        self.calls.append("find")
        return self.sales.get(reference)

    def upsert_party(self, account: PushAccount) -> str:
        self.calls.append("party")
        self.parties[account.reference] = account.name
        return account.reference

    def _sale(self, order: PushOrder, state: str, sid: int | str, number: str) -> ErpSale:
        lines = tuple(ErpSaleLine(ln.product_code, ln.quantity, ln.unit_price) for ln in order.lines)
        return ErpSale(id=sid, reference=order.reference, number=number, state=state, editable=state == "draft",
                       confirmed=state == "confirmed", currency=order.currency, lines=lines, total=order.total)

    def create_sale(self, order: PushOrder, party_id: int | str) -> ErpSale:
        self.calls.append("create")
        if order.reference in self.refuse:
            raise PushError(f"ERP refused {order.reference}")
        n = next(self._ids)
        self.sales[order.reference] = self._sale(order, "draft", n, f"SO{n}")
        return self.sales[order.reference]

    def update_draft_sale(self, sale: ErpSale, order: PushOrder, party_id: int | str) -> ErpSale:
        self.calls.append("update")
        self.sales[order.reference] = self._sale(order, "draft", sale.id, sale.number or "")
        return self.sales[order.reference]

    def confirm(self, sale: ErpSale) -> ErpSale:
        self.calls.append("confirm")
        assert sale.reference is not None
        self.sales[sale.reference] = replace(sale, state="confirmed", editable=False, confirmed=True)
        return self.sales[sale.reference]


def test_select_deals_reads_closed_won_deals_with_lines_and_account(store: Store) -> None:
    put_deal(store, "D1", [("SKU-1", "Widget", "3", "12.50"), (None, "Setup fee", "1", "99.99")])
    put_deal(store, "D2", [("SKU-1", "Widget", "1", "12.50")], stage="negotiation")
    orders, rejected = select_deals(store, "erp")
    assert rejected == []
    assert [o.reference for o in orders] == ["D1"]
    (order,) = orders
    assert order.account == PushAccount("ACC-D1", "ACME Corp", "billing@acc-d1.test")
    assert [(ln.product_code, ln.quantity, ln.unit_price) for ln in order.lines] == [
        ("SKU-1", Decimal("3"), Decimal("12.50")), (DEFAULT_PRODUCT_CODE, Decimal("1"), Decimal("99.99"))]
    assert order.total == Money.of("137.49", "EUR")


def test_deals_with_a_synced_order_are_skipped_unless_changed_since(store: Store) -> None:
    t0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
    put_deal(store, "D1", [("A", "a", "1", "10")], updated=t0)
    put_deal(store, "D2", [("A", "a", "1", "10")], updated=t0 + timedelta(hours=2))
    put_deal(store, "D3", [("A", "a", "1", "10")], updated=t0)
    put_order(store, "erp", "D1", updated=t0 + timedelta(hours=1))  # order newer than the deal
    put_order(store, "erp", "D2", updated=t0 + timedelta(hours=1))  # deal edited after the order
    put_order(store, "other-erp", "D3", updated=t0 + timedelta(hours=1))  # another ERP's order
    orders, _ = select_deals(store, "erp")
    assert sorted(o.reference for o in orders) == ["D2", "D3"]


def test_deal_without_lines_becomes_one_line_of_its_amount_and_bad_deals_are_reported(store: Store) -> None:
    put_deal(store, "D1", [], amount="1500.00", currency="USD")
    put_deal(store, "D2", [], amount="0")
    put_deal(store, "D3", [("A", "a", "3", "0")], amount="10")
    with store.engine.begin() as conn:  # a line whose amount is not quantity x an exact price
        from canonical import tables
        dl = tables.table_for("deal_line")
        conn.execute(dl.update().where(dl.c.deal_id == "salesforce:deal:D3").values(amount=Decimal("10")))
    orders, rejected = select_deals(store, "erp")
    assert [(o.reference, o.lines[0].product_code, o.lines[0].unit_price, o.currency) for o in orders] == [
        ("D1", DEFAULT_PRODUCT_CODE, Decimal("1500.00"), "USD")]
    reasons = {r.reference: r.message for r in rejected}
    assert "no lines and no amount" in (reasons["D2"] or "")
    assert "not an exact unit price" in (reasons["D3"] or "")
    assert all(r.action == "error" for r in rejected)


def test_push_create_then_repush_is_unchanged(store: Store) -> None:
    put_deal(store, "D1", [("SKU-1", "Widget", "2", "10.00")])
    erp = MemoryErp()
    first = push_orders(store, erp)
    assert [(r.action, r.done, r.sale_number, r.sale_state) for r in first.results] == [
        ("create", True, "SO1", "confirmed")]
    second = push_orders(store, erp)
    assert [(r.action, r.done) for r in second.results] == [("unchanged", False)]
    assert erp.calls.count("create") == 1 and len(erp.sales) == 1


def test_dry_run_lists_without_writing(store: Store) -> None:
    put_deal(store, "D1", [("SKU-1", "Widget", "2", "10.00")])
    erp = MemoryErp()
    report = push_orders(store, erp, dry_run=True)
    assert [(r.action, r.done, r.amount) for r in report.results] == [("create", False, Money.of("20.00", "EUR"))]
    assert erp.sales == {} and set(erp.calls) == {"find"}
    assert report.totals("create") == {"EUR": Money.of("20.00", "EUR")}


def test_changed_deal_updates_a_draft_and_conflicts_on_a_confirmed_sale(store: Store) -> None:
    put_deal(store, "D1", [("SKU-1", "Widget", "2", "10.00")])
    put_deal(store, "D2", [("SKU-1", "Widget", "2", "10.00")])
    erp = MemoryErp()
    push_orders(store, erp, confirm=False, deal_ids=["salesforce:deal:D1"])
    push_orders(store, erp, deal_ids=["salesforce:deal:D2"])
    put_deal(store, "D1", [("SKU-1", "Widget", "3", "10.00")])
    put_deal(store, "D2", [("SKU-1", "Widget", "2", "9.00")])
    report = push_orders(store, erp, confirm=False)
    by_ref = {r.reference: r for r in report.results}
    assert by_ref["D1"].action == "update" and by_ref["D1"].done
    assert erp.sales["D1"].lines == (ErpSaleLine("SKU-1", Decimal("3"), Decimal("10.00")),)
    assert by_ref["D2"].action == "conflict" and not by_ref["D2"].done
    (conflict,) = report.conflicts
    assert isinstance(conflict, PushConflict) and conflict.sale_number == "SO2"
    assert "SKU-1 x2 @ 10" in str(conflict) and "SKU-1 x2 @ 9" in str(conflict)
    assert erp.sales["D2"].lines == (ErpSaleLine("SKU-1", Decimal("2"), Decimal("10.00")),)  # untouched


def test_an_erp_refusal_is_reported_and_the_run_goes_on(store: Store) -> None:
    put_deal(store, "D1", [("A", "a", "1", "5")])
    put_deal(store, "D2", [("A", "a", "1", "6")])
    erp = MemoryErp()
    erp.refuse.add("D1")
    report = push_orders(store, erp)
    assert {r.reference: r.action for r in report.results} == {"D1": "error", "D2": "create"}
    assert report.failed[0].message == "ERP refused D1"

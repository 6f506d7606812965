"""Canonical CRM deals written straight into a store, for push tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

from canonical import tables
from canonical.model import Account, Deal, DealLine, Order, to_row
from canonical.money import Money
from canonical.store import Store

CRM = "salesforce"


def put_deal(
    store: Store,
    ref: str,
    lines: Sequence[tuple[str | None, str, str, str]],  # (product code, name, quantity, unit price)
    *,
    currency: str = "EUR",
    stage: str = "closed_won",
    account_ref: str | None = None,
    account_name: str = "ACME Corp",
    updated: datetime | None = None,
    amount: str | None = None,
) -> str:
    """Upsert deal ``ref`` (with its account and lines) and return its canonical id."""
    account_ref = account_ref or f"ACC-{ref}"
    updated = updated or datetime.now(UTC)
    acct = Account(id=f"{CRM}:account:{account_ref}", source_system=CRM, source_object="Account",
                   source_id=account_ref, name=account_name, email=f"billing@{account_ref.lower()}.test")
    total = sum((Decimal(q) * Decimal(p) for _, _, q, p in lines), Decimal(0))
    deal = Deal(id=f"{CRM}:deal:{ref}", source_system=CRM, source_object="Opportunity", source_id=ref,
                account_id=acct.id, name=f"Deal {ref}", stage=stage, currency=currency,
                amount=Money.of(amount if amount is not None else total, currency),
                close_date=date.today(), source_updated_at=updated)
    rows = [
        DealLine(id=f"{CRM}:deal_line:{ref}-{i}", source_system=CRM, source_object="OpportunityLineItem",
                 source_id=f"{ref}-{i}", deal_id=deal.id, product_code=code, product_name=name,
                 quantity=Decimal(q), currency=currency, unit_price=Money.of(p, currency),
                 amount=Money.of(Decimal(q) * Decimal(p), currency))
        for i, (code, name, q, p) in enumerate(lines, start=1)
    ]
    with store.engine.begin() as conn:
        line_table = tables.table_for("deal_line")
        conn.execute(line_table.delete().where(line_table.c.deal_id == deal.id))
        store.upsert_entities(conn, "account", [to_row(acct)])
        store.upsert_entities(conn, "deal", [to_row(deal)])
        if rows:
            store.upsert_entities(conn, "deal_line", [to_row(r) for r in rows])
    return deal.id


def put_order(store: Store, erp: str, deal_ref: str, *, updated: datetime, state: str = "processing") -> None:
    """An ERP order already synced into the store for ``deal_ref``."""
    order = Order(id=f"{erp}:order:{deal_ref}", source_system=erp, source_object="sale.sale",
                  source_id=f"S-{deal_ref}", deal_ref=deal_ref, state=state, currency="EUR",
                  total=Money.of("1", "EUR"), source_updated_at=updated)
    with store.engine.begin() as conn:
        store.upsert_entities(conn, "order", [to_row(order)])

"""The stage's bulk canonical upsert (driver-level; column arrays on PostgreSQL), on both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import sqlalchemy as sa

from canonical import model, tables
from canonical.money import Money
from canonical.store import Store


def _deal(i: int, name: str, amount: str | None) -> dict[str, object]:
    row = model.to_row(model.Deal(
        id=model.canonical_id("sf", "deal", f"006{i}"), source_system="sf", source_object="Opportunity",
        source_id=f"006{i}", source_updated_at=datetime(2026, 11, 1, 12, i % 60, tzinfo=UTC), name=name,
        amount=None if amount is None else Money.of(amount, "EUR"), close_date=date(2026, 10, 1 + i % 28),
        attributes={"n": i},
    ))
    row["raw_id"] = i + 1
    return row


def test_repeated_id_in_one_call_keeps_the_last_version_and_values_are_exact(store: Store) -> None:
    rows = [_deal(i, f"deal {i}", None if i % 3 == 0 else f"{i}.10") for i in range(1200)]
    rows.append(_deal(5, "deal 5, second version", "0.01"))
    with store.engine.begin() as conn:
        assert store.upsert_entities(conn, "deal", rows) == 1201
    deal = tables.table_for("deal")
    with store.engine.connect() as conn:
        got = {r.id: r for r in conn.execute(sa.select(deal))}
        links = conn.execute(sa.select(sa.func.count()).select_from(tables.lineage)).scalar_one()
    assert len(got) == 1200 and links == 1200
    five = got[model.canonical_id("sf", "deal", "0065")]
    assert five.name == "deal 5, second version" and five.amount == Decimal("0.01")
    seven = got[model.canonical_id("sf", "deal", "0067")]
    assert seven.amount == Decimal("7.10") and str(seven.amount) == "7.10"
    assert got[model.canonical_id("sf", "deal", "0063")].amount is None
    assert seven.close_date == date(2026, 10, 8) and seven.attributes == {"n": 7}
    assert seven.source_updated_at == datetime(2026, 11, 1, 12, 7, tzinfo=UTC)

"""Amounts sent as text are never silently scaled, and absurd amounts never pass mapping (issue 13).

Without a configured ``decimal_separator`` a comma that could be a decimal comma is quarantined
with its reason ("12,50" used to become 1250); with one, the locale is read. An amount beyond the
per-currency sane bound (1e308, 1.23e29) is quarantined, so reconciliation and the reports never
see it."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from canonical import tables
from canonical.money import sane_bound
from canonical.store import RawRecord, Store
from ltc.app.config import Config, SourceConfig
from mappings.coerce import CoercionError, parse_amount_text
from mappings.engine import run_mapping
from tests.mappings.mapping_fixtures import FIXTURES


@pytest.mark.parametrize(("text", "sep", "expected"), [
    ("1500.50", None, "1500.50"), ("1,250.00", None, "1250.00"), ("1,250,000", None, "1250000"),
    ("-1,234.5", None, "-1234.5"), ("12,50", ",", "12.50"), ("1.250,00", ",", "1250.00"),
    ("1 234,56", ",", "1234.56"), ("1.250", ",", "1250"), ("1,250", ".", "1250"), ("1,234.56", ".", "1234.56"),
    ("12,50", None, None), ("1,250", None, None), ("1.250,00", None, None), ("12,50", ".", None),
    ("1250.50", ",", None), ("12,5,0", None, None), ("NaN", None, None), ("", None, None),
])
def test_amount_text(text: str, sep: str | None, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(CoercionError):
            parse_amount_text(text, sep)
    else:
        assert parse_amount_text(text, sep) == Decimal(expected)
        assert str(parse_amount_text(text, sep)) == expected  # exact, not just equal


def _deal(i: int, amount: Any, currency: str = "EUR") -> RawRecord:
    base = json.loads((FIXTURES / "hubspot" / "deals.json").read_text(), parse_float=Decimal)[0]
    rec = copy.deepcopy(base)
    rec["id"] = rec["properties"]["hs_object_id"] = str(9100 + i)
    rec["properties"]["amount"] = amount
    rec["properties"]["deal_currency_code"] = currency
    return RawRecord("deals", rec["id"], rec)


def _amounts(store: Store) -> dict[str, Decimal | None]:
    table = tables.table_for("deal")
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(table.c.source_id, table.c.amount)).all())  # type: ignore[arg-type]


def _reasons(store: Store) -> dict[str, str]:
    return {q["source_id"]: q["reason"] for q in store.quarantined() if q["stage"] == "map" and not q["resolved_at"]}


AMOUNTS: list[tuple[Any, str]] = [
    ("12,50", "EUR"), ("1,250", "EUR"), ("1,250.00", "EUR"), ("1e308", "EUR"), ("1.23e29", "USD"),
    (str(sane_bound("EUR") - 1), "EUR"), (str(sane_bound("EUR")), "EUR"), (str(10**17), "VND"),
    (Decimal("-1E+16"), "EUR"), (10**30, "JPY"),
]


def test_ambiguous_and_absurd_amounts_are_quarantined_with_their_reason(store: Store) -> None:
    store.commit_page("hs", "deals", [_deal(i, a, c) for i, (a, c) in enumerate(AMOUNTS)], None)
    run_mapping(store, config=Config(sources={"hs": SourceConfig(kind="hubspot")}))
    got, why = _amounts(store), _reasons(store)
    assert got == {"9102": Decimal("1250.00"), "9105": sane_bound("EUR") - 1, "9107": Decimal(10**17)}
    assert "ambiguous amount text '12,50'" in why["9100"] and "decimal_separator" in why["9100"]
    assert "ambiguous amount text '1,250'" in why["9101"]
    for sid in ("9103", "9104", "9106", "9108", "9109"):
        assert "beyond the sane bound" in why[sid], (sid, why.get(sid))


def test_a_configured_decimal_comma_is_read(store: Store) -> None:
    store.commit_page("hs", "deals", [_deal(0, "12,50"), _deal(1, "1.250,00"), _deal(2, "1250.50")], None)
    run_mapping(store, config=Config(sources={"hs": SourceConfig(kind="hubspot", decimal_separator=",")}))
    assert _amounts(store) == {"9100": Decimal("12.50"), "9101": Decimal("1250.00")}
    assert "does not read with decimal_separator ','" in _reasons(store)["9102"]

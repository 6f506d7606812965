"""The report's amounts (reports.finance._money): exact, with the currency's decimals where that loses nothing."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest

from reports.finance import _money


@pytest.mark.parametrize(("value", "currency", "shown"), [
    (Decimal("63095.1100"), "USD", "63095.11"), (Decimal("1791.2043"), "USD", "1791.2043"),
    (Decimal("1.23E+29"), "USD", "123000000000000000000000000000.00"), (Decimal("100"), "JPY", "100"), (Decimal("100.000"), "KWD", "100.000"),
    (Decimal("5.5"), "JPY", "5.5"), (Decimal("7.10"), None, "7.10"), (Decimal("7.1"), "bogus", "7.10"),
    ("12.340", "EUR", "12.34"), (3, "USD", "3.00"), (Decimal("NaN"), "USD", "NaN"),
    (Decimal("123456789012345678901234567.891"), "USD", "123456789012345678901234567.891"),
    (Decimal("1E+40"), "USD", "1" + "0" * 40 + ".00"),
])
def test_amounts_keep_every_digit(value: object, currency: str | None, shown: str) -> None:
    assert str(_money(value, currency)) == shown
    assert _money(None, currency) is None


def test_amounts_do_not_depend_on_the_callers_decimal_context() -> None:
    with decimal.localcontext(decimal.Context(prec=5, rounding=decimal.ROUND_DOWN, traps=[decimal.Inexact])):
        assert str(_money(Decimal("63095.1100"), "USD")) == "63095.11"
        assert str(_money(Decimal("1791.2043"), "USD")) == "1791.2043"

"""Money: exact, currency-aware, float-free."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canonical.money import (
    MINOR_UNITS,
    STRIPE_THREE_DECIMAL,
    STRIPE_ZERO_DECIMAL,
    CurrencyMismatch,
    Money,
    UnknownCurrency,
    minor_units,
    sum_money,
)

CURRENCIES = sorted(MINOR_UNITS)
minor_ints = st.integers(min_value=-(10**15), max_value=10**15)


@given(units=minor_ints, currency=st.sampled_from(CURRENCIES))
def test_minor_unit_round_trip_for_every_currency(units: int, currency: str) -> None:
    m = Money.from_minor(units, currency)
    assert m.to_minor() == units
    assert m.amount.as_tuple().exponent == -MINOR_UNITS[currency]


@given(units=minor_ints, currency=st.sampled_from(sorted(STRIPE_ZERO_DECIMAL | STRIPE_THREE_DECIMAL | {"USD", "EUR", "ISK"})))
def test_stripe_convention_round_trip(units: int, currency: str) -> None:
    m = Money.from_minor(units, currency.lower(), convention="stripe")
    assert m.to_minor(convention="stripe") == units
    assert m.currency == currency


def test_known_minor_units() -> None:
    assert Money.from_minor(1050, "usd") == Money.of("10.50", "USD")
    assert Money.from_minor(1050, "JPY") == Money.of("1050", "JPY")
    assert Money.from_minor(1050, "KWD") == Money.of("1.050", "KWD")
    assert minor_units("VND") == 0 and minor_units("KRW") == 0 and minor_units("BHD") == 3
    assert minor_units("JOD") == 3 and minor_units("OMR") == 3 and minor_units("TND") == 3
    # Stripe sends ISK in hundredths although ISO gives it no minor unit
    assert Money.from_minor(10000, "isk", convention="stripe") == Money.of("100", "ISK")
    assert Money.from_minor(10000, "isk") == Money.of("10000", "ISK")


@given(
    a=minor_ints,
    b=minor_ints,
    pair=st.lists(st.sampled_from(CURRENCIES), min_size=2, max_size=2, unique=True),
)
def test_mixed_currency_arithmetic_is_refused(a: int, b: int, pair: list[str]) -> None:
    x, y = Money.from_minor(a, pair[0]), Money.from_minor(b, pair[1])
    for op in (lambda: x + y, lambda: x - y, lambda: x < y, lambda: x >= y):
        with pytest.raises(CurrencyMismatch):
            op()


@given(value=st.floats(allow_nan=True, allow_infinity=True), currency=st.sampled_from(CURRENCIES))
def test_no_float_is_accepted(value: float, currency: str) -> None:
    with pytest.raises(TypeError):
        Money.of(value, currency)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(value, currency)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money.of("1", currency) * value  # type: ignore[operator]


def test_from_minor_refuses_non_int() -> None:
    with pytest.raises(TypeError):
        Money.from_minor(10.0, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money.from_minor(True, "USD")


@given(
    amounts=st.lists(st.decimals(min_value=-10**9, max_value=10**9, places=2, allow_nan=False), max_size=30)
)
def test_sum_is_exact(amounts: list[Decimal]) -> None:
    total = sum_money([Money(a, "EUR") for a in amounts], "EUR")
    assert total.amount == sum(amounts, Decimal(0))


def test_rounding_is_half_even_and_only_when_asked() -> None:
    price = Money.of("0.125", "USD")
    assert price.amount == Decimal("0.125")  # kept as given
    assert price.rounded() == Money.of("0.12", "USD")
    assert Money.of("0.135", "USD").rounded() == Money.of("0.14", "USD")
    assert Money.of("2.5", "JPY").rounded() == Money.of("2", "JPY")
    with pytest.raises(ValueError, match="round it first"):
        price.to_minor()


def test_unknown_currency_and_bad_strings() -> None:
    with pytest.raises(UnknownCurrency):
        Money.of("1", "XYZ")
    with pytest.raises(ValueError):
        Money.of("1,00", "EUR")
    with pytest.raises(ValueError):
        Money.of("NaN", "EUR")


def test_amounts_multiply_by_decimal_not_money() -> None:
    assert Money.of("19.99", "EUR") * 3 == Money.of("59.97", "EUR")
    assert Decimal("0.5") * Money.of("3", "EUR") == Money.of("1.5", "EUR")
    with pytest.raises(TypeError):
        Money.of("1", "EUR") * Money.of("1", "EUR")  # type: ignore[operator]

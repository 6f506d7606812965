"""Numbers, money and dates as a reader of the report's locale expects them (Babel, CLDR data).

``Formatter(locale)`` formats money with the currency's symbol, separators and decimals
(``$27,383,502.44`` in en_US, ``US$27,383,502.44`` in zh_Hans_CN, ``27.383.502,44 $`` in de_DE).
It never fails on data: amounts beyond Decimal's default 28 digits (``1.23E+29``) are formatted in a
wider context, absurd exponents fall back to scientific text, a missing amount is an em dash, and a
code Babel does not know is written after the number.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import (
    format_compact_currency,
    format_currency,
    format_decimal,
    format_percent,
    get_currency_symbol,
)

from reports.cells import clean_text

DASH = "—"
_MAX_DIGITS = 400  # past this many integer digits an amount is written in scientific notation
_MONEY_MEMO = 100_000  # amounts a formatter remembers the text of


def _context(value: Decimal) -> decimal.Context:
    """A context wide enough to quantize ``value`` to cents without InvalidOperation."""
    digits = max(value.adjusted(), 0) + 1 if value.is_finite() else 1
    return decimal.Context(prec=max(40, digits + 10), Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def _sane(value: Decimal) -> bool:
    return value.is_finite() and value.adjusted() < _MAX_DIGITS


@dataclass(frozen=True)
class Formatter:
    locale: str = "en_US"
    _loc: Locale = field(init=False, repr=False, compare=False)
    # money() by (amount's text, currency): a report writes the same amounts many times over (a chain's
    # records, its totals, its exceptions), and Babel's formatting is the report's largest cost
    _money: dict[tuple[str, str | None], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_loc", Locale.parse(self.locale))
        object.__setattr__(self, "_money", {})

    @property
    def language(self) -> str:
        return self._loc.language

    def money(self, amount: Any, currency: str | None) -> str:
        """An amount with its currency, rounded to the currency's decimals for display."""
        if amount is None:
            return DASH
        key = (str(amount), currency)  # the text, not the value: Decimal("-0") == 0 is written "-$0.00"
        known = self._money.get(key)
        if known is None:
            if len(self._money) >= _MONEY_MEMO:
                self._money.clear()
            known = self._money[key] = self._format_money(amount, currency)
        return known

    def _format_money(self, amount: Any, currency: str | None) -> str:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
        if not _sane(value):
            return f"{value:E} {currency or ''}".strip()
        with decimal.localcontext(_context(value)):
            if not currency:
                return format_decimal(value, format="#,##0.00", locale=self._loc)
            try:
                return format_currency(value, currency, locale=self._loc)
            except Exception:  # an unknown code: the number, then the code as given
                return f"{format_decimal(value, format='#,##0.00', locale=self._loc)} {clean_text(str(currency))}"

    def compact_money(self, amount: Decimal, currency: str | None) -> str:
        """A short amount for chart axes and bar labels (``$1.2M``, ``US$123.5万``)."""
        if not _sane(amount) or abs(amount) >= Decimal("1e15"):
            return self.money(amount, currency)
        with decimal.localcontext(_context(amount)):
            if abs(amount) < 1000:
                if not currency:
                    return self.number(amount, 0)
                return format_currency(amount, currency, format="¤#,##0", currency_digits=False, locale=self._loc)
            try:
                return format_compact_currency(amount, currency or "XXX", locale=self._loc, fraction_digits=1)
            except Exception:
                return self.money(amount, currency)

    def number(self, value: Any, decimals: int = 0) -> str:
        if value is None:
            return DASH
        v = value if isinstance(value, Decimal) else Decimal(str(value))
        if not _sane(v):
            return f"{v:E}"
        fmt = "#,##0" + ("." + "0" * decimals if decimals else "")
        with decimal.localcontext(_context(v)):
            return format_decimal(v, format=fmt, locale=self._loc)

    def percent(self, value: Any) -> str:
        """A value already in percent (``93.5`` -> ``93.5%``)."""
        if value is None:
            return DASH
        v = Decimal(str(value))
        if not _sane(v):
            return f"{v:E}%"
        with decimal.localcontext(_context(v)):
            return format_percent(v / 100, format="#,##0.0%", locale=self._loc)

    def date(self, value: date | datetime | None) -> str:
        if value is None:
            return DASH
        if isinstance(value, datetime):
            return format_datetime(value, format="medium", locale=self._loc)
        return format_date(value, format="medium", locale=self._loc)

    def currency_symbol(self, currency: str) -> str:
        try:
            return get_currency_symbol(currency, locale=self._loc)
        except Exception:
            return currency

"""Money: an exact ``Decimal`` amount with its ISO 4217 currency.

Rules this module enforces, so that nothing downstream has to remember them:

* No float ever becomes money. ``Money.of(0.1, "USD")`` raises ``TypeError``.
* Arithmetic only within one currency; mixing raises :class:`CurrencyMismatch`.
  Converting between currencies is an explicit, dated FX step elsewhere.
* Each currency knows its minor units (JPY 0, USD 2, KWD 3). Integer minor units
  (Stripe's ``amount``) convert exactly in both directions.
* Rounding happens only where a caller names it (:meth:`Money.rounded`), half-even
  by default (banker's rounding, as accounting systems do).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Literal

# ISO 4217 minor units, current codes. Anything not listed here is refused.
_ZERO = (
    "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF "
    "XAG XAU XBA XBB XBC XBD XDR XPD XPT XSU XTS XUA XXX"
)
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
    "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB "
    "EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS "
    "KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN "
    "MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD "
    "SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD "
    "TZS UAH USD USN UYU UZS VES VED WST XCD XCG YER ZAR ZMW ZWG ZWL"
)

MINOR_UNITS: dict[str, int] = {
    **{c: 2 for c in _TWO.split()},
    **{c: 0 for c in _ZERO.split()},
    **{c: 3 for c in _THREE.split()},
    **{c: 4 for c in _FOUR.split()},
}
# Stripe's documented deviations from ISO 4217 (docs.stripe.com/currencies):
# zero-decimal list includes MGA; ISK is sent as two-decimal for backward compatibility
# (amount must be divisible by 100); HUF and TWD are two-decimal (as ISO); UGX zero-decimal.
STRIPE_ZERO_DECIMAL = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]
)
STRIPE_THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
_STRIPE_OVERRIDES: dict[str, int] = {"ISK": 2, **{c: 0 for c in STRIPE_ZERO_DECIMAL}}

Convention = Literal["iso4217", "stripe"]

# A sane bound on one amount, per currency: no invoice, order or payment is a quadrillion of
# anything. Currencies with thousands of units to the dollar get three more digits. Amounts at or
# beyond it (a 1e308 or 1.23e29 in a payload) are quarantined at mapping, so reconciliation
# (Decimal128, 38 digits with 4 decimals) and the reports only ever see amounts that fit, sums
# and FX conversions included.
SANE_BOUND = Decimal(10) ** 15
_HIGH_NOMINAL = frozenset(
    ["BIF", "CDF", "COP", "GNF", "IDR", "IQD", "IRR", "KHR", "KPW", "KRW", "LAK", "LBP", "MGA", "MMK", "MNT", "PYG", "SLL", "SYP", "TZS", "UGX", "UZS", "VES", "VND"]
)
HIGH_NOMINAL_BOUND = Decimal(10) ** 18


MAX_SCALE = 12  # decimal places: an amount with more (1E-40) is not money but a corrupt value


def sane_bound(currency: str) -> Decimal:
    """The magnitude an amount in ``currency`` stays below (see :data:`SANE_BOUND`)."""
    return HIGH_NOMINAL_BOUND if currency in _HIGH_NOMINAL else SANE_BOUND


def insane_amount(value: Decimal, currency: str, bound: Decimal | None = None) -> str | None:
    """Why ``value`` is no sane amount in ``currency`` (not finite, at or beyond :func:`sane_bound`, more
    than :data:`MAX_SCALE` decimal places), or None. ``bound``: the currency's bound, if looked up already."""
    b = sane_bound(currency) if bound is None else bound
    if not value.is_finite():
        return f"amount {value} {currency} is not a finite number"
    if not -b < value < b:
        return f"amount {value} {currency} is beyond the sane bound of {b:,} for this currency (a corrupt or unit-mixed value?)"
    if value.as_tuple().exponent < -MAX_SCALE:  # type: ignore[operator]
        return f"amount {value} {currency} has more than {MAX_SCALE} decimal places (a corrupt value?)"
    return None


class CurrencyMismatch(ValueError):
    """Two amounts in different currencies were combined."""


class UnknownCurrency(ValueError):
    """A code that is not an ISO 4217 currency."""


def normalize_currency(code: str) -> str:
    """Upper-case an ISO code (Stripe sends ``"eur"``) and check it is known."""
    if not isinstance(code, str):
        raise UnknownCurrency(f"currency code must be a string, got {type(code).__name__}")
    up = code.strip().upper()
    if up not in MINOR_UNITS:
        raise UnknownCurrency(f"unknown ISO 4217 currency code {code!r}")
    return up


def minor_units(code: str, convention: Convention = "iso4217") -> int:
    """Number of decimal places of the currency's minor unit."""
    up = normalize_currency(code)
    if convention == "stripe" and up in _STRIPE_OVERRIDES:
        return _STRIPE_OVERRIDES[up]
    return MINOR_UNITS[up]


def to_decimal(value: Decimal | int | str) -> Decimal:
    """Exact conversion of an amount; floats (and bools) are refused, not approximated."""
    if isinstance(value, (bool, float)):
        raise TypeError(f"money amounts are never floats: got {value!r}; pass a str or Decimal")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"money amount must be finite, got {value}")
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            dec = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not a decimal amount: {value!r}") from None
        if not dec.is_finite():
            raise ValueError(f"money amount must be finite, got {value!r}")
        return dec
    raise TypeError(f"cannot make money from {type(value).__name__}: {value!r}")


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in one currency. Construct with :meth:`of` or :meth:`from_minor`."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal) or isinstance(self.amount, bool):
            raise TypeError(
                f"Money.amount must be a Decimal, got {type(self.amount).__name__}; use Money.of()"
            )
        if not self.amount.is_finite():
            raise ValueError(f"money amount must be finite, got {self.amount}")
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str) -> Money:
        return cls(to_decimal(amount), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def from_minor(cls, units: int, currency: str, convention: Convention = "iso4217") -> Money:
        """From integer minor units (``1050`` USD -> 10.50), exactly."""
        if isinstance(units, bool) or not isinstance(units, int):
            raise TypeError(f"minor units must be an int, got {type(units).__name__}: {units!r}")
        exp = minor_units(currency, convention)
        return cls(Decimal(units).scaleb(-exp), currency)

    # --- conversion ---------------------------------------------------------------------------
    def to_minor(self, convention: Convention = "iso4217") -> int:
        """Exact integer minor units; raises if the amount has sub-minor precision."""
        exp = minor_units(self.currency, convention)
        scaled = self.amount.scaleb(exp)
        if scaled != scaled.to_integral_value():
            raise ValueError(
                f"{self} has more precision than {self.currency}'s {exp} decimal places; round it first"
            )
        return int(scaled)

    def rounded(self, rounding: str = ROUND_HALF_EVEN) -> Money:
        """Round to the currency's minor unit (a named rounding point)."""
        exp = MINOR_UNITS[self.currency]
        return Money(self.amount.quantize(Decimal(1).scaleb(-exp), rounding=rounding), self.currency)

    # --- arithmetic within one currency ---------------------------------------------------------
    def _same(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"can only combine Money with Money, got {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self.amount + self._same(other).amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.amount - self._same(other).amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.amount), self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        if isinstance(factor, Money):
            raise TypeError("cannot multiply Money by Money")
        return Money(self.amount * to_decimal(factor), self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        return self.amount < self._same(other).amount

    def __le__(self, other: Money) -> bool:
        return self.amount <= self._same(other).amount

    def __gt__(self, other: Money) -> bool:
        return self.amount > self._same(other).amount

    def __ge__(self, other: Money) -> bool:
        return self.amount >= self._same(other).amount

    def __bool__(self) -> bool:
        return bool(self.amount)

    def is_zero(self) -> bool:
        return self.amount == 0

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def sum_money(items: list[Money] | tuple[Money, ...], currency: str) -> Money:
    """Sum amounts of one currency; an empty sum is zero in ``currency``."""
    total = Money.zero(currency)
    for item in items:
        total = total + item
    return total

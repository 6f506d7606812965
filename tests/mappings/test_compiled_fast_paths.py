"""The generated mapping code's shortcuts decide exactly as the general checks they stand for."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings import compiler
from mappings.coerce import COERCIONS
from mappings.compiler import MAX_SCALE, compile_mapping
from mappings.spec import Node


def _over_scale(v: Decimal) -> bool:
    env: dict[str, Any] = {"MAX_SCALE": MAX_SCALE}
    return bool(eval(compiler._OVER_SCALE, env, {"v": v}))  # our own expression


@pytest.mark.parametrize("text", [
    "1500.50", "0", "-0", "-12.5", "1.000000000000", "1.0000000000000", "0.000000000001", "0.0000000000001",
    "1E-40", "1E-12", "1E-13", "1E+5", "12345678901234567890", "1234567890123.5", "-0.00000000000010",
    "123456789012345678901234567890.123", "0E-13", "0E-12", "5E+2",
])
def test_the_scale_check_agrees_with_the_exponent(text: str) -> None:
    v = Decimal(text)
    assert _over_scale(v) == (v.as_tuple().exponent < -MAX_SCALE)  # type: ignore[operator]


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_the_scale_check_agrees_with_the_exponent_for_any_decimal(v: Decimal) -> None:
    assert _over_scale(v) == (v.as_tuple().exponent < -MAX_SCALE)  # type: ignore[operator]


def _plan(fields: dict[str, Any]) -> Any:
    mapping = Node({"objects": Node({"charge": Node({"entity": "payment", "fields": Node(fields)})})})
    return compile_mapping(mapping, "t")["charge"][0]


def test_minor_units_of_a_known_exponent_map_and_are_bounded() -> None:
    plan = _plan({"kind": {"const": "payment"}, "currency": "currency",
                  "amount": {"from": "amount", "coerce": "money_minor"}})
    for units, currency, amount in [(150050, "usd", Decimal("1500.50")), (7, "jpy", Decimal("7")),
                                    (1234, "kwd", Decimal("1.234")), (0, "eur", Decimal("0.00"))]:
        out: list[Any] = []
        plan.run({"currency": currency, "amount": units}, None, "c1", 1, None, out)
        got = out[0][1]["amount"]
        assert got == amount and got.as_tuple() == amount.as_tuple()
    with pytest.raises(compiler.FieldFailure, match="beyond the sane bound"):
        plan.run({"currency": "usd", "amount": 10**40}, None, "c1", 1, None, [])


def test_the_generated_code_uses_the_shortcuts() -> None:
    import builtins

    seen: list[str] = []
    real = builtins.compile

    def spy(src: Any, name: str, *args: Any, **kw: Any) -> Any:
        if name.startswith("<mapping"):
            seen.append(src)
        return real(src, name, *args, **kw)

    compiler.compile = spy  # type: ignore[attr-defined]
    try:
        _plan({"kind": {"const": "payment"}, "currency": "currency", "payment_date": "day",
               "amount": {"from": "amount", "coerce": "money_minor"}, "fee": "fee"})
    finally:
        del compiler.compile  # type: ignore[attr-defined]
    src = seen[-1]
    assert ".cache.get(v)" in src  # the date: looked up in line
    assert "(e is None or e > MAX_SCALE) and ('E' in" in src  # minor units: no scale check for a known exponent
    assert src.count("v.as_tuple().exponent") == 2  # amount (after its text test) and fee


@given(st.datetimes(), st.sampled_from(["T", " "]), st.sampled_from(["seconds", "milliseconds", "microseconds", "auto"]))
def test_a_naive_instant_text_is_read_in_utc_as_replace_would(at: datetime, sep: str, spec: str) -> None:
    # UTC mappings read a naive text with its zone appended (no ``replace(tzinfo=...)``): the same aware instant
    instant = COERCIONS["instant"][0]({})
    text = at.isoformat(sep, spec)
    read = datetime.fromisoformat(text)
    out = instant(text)
    assert out == read.replace(tzinfo=UTC) and out.tzinfo is UTC and repr(out) == repr(read.replace(tzinfo=UTC))
    # a mapping in another zone still converts from it
    paris = COERCIONS["instant"][0]({"timezone": "Europe/Paris"})
    if at.year > 1:
        assert paris(text) == read.replace(tzinfo=ZoneInfo("Europe/Paris")).astimezone(UTC)

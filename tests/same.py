"""Test helper: two parsed values alike in every detail."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down, keys in the same order (Decimal("1.50") is neither 1.5 nor
    Decimal("1.5"): the exponent counts); a float NaN is the same as a float NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, float) and a != a:
        return b != b
    return bool(a == b)

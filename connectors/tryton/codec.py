"""Tryton's typed JSON: ``{"__class__": "Decimal", "decimal": "12.50"}`` and friends, both ways.

Tryton (``trytond/protocols/jsonrpc.py``) tags every non-JSON value with ``__class__``. Decimals
travel as text and are decoded exactly; dates stay dates. Tryton datetimes are naive server-UTC
values, so they are decoded as aware UTC instants (the project never keeps a naive instant) and
encoded back as naive UTC.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson


def _decode_object(obj: dict[str, Any]) -> Any:
    """The Python value of a tagged object; one that cannot be (a date of February 30, a Decimal
    that is not a number) stays the tagged dict as sent, so that the record still lands and the
    mapping quarantines it with the reason instead of the whole page failing."""
    try:
        return _decoded(obj)
    except (ArithmeticError, ValueError, TypeError, KeyError, OverflowError):
        return obj


def _decoded(obj: dict[str, Any]) -> Any:
    kind = obj.get("__class__")
    if kind is None:
        return obj
    if kind == "Decimal":
        return Decimal(obj["decimal"])
    if kind == "date":
        return date(obj["year"], obj["month"], obj["day"])
    if kind == "datetime":
        return datetime(
            obj["year"], obj["month"], obj["day"],
            obj.get("hour", 0), obj.get("minute", 0), obj.get("second", 0), obj.get("microsecond", 0),
            tzinfo=UTC,
        )
    if kind == "time":
        return time(obj.get("hour", 0), obj.get("minute", 0), obj.get("second", 0), obj.get("microsecond", 0))
    if kind == "timedelta":
        return timedelta(seconds=obj["seconds"])
    if kind == "bytes":
        return base64.b64decode(obj["base64"])
    return obj


def decode(value: Any) -> Any:
    """Turn a parsed Tryton JSON value (plain ``json``/``orjson`` output) into Python values."""
    kind = type(value)
    if kind is dict:  # the common shapes first, without a call per plain value
        if "__class__" in value:
            return _decode_tagged(value)
        return {k: (decode(v) if type(v) in _NESTED else v) for k, v in value.items()}
    if kind is list:
        return [decode(v) if type(v) in _NESTED else v for v in value]
    if kind in _PLAIN:
        return value
    if isinstance(value, dict):
        return _decode_object({k: decode(v) for k, v in value.items()})
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, float):
        # Tryton sends Float fields as JSON numbers; they are not money, but keep them exact anyway.
        return Decimal(repr(value))
    return value


def _decode_tagged(obj: dict[str, Any]) -> Any:
    """A tagged object's value; its members are plain (as Tryton sends them) or decoded first."""
    for member in obj.values():
        if type(member) in _NESTED:
            return _decode_object({k: (decode(v) if type(v) in _NESTED else v) for k, v in obj.items()})
    value = _decode_object(obj)
    return dict(obj) if value is obj else value  # one that stays a dict is a copy, as for any dict


# types decode has to look into (or convert); every other exact JSON type is returned as it is
_NESTED = frozenset({dict, list, float})
_PLAIN = frozenset({str, int, bool, type(None)})


def _tagged(obj: dict[str, Any]) -> Any:
    """The parser's hook for each JSON object (innermost first: a tagged object's members are decoded already)."""
    return _decode_object(obj) if "__class__" in obj else obj


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# json's C parser calling the hook per object costs a third less than orjson's parse and a walk over the whole tree
# in Python (a page of 1,000 invoices: 22 against 32 ms). A JSON number with a fraction is a Float field: as before,
# the Decimal of the float it is (``repr``); NaN and Infinity are refused, as any text that is not JSON.
_PARSER = json.JSONDecoder(object_hook=_tagged, parse_float=lambda text: Decimal(repr(float(text))),
                           parse_constant=_not_json)


def loads(body: bytes) -> Any:
    """Parse and decode a Tryton JSON-RPC response body (a ``ValueError`` for a body that is not JSON in UTF-8). A
    lone surrogate escape in a text is kept (the store writes it as U+FFFD), not taken for a broken body."""
    try:
        return _PARSER.decode(body.decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _encode_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return {
            "__class__": "datetime", "year": value.year, "month": value.month, "day": value.day,
            "hour": value.hour, "minute": value.minute, "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, time):
        return {"__class__": "time", "hour": value.hour, "minute": value.minute, "second": value.second,
                "microsecond": value.microsecond}
    if isinstance(value, timedelta):
        return {"__class__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, bytes):
        return {"__class__": "bytes", "base64": base64.b64encode(value).decode()}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot send {type(value).__name__} to Tryton")


def dumps(value: Any) -> bytes:
    """Encode a request body with Tryton's type tags."""
    # orjson writes datetimes, dates and times natively (ISO text); passed through to ``default``
    # instead, they are tagged like every other non-JSON value, in one pass over the tree. A body
    # repeats its instants and days (a record's create, write and last-modified stamps; a page's
    # dates): each distinct one is tagged once per body.
    tagged: dict[tuple[type, Any], Any] = {}

    def default(item: Any) -> Any:
        kind = type(item)
        if kind is not datetime and kind is not date:
            return _encode_default(item)
        hit = tagged.get((kind, item))
        if hit is None:
            hit = tagged[(kind, item)] = _encode_default(item)
        return hit

    return orjson.dumps(value, default=default, option=orjson.OPT_PASSTHROUGH_DATETIME)

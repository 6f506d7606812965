"""canonical.db.loads_exact: msgspec's parse where it gives json's answer, json's everywhere else."""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest

from canonical.db import loads_exact
from tests.same import same


def _json(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


VALUES = [
    '{"Amount": 1234.50, "Qty": 3, "Rate": 1e-7, "Big": 1E+400, "Neg": -0.0, "Zero": -0}',
    '[0.1, 0.10, 100, 1.000000000000000000001, 123456789012345678901234567890, -9223372036854775809]',
    '{"a": 1, "a": 2}',  # the last of a repeated key
    '{"text": "caf\\u00e9 \\ud83d\\ude00 \\u0000 \\"q\\" \\\\"}',
    '  {"nested": [{"x": [[]], "y": {}}], "t": true, "f": false, "n": null}  ',
    '"\\ud800"',  # a lone surrogate: msgspec refuses it, json keeps it
    '[1, NaN, Infinity, -Infinity]',  # not JSON; json accepts them
]


@pytest.mark.parametrize("text", VALUES)
def test_values_are_exactly_what_json_gives(text: str) -> None:
    for given in (text, text.encode("utf-8")):
        assert same(loads_exact(given), _json(given))


def test_utf16_bytes_are_read_as_json_reads_them() -> None:
    body = '{"Amount": 12.30, "Name": "Ünïcode"}'.encode("utf-16")
    assert same(loads_exact(body), _json(body))


BAD = ['{"a": 1,}', "[1,]", "01", "1.", ".5", '{"a": 1} x', '"a\tb"', "\ufeff{}", "", "[" * 100_000]


@pytest.mark.parametrize("text", BAD, ids=range(len(BAD)))
def test_bad_text_raises_json_error_and_message(text: str) -> None:
    with pytest.raises(Exception) as want:  # whatever json raises, loads_exact raises the same
        _json(text)
    with pytest.raises(type(want.value)) as got:
        loads_exact(text)
    assert str(got.value) == str(want.value)


def test_random_documents_match_json() -> None:
    """Documents built by seed from numbers written the ways vendors write them (trailing zeros, exponents, big
    integers), nested and repeated keys: the parse agrees with json's value and types, Decimal exponents included."""
    rng = random.Random(20261206)

    def number() -> str:
        whole = str(rng.choice([0, 1, 7, 42, 999, 10**12, 10**19 + 7, 10**30]))
        sign = rng.choice(["", "-"])
        frac = rng.choice(["", ".0", ".5", ".50", ".125", ".1000", "." + "9" * 25])
        exp = rng.choice(["", "", "e3", "E-2", "e+10"])
        return sign + whole + frac + exp

    def value(depth: int) -> str:
        kind = rng.randrange(7 if depth < 4 else 4)
        if kind == 0:
            return number()
        if kind == 1:
            return json.dumps(rng.choice(["", "x", "Ü", "a\nb", "\u0000", "😀", "1.50"]))
        if kind == 2:
            return rng.choice(["true", "false", "null"])
        if kind == 3:
            return number()
        if kind in (4, 5):
            keys = [rng.choice(["Id", "Amount", "x", "é", "Id"]) for _ in range(rng.randrange(5))]
            return "{" + ", ".join(f"{json.dumps(k)}: {value(depth + 1)}" for k in keys) + "}"
        return "[" + ", ".join(value(depth + 1) for _ in range(rng.randrange(5))) + "]"

    for _ in range(500):
        text = value(0)
        assert same(loads_exact(text), _json(text)), text

"""bench/accuracy.py's strict scoring, on hand-written exceptions and truth."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def acc() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_accuracy", ROOT / "bench" / "accuracy.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_accuracy"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_strict_rule(acc: ModuleType) -> None:
    P, R = acc.Planted, acc.Reported  # noqa: N806
    truth = [
        P("INVOICE_OVERDUE", frozenset({("tryton", "300001")})),
        P("UNAPPLIED_PAYMENT", frozenset({("bank", "B1")})),
        P("CUSTOMER_MISMATCH", frozenset({("salesforce", "001A"), ("tryton", "1001")})),
        P("DUPLICATE_INVOICE", frozenset({("tryton", "300007"), ("tryton", "300008")}), tolerated=("OVER_INVOICED",)),
    ]
    found = [
        R("INVOICE_OVERDUE", frozenset({("tryton", "300001")}), "f1"),  # right code, shared record: correct
        R("INVOICE_OVERDUE", frozenset({("odoo", "300001")}), "f2"),  # same id, other system: false
        R("PAYMENT_MISMATCH", frozenset({("bank", "B1")}), "f3"),  # shared record, other code: false
        R("CUSTOMER_MISMATCH", frozenset({("tryton", "1001"), ("tryton", "1002")}), "f4"),  # one shared: correct
        R("OVER_INVOICED", frozenset({("tryton", "300008")}), "f5"),  # consequence, still a false positive
    ]
    s = acc.score(truth, found)
    assert s.reported["INVOICE_OVERDUE"] == 2 and s.correct["INVOICE_OVERDUE"] == 1
    assert s.found["INVOICE_OVERDUE"] == 1 and s.found["CUSTOMER_MISMATCH"] == 1
    assert s.found["UNAPPLIED_PAYMENT"] == 0 and s.found["DUPLICATE_INVOICE"] == 0
    assert [e.fingerprint for e in s.false_pos["PAYMENT_MISMATCH"]] == ["f3"]
    assert s.consequential["OVER_INVOICED"] == 1
    assert s.precision == pytest.approx(2 / 5)
    assert s.recall == pytest.approx(2 / 4)


def test_empty_cases(acc: ModuleType) -> None:
    s = acc.score([], [])
    assert (s.precision, s.recall) == (1.0, 1.0)
    s = acc.score([], [acc.Reported("UNAPPLIED_PAYMENT", frozenset({("bank", "X")}))])
    assert s.precision == 0.0 and s.recall == 1.0


def test_two_exceptions_for_one_break_both_count_as_correct_once_found(acc: ModuleType) -> None:
    truth = [acc.Planted("WON_NOT_ORDERED", frozenset({("hubspot", "9")}))]
    found = [acc.Reported("WON_NOT_ORDERED", frozenset({("hubspot", "9")}), "a"),
             acc.Reported("WON_NOT_ORDERED", frozenset({("hubspot", "9"), ("hubspot", "3")}), "b")]
    s = acc.score(truth, found)
    assert s.found["WON_NOT_ORDERED"] == 1 and s.correct["WON_NOT_ORDERED"] == 2

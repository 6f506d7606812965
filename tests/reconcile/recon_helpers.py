"""Hand-built canonical worlds for the reconciliation tests (imported by the test modules)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from reconcile.frames import SCHEMAS, Frames, prepare

AS_OF = date(2026, 10, 31)
MONEY_COLS = {"amount", "unit_price", "untaxed", "tax", "total", "fee", "quantity", "rate"}


def frame(name: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema = SCHEMAS[name]
    fixed = [{k: (Decimal(v) if k in MONEY_COLS and isinstance(v, str) else v) for k, v in r.items()} for r in rows]
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in fixed], schema=schema)


def world(**tables: list[dict[str, Any]]) -> Frames:
    """A world of one customer (CRM acct A, ERP acct E, Stripe S) plus whatever rows are given."""
    base = {
        "account": [
            {"id": "sf:account:A", "source_system": "sf", "name": "Acme Inc", "tax_id": "T1", "country": "US",
             "owner": "ann"},
            {"id": "erp:account:E", "source_system": "erp", "name": "ACME, INC.", "tax_id": "T1", "country": "US"},
            {"id": "stripe:account:S", "source_system": "stripe", "name": "Acme"},
        ],
        "cross_ref": [{"entity": "account", "member_id": m, "cluster_id": "sf:account:A"}
                      for m in ("sf:account:A", "erp:account:E", "stripe:account:S")],
    }
    base.update(tables)
    return prepare(**{k: frame(k, v) for k, v in base.items()})


def deal(i: str, amount: str, *, stage: str = "closed_won", close: date = date(2026, 9, 1), ccy: str = "USD",
         owner: str = "ann") -> dict[str, Any]:
    return {"id": f"sf:deal:{i}", "source_id": i, "account_id": "sf:account:A", "stage": stage, "currency": ccy,
            "amount": amount, "close_date": close, "owner": owner}


def order(i: str, deal_ref: str | None, total: str, *, ccy: str = "USD", od: date = date(2026, 9, 2)) -> dict[str, Any]:
    return {"id": f"erp:order:{i}", "source_id": i, "number": i, "account_id": "erp:account:E", "deal_ref": deal_ref,
            "order_date": od, "state": "confirmed", "currency": ccy, "untaxed": total, "total": total}


def invoice(i: str, order_ref: str | None, total: str, *, kind: str = "invoice", ccy: str = "USD",
            issue: date = date(2026, 9, 3), due: date = date(2026, 10, 3)) -> dict[str, Any]:
    return {"id": f"erp:invoice:{i}", "source_id": i, "number": i, "kind": kind, "account_id": "erp:account:E",
            "order_ref": order_ref, "issue_date": issue, "due_date": due, "status": "open", "currency": ccy,
            "total": total}


def payment(i: str, amount: str, *, ref: str | None = None, remittance: str | None = None, ccy: str = "USD",
            kind: str = "payment", account: str | None = None, payer: str | None = "Acme Inc.",
            fee: str | None = None, pd: date = date(2026, 9, 20), deal_ref: str | None = None) -> dict[str, Any]:
    return {"id": f"bank:payment:{i}", "source_id": i, "kind": kind, "account_id": account, "currency": ccy,
            "amount": amount, "fee": fee, "payment_date": pd, "payer_name": payer, "remittance": remittance,
            "invoice_ref": ref, "deal_ref": deal_ref, "settlement_ref": f"st-{i}", "status": "succeeded"}



def in_process_cli(monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``ltc(*args)``: the console entry point in-process (a subprocess pays seconds of imports per call)."""
    from ltc.cli import main

    def ltc(*args: str) -> subprocess.CompletedProcess[str]:
        monkeypatch.setattr(sys, "argv", ["ltc", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        cap = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, cap.out, cap.err)

    return ltc

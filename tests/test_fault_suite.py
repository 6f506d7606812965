"""The fault suite, short (the full one is ``python bench/faults.py --trials 20``): SIGKILLs during
sync and reconcile, a flaky network and concurrent stages leave nothing lost, duplicated, stale or
mismatched against a fault-free reference. Never the PostgreSQL restart here: other tests share
that server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _faults(*args: str, env: dict[str, str] | None = None) -> str:
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "faults.py"), "--chains", "6", *args],
                         capture_output=True, text=True, timeout=1200, cwd=ROOT, env={**os.environ, **(env or {})})
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_fault_suite_on_sqlite() -> None:
    last = _faults("--trials", "3", "--scenario", "kill-sync", "--scenario", "kill-reconcile",
                   "--scenario", "flaky-http")
    assert last == "trials=3 lost=0 duplicated=0 stale=0 mismatched=0"


@pytest.mark.slow
@pytest.mark.postgres
def test_fault_suite_on_postgresql(pg_admin) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import PG_ADMIN_URL

    last = _faults("--trials", "2", "--db", "postgresql", "--scenario", "concurrent", "--scenario", "kill-map",
                   env={"LTC_BENCH_PG_URL": PG_ADMIN_URL})
    assert last == "trials=2 lost=0 duplicated=0 stale=0 mismatched=0"

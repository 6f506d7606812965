"""The performance targets in one run: every benchmark they name, its machine-readable last line checked against
its target, and this machine's speed measured first.

    python bench/targets.py                       # all of them (about half an hour on 2 cores)
    python bench/targets.py --only mapping,sync   # some of them (names: --list)
    python bench/targets.py --quick               # each at a small size: checks the benchmarks run, not the targets
    python bench/targets.py --json out.json       # the figures as JSON too, to keep beside the results of other runs

Each benchmark runs as a child process, one after the other (run nothing else meanwhile: they share the cores), its
output kept in ``--logs`` (default: a temporary directory, printed). The absolute targets (seconds, records per
second) move with the machine: the probe line (a fixed pure-Python loop, a fixed Polars sort and group-by) is what
makes two runs comparable; the ratios and counts do not depend on it. For the store/Parquet ratio the store bench
also prints ``ratio_floor``, the lowest ratio the work done allows on this machine's cores (``bench/reconcile.py``).

Last line: ``targets_met=<met>/<checked> probe_python_s=<s> probe_polars_s=<s>``; exit status 1 when a target is
missed (with ``--quick``: only when a benchmark fails).
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


@dataclass(frozen=True)
class Check:
    """One figure of a benchmark's last line (``key``) against its target: ``op`` is ``<=``, ``>=`` or ``==``."""

    key: str
    op: str
    target: str

    def holds(self, figures: dict[str, str]) -> bool | None:
        """True / False, or None when the line has no such figure."""
        value = figures.get(self.key)
        if value is None:
            return None
        if self.op == "==":
            return value == self.target
        compare: Callable[[float, float], bool] = operator.le if self.op == "<=" else operator.ge
        return compare(float(value), float(self.target))

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.target}"


@dataclass(frozen=True)
class Target:
    """A benchmark run: its command (``bench/<script> <args>``, and the arguments of ``--quick``), the checks of its
    last line and the figures of it shown beside them."""

    name: str
    script: str
    args: tuple[str, ...]
    quick: tuple[str, ...]
    checks: tuple[Check, ...]
    shown: tuple[str, ...] = ()
    needs_postgres: bool = False


_STORE_1M = (Check("store_reconcile_s", "<=", "60"), Check("peak_rss_mb", "<=", "1536"),
             Check("parquet_ratio", "<=", "1.3"))

TARGETS: tuple[Target, ...] = (
    Target("reconcile-sqlite-1m", "reconcile.py", ("--chains", "1000000", "--store", "sqlite"),
           ("--chains", "2000", "--store", "sqlite"), _STORE_1M, ("ratio_floor",)),
    Target("reconcile-postgresql-1m", "reconcile.py", ("--chains", "1000000", "--store", "postgresql"),
           ("--chains", "2000", "--store", "postgresql"), _STORE_1M, ("ratio_floor",), needs_postgres=True),
    # three alternating pairs: the ratio of one Parquet run and one store run minutes apart varied 1.5-1.8 in an hour
    Target("reconcile-sqlite-100k", "reconcile.py", ("--chains", "100000", "--store", "sqlite", "--pairs", "3"),
           ("--chains", "1000", "--store", "sqlite", "--pairs", "2"), (Check("parquet_ratio", "<=", "1.3"),),
           ("store_reconcile_s", "ratio_floor")),
    Target("mapping", "mapping.py", ("--records", "200000", "--store", "sqlite"),
           ("--records", "5000", "--store", "sqlite"), (Check("stage_records_per_s", ">=", "80000"),),
           ("mapping_records_per_s",)),
    Target("sync", "sync.py", ("--source", "hubspot", "--mode", "incremental"),
           ("--source", "hubspot", "--mode", "incremental", "--records", "300"),
           (Check("nochange_requests", "<=", "40"),), ("full_requests",)),
    Target("world-5k", "world.py", ("--chains", "5000"), ("--chains", "100"), (), ("records_per_s", "world_replay_s")),
    Target("world-20k", "world.py", ("--chains", "20000"), ("--chains", "400"),
           (Check("records_per_s", ">=", "10000"),), ("world_replay_s",)),
    Target("world-100k", "world.py", ("--chains", "100000"), ("--chains", "2000"), (),
           ("records_per_s", "world_replay_s")),
    Target("dask", "reconcile.py", ("--chains", "1000000", "--dask-workers", "2"),
           ("--chains", "2000", "--dask-workers", "2"), (Check("identical", "==", "True"),), ("speedup",)),
)

#: the world replay's cost per record may grow by this much from 5k to 100k chains and still count as linear
LINEAR_SLACK = 1.25


def figures(line: str) -> dict[str, str]:
    """The ``key=value`` pairs of a benchmark's last line."""
    out = {}
    for word in line.split():
        key, sep, value = word.partition("=")
        if sep and key:
            out[key] = value
    return out


def last_figures(lines: Sequence[str], target: Target) -> dict[str, str]:
    """The figures of the benchmark's machine-readable line: the last one that has any of the target's keys (a
    child's log line may follow it, such as Prefect's temporary server stopping), and the last value of each figure
    shown beside them that line lacks."""
    keys = {c.key for c in target.checks} | set(target.shown)
    out: dict[str, str] = {}
    for line in reversed(lines):
        got = figures(line)
        if keys & got.keys():
            out = got
            break
    # a figure shown beside the checks may be on an earlier line (``ratio_floor``): its last value
    for key in set(target.shown) - out.keys():
        for line in reversed(lines):
            value = figures(line).get(key)
            if value is not None:
                out[key] = value
                break
    return out


def linear(results: dict[str, dict[str, str]]) -> tuple[bool, str] | None:
    """The world replay's growth: its records per second at 100k chains against 5k (the same per-record cost means
    the same rate), or None when either did not run."""
    small, large = results.get("world-5k", {}).get("records_per_s"), results.get("world-100k", {}).get("records_per_s")
    if small is None or large is None:
        return None
    growth = float(small) / float(large)  # > 1: each record costs more at 100k
    return growth <= LINEAR_SLACK, f"per-record cost 100k / 5k = {growth:.2f} (linear within {LINEAR_SLACK})"


def probe() -> tuple[float, float]:
    """Seconds of a fixed pure-Python loop and of a fixed Polars workload, each the best of three, in a child process
    (this one stays free of Polars' threads)."""
    code = (
        "import time\n"
        "import polars as pl\n"
        "def loop():\n"
        "    i = 0\n"
        "    while i < 20_000_000:\n"
        "        i += 1\n"
        "df = pl.DataFrame({'k': pl.int_range(0, 5_000_000, eager=True).hash(7) % 100_000,\n"
        "                   's': pl.int_range(0, 5_000_000, eager=True).cast(pl.String)})\n"
        "def frame():\n"
        "    df.sort('s').group_by('k').agg(pl.col('s').n_unique(), pl.len())\n"
        "best = []\n"
        "for fn in (loop, frame):\n"
        "    runs = []\n"
        "    for _ in range(3):\n"
        "        t = time.perf_counter(); fn(); runs.append(time.perf_counter() - t)\n"
        "    best.append(min(runs))\n"
        "print(*best)\n"
    )
    out = subprocess.run([PY, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def postgres_reachable() -> bool:
    sys.path.insert(0, str(ROOT / "bench"))
    import sqlalchemy as sa
    from scratch_db import PG_ADMIN

    try:
        engine = sa.create_engine(PG_ADMIN, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:  # any failure to connect means: skip the PostgreSQL target
        return False


@dataclass
class Outcome:
    target: Target
    seconds: float
    status: str  # met | missed | failed | skipped | ran (no checks, or --quick)
    figures: dict[str, str] = field(default_factory=dict)
    checks: list[tuple[Check, bool | None]] = field(default_factory=list)
    note: str = ""


def run_target(target: Target, quick: bool, logs: Path) -> Outcome:
    cmd = [PY, str(ROOT / "bench" / target.script), *(target.quick if quick else target.args)]
    log = logs / f"{target.name}.log"
    t = time.perf_counter()
    with open(log, "w") as out:
        out.write(" ".join(cmd) + "\n")
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.perf_counter() - t
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    if done.returncode != 0:
        return Outcome(target, seconds, "failed", note=f"exit status {done.returncode}; see {log}")
    got = last_figures(lines, target)
    results = [(c, c.holds(got)) for c in target.checks]
    status = "ran" if quick or not results else "met" if all(ok for _c, ok in results) else "missed"
    return Outcome(target, seconds, status, got, results)


def report(outcome: Outcome) -> str:
    parts = [f"{outcome.target.name}: {outcome.status} in {outcome.seconds:.0f}s"]
    for check, ok in outcome.checks:
        value = outcome.figures.get(check.key, "absent")
        if outcome.status == "ran":  # --quick: at its small size a figure says nothing of the target
            parts.append(f"{check.key}={value}")
        else:
            parts.append(f"{check.key}={value} (target {check.op} {check.target}: "
                         f"{'yes' if ok else 'no' if ok is not None else 'not printed'})")
    parts += [f"{key}={outcome.figures[key]}" for key in outcome.target.shown if key in outcome.figures]
    if outcome.note:
        parts.append(outcome.note)
    return "; ".join(parts)


def select(only: str | None) -> list[Target]:
    if not only:
        return list(TARGETS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {t.name: t for t in TARGETS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"bench/targets.py: unknown target(s) {', '.join(unknown)}; the names: {', '.join(known)}")
    return [known[n] for n in names]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="Comma-separated target names (default: all; see --list).")
    ap.add_argument("--list", action="store_true", help="Print the targets and their checks, then stop.")
    ap.add_argument("--quick", action="store_true", help="Each benchmark at a small size: no target is checked.")
    ap.add_argument("--logs", help="Directory for each benchmark's output (default: a new temporary one).")
    ap.add_argument("--json", help="Also write the figures to this file.")
    args = ap.parse_args(argv)
    chosen = select(args.only)
    if args.list:
        for t in chosen:
            print(f"{t.name}: bench/{t.script} {' '.join(t.args)}; "
                  + (", ".join(map(str, t.checks)) or "no target of its own"))
        return 0
    logs = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="ltc-targets-"))
    logs.mkdir(parents=True, exist_ok=True)
    py_s, polars_s = probe()
    print(f"probe: python loop {py_s:.2f}s, polars sort + group-by {polars_s:.2f}s on {os.cpu_count()} cores; "
          f"logs in {logs}", flush=True)
    pg = postgres_reachable() if any(t.needs_postgres for t in chosen) else False
    outcomes: list[Outcome] = []
    for t in chosen:
        if t.needs_postgres and not pg:
            outcome = Outcome(t, 0.0, "skipped", note="PostgreSQL not reachable (LTC_BENCH_PG_URL or 127.0.0.1:5432)")
        else:
            outcome = run_target(t, args.quick, logs)
        outcomes.append(outcome)
        print(report(outcome), flush=True)
    results = {o.target.name: o.figures for o in outcomes}
    growth = None if args.quick else linear(results)
    if growth is not None:
        print(f"world replay growth 5k -> 100k: {growth[1]}: {'yes' if growth[0] else 'no'}", flush=True)
    checked = [ok for o in outcomes if not args.quick for _c, ok in o.checks] + ([growth[0]] if growth else [])
    met = sum(1 for ok in checked if ok)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "probe_python_s": py_s, "probe_polars_s": polars_s, "cores": os.cpu_count(), "quick": args.quick,
            "targets": {o.target.name: {"status": o.status, "seconds": round(o.seconds, 1), "figures": o.figures,
                                        "checks": {str(c): ok for c, ok in o.checks}} for o in outcomes},
            "linear": None if growth is None else {"met": growth[0], "detail": growth[1]},
        }, indent=2))
    print(f"targets_met={met}/{len(checked)} probe_python_s={py_s:.2f} probe_polars_s={polars_s:.2f}")
    failed = any(o.status == "failed" for o in outcomes)
    return 1 if failed or (not args.quick and met < len(checked)) else 0


if __name__ == "__main__":
    sys.exit(main())

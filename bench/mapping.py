"""Mapping throughput: apply the compiled shipped mappings to vendor-shaped records in memory.

    python bench/mapping.py [--records 200000] [--store sqlite|postgresql|none] [--mix salesforce=0.9,stripe=0.1]

Records are the fixtures of tests/mappings (Salesforce, HubSpot, Stripe, Tryton, Odoo, camt.053)
replicated with fresh ids, in their stored form (amounts as exact text, as read back from raw
landing). Each mapping is compiled once; the timed part is ``map_records`` over all of them.
With ``--store`` it also times the whole stage (read pending raw rows, map, bulk upsert, lineage,
clear pending) on a fresh database and prints it on an earlier line.

Last line: ``[stage_records_per_s=<n> ]mapping_records_per_s=<n>`` (the stage's rate with ``--store``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch_db import scratch_database  # noqa: E402

from canonical import db  # noqa: E402
from canonical.store import RawRecord, Store  # noqa: E402
from mappings.engine import compile_for, map_records, run_mapping  # noqa: E402

FIXTURES = ROOT / "tests" / "mappings" / "fixtures"
ID_KEY = {"salesforce": "Id", "hubspot": "id", "stripe": "id", "tryton": "id", "odoo": "id"}


def templates() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """system -> [(object, stored payload)] of the fixtures that map cleanly."""
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for sysdir in sorted(FIXTURES.iterdir()):
        system = sysdir.name
        mset = compile_for(system)
        recs: list[tuple[str, dict[str, Any]]] = []
        for path in sorted(sysdir.glob("*.json")):
            for rec in json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal):
                stored = orjson.loads(db.dumps(rec))
                result = map_records(mset, [(1, path.stem, "x", stored, None)])
                if result.ok_raw:
                    recs.append((path.stem, stored))
        out[system] = recs
    return out


def replicate(system: str, obj: str, payload: dict[str, Any], i: int) -> tuple[str, dict[str, Any]]:
    rec = dict(payload)
    if system == "camt053":
        rec["entry_reference"] = f"E{i}"
        return f"{rec['statement_id']}/E{i}/0", rec
    key = ID_KEY[system]
    sid = f"{rec[key]}-{i}" if isinstance(rec[key], str) else str(rec[key] * 1_000_000 + i)
    rec[key] = sid
    return sid, rec


def build(n: int, mix: dict[str, float] | None = None) -> dict[str, list[tuple[int, str, str, Any, None]]]:
    """``n`` records: every fixture in turn, or (``mix``: system -> share of ``n``) each system's fixtures in turn
    for its share."""
    tpl = templates()
    if mix is None:
        flat = [(system, obj, payload) for system, recs in tpl.items() for obj, payload in recs]
        picks = [flat[i % len(flat)] for i in range(n)]
    else:
        unknown = set(mix) - set(tpl)
        if unknown:
            raise SystemExit(f"--mix: no fixtures for {sorted(unknown)} (systems: {', '.join(tpl)})")
        picks = [(system, *tpl[system][j % len(tpl[system])]) for system, share in mix.items()
                 for j in range(round(n * share / sum(mix.values())))]
    out: dict[str, list[tuple[int, str, str, Any, None]]] = {s: [] for s in (mix or tpl)}
    for i, (system, obj, payload) in enumerate(picks):
        sid, rec = replicate(system, obj, payload, i)
        out[system].append((i + 1, obj, sid, rec, None))
    return out


def _mix(text: str) -> dict[str, float]:
    """``salesforce=0.9,stripe=0.1`` -> {system: share}."""
    out = {}
    for part in text.split(","):
        system, eq, share = part.partition("=")
        try:
            out[system.strip()] = float(share) if eq else 1.0
        except ValueError:
            raise SystemExit(f"--mix: {part!r} is not system=share") from None
    return out


def bench_memory(records: dict[str, list[tuple[int, str, str, Any, None]]]) -> tuple[int, int, float, float]:
    msets = {s: compile_for(s) for s in records}
    start, cpu = time.perf_counter(), time.process_time()
    total = rows = 0
    for system, recs in records.items():
        for i in range(0, len(recs), 5000):
            result = map_records(msets[system], recs[i : i + 5000])
            total += len(result.ok_raw)
            rows += sum(len(r) for r in result.rows.values())
    return total, rows, time.perf_counter() - start, time.process_time() - cpu


def _cpu() -> float:
    """CPU seconds (user + system) of this process and of its children that ended (the stage's forked ones)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_store(records: dict[str, list[tuple[int, str, str, Any, None]]], backend: str) -> tuple[int, float, float]:
    with scratch_database(backend) as url:
        store = Store.open(url)
        for system, recs in records.items():
            page = [RawRecord(obj, sid, payload) for _i, obj, sid, payload, _u in recs]
            for i in range(0, len(page), 5000):
                store.commit_page(system, "bench", page[i : i + 5000], None)
        start, cpu = time.perf_counter(), _cpu()
        counts = run_mapping(store)
        elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
        store.close()
        return sum(c.get("records", 0) for c in counts.values()), elapsed, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--store", choices=["none", "sqlite", "postgresql"], default="none")
    ap.add_argument("--mix", type=_mix, help="Records per system, e.g. salesforce=0.9,stripe=0.1 (default: every "
                                             "fixture of every system in turn).")
    args = ap.parse_args()
    records = build(args.records, args.mix)
    stage = ""
    if args.store != "none":
        n, secs, cpu = bench_store(records, args.store)
        # cpu: this process's CPU time and its forked children's, every thread (the database server's is not
        # in it on PostgreSQL)
        print(f"stage_on_{args.store}: records={n} seconds={secs:.2f} cpu_seconds={cpu:.2f} "
              f"load={os.getloadavg()[0]:.2f} stage_records_per_s={n / secs:.0f}")
        stage = f"stage_records_per_s={n / secs:.0f} "
    mapped, rows, secs, cpu = bench_memory(records)
    per_system = ", ".join(f"{s}={len(r)}" for s, r in records.items())
    print(f"records={args.records} ({per_system}) mapped={mapped} canonical_rows={rows} seconds={secs:.2f} "
          f"cpu_seconds={cpu:.2f} cpu_records_per_s={args.records / cpu:.0f}")
    print(f"{stage}mapping_records_per_s={args.records / secs:.0f}")


if __name__ == "__main__":
    main()

"""Reconciliation benchmark: generate a world, reconcile it, score it, compare with datacompy.

    python bench/reconcile.py --chains 100000

What is timed (honestly):
* ``reconcile_s``: :func:`reconcile.core.reconcile_frames` on in-memory Polars frames (the frame-level
  core the store path also uses): chains, links, allocations, exceptions, states and the conservation
  check. Inputs of more than 2 x ``reconcile.core.ROWS_PER_PARTITION`` payments + invoices run
  partitioned (``reconcile.partition``): the clock includes the global pre-pass (connected
  components of customer clusters and reference keys) and every bucket's run, all in this process.
  The world is generated in a child process (``python -m sandbox.scenario``) and written as
  Parquet; this process reads it and casts it to the canonical frame schemas (``prepare``). Those
  steps are printed (``generate``, ``load``) but are not on the clock; the store path (SQLite/PG
  load) is not exercised here. A cached world (``--world DIR``) is reused when present.
* ``datacompy_s``: ``datacompy.PolarsCompare`` of the deal table vs the invoice table on the deal key
  (deal amount vs invoiced total), including its ``matches()`` and ``report()``; the invoice frame is
  keyed on the deal before the clock starts.
* ``peak_rss_mb``: the peak resident set of the whole process (generation included).
* ``precision`` / ``recall``: exceptions found vs the generator's ground truth, by fingerprint.

The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import polars as pl  # noqa: E402

from reconcile.core import Settings, reconcile_frames  # noqa: E402
from sandbox.scenario import World  # noqa: E402


def _datacompy(fr) -> float:  # type: ignore[no-untyped-def]
    import datacompy

    deals = fr.deal.select(pl.col("source_id").str.to_uppercase().alias("deal_key"),
                           pl.col("amount").cast(pl.Float64), "currency")
    inv = fr.invoice.join(
        fr.order.select(pl.col("number").alias("order_ref"),
                        pl.col("deal_ref").str.strip_chars().str.to_uppercase().alias("deal_key")),
        on="order_ref", how="inner",
    ).group_by("deal_key").agg(pl.col("total").sum().cast(pl.Float64).alias("amount"), pl.col("currency").first())
    t = time.perf_counter()
    cmp = datacompy.PolarsCompare(deals, inv, join_columns="deal_key", abs_tol=0.01, df1_name="deal",
                                  df2_name="invoice")
    cmp.matches()
    cmp.report()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chains", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--world", help="Directory of a generated world (created if missing).")
    args = ap.parse_args()

    world_dir = args.world or os.path.join(tempfile.gettempdir(), f"ltc-world-{args.chains}-{args.seed}")
    t = time.perf_counter()
    if not os.path.exists(os.path.join(world_dir, "meta.json")):
        subprocess.run([sys.executable, "-m", "sandbox.scenario", "--chains", str(args.chains), "--seed",
                        str(args.seed), "--out", world_dir], check=True, cwd=ROOT)
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    world = World.read(world_dir)
    fr = world.frames()
    load_s = time.perf_counter() - t
    rows = fr.counts()
    print(f"generate {gen_s:.1f}s (child process), load+prepare {load_s:.1f}s: "
          + ", ".join(f"{k}={v}" for k, v in rows.items()), flush=True)

    t = time.perf_counter()
    res = reconcile_frames(fr, Settings(), world.as_of)
    rec_s = time.perf_counter() - t

    found = set(res.exceptions["fingerprint"].to_list())
    truth = set(world.truth["fingerprint"].to_list())
    tp = len(found & truth)
    precision = tp / len(found) if found else 1.0
    recall = tp / len(truth) if truth else 1.0
    print("exceptions: " + ", ".join(f"{k}={v}" for k, v in res.totals["exceptions"].items()), flush=True)
    print(f"true positives {tp}, found {len(found)}, planted {len(truth)}", flush=True)

    dc_s = _datacompy(fr)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"reconcile_s={rec_s:.2f} peak_rss_mb={peak:.0f} precision={precision:.4f} recall={recall:.4f} "
          f"datacompy_s={dc_s:.2f} ratio={rec_s / dc_s:.2f}")


if __name__ == "__main__":
    main()

"""Reconciliation benchmark: generate a world, reconcile it, score it, compare with datacompy.

    python bench/reconcile.py --chains 100000

What is timed (honestly):
* ``reconcile_s``: :func:`reconcile.stream.reconcile_world` on the world directory (one Parquet file
  per canonical table): reading the tables, casting them to the canonical schemas, and the
  reconciliation proper (:func:`reconcile.core.reconcile_one`: chains, links, allocations,
  exceptions, states and the conservation check) with every result frame written to Parquet.
  Inputs of more than 2 x ``reconcile.core.ROWS_PER_PARTITION`` payments + invoices run partitioned
  (``reconcile.partition``): the clock then includes the global pre-pass (connected components of
  customer clusters and reference keys), writing each bucket's rows to a scratch directory, and every
  bucket's run, all in this process. The world is generated (not timed, printed) in a child process
  (``python -m sandbox.scenario``) and cached under the temp dir (``--world DIR`` to choose), so
  generation is neither on the clock nor in the peak. The store path (SQLite/PG load) is not
  exercised here.
* ``datacompy_s``: ``datacompy.PolarsCompare`` of the deal table vs the invoice table on the deal key
  (deal amount vs invoiced total), including its ``matches()`` and ``report()``; the invoice frame is
  keyed on the deal before the clock starts.
* ``peak_rss_mb``: the peak resident set of this process over the whole run (reconciliation and the
  datacompy comparison), with Polars' allocator set up as every entry point has it (``canonical.ALLOCATOR``).
* ``precision`` / ``recall``: exceptions found vs the generator's ground truth, by fingerprint.
* CPU seconds (user + system) beside the clocks: of the Parquet path (this process, ``reconcile_world`` only) and,
  with ``--store``, of the store path's process and of its columnar helper processes apart. On a shared machine the
  wall clocks follow the load; the CPU seconds much less (the store/Parquet CPU ratio is what the wall ratio
  approaches where both keep the two cores busy).
* With ``--store`` on Linux, also the CPU seconds the whole machine was busy during the store path (``/proc/stat``:
  its processes, the database server's, and anything else running, so run it on a quiet machine), and what they
  allow: on this machine's cores the store path cannot take less than busy / cores seconds, whatever the
  scheduling; that over the Parquet path's wall clock is ``ratio_floor``, the lowest ``parquet_ratio`` the work
  done allows here (the database server's share is in it, which the process CPU seconds miss).

* ``--pairs N`` (with ``--store``): the Parquet path and the store path timed N times, alternately, the store loaded
  once, each run after the first in a child process of its own (as the first ran here: imports done, nothing else
  run yet); ``parquet_ratio`` is then the median of the N pairs' ratios and ``store_reconcile_s`` the median store
  time.
  Each pair's two runs are seconds apart, so a machine whose speed drifts over minutes (a shared one: the same run
  varied 1.5-1.8x here within an hour) moves both sides of a pair alike; one Parquet run against one store run
  minutes later does not.

The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import canonical  # noqa: E402,F401,I001  (first: Polars' allocator set up, as every entry point has it: canonical.ALLOCATOR)

import polars as pl  # noqa: E402

from reconcile.core import Settings  # noqa: E402
from reconcile.partition import parquet_reader  # noqa: E402
from reconcile.stream import FRAMES, reconcile_world  # noqa: E402


def _datacompy(world_dir: str) -> float:
    """datacompy's deal-vs-invoice comparison, timed like ``reconcile_s``: reading its tables (Parquet) and
    shaping them are on the clock too, not only ``PolarsCompare``."""
    import datacompy

    t = time.perf_counter()
    read = parquet_reader(world_dir)
    deals = read("deal", ["source_id", "amount", "currency"]).select(pl.col("source_id").str.to_uppercase().alias("deal_key"),
                           pl.col("amount").cast(pl.Float64), "currency")
    inv = read("invoice", ["order_ref", "total", "currency"]).join(
        read("order", ["number", "deal_ref"]).select(pl.col("number").alias("order_ref"),
                        pl.col("deal_ref").str.strip_chars().str.to_uppercase().alias("deal_key")),
        on="order_ref", how="inner",
    ).group_by("deal_key").agg(pl.col("total").sum().cast(pl.Float64).alias("amount"), pl.col("currency").first())
    cmp = datacompy.PolarsCompare(deals, inv, join_columns="deal_key", abs_tol=0.01, df1_name="deal",
                                  df2_name="invoice")
    cmp.matches()
    cmp.report()
    return time.perf_counter() - t


def _cpu(who: int) -> float:
    """CPU seconds (user + system) of this process (``RUSAGE_SELF``) or of its waited-for children."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _machine_busy() -> float | None:
    """CPU seconds the whole machine has been busy since boot (all cores, every process: ``/proc/stat``), or None
    where there is no ``/proc/stat``."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # guest time is counted in user time already


def _store_child(url: str, as_of: date, partitions: int | None) -> None:
    """``--child-store``: what ``ltc reconcile`` runs (run_reconciliation on the store), alone in this
    process so that its peak resident set is its own; the columnar helper's peak is reported too."""
    from canonical import columnar
    from canonical.store import Store
    from ltc.app.config import Config
    from reconcile.engine import run_reconciliation

    busy, t, cpu = _machine_busy(), time.perf_counter(), _cpu(resource.RUSAGE_SELF)
    store = Store.open(url)
    res = run_reconciliation(store, Config(), as_of, partitions=partitions)
    secs, cpu, after = time.perf_counter() - t, _cpu(resource.RUSAGE_SELF) - cpu, _machine_busy()
    store.close()
    helper = columnar.close_helper()
    helper_cpu = _cpu(resource.RUSAGE_CHILDREN)  # the helper processes, waited for by close_helper
    own = columnar.peak_rss_mb()  # not ru_maxrss: a child's counts its parent's resident set at the fork
    fps = sorted(res.exceptions["fingerprint"].to_list())
    print(json.dumps({"seconds": secs, "cpu_s": cpu, "helper_cpu_s": helper_cpu, "rss_mb": own,
                      "helper_rss_mb": helper, "partitions": res.partitions,
                      "machine_busy_s": None if busy is None or after is None else after - busy,
                      "fingerprints": hashlib.sha1("\n".join(fps).encode()).hexdigest(), "exceptions": len(fps)}))


def _store_run(world_dir: str, backend: str, as_of: date, partitions: int | None,
               loaded: str | None = None, parquet_again: Callable[[], float] | None = None,
               pairs: int = 1) -> list[dict[str, Any]]:
    """Load the world into a fresh store (not timed), then time the store path in a child process, ``pairs`` times
    (``loaded``: the URL of a store this world was already loaded into, reused as it is); before each run but the
    first, ``parquet_again()`` times the Parquet path once more (its seconds go into that run's ``parquet_s``)."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from contextlib import nullcontext

    from scratch_db import scratch_database

    from canonical.store import Store
    from sandbox.scenario import World

    with nullcontext(loaded) if loaded else scratch_database(backend) as url:
        if not loaded:
            t = time.perf_counter()
            store = Store.open(url)
            World.read(world_dir).load(store)
            store.close()
            print(f"store {backend}: world loaded in {time.perf_counter() - t:.1f}s (columnar bulk load, not timed)",
                  flush=True)
        cmd = [sys.executable, os.path.abspath(__file__), "--child-store", url, "--as-of", as_of.isoformat()]
        if partitions:
            cmd += ["--partitions", str(partitions)]
        runs = []
        for i in range(pairs):
            parquet_s = parquet_again() if i and parquet_again is not None else None
            # its stderr passes through (the per-step clocks with LTC_RECON_PROFILE set)
            done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT)
            runs.append({**json.loads(done.stdout.strip().splitlines()[-1]), "parquet_s": parquet_s})
        return runs


def _digest(directory: str) -> dict[str, str]:
    """A hash per result frame, order-free: the frames of two runs are equal as sets when these are."""
    out = {}
    for name in FRAMES:
        df = pl.read_parquet(os.path.join(directory, name, "*.parquet"))
        out[name] = hashlib.sha1(df.sort(df.columns, nulls_last=True).write_ipc(None).getvalue()).hexdigest()
    return out


def _dask_run(world_dir: str, as_of: date, partitions: int | None, workers: int, one: Any, one_s: float) -> str:
    """The same world through ``flows/reconcile.py`` on a Dask LocalCluster; results compared, speed-up printed."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.reconcile import dask_runner, reconcile_directory

    n = one.partitions
    with tempfile.TemporaryDirectory(prefix="ltc-recon-a-") as a, tempfile.TemporaryDirectory(prefix="ltc-recon-b-") as b:
        t = time.perf_counter()
        base = reconcile_world(world_dir, Settings(), as_of, out=a, partitions=n)
        base_s = time.perf_counter() - t
        t = time.perf_counter()
        got = reconcile_directory.with_options(task_runner=dask_runner(workers))(world_dir, as_of, b, n)
        wall = time.perf_counter() - t
        same = (got["exceptions"].equals(base.exceptions) and got["totals"] == base.totals
                and _digest(a) == _digest(b))
    print(f"dask: {workers} worker processes, {n} buckets; one process {base_s:.2f}s, on Dask {got['seconds']:.2f}s "
          f"(flow wall with cluster start-up {wall:.2f}s); identical results: {same}", flush=True)
    if not same:
        raise SystemExit("the Dask run's results differ from the one-process run")
    return f"dask_workers={workers} buckets={n} one_process_s={base_s:.2f} dask_s={got['seconds']:.2f} " \
           f"speedup={base_s / got['seconds']:.2f} identical={same}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chains", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--world", help="Directory of a generated world (created if missing).")
    ap.add_argument("--partitions", type=int, help="Force the number of buckets (default: grows with the input).")
    ap.add_argument("--store", choices=["sqlite", "postgresql"],
                    help="Also time the store path (`ltc reconcile`) on this backend and compare with Parquet.")
    ap.add_argument("--dask-workers", type=int,
                    help="Also run the buckets as Prefect tasks on a Dask LocalCluster of this many processes; "
                         "checks the results equal the one-process run and prints the speed-up.")
    ap.add_argument("--store-url", help="With --store: a store this world is already loaded into (loading 1M "
                                        "chains takes many minutes), used as it is instead of a fresh one.")
    ap.add_argument("--pairs", type=int, default=1,
                    help="With --store: time the Parquet path and the store path this many times, alternately (the "
                         "store loaded once); parquet_ratio is the median of the pairs' ratios, store_reconcile_s "
                         "the median store time (a machine whose speed drifts moves both sides of a pair alike).")
    ap.add_argument("--child-store", help=argparse.SUPPRESS)
    ap.add_argument("--child-parquet", help=argparse.SUPPRESS)
    ap.add_argument("--as-of", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_store:
        _store_child(args.child_store, date.fromisoformat(args.as_of), args.partitions)
        return
    if args.child_parquet:
        with tempfile.TemporaryDirectory(prefix="ltc-recon-out-") as again:
            t = time.perf_counter()
            reconcile_world(args.child_parquet, Settings(), date.fromisoformat(args.as_of), out=again,
                            partitions=args.partitions)
            print(json.dumps({"seconds": time.perf_counter() - t}))
        return

    # the cache is keyed by the generator's source too: a changed generator never reuses an old world
    with open(os.path.join(ROOT, "sandbox", "scenario.py"), "rb") as src:
        version = hashlib.sha1(src.read()).hexdigest()[:8]
    world_dir = args.world or os.path.join(tempfile.gettempdir(), f"ltc-world-{args.chains}-{args.seed}-{version}")
    t = time.perf_counter()
    if not os.path.exists(os.path.join(world_dir, "meta.json")):
        subprocess.run([sys.executable, "-m", "sandbox.scenario", "--chains", str(args.chains), "--seed",
                        str(args.seed), "--out", world_dir], check=True, cwd=ROOT)
    gen_s = time.perf_counter() - t
    with open(os.path.join(world_dir, "meta.json")) as f:
        meta = json.load(f)
    as_of = date.fromisoformat(meta["as_of"])
    print(f"generate {gen_s:.1f}s (child process), world {world_dir}", flush=True)

    with tempfile.TemporaryDirectory(prefix="ltc-recon-out-") as out:
        t, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        res = reconcile_world(world_dir, Settings(), as_of, out=out, partitions=args.partitions)
        rec_s, rec_cpu = time.perf_counter() - t, _cpu(resource.RUSAGE_SELF) - cpu
        print(f"{res.partitions} partitions, {rec_cpu:.2f} CPU s; rows in: " + ", ".join(f"{k}={v}" for k, v in res.totals["rows"].items())
              + "; result frames: " + ", ".join(f"{n}={pl.scan_parquet(os.path.join(out, n, '*.parquet')).select(pl.len()).collect().item()}"
                                                 for n in FRAMES), flush=True)
    found = set(res.exceptions["fingerprint"].to_list())
    truth = set(pl.read_parquet(os.path.join(world_dir, "truth.parquet"))["fingerprint"].to_list())
    tp = len(found & truth)
    precision = tp / len(found) if found else 1.0
    recall = tp / len(truth) if truth else 1.0
    print("exceptions: " + ", ".join(f"{k}={v}" for k, v in res.totals["exceptions"].items()), flush=True)
    print(f"true positives {tp}, found {len(found)}, planted {len(truth)}", flush=True)

    dc_s = _datacompy(world_dir)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the whole process, datacompy included
    line = (f"reconcile_s={rec_s:.2f} peak_rss_mb={peak:.0f} precision={precision:.4f} recall={recall:.4f} "
            f"datacompy_s={dc_s:.2f} ratio={rec_s / dc_s:.2f}")
    if args.dask_workers:
        print(line, flush=True)
        line = _dask_run(world_dir, as_of, args.partitions, args.dask_workers, res, rec_s)
    if not args.store:
        print(line)
        return
    print(line, flush=True)

    def parquet_again() -> float:
        """The Parquet path timed again in a child process, as the first time here and as the store path's runs are:
        imports done, nothing else run yet (in this process it ran warm: 5.0-5.2 s against the first run's 7.7 s)."""
        cmd = [sys.executable, os.path.abspath(__file__), "--child-parquet", world_dir, "--as-of", as_of.isoformat()]
        if args.partitions:
            cmd += ["--partitions", str(args.partitions)]
        done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])

    runs = _store_run(world_dir, args.store, as_of, args.partitions, args.store_url, parquet_again, max(1, args.pairs))
    runs[0]["parquet_s"] = rec_s
    fps = sorted(found)
    digest = hashlib.sha1("\n".join(fps).encode()).hexdigest()
    same = all(r["fingerprints"] == digest for r in runs)
    got = runs[0]
    rss = max(max(r["rss_mb"], r["helper_rss_mb"]) for r in runs)
    store_cpu = got["cpu_s"] + got["helper_cpu_s"]
    print(f"store {args.store}: {got['partitions']} partitions, {got['exceptions']} exceptions, same as Parquet: {same}; "
          f"process peak {got['rss_mb']} MB, columnar helper peak {got['helper_rss_mb']} MB; CPU {store_cpu:.2f} s "
          f"(process {got['cpu_s']:.2f}, helpers {got['helper_cpu_s']:.2f}), {store_cpu / rec_cpu:.2f} x the Parquet "
          f"path's {rec_cpu:.2f}", flush=True)
    if got["machine_busy_s"] is not None:
        cores = os.cpu_count() or 1  # /proc/stat counts every core the machine has
        floor = got["machine_busy_s"] / cores
        print(f"store {args.store}: the machine was busy {got['machine_busy_s']:.2f} CPU s meanwhile (its helpers and "
              f"the database server included); on {cores} cores the store path takes {floor:.2f} s at least: "
              f"ratio_floor={floor / rec_s:.2f}", flush=True)
    if not same:
        raise SystemExit("the store path found other exceptions than the Parquet path")
    ratios = [r["seconds"] / r["parquet_s"] for r in runs]
    if len(runs) > 1:
        print("pairs (Parquet s, store s, ratio): " + "; ".join(f"{r['parquet_s']:.2f}, {r['seconds']:.2f}, {q:.2f}"
                                                                 for r, q in zip(runs, ratios, strict=True)), flush=True)
    store_s = statistics.median(r["seconds"] for r in runs)
    print(f"store_reconcile_s={store_s:.2f} peak_rss_mb={rss} parquet_ratio={statistics.median(ratios):.2f}"
          + (f" pairs={len(runs)}" if len(runs) > 1 else ""))


if __name__ == "__main__":
    main()

"""The sync fanned out on Dask against the one-process sync, on a generated world's emulators.

    python bench/sync_dask.py [--chains 2000] [--workers 2]

Writes a world (``sandbox.scenario``, Tryton as the ERP: Salesforce, Tryton and Stripe sources), serves it as
``ltc sandbox start --world`` does (the emulators in their own process) with the ltc.yaml that
``--write-config`` writes, then lands every stream of every source twice into fresh SQLite stores:

* ``sync_one_process_s``: the ``ltc-sync-all`` flow, the sources one after the other in this process;
* ``sync_dask_s``: ``flows.sync.sync_on_dask`` on a Dask ``LocalCluster`` of ``--workers`` processes started
  beforehand (its start-up is printed apart, not on the clock): every stream a task at once, each of a source's
  k streams at 1/min(k, workers) of the vendor's rate.

Both are timed around the flow call (Prefect's task runs included). ``identical``: the two stores hold the same raw
records (system, object, id, content hash, deleted). On a machine with two cores the emulators' process, the
workers and SQLite's one writer share them: the figure says what fanning out buys here, not on a cluster.

Last line: ``sync_one_process_s=<s> sync_dask_s=<s> speedup=<x> identical=<bool> records=<n> workers=<n>``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from canonical.store import Store  # noqa: E402
from canonical.tables import raw_record  # noqa: E402
from sandbox.scenario import generate  # noqa: E402
from sandbox.world_writer import write_world  # noqa: E402


def _landed(url: str) -> set[tuple[Any, ...]]:
    store = Store.open(url)
    c = raw_record.c
    with store.engine.connect() as conn:
        rows = set(map(tuple, conn.execute(sa.select(c.system, c.object, c.source_id, c.content_hash, c.deleted))))
    store.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from distributed import LocalCluster

    from flows.dask import local_cluster_kwargs
    from flows.sync import sync_all, sync_on_dask
    from ltc.app import emulators

    with tempfile.TemporaryDirectory(prefix="ltc-sync-dask-") as tmp:
        world = write_world(generate(args.chains, seed=args.seed, erp="tryton"), Path(tmp) / "world")
        os.chdir(tmp)  # the sandbox keeps its state in the working directory
        emulators.start([], 7, 10, str(world))
        try:
            cfg = str(emulators.write_config(Path(tmp) / "ltc.yaml"))
            urls = {k: f"sqlite:///{Path(tmp) / f'{k}.db'}" for k in ("one", "dask")}
            os.environ["LTC_DATABASE_URL"] = urls["one"]
            t = time.perf_counter()
            sync_all(cfg)
            one_s = time.perf_counter() - t
            os.environ["LTC_DATABASE_URL"] = urls["dask"]  # the workers start with this environment
            t = time.perf_counter()
            with LocalCluster(**local_cluster_kwargs(args.workers)) as cluster:  # as sync_on_dask's own
                print(f"dask: a LocalCluster of {args.workers} worker processes started in "
                      f"{time.perf_counter() - t:.2f}s (not timed)", flush=True)
                t = time.perf_counter()
                outcomes = sync_on_dask(cfg, address=cluster.scheduler_address)
                dask_s = time.perf_counter() - t
        finally:
            emulators.stop()
        one, fanned = _landed(urls["one"]), _landed(urls["dask"])
    same = one == fanned and all(o["status"] == "ok" for o in outcomes.values())
    streams = sum(len(o["streams"]) for o in outcomes.values())
    print(f"{len(outcomes)} sources, {streams} streams, {len(fanned)} raw records; one process {one_s:.2f}s, "
          f"fanned out on Dask {dask_s:.2f}s; identical: {same}", flush=True)
    print(f"sync_one_process_s={one_s:.2f} sync_dask_s={dask_s:.2f} speedup={one_s / dask_s:.2f} identical={same} "
          f"records={len(fanned)} workers={args.workers}")
    if not same:
        raise SystemExit("the Dask sync landed other records than the one-process sync")


if __name__ == "__main__":
    main()

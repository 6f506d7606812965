"""Reconcile the store with its customer buckets fanned out over Dask (Prefect's ``DaskTaskRunner``).

The stages stay plain Python: :func:`reconcile.engine.run_reconciliation` exports the store, plans the
buckets and stores the results; this flow only hands it a *mapper* that runs
:func:`reconcile.stream.run_bucket` as one Prefect task per bucket on the flow's task runner. The
results are the same as in one process (the buckets are independent; their summaries are combined in
bucket order).

* One machine: ``reconcile_on_dask(workers=2)`` starts a ``LocalCluster`` of 2 worker processes
  (one thread each: Polars uses the cores of its process).
* Several machines: start ``dask scheduler`` on one host and ``dask worker tcp://<scheduler>:8786`` on
  each, put the store on PostgreSQL, point ``scratch`` at a directory every worker mounts (the buckets
  and their results are files there), and run ``reconcile_on_dask(address="tcp://<scheduler>:8786",
  scratch="/shared/ltc")``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import unmapped

from flows.dask import dask_runner
from ltc.app import runtime
from ltc.app.config import load_config
from reconcile.core import Settings
from reconcile.engine import run_reconciliation
from reconcile.stream import BucketSummary, reconcile_world


def _run_name() -> str:
    from prefect.runtime import flow_run

    return f"reconcile as of {(flow_run.parameters or {}).get('as_of') or 'today'}"


@task(cache_policy=NO_CACHE, task_run_name="reconcile bucket {k}")
def bucket_task(run: Callable[[int], BucketSummary], k: int) -> BucketSummary:
    return run(k)


def task_mapper(run: Callable[[int], BucketSummary], buckets: Sequence[int]) -> list[BucketSummary]:
    """Run the buckets as Prefect tasks on the current flow's task runner (Dask: in parallel); a progress
    artifact (key ``reconcile-progress``) counts the buckets done."""
    from flows.artifacts import Progress

    progress = Progress("reconcile-progress", f"Reconcile: {len(buckets)} bucket(s)")
    futures = bucket_task.map(unmapped(run), list(buckets))
    out = []
    for i, f in enumerate(futures):
        out.append(f.result())
        progress.update(100.0 * (i + 1) / (len(futures) or 1), f"bucket {i + 1} of {len(futures)} done",
                        force=i + 1 == len(futures))
    return out


@flow(name="ltc-reconcile", flow_run_name=_run_name)
def reconcile(config_path: str | None = None, as_of: date | None = None, partitions: int | None = None,
              scratch: str | None = None) -> dict[str, Any]:
    """Reconcile the store; the buckets run as tasks on this flow's task runner (see :func:`dask_runner`)."""
    cfg = load_config(config_path)
    store = runtime.open_store(config_path, auto_create=False)
    try:
        result = run_reconciliation(store, cfg, as_of or cfg.today(), partitions=partitions,
                                    mapper=task_mapper, scratch=scratch)
    finally:
        store.close()
    return result.summary()


@flow(name="ltc-reconcile-directory", flow_run_name="reconcile {directory} as of {as_of}")
def reconcile_directory(directory: str, as_of: date, out: str | None = None, partitions: int | None = None,
                        scratch: str | None = None) -> dict[str, Any]:
    """Reconcile a directory of canonical Parquet tables (``World.save``'s layout) bucket by bucket on this
    flow's task runner; returns the exceptions, totals and the seconds the buckets took."""
    started = time.perf_counter()
    res = reconcile_world(directory, Settings(), as_of, out=out, partitions=partitions, scratch=scratch,
                          mapper=task_mapper)
    return {"exceptions": res.exceptions, "totals": res.totals, "partitions": res.partitions,
            "seconds": time.perf_counter() - started}


def reconcile_on_dask(config_path: str | None = None, as_of: date | None = None, *, workers: int | None = None,
                      address: str | None = None, partitions: int | None = None,
                      scratch: str | None = None) -> dict[str, Any]:
    """:func:`reconcile` with its buckets on Dask (a local cluster of ``workers`` processes, or ``address``)."""
    runner = dask_runner(workers, address)
    return reconcile.with_options(task_runner=runner)(config_path, as_of, partitions, scratch)

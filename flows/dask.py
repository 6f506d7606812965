"""The Dask task runner the fanned-out flows run on (``flows.reconcile.reconcile_on_dask``,
``flows.sync.sync_on_dask``): a ``LocalCluster`` of worker processes on this machine, or the cluster whose
scheduler is at ``address``."""

from __future__ import annotations

import os
from typing import Any

DEFAULT_WORKERS = 2  # a local cluster's worker processes when none are asked for


def local_cluster_kwargs(workers: int | None = None) -> dict[str, Any]:
    """A ``LocalCluster``'s settings for the fanned-out flows: ``workers`` processes of one thread each (a task at a
    time per process), reporting their task runs to this process's Prefect API (without it, each would start a
    temporary server of its own), each one's Polars on its share of the cores (workers that each run a thread per
    core oversubscribe the machine)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        api = str(client.api_url)
    n = workers or DEFAULT_WORKERS
    threads = str(max(1, (os.cpu_count() or 1) // n))
    return {"n_workers": n, "threads_per_worker": 1, "processes": True, "dashboard_address": None,
            "env": {"PREFECT_API_URL": api, "POLARS_MAX_THREADS": threads}}


def dask_runner(workers: int | None = None, address: str | None = None) -> Any:
    """A ``DaskTaskRunner``: on the cluster at ``address``, else a local cluster of ``workers`` processes
    (:func:`local_cluster_kwargs`)."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs=local_cluster_kwargs(workers))


def dask_slots(workers: int | None = None, address: str | None = None) -> int:
    """How many tasks :func:`dask_runner`'s cluster runs at once: its workers' threads (asked of the scheduler at
    ``address``; a local cluster's ``workers`` run one each)."""
    if not address:
        return workers or DEFAULT_WORKERS
    from distributed import Client

    with Client(address, timeout=30) as client:
        return max(1, sum(client.nthreads().values()))

"""Prefect flows that pull sources: one task per stream (never per record or per page).

* ``sync_source``: one source; a global concurrency limit ``ltc-sync-<source>`` of 1 slot keeps two
  syncs of the same source from overlapping (created on first use). Each stream is a task with
  coarse Prefect retries for transient failures only (the HTTP layer already retried each call).
* ``sync_all``: every configured source, each as a subflow.
* A stream that hit a vendor quota ends *paused* (state saved); the flow run then ends in a
  Completed state named ``Paused`` with the reason — never a plain success with partial data.
* Artifacts: a table per run (key ``sync-<source>``) so the Prefect UI shows what each run did.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.states import Completed, State

from connectors.base import sync_stream
from connectors.errors import AuthenticationError, NotFound, PermissionDenied
from ltc.app import runtime
from ltc.app.config import load_config

FATAL = (AuthenticationError, PermissionDenied, NotFound)


def _transient_only(task_: Any, task_run: Any, state: State) -> bool:
    """Retry a stream task unless it failed for a reason a retry cannot fix (credentials, scopes)."""
    try:
        state.result()
    except FATAL:
        return False
    except Exception:
        return True
    return False


def ensure_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit if it does not exist yet (a missing one only warns)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except Exception:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=_transient_only,
      task_run_name="sync {source}.{stream}")
def sync_stream_task(source: str, stream: str, run_id: str, full_refresh: bool = False,
                     config_path: str | None = None) -> dict[str, Any]:
    cfg = load_config(config_path)
    store = runtime.open_store(config_path)
    connector = runtime.build_connector(cfg, source)
    try:
        result = sync_stream(connector, connector.stream(stream), store, run_id=run_id, full_refresh=full_refresh)
    finally:
        connector.close()
        store.close()
    get_run_logger().info("%s.%s: %s, %d records (%d written, %d quarantined)", source, stream, result.status,
                          result.records, result.written, result.quarantined)
    return dataclasses.asdict(result)


@flow(name="ltc-sync-source", log_prints=True)
def sync_source(source: str, streams: list[str] | None = None, full_refresh: bool = False,
                config_path: str | None = None) -> Any:
    """Pull one source's streams into the raw landing."""
    cfg = load_config(config_path)
    runtime.source_names(cfg, [source])
    connector = runtime.build_connector(cfg, source)
    names = [s.name for s in connector.streams if not streams or s.name in streams]
    connector.close()
    limit = f"ltc-sync-{source}"
    ensure_limit(limit)
    store = runtime.open_store(config_path)
    run_id = store.begin_run("sync", source)
    results: list[dict[str, Any]] = []
    status = "success"
    try:
        with concurrency(limit, occupy=1, strict=True):
            for name in names:
                result = sync_stream_task(source, name, run_id, full_refresh, config_path)
                results.append(result)
                if result["status"] == "paused":
                    status = "paused"
                    break
    except Exception as exc:
        store.finish_run(run_id, "failed", {r["stream"]: r for r in results}, str(exc))
        raise
    finally:
        _artifact(source, results)
    message = next((r["message"] for r in results if r["status"] == "paused"), None)
    store.finish_run(run_id, status, {r["stream"]: r for r in results}, message)
    store.close()
    if status == "paused":
        return Completed(name="Paused", message=f"{source} paused with state saved: {message}", data=results)
    return results


@flow(name="ltc-sync-all")
def sync_all(config_path: str | None = None, full_refresh: bool = False) -> dict[str, Any]:
    """Pull every configured source (one subflow each)."""
    cfg = load_config(config_path)
    return {name: sync_source(name, None, full_refresh, config_path) for name in runtime.source_names(cfg)}


def _artifact(source: str, results: list[dict[str, Any]]) -> None:
    rows = [{k: r[k] for k in ("stream", "status", "records", "written", "unchanged", "quarantined", "deleted",
                               "source_count", "store_count", "message")} for r in results]
    create_table_artifact(rows, key=f"sync-{source}".lower().replace("_", "-"),
                          description=f"Streams of {source} in this run")

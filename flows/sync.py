"""Prefect flows that pull sources: one task per stream (never per record or per page).

* ``sync_source``: one source; a global concurrency limit ``ltc-sync-<source>`` of 1 slot keeps two
  syncs of the same source from overlapping (created on first use). Each stream is a task with
  coarse Prefect retries for transient failures only (the HTTP layer already retried each call).
* ``sync_all``: every configured source, each as a subflow.
* ``sync_on_dask``: every configured source (or the named ones) with all their streams fanned out at once as
  tasks on a Dask cluster (``flows.dask.dask_runner``: a ``LocalCluster`` of processes, or a scheduler's
  workers across machines, the store on PostgreSQL). A stream lands what it would land alone; of a source's k
  streams at most min(k, n) run at once on the cluster's n threads, each at that share of the vendor's rate
  (``connectors.governor.rate_share``: the limit is the account's, not a process's), so fanning out helps where
  landing is the bound (CPU, the database), not the vendor's rate.
* A stream that hit a vendor quota ends *paused* (state saved); the flow run then ends in a
  Failed state named ``Paused`` with the reason and the fix hint — the runs list shows it red, never a
  green success with partial data (an ``incomplete`` stream: a Failed state named ``Incomplete``).
  ``sync_all`` goes on with the other sources and ends in the worst of their states.
* Run names: ``sync <source>`` (the source in each subflow's name), ``sync all sources``; the stream
  tasks carry the tags ``ltc`` and ``source:<name>``.
* Artifacts: a table per run (key ``sync-<source>``) so the Prefect UI shows what each run did, and a
  progress artifact (key ``sync-progress-<source>``) updated per stream and every few seconds of pages.
"""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from typing import Any

from prefect import flow, get_run_logger, tags, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.states import Failed, State

from canonical.errors import error_text
from canonical.locks import stage_lock
from connectors.base import sync_stream
from connectors.errors import AuthenticationError, NotFound, PermissionDenied
from connectors.governor import rate_share as governed_share
from ltc.app import runtime
from ltc.app.config import load_config
from ltc.app.hints import PAUSED_HINT, hint_for

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
                     config_path: str | None = None, progress: Any = None, share: tuple[float, float] = (0, 100),
                     rate_share: float = 1.0) -> dict[str, Any]:
    """One stream of ``source``; ``rate_share``: the part of the vendor's rate it may use (1/k where k of the
    source's streams run at once, :func:`sync_on_dask`)."""
    cfg = load_config(config_path)
    store = runtime.open_store(config_path)
    connector = runtime.build_connector(cfg, source)

    def on_page(r: Any) -> None:
        if progress is not None:  # within this stream's share of the bar: it nears the end, never reaches it
            progress.update(share[0] + (share[1] - share[0]) * r.pages / (r.pages + 20),
                            f"{source}.{stream}: {r.pages} page(s), {r.records:,} record(s)")

    try:
        with governed_share(rate_share):
            result = sync_stream(connector, connector.stream(stream), store, run_id=run_id,
                                 full_refresh=full_refresh, on_page=on_page)
    finally:
        connector.close()
        store.close()
    get_run_logger().info("%s.%s: %s, %d records (%d written, %d quarantined)", source, stream, result.status,
                          result.records, result.written, result.quarantined)
    return dataclasses.asdict(result)


@flow(name="ltc-sync-source", flow_run_name="sync {source}", log_prints=True)
def sync_source(source: str, streams: list[str] | None = None, full_refresh: bool = False,
                config_path: str | None = None) -> Any:
    """Pull one source's streams into the raw landing (``source``: a name under ``sources:`` in ltc.yaml)."""
    cfg = load_config(config_path)
    runtime.source_names(cfg, [source])
    connector = runtime.build_connector(cfg, source)
    names = [s.name for s in connector.streams if not streams or s.name in streams]
    connector.close()
    limit = f"ltc-sync-{source}"
    ensure_limit(limit)
    store = runtime.open_store(config_path)
    # the store's own lock too: a CLI `ltc sync` of the same source waits for this flow, and back
    with stage_lock(store.engine, f"sync:{source}", on_wait=lambda line: get_run_logger().warning(line)):
        store.close_interrupted("sync", source, streams=True)
        status, results, message = _sync_streams(store, source, names, limit, full_refresh, config_path)
    store.close()
    log = get_run_logger()
    if status == "paused":
        log.warning("%s paused: %s", source, message)
        return Failed(name="Paused", data=results,
                      message=f"{source} paused with state saved: {message} — {PAUSED_HINT}")
    if status == "incomplete":
        log.warning("%s incomplete: %s", source, message)
        return Failed(name="Incomplete", data=results, message=f"{source} incomplete: {message}")
    log.info("%s: %d stream(s) synced, %d record(s)", source, len(results), sum(r["records"] for r in results))
    return results


def _sync_streams(store: Any, source: str, names: list[str], limit: str, full_refresh: bool,
                  config_path: str | None) -> tuple[str, list[dict[str, Any]], str | None]:
    run_id = store.begin_run("sync", source)
    results: list[dict[str, Any]] = []
    status = "success"
    from flows.artifacts import Progress

    progress = Progress(f"sync-progress-{source}", f"Sync of {source}: {len(names)} stream(s)")
    try:
        with concurrency(limit, occupy=1, strict=True), tags("ltc", f"source:{source}"):
            for i, name in enumerate(names):
                share = (100.0 * i / len(names), 100.0 * (i + 1) / len(names))
                progress.update(share[0], f"{source}.{name}: starting", force=True)
                result = sync_stream_task(source, name, run_id, full_refresh, config_path, progress, share)
                results.append(result)
                progress.update(share[1], f"{source}.{name}: {result['status']}, {result['records']:,} record(s)",
                                force=True)
                if result["status"] == "paused":
                    status = "paused"
                    break
                if result["status"] == "incomplete":
                    status = "incomplete"
    except Exception as exc:
        store.finish_run(run_id, "failed", {r["stream"]: r for r in results}, str(exc))
        raise
    finally:
        _artifact(source, results)
    message = next((r["message"] for r in results if r["status"] in ("paused", "incomplete")), None)
    store.finish_run(run_id, status, {r["stream"]: r for r in results}, message)
    return status, results, message


@flow(name="ltc-sync-fanned-out", flow_run_name="sync {sources} (streams fanned out)")
def sync_fanned_out(config_path: str | None = None, sources: list[str] | None = None,
                    full_refresh: bool = False, slots: int | None = None) -> Any:
    """Every stream of the sources (all configured ones unless named) submitted at once to this flow's task runner
    (:func:`sync_on_dask` runs it on Dask). Each source is held as ``sync_source`` holds it (its store lock and its
    global concurrency limit) and is one ``sync`` run in the store; a stream that fails or pauses leaves the other
    streams going. Ends as :func:`sync_all` does: Failed (named ``Paused`` when nothing failed outright) naming
    each source that did not end ok, else per source its streams' results.

    ``slots``: how many tasks the runner runs at once (unknown: as many as there are streams). Of a source with k
    streams, at most min(k, slots) run at once, and each runs at that share of the vendor's rate."""
    cfg = load_config(config_path)
    names = runtime.source_names(cfg, sources)
    plan: dict[str, list[str]] = {}
    for name in names:
        connector = runtime.build_connector(cfg, name)
        plan[name] = [s.name for s in connector.streams]
        connector.close()
    log = get_run_logger()
    store = runtime.open_store(config_path)
    try:
        with ExitStack() as held:
            for name in names:
                ensure_limit(f"ltc-sync-{name}")
                held.enter_context(concurrency(f"ltc-sync-{name}", occupy=1, strict=True))
                held.enter_context(stage_lock(store.engine, f"sync:{name}", on_wait=lambda line: log.warning(line)))
                store.close_interrupted("sync", name, streams=True)
            runs = {name: store.begin_run("sync", name) for name in names}
            futures = {(name, stream): sync_stream_task.with_options(tags=["ltc", f"source:{name}"]).submit(
                           name, stream, runs[name], full_refresh, config_path, None, (0, 100),
                           1 / min(len(plan[name]), slots or len(plan[name])))
                       for name in names for stream in plan[name]}
            outcomes = {name: _fanned_outcome(store, name, runs[name], [(st, futures[(name, st)]) for st in plan[name]])
                        for name in names}
    finally:
        store.close()
    for name, outcome in outcomes.items():
        _artifact(name, outcome["streams"])
        log.info("%s: %s, %d stream(s), %d record(s)", name, outcome["status"], len(outcome["streams"]),
                 sum(r["records"] for r in outcome["streams"]))
    return sync_verdict(outcomes, data=outcomes) or outcomes


def _fanned_outcome(store: Any, source: str, run_id: str, futures: list[tuple[str, Any]]) -> dict[str, Any]:
    """One source's outcome once its streams' tasks ended (as :func:`source_outcome` gives it), its run finished."""
    results: list[dict[str, Any]] = []
    failed: list[tuple[str, BaseException]] = []
    for stream, future in futures:
        try:
            results.append(future.result())
        except Exception as exc:  # the other streams' results stand; the source's run says which one failed
            failed.append((stream, exc))
    if failed:
        first, error = failed[0]
        store.finish_run(run_id, "failed", {r["stream"]: r for r in results}, f"{first}: {error}")
        return {"status": "failed", "message": f"{first}: {error}", "hint": hint_for(source, error), "streams": results}
    status = next((r["status"] for r in results if r["status"] == "paused"),
                  next((r["status"] for r in results if r["status"] == "incomplete"), "success"))
    said = next((r["message"] for r in results if r["status"] in ("paused", "incomplete")), None)
    store.finish_run(run_id, status, {r["stream"]: r for r in results}, said)
    return {"status": "ok" if status == "success" else status, "message": said,
            "hint": None if status == "success" else hint_for(source, status=status), "streams": results}


def sync_on_dask(config_path: str | None = None, sources: list[str] | None = None, *, workers: int | None = None,
                 address: str | None = None, full_refresh: bool = False) -> Any:
    """:func:`sync_fanned_out` on Dask: a local cluster of ``workers`` processes, or the cluster at ``address``
    (its workers need ltc-hub, the ltc.yaml at ``config_path``, the sources' credentials and ``LTC_DATABASE_URL``;
    a store every worker reaches: PostgreSQL). The cluster's threads are the flow's slots (a local cluster's
    workers run one thread each; a remote cluster is asked)."""
    from flows.dask import dask_runner, dask_slots

    runner = dask_runner(workers, address)
    return sync_fanned_out.with_options(task_runner=runner)(config_path, sources, full_refresh,
                                                            dask_slots(workers, address))


def sync_each(config_path: str | None, full_refresh: bool = False) -> dict[str, dict[str, Any]]:
    """Every configured source as a ``sync <source>`` subflow; one failing or pausing never stops the
    others. Per source: ``status`` (ok | paused | incomplete | failed), ``message``, ``hint``, ``streams``."""
    cfg = load_config(config_path)
    out: dict[str, dict[str, Any]] = {}
    for name in runtime.source_names(cfg):
        state = sync_source(name, None, full_refresh, config_path, return_state=True)
        out[name] = source_outcome(name, state)
    return out


def source_outcome(name: str, state: State) -> dict[str, Any]:
    if state.is_completed():
        return {"status": "ok", "message": None, "hint": None, "streams": state.result()}
    if state.name in ("Paused", "Incomplete"):
        status = state.name.lower()
        streams = state.result(raise_on_failure=False)
        reason = next((f"{r['stream']}: {r['message']}" for r in streams or [] if isinstance(r, dict)
                       and r.get("status") == status), state.message)
        return {"status": status, "message": reason, "hint": hint_for(name, status=status), "streams": streams}
    exc: BaseException | None = None
    try:
        state.result()
    except BaseException as e:  # the subflow's own error: reported, never re-raised here
        exc = e
    return {"status": "failed", "message": error_text(exc, typed=False) if exc else state.message, "hint": hint_for(name, exc),
            "streams": []}


def sync_verdict(outcomes: dict[str, dict[str, Any]], data: Any = None) -> State | None:
    """The state a run with these sources ends in: None (all ok), else Failed, named ``Paused`` when
    no source failed outright."""
    bad = {n: o for n, o in outcomes.items() if o["status"] != "ok"}
    if not bad:
        return None
    message = "; ".join(f"{n} {o['status']}: {o['message']}" + (f" (fix: {o['hint']})" if o["hint"] else "")
                        for n, o in bad.items())[:2000]
    paused_only = all(o["status"] in ("paused", "incomplete") for o in bad.values())
    return Failed(name="Paused" if paused_only else "Failed", message=message, data=data)


@flow(name="ltc-sync-all", flow_run_name="sync all sources")
def sync_all(config_path: str | None = None, full_refresh: bool = False) -> Any:
    """Pull every configured source (one subflow each, named after it); the others go on when one fails."""
    outcomes = sync_each(config_path, full_refresh)
    return sync_verdict(outcomes, data=outcomes) or outcomes


def _artifact(source: str, results: list[dict[str, Any]]) -> None:
    rows = [{k: r[k] for k in ("stream", "status", "records", "written", "unchanged", "quarantined", "deleted",
                               "source_count", "store_count", "message")} for r in results]
    create_table_artifact(rows, key=f"sync-{source}".lower().replace("_", "-"),
                          description=f"Streams of {source} in this run")

"""The main job: sync every source, map, resolve identities, reconcile, report, notify — each stage a task.

Stages are plain Python (`mappings.engine.run_mapping`, `canonical.identity.run_identity`,
`reconcile.engine.run_reconciliation`, `ltc.app.notify.notify_run`), so `ltc demo` and the CLI run
exactly what this flow runs. Each source syncs in a subflow named ``sync <source>``; one failing or
pausing never stops the others, the rest of the pipeline reconciles what it has, and the run then ends
in a Failed state (named ``Paused`` when the sources only paused on their quota) with the reason — the
runs list never shows partial data as a green Completed run.

In the Prefect UI each run has: the run name ``pipeline as of <date>``; a readable summary (key
``ltc-pipeline``); the KPI table (``ltc-kpis``); a link to the report (``ltc-report``); the open
exceptions by code (``ltc-exceptions``); a progress bar of the reconcile (``reconcile-progress``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed

from flows.artifacts import (
    Progress,
    kpi_table,
    pipeline_summary,
    progress_mapper,
    report_link,
    summary_artifact,
)
from ltc.app import runtime
from ltc.app.config import load_config
from ltc.app.notify import RunOutcome, SourceOutcome, notify_run, run_kpis
from ltc.app.pipeline import after_sync, write_report


def _run_name() -> str:
    as_of = (flow_run.parameters or {}).get("as_of")
    return f"pipeline as of {as_of or datetime.now(UTC).date()}"


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=30, task_run_name="map, resolve, reconcile")
def map_resolve_reconcile(config_path: str | None, as_of: date) -> dict[str, Any]:
    log = get_run_logger()
    cfg = load_config(config_path)
    store = runtime.open_store(config_path)
    progress = Progress("reconcile-progress", f"Reconcile as of {as_of}")
    try:
        summary = after_sync(store, cfg, as_of, mapper=progress_mapper(progress))
    finally:
        store.close()
    m, i, r = summary["mapping"], summary["identity"], summary["reconcile"]
    log.info("mapped %s record(s), %s quarantined", m.get("mapped", 0), m.get("quarantined", 0))
    log.info("identity: %s account(s) in %s cluster(s), %s review candidate(s)", i.get("accounts"), i.get("clusters"),
             i.get("review_candidates"))
    log.info("reconciled as of %s: %s chain(s), %s open exception(s), lifecycle %s", r.get("as_of"), r.get("chains"),
             r.get("exceptions"), r.get("lifecycle"))
    progress.done(f"reconciled: {r.get('chains')} chain(s), {r.get('exceptions')} exception(s)")
    return summary


@task(cache_policy=NO_CACHE, task_run_name="write the finance report")
def report(config_path: str | None) -> dict[str, Any]:
    """Write the report files and return what the UI shows: exceptions by code, where the files are."""
    cfg = load_config(config_path)
    store = runtime.open_store(config_path)
    try:
        files = write_report(store, cfg)
    finally:
        store.close()
    get_run_logger().info("finance report written: %s", files.html)
    return {"html": str(files.html), "by_code": files.report.by_code if files.report else []}


@task(cache_policy=NO_CACHE, task_run_name="notify")
def notify(config_path: str | None, outcome: RunOutcome) -> list[str]:
    """Alerts and the digest to ``notifications.targets``; a target that fails is logged, never fatal."""
    log = get_run_logger()
    cfg = load_config(config_path)
    store = runtime.open_store(config_path)
    try:
        result = notify_run(outcome, cfg, store)
    finally:
        store.close()
    lines = [f"{d.event} → {d.target}: {'sent' if d.ok else 'FAILED ' + (d.error or '')}" for d in result.deliveries]
    for line in lines:
        (log.info if "FAILED" not in line else log.warning)(line)
    if not cfg.notifications.targets:
        log.info("no notification targets configured")
    return lines


@flow(name="ltc-pipeline", flow_run_name=_run_name)
def pipeline(config_path: str | None = None, as_of: date | None = None, sync: bool = True) -> Any:
    """Sync all sources (one subflow each), then map, resolve identities, reconcile, report and notify."""
    from flows.sync import sync_each, sync_verdict

    log = get_run_logger()
    as_of = as_of or datetime.now(UTC).date()
    names = list(load_config(config_path).sources)
    log.info("pipeline as of %s: %s", as_of, f"syncing {len(names)} source(s): {', '.join(names)}" if sync and names
             else "no sync; map, resolve, reconcile, report, notify")
    sources = sync_each(config_path) if sync else {}
    for name, o in sources.items():
        (log.info if o["status"] == "ok" else log.warning)("source %s: %s%s", name, o["status"],
                                                          f" — {o['message']}" if o["message"] else "")
    summary = map_resolve_reconcile(config_path, as_of)
    written = report(config_path)
    store = runtime.open_store(config_path)
    try:
        kpis = run_kpis(store, summary["reconcile"].get("run_id"))
        since = last_complete_sync(store.stream_states())
    finally:
        store.close()
    for name, o in sources.items():
        if o["status"] != "ok" and since.get(name):
            o["message"] = f"{o['message']} (last complete sync {since[name]:%Y-%m-%d %H:%M} UTC)"
    verdict = sync_verdict(sources)
    status = "complete" if verdict is None else "failed" if verdict.name == "Failed" else "partial"
    outcome = RunOutcome(
        as_of=as_of, status=status, run_id=summary["reconcile"].get("run_id"),
        sources=[SourceOutcome(n, o["status"], o["message"], o["hint"]) for n, o in sources.items()],
        gaps=[f"{n}: {o['message']}" for n, o in sources.items() if o["status"] == "incomplete"],
        quarantined=int(summary["mapping"].get("quarantined", 0)) + sum(
            int(r.get("quarantined") or 0) for o in sources.values() for r in o.get("streams") or []
            if isinstance(r, dict)),
        report_path=written["html"])
    notified = notify(config_path, outcome)
    kpi_table(kpis, as_of)
    report_link(written["html"], description=f"Finance report as of {as_of}" + ("" if status == "complete"
                                                                               else f" ({status} data)"))
    summary_artifact(pipeline_summary(
        as_of=as_of, status=status, sources=sources, report=written["html"], notified=notified,
        stages={"map": summary["mapping"], "identity": summary["identity"],
                "reconcile": {k: v for k, v in summary["reconcile"].items() if k not in ("as_of",)}}))
    create_markdown_artifact(render_exceptions(written), key="ltc-exceptions",
                             description="Open exceptions by code, with amount at risk and owners")
    result = {"synced": list(sources), **summary, "report": written["html"], "status": status}
    if verdict is not None:
        return Failed(name=verdict.name, message=verdict.message, data=result)
    return result


def last_complete_sync(states: list[dict[str, Any]]) -> dict[str, datetime]:
    """Per source, the oldest of its streams' last successful syncs: since when its data is complete."""
    out: dict[str, datetime] = {}
    for s in states:
        at = s.get("last_success_at")
        if at is not None and (s["connector"] not in out or at < out[s["connector"]]):
            out[s["connector"]] = at
    return out


def render_exceptions(written: dict[str, Any]) -> str:
    lines = ["# Open exceptions by code", "", "| code | count | amount at risk | owners |", "| --- | ---: | ---: | --- |"]
    for row in written["by_code"]:
        amount = f"{row['amount_reporting']} {row['reporting_currency'] or ''}".strip()
        lines.append(f"| {row['code']} | {row['count']} | {amount} | {row['owners']} |")
    if not written["by_code"]:
        lines.append("| (none) | 0 | | |")
    lines += ["", f"Report: `{written['html']}`"]
    return "\n".join(lines)

"""The main job as a Prefect flow: the stages of :data:`ltc.app.pipeline.STAGES`, one task each.

The stages are plain Python (:mod:`ltc.app.pipeline`), so ``ltc demo`` and ``ltc run`` run exactly
what this flow runs. Syncing is one ``ltc-sync-source`` subflow per API source (a failing source is
recorded and the others go on); then bank files, FX rates, map, identity, reconcile, report and
notify are each a task. Markdown artifacts summarise the run (key ``ltc-pipeline``, with its as-of)
and list the open exceptions by code (``ltc-exceptions``).

In the Prefect UI each run is named ``pipeline as of <date>`` and has: a readable summary (key
``ltc-pipeline``), the KPI table (``ltc-kpis``), a link to the report (``ltc-report``), the open
exceptions by code (``ltc-exceptions``) and a progress bar of the reconcile (``reconcile-progress``).

A run with a source paused or failed is never Completed: it ends ``Failed`` (named ``Paused`` when
a source only paused on a vendor quota) with the reason, after reconciling what it could.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed, State

from canonical.errors import error_text
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
from ltc.app.notify import run_kpis
from ltc.app.pipeline import STAGES, Context, PipelineResult, begin, finish, run_stage
from ltc.app.unread import lines as unread_lines

_CONTEXTS: dict[str, Context] = {}  # the run's context, by token: tasks run in this process


@task(cache_policy=NO_CACHE, task_run_name="{stage}")
def stage_task(stage: str, token: str) -> dict[str, Any]:
    """One stage of the pipeline (the task's name is the stage's)."""
    ctx = _CONTEXTS[token]
    spec = next(s for s in STAGES if s.name == stage)
    run = run_stage(ctx, spec)
    get_run_logger().info("%s: %s in %.1f s: %s", stage, run.status, run.seconds, run.detail)
    return run.detail


def _sync_subflow(config_path: str | None) -> Any:
    def sync_one(ctx: Context, name: str) -> list[dict[str, Any]]:
        from flows.sync import sync_source

        state = sync_source(name, None, False, config_path, return_state=True)
        if state.name in ("Paused", "Incomplete"):  # data, not a crash: its streams say paused / incomplete
            data = state.result(raise_on_failure=False)
            return list(data) if isinstance(data, list) else []
        if state.is_failed() or state.is_crashed() or state.is_cancelled():
            raise RuntimeError(state.message or f"the sync of {name} ended {state.name}")
        data = state.result(raise_on_failure=False)
        return list(data) if isinstance(data, list) else []
    return sync_one


def _run_name() -> str:
    as_of = (flow_run.parameters or {}).get("as_of")
    return f"pipeline as of {as_of or 'today'}"


@flow(name="ltc-pipeline", flow_run_name=_run_name)
def pipeline(config_path: str | None = None, as_of: date | None = None, sync: bool = True) -> Any:
    """Every stage of the main job; Failed (or Failed named Paused) when a source is missing."""
    cfg = load_config(config_path)
    store = runtime.open_store(config_path)
    token = uuid.uuid4().hex
    try:
        result = begin(store, cfg, as_of)
        progress = Progress("reconcile-progress", f"Reconcile as of {result.as_of}")
        ctx = Context(store, cfg, result, sync_one=_sync_subflow(config_path),
                      echo=lambda line: get_run_logger().info("%s", line), mapper=progress_mapper(progress))
        _CONTEXTS[token] = ctx
        failed = False
        for spec in STAGES:
            if (spec.name in ("sync", "import") and not sync) or (failed and not spec.after_failure):
                continue
            try:
                if spec.name == "sync":  # one subflow per source: run from the flow itself
                    run_stage(ctx, spec)
                else:
                    stage_task(spec.name, token)
            except Exception as exc:
                get_run_logger().error("stage %s failed: %s", spec.name, error_text(exc, typed=False))
                failed = failed or spec.blocks  # fx: the later stages still run on the rates loaded before
        finish(store, result)
        kpis = run_kpis(store, result.reconcile.get("run_id")) if result.reconcile else []
    finally:
        _CONTEXTS.pop(token, None)
        store.close()
    if result.reconcile:
        progress.done(f"reconciled: {result.reconcile.get('chains')} chain(s)")
    kpi_table(kpis, result.as_of)
    report_link(result.report, description=f"Finance report as of {result.as_of}"
                + ("" if result.status == "completed" else f" ({result.status}: partial data)"))
    summary_artifact(summary(result))
    create_markdown_artifact(render_exceptions(result), key="ltc-exceptions",
                             description="Open exceptions by code, with amount at risk and owners")
    return final_state(result)


def final_state(result: PipelineResult) -> Any:
    """The flow run's end: the result's dict when complete, else a Failed state saying why."""
    out = result.to_dict()
    out["synced"] = list(result.sources)
    if result.status == "completed":
        return out
    reason = result.reason()
    name = "Paused" if result.status == "paused" else "Failed"
    message = f"partial data, not complete: {reason}" if result.partial else reason
    state: State[Any] = Failed(name=name, message=message, data=out)
    return state


def summary(result: PipelineResult) -> str:
    """The readable run summary (``ltc-pipeline``): status, each source with its fix, the stages, the report."""
    status = {"completed": "complete", "paused": "partial"}.get(result.status, result.status)
    sources = {}
    for name, st in result.sources.items():
        reason = next((f"{r['stream']}: {r['message']}" for r in st.streams
                       if r.get("status") == st.status and r.get("message") and r.get("stream")), st.message)
        if st.missing and st.since:
            reason = f"{reason} (last complete sync {st.since:%Y-%m-%d %H:%M} UTC)"
        sources[name] = {"status": st.status, "message": reason, "hint": st.hint}
    stages: dict[str, dict[str, Any]] = {"map": result.mapping, "identity": result.identity,
                                         "reconcile": {k: v for k, v in result.reconcile.items() if k != "as_of"}}
    if result.failed_stage:
        stages[result.failed_stage] = {"failed": result.error or "see the log"}
    notify = result.stage("notify")
    notified = list((notify.detail if notify else {}).get("deliveries") or [])
    text = pipeline_summary(as_of=result.as_of, status=status, sources=sources, stages=stages, report=result.report,
                            notified=notified)
    extra = [f"> **Partial:** {b}" for b in result.banners() if b != result.quarantine_failure]
    if result.quarantine_failure:
        extra.append(f"> **Failed:** {result.quarantine_failure}")
    extra += [f"- quarantine: {line}" for line in unread_lines(result.unread)]
    if result.previous_report:
        extra.append(f"Last complete report (kept): `{result.previous_report}`")
    return text + ("\n" + "\n".join(extra) + "\n" if extra else "")


def render_exceptions(result: PipelineResult) -> str:
    lines = [f"# Open exceptions by code (as of {result.as_of.isoformat()})", "",
             "| code | count | amount at risk | owners |", "| --- | ---: | ---: | --- |"]
    for row in result.by_code:
        amount = (f"{row['amount_reporting']} {row['reporting_currency'] or ''}".strip()
                  if row["amount_reporting"] is not None else "unconverted")
        if row.get("unconverted"):
            amount += (" (excluding " if row["amount_reporting"] is not None else ": ") + ", ".join(
                f"{v} {c}" for c, v in row["unconverted"].items()) + (")" if row["amount_reporting"] is not None else "")
        lines.append(f"| {row['code']} | {row['count']} | {amount} | {row['owners']} |")
    if not result.by_code:
        lines.append("| (none) | 0 | | |")
    if result.report:
        lines += ["", f"Report: `{result.report}`"]
    return "\n".join(lines)

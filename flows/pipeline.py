"""The main job as a Prefect flow: the stages of :data:`ltc.app.pipeline.STAGES`, one task each.

The stages are plain Python (:mod:`ltc.app.pipeline`), so ``ltc demo`` and ``ltc run`` run exactly
what this flow runs. Syncing is one ``ltc-sync-source`` subflow per API source (a failing source is
recorded and the others go on); then bank files, FX rates, map, identity, reconcile, report and
notify are each a task. Markdown artifacts summarise the run (key ``ltc-pipeline``, with its as-of)
and list the open exceptions by code (``ltc-exceptions``).

A run with a source paused or failed is never Completed: it ends ``Failed`` (named ``Partial`` when
a source only paused on a vendor quota) with the reason, after reconciling what it could.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from ltc.app import runtime
from ltc.app.config import load_config
from ltc.app.pipeline import STAGES, Context, PipelineResult, begin, finish, run_stage

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
        if state.is_failed() or state.is_crashed() or state.is_cancelled():
            raise RuntimeError(state.message or f"the sync of {name} ended {state.name}")
        data = state.result(raise_on_failure=False)
        return list(data) if isinstance(data, list) else []
    return sync_one


@flow(name="ltc-pipeline")
def pipeline(config_path: str | None = None, as_of: date | None = None, sync: bool = True) -> Any:
    """Every stage of the main job; Failed (or Failed named Partial) when a source is missing."""
    cfg = load_config(config_path)
    store = runtime.open_store(config_path)
    token = uuid.uuid4().hex
    try:
        result = begin(store, cfg, as_of)
        ctx = Context(store, cfg, result, sync_one=_sync_subflow(config_path),
                      echo=lambda line: get_run_logger().info("%s", line))
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
                get_run_logger().error("stage %s failed: %s", spec.name, exc)
                failed = True
        finish(store, result)
    finally:
        _CONTEXTS.pop(token, None)
        store.close()
    create_markdown_artifact(render(result), key="ltc-pipeline", description="What the pipeline run did")
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
    name = "Partial" if result.status == "paused" else "Failed"
    state: State[Any] = Failed(name=name, message=f"partial data, not complete: {reason}", data=out)
    return state


def render(result: PipelineResult) -> str:
    lines = ["# ltc-hub pipeline run", "",
             f"**As of {result.as_of.isoformat()}** · status **{result.status}**"
             + (" · partial data" if result.partial else ""), ""]
    for banner in result.banners():
        lines.append(f"> **Partial:** {banner}")
    if result.banners():
        lines.append("")
    lines += ["| stage | status | seconds |", "| --- | --- | ---: |"]
    lines += [f"| {s.name} | {s.status} | {s.seconds:.1f} |" for s in result.stages]
    lines += ["", "| source | status | since | message |", "| --- | --- | --- | --- |"]
    lines += [f"| {s.name} | {s.status} | {s.since or ''} | {s.message or ''} |" for s in result.sources.values()]
    lines += ["", f"Open exceptions: {sum(result.exceptions.values())}"
              + (f" (+{len(result.held_back)} held back: a missing source could explain them)"
                 if result.held_back else ""), ""]
    if result.report:
        lines.append(f"Report: `{result.report}`")
    if result.previous_report:
        lines.append(f"Last complete report (kept): `{result.previous_report}`")
    return "\n".join(lines)


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

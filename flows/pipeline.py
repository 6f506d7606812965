"""The main job: sync every source, map, resolve identities, reconcile — each stage a task.

Stages are plain Python (`mappings.engine.run_mapping`, `canonical.identity.run_identity`,
`reconcile.engine.run_reconciliation`), so `ltc demo` and the CLI run exactly what this flow runs.
A markdown artifact (key ``ltc-pipeline``) summarises the run for the Prefect UI.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from ltc import runtime
from ltc.config import load_config
from ltc.pipeline import after_sync


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=30, task_run_name="map, resolve, reconcile")
def map_resolve_reconcile(config_path: str | None, as_of: date) -> dict[str, Any]:
    cfg = load_config(config_path)
    store = runtime.open_store(config_path)
    try:
        return after_sync(store, cfg, as_of)
    finally:
        store.close()


@flow(name="ltc-pipeline")
def pipeline(config_path: str | None = None, as_of: date | None = None, sync: bool = True) -> dict[str, Any]:
    """Sync all sources (one subflow each), then map, resolve identities and reconcile."""
    from flows.sync import sync_all

    synced = sync_all(config_path) if sync else {}
    summary = map_resolve_reconcile(config_path, as_of or datetime.now(UTC).date())
    create_markdown_artifact(render(summary), key="ltc-pipeline", description="What the pipeline run did")
    return {"synced": list(synced), **summary}


def render(summary: dict[str, Any]) -> str:
    lines = ["# ltc-hub pipeline run", ""]
    for key, value in summary.items():
        lines.append(f"- **{key}**: {value}")
    return "\n".join(lines)

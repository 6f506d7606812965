"""Prefect flow: the finance status of reconciled chains written back into the CRM (``ltc push-crm``).

One task per CRM source (records go in batches inside it: 200 per Salesforce request, 100 per
HubSpot request; a Prefect task per record would cost more than the write), each under a global
concurrency limit ``ltc-push-crm-<source>`` of one slot so two runs never write the same records at
once. A table artifact per source shows per object how many records were considered, unchanged,
written and refused. Refused records end the run in a Completed state named ``NeedsOperator`` (they
are retried on the next run); a quota pause in one named ``Paused``.

The ``push-crm`` deployment of ``prefect.yaml`` declares its schedule inactive: writing into a CRM is
opt-in (activate it in the Prefect UI, or set ``active: true``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.states import Completed, State

from flows.sync import ensure_limit
from ltc.app import runtime
from ltc.app.config import load_config
from ltc.app.push_crm import crm_sources, push_source


@task(cache_policy=NO_CACHE, task_run_name="push finance status to {source}")
def push_crm_task(source: str, dry_run: bool, create_properties: bool, config_path: str | None) -> dict[str, Any]:
    cfg = load_config(config_path)
    store = runtime.open_store(config_path, auto_create=False)
    try:
        report = push_source(store, cfg, source, dry_run=dry_run, create_fields=create_properties)
    finally:
        store.close()
    return {
        "source": source, "status": "dry run" if dry_run else report.status, "requests": report.requests,
        "objects": [{"object": obj, **vars(c)} for obj, c in sorted(report.counts.items())],
        "failures": [{"object": f.object, "record": f.record_id, "code": f.code, "message": f.message}
                     for f in report.failures[:200]],
        "failed": len(report.failures), "paused": report.paused, "warnings": report.warnings,
    }


@flow(name="ltc-push-crm", flow_run_name="push finance status to the CRM (dry run: {dry_run})")
def push_crm_flow(sources: list[str] | None = None, dry_run: bool = False, create_properties: bool = False,
                  config_path: str | None = None) -> list[dict[str, Any]] | State:
    """Finance status -> the deals and accounts of each CRM source (``push_crm.sources`` by default)."""
    cfg = load_config(config_path)
    results = []
    for source in sources or crm_sources(cfg):
        limit = f"ltc-push-crm-{source}".lower().replace("_", "-")
        ensure_limit(limit)
        with concurrency(limit, occupy=1):
            summary = push_crm_task(source, dry_run, create_properties, config_path)
        create_table_artifact(summary["objects"] or [{"object": "no reconciled deal of this source"}], key=limit,
                              description=f"Finance status written to {source}" + (" (dry run)" if dry_run else "")
                              + f"; {summary['requests']} request(s)")
        results.append(summary)
    paused = [r for r in results if r["paused"]]
    if paused:
        return Completed(name="Paused", data=results,
                         message="; ".join(f"{r['source']}: {r['paused']}" for r in paused)[:2000])
    failed = [r for r in results if r["failed"]]
    if failed:
        return Completed(name="NeedsOperator", data=results, message="; ".join(
            f"{r['source']}: {r['failed']} record(s) refused, e.g. {f['record']}: {f['message']}"
            for r in failed for f in r["failures"][:1])[:2000])
    return results

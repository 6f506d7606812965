"""Prefect flow: push closed-won deals into the ERP (``ltc push-orders`` on a schedule).

One task for the whole push (it is sequential by design: one writer per ERP, SQLite-backed
Tryton corrupts numbering under concurrent writes), under a global concurrency limit
``ltc-push-<erp>`` of 1 so that two runs can never both create the same order. Conflicts and
refusals end the run in a Completed state named ``NeedsOperator`` with the list; an artifact
table shows every deal's action, amount and ERP order.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.states import Completed, State

from flows.sync import ensure_limit
from ltc.app.config import load_config
from ltc.app.push import push_to_erp


@task(cache_policy=NO_CACHE, task_run_name="push orders to {erp}")
def push_task(erp: str, dry_run: bool, config_path: str | None) -> list[dict[str, Any]]:
    report = push_to_erp(config_path, dry_run=dry_run)
    return [{"deal": r.deal_id, "crm_id": r.reference, "action": r.action, "done": r.done,
             "amount": str(r.amount.amount), "currency": r.amount.currency, "erp_order": r.sale_number,
             "state": r.sale_state, "message": r.message} for r in report.results]


@flow(name="ltc-push-orders", flow_run_name="push orders (dry run: {dry_run})")
def push_orders_flow(dry_run: bool = False, config_path: str | None = None) -> list[dict[str, Any]] | State:
    """Closed-won deals -> customer + sales order in ltc.yaml's ``erp.source`` (idempotent)."""
    cfg = load_config(config_path)
    target_name = cfg.erp.source if cfg.erp else "none"
    limit = f"ltc-push-{target_name}".lower().replace("_", "-")
    ensure_limit(limit)
    with concurrency(limit, occupy=1):
        rows = push_task(target_name, dry_run, config_path)
    create_table_artifact(rows or [{"action": "nothing to push"}], key=limit,
                          description=f"Closed-won deals pushed to {target_name}" + (" (dry run)" if dry_run else ""))
    failed = [r for r in rows if r["action"] in ("conflict", "error")]
    if failed:
        return Completed(name="NeedsOperator", data=rows,
                         message="; ".join(f"{r['crm_id']}: {r['message']}" for r in failed)[:2000])
    return rows

"""``ltc push-orders [--dry-run]``: closed-won deals -> customer + sales order in the configured ERP."""

from __future__ import annotations

import typer
from rich.table import Table

from canonical.money import Money
from connectors.push import Action, PushReport
from ltc.app.push import push_to_erp
from ltc.cli.common import console

_VERB = {"create": "create", "update": "update", "confirm": "confirm", "unchanged": "unchanged",
         "conflict": "CONFLICT", "error": "ERROR"}


def _money(m: Money) -> str:
    return f"{m.amount:,} {m.currency}"


def render_report(report: PushReport) -> None:
    mode = "dry run: nothing written" if report.dry_run else "pushed"
    if not report.results:
        console.print(f"ERP {report.erp} ({mode}): no closed-won deal needs an order.")
        return
    table = Table(title=f"Closed-won deals -> ERP {report.erp} ({mode})")
    for col in ("deal", "CRM id", "action", "amount", "ERP order", "state", "detail"):
        table.add_column(col, justify="right" if col == "amount" else "left")
    for r in report.results:
        action = _VERB[r.action] + ("" if r.done or r.action in ("unchanged", "conflict", "error") else " (would)")
        table.add_row(r.deal_name, r.reference, action, _money(r.amount), r.sale_number or "-", r.sale_state or "-",
                      r.message or "")
    console.print(table)
    done_verbs: dict[Action, str] = {"create": "created", "update": "updated"}
    for action, done_verb in done_verbs.items():
        totals = report.totals(action)
        if totals:
            verb = done_verb if not report.dry_run else f"to {action}"
            n = len(report.by_action(action))
            console.print(f"{n} order(s) {verb}: " + ", ".join(_money(m) for _, m in sorted(totals.items())))
    if report.failed:
        console.print(f"{len(report.failed)} deal(s) need an operator: "
                      f"{len(report.conflicts)} conflict(s), {len(report.by_action('error'))} error(s)")


def push_orders_cmd(
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be created or updated; write nothing."),
    deal: list[str] = typer.Option(None, "--deal", help="Only this canonical deal id (repeatable)."),
    config: str | None = typer.Option(None, "--config", "-c", help="Path of ltc.yaml."),
) -> None:
    """Push closed-won deals with no ERP order to the ERP of ltc.yaml `erp.source` (idempotent)."""
    report = push_to_erp(config, dry_run=dry_run, deal_ids=deal or None)
    render_report(report)
    if report.failed:
        raise typer.Exit(1)

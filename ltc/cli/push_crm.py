"""``ltc push-crm [--source S] [--dry-run] [--create-properties]``: finance status -> CRM deals and accounts."""

from __future__ import annotations

from decimal import Decimal

import typer
from rich.table import Table

from connectors.crm_push import CrmPushReport
from ltc.app.push_crm import push_to_crm
from ltc.cli.common import console

SHOWN = 10  # changes and failures listed one per line; the counts cover them all


def _amount(value: Decimal) -> str:
    return f"{value:,}"


def render_report(report: CrmPushReport) -> None:
    mode = "dry run: nothing written" if report.dry_run else "written"
    title = f"Finance status -> {report.kind} {report.source} ({mode}; as of {report.as_of})"
    if not report.counts:
        console.print(f"{title}: no deal of this source is in a reconciled chain (run `ltc reconcile` first?).")
    else:
        table = Table(title=title)
        for col in ("object", "records", "unchanged", "to write", "written", "failed"):
            table.add_column(col, justify="left" if col == "object" else "right")
        for obj, c in sorted(report.counts.items()):
            table.add_row(obj, str(c.considered), str(c.unchanged), str(c.to_write),
                          "-" if report.dry_run else str(c.written), "-" if report.dry_run else str(c.failed))
        console.print(table)
    totals = report.totals()
    if totals:
        verb = "would change" if report.dry_run else "changed"
        for (obj, currency), sums in sorted(totals.items()):
            console.print(f"{obj} in {currency}: {int(sums['records'])} record(s) {verb}; invoiced "
                          f"{_amount(sums['invoiced'])}, paid {_amount(sums['paid'])}, open "
                          f"{_amount(sums['open_balance'])} {currency}")
    for ch in report.changes[:SHOWN] if report.dry_run else []:
        fields = ", ".join(f"{k}={v if v is not None else '(empty)'}" for k, v in ch.values.items())
        console.print(f"  {ch.record.object} {ch.record.record_id}: {fields}", highlight=False, markup=False)
    if report.dry_run and len(report.changes) > SHOWN:
        console.print(f"  ... and {len(report.changes) - SHOWN} more")
    for name in report.created:
        console.print(f"created property {name}")
    for f in report.failures[:SHOWN]:
        console.print(f"FAILED {f.object} {f.record_id}: {f.message}", highlight=False, markup=False)
    if len(report.failures) > SHOWN:
        console.print(f"... and {len(report.failures) - SHOWN} more failed record(s); retried on the next run")
    for w in report.warnings:
        console.print(f"warning: {w}", highlight=False, markup=False)
    if report.paused:
        console.print(f"paused: {report.paused}", highlight=False, markup=False)
    console.print(f"{report.requests} request(s) to {report.kind} {report.source}")


def push_crm_cmd(
    source: list[str] = typer.Option(None, "--source", "-s",
                                     help="CRM source(s) of ltc.yaml; default: push_crm.sources or every "
                                          "salesforce/hubspot source."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change (amounts per currency); "
                                                          "write nothing."),
    create_properties: bool = typer.Option(False, "--create-properties",
                                           help="HubSpot: create the missing properties (group ltc) first."),
    config: str | None = typer.Option(None, "--config", "-c", help="Path of ltc.yaml."),
) -> None:
    """Write each reconciled deal's finance status (orders, invoiced, paid, open, overdue, exceptions) and an
    account roll-up into the CRM, idempotently: unchanged records are not written.

    Exit code 0 when everything was written, 1 when some records were refused (reported with the CRM's
    message, retried next run), 3 when the CRM's API quota paused the run.
    """
    reports = []
    for report in push_to_crm(config, sources=source or None, dry_run=dry_run, create_fields=create_properties):
        render_report(report)
        reports.append(report)
    if any(r.paused for r in reports):
        raise typer.Exit(3)
    if any(r.failures for r in reports):
        raise typer.Exit(1)

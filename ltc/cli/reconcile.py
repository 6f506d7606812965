"""``ltc reconcile`` and ``ltc exceptions list|ack|resolve``."""

from __future__ import annotations

import getpass
import json
from decimal import Decimal
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from canonical.errors import InputError
from ltc.app import runtime
from ltc.app.exceptions import list_exceptions, source_records
from ltc.cli.common import ConfigOpt, day_option, err_console
from reconcile import lifecycle
from reconcile.codes import CODES, STATUSES

console = Console()
exceptions_app = typer.Typer(help="Reconciliation exceptions: list, acknowledge, resolve, assign, comment, snooze.",
                             no_args_is_help=True)


def _store(config: str | None) -> Any:
    return runtime.open_store(config, auto_create=False)  # a mistyped path is not an empty store to reconcile


def reconcile(
    config: str | None = ConfigOpt,
    as_of: str | None = typer.Option(None, "--as-of", help="Reconcile as of this date (default: the as-of a "
                                     "replayed world recorded in the store, else today)."),
) -> None:
    """Run the reconciliation on the store and print a summary."""
    from ltc.app.config import load_config
    from ltc.app.pipeline import default_as_of
    from reconcile.engine import run_reconciliation

    day = day_option(as_of, "--as-of") if as_of else None
    cfg = load_config(config)
    store = _store(config)
    result = run_reconciliation(store, cfg, day or default_as_of(store, cfg))
    s = result.summary()
    console.print(f"reconcile run {s['run_id']} as of {s['as_of']}: {s['chains']} chains")
    console.print("rows: " + ", ".join(f"{k}={v}" for k, v in s["rows"].items()))
    console.print("states: " + ", ".join(f"{k}={v}" for k, v in s["states"].items()))
    for ccy, c in s["cash"].items():
        console.print(f"cash {ccy}: received {c['received']}, applied {c['applied']}, unapplied {c['unapplied']}")
    console.print("exceptions: " + (", ".join(f"{k}={v}" for k, v in s["exceptions"].items()) or "none"))
    lc = s["lifecycle"]
    console.print(f"lifecycle: new={lc['new']} reopened={lc['reopened']} still_open={lc['still_open']} "
                  f"auto_resolved={lc['auto_resolved']}")
    if not any(s["rows"].values()):  # "no exceptions" of an empty store is no finding
        err_console.print("note: the store holds no deals, orders, invoices or payments: nothing is synced and mapped "
                          "yet (`ltc sync`, `ltc run`), or LTC_DATABASE_URL names another store than the one synced",
                          soft_wrap=True, highlight=False, markup=False)


def _jsonable(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


TABLE_LIMIT = 100
"""Exceptions the table shows by default: rendering 5,700 took 10 s (57,000 at 1M chains)."""


@exceptions_app.command("list")
def list_cmd(
    code: str | None = typer.Option(None, "--code", help="Only this exception code."),
    status: str | None = typer.Option(None, "--status",
                                      help="open, acknowledged, resolved or all (default: open and acknowledged)."),
    owner: str | None = typer.Option(None, "--owner", help="Only this owner's (the assignee, else the owner "
                                     "reconciliation derived); 'none' for the unowned."),
    limit: int | None = typer.Option(None, "--limit", min=0, help=f"Show at most this many, the largest amounts at "
                                     f"risk first (default: {TABLE_LIMIT} in the table, all with --json; 0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    config: str | None = ConfigOpt,
) -> None:
    """List exceptions (newest run's view), optionally filtered."""
    if code and code.upper() not in CODES:
        raise InputError(f"--code {code!r} is not an exception code; known: {', '.join(CODES)}")
    if status and status.lower() not in (*STATUSES, "all"):
        raise InputError(f"--status {status!r} must be one of {', '.join(STATUSES)}, all")
    store = _store(config)
    rows = list_exceptions(store, code, status)
    if owner is not None:
        wanted = None if owner.strip().lower() == "none" else owner.strip()
        rows = [r for r in rows if (r["assignee"] or r["owner"] or None) == wanted]
    total = len(rows)
    cap = (None if as_json else TABLE_LIMIT) if limit is None else (limit or None)
    if cap is not None and total > cap:  # the largest amounts at risk first (in the reporting currency)
        rows = sorted(rows, key=lambda r: (r["amount_reporting"] is None, -(r["amount_reporting"] or 0)))[:cap]
    if as_json:
        keys = ("fingerprint", "code", "status", "severity", "source_ids", "subject_ids", "currency",
                "amount_at_risk", "reporting_currency", "amount_reporting", "owner", "chain_id", "detail")
        described = source_records(store, [i for r in rows for i in r["subject_ids"]])
        out = [{**{k: _jsonable(r[k]) for k in keys}, "records": [described[i] for i in r["subject_ids"]]}
               for r in rows]
        typer.echo(json.dumps(out, indent=1))
        return
    title = f"{total} exception(s)" if len(rows) == total else \
        f"{len(rows)} of {total} exception(s), the largest amounts at risk"
    from reports.finance import _money as shown

    table = Table(title=title)
    for col in ("id", "code", "status", "severity", "records", "at risk", "owner"):
        table.add_column(col)
    for r in rows:
        recs = ", ".join(r["source_ids"][:3]) + (" …" if len(r["source_ids"]) > 3 else "")
        amount = shown(r["amount_at_risk"], r["currency"])  # 0.0100 EUR -> 0.01 EUR, as the report and queue show
        risk = f"{amount} {r['currency'] or ''}".strip() if amount is not None else "-"
        table.add_row(r["fingerprint"][:12], r["code"], r["status"], r["severity"], recs, risk,
                      r["assignee"] or r["owner"] or "-")
    console.print(table)
    if len(rows) < total:
        console.print(f"… {total - len(rows)} more: --limit 0 lists all (--json for scripts), or narrow with --code, "
                      "--owner or --status", highlight=False, markup=False)


def _act(idents: list[str], action: str, actor: str | None, config: str | None, **kw: Any) -> None:
    from ltc.app.config import load_config

    who = actor or getpass.getuser()
    today = load_config(config).today()  # a snooze's day is the company's (ltc.yaml timezone)
    results = lifecycle.act(_store(config), idents, action, who, today=today, **kw)
    for res in results:
        if res["skipped"]:
            console.print(f"exception {res['fingerprint'][:12]}: skipped ({res['skipped']})")
        else:
            change = f"{res['from']} -> {res['to']}" if res["from"] != res["to"] else action
            console.print(f"exception {res['fingerprint'][:12]}: {change} (by {who})")
    if len(idents) == 1 and results[0]["skipped"]:
        raise InputError(results[0]["skipped"])


IdsArg = typer.Argument(..., help="Fingerprints or unique prefixes (>= 6 chars).")
NoteOpt = typer.Option(..., "--note", help="Why (kept in the audit trail).")
OptNote = typer.Option("", "--note", help="Why (kept in the audit trail).")
ActorOpt = typer.Option(None, "--actor", help="Who (default: the OS user).")


@exceptions_app.command("ack")
def ack_cmd(ident: list[str] = IdsArg, note: str = NoteOpt, actor: str | None = ActorOpt,
            config: str | None = ConfigOpt) -> None:
    """Acknowledge open exceptions."""
    if not note.strip():
        raise InputError("a note is required: say why (--note \"...\")")
    _act(ident, "acknowledge", actor, config, note=note)


@exceptions_app.command("resolve")
def resolve_cmd(ident: list[str] = IdsArg, note: str = NoteOpt, actor: str | None = ActorOpt,
                config: str | None = ConfigOpt) -> None:
    """Resolve exceptions by hand (one reopens if the next run finds it again)."""
    _act(ident, "resolve", actor, config, note=note)


@exceptions_app.command("assign")
def assign_cmd(ident: list[str] = IdsArg, owner: str = typer.Option(..., "--owner", help="Who owns it now "
               "(empty: unassign, back to the owner reconciliation derived)."), note: str = OptNote,
               actor: str | None = ActorOpt, config: str | None = ConfigOpt) -> None:
    """Assign exceptions to an owner."""
    _act(ident, "assign", actor, config, owner=owner, note=note)


@exceptions_app.command("comment")
def comment_cmd(ident: list[str] = IdsArg, text: str = typer.Option(..., "--text", help="The comment."),
                actor: str | None = ActorOpt, config: str | None = ConfigOpt) -> None:
    """Add a comment to the exceptions' audit trail."""
    _act(ident, "comment", actor, config, note=text)


@exceptions_app.command("snooze")
def snooze_cmd(ident: list[str] = IdsArg, until: str = typer.Option(..., "--until", help="YYYY-MM-DD, after "
               "today; 'none' lifts the snooze."), note: str = OptNote, actor: str | None = ActorOpt,
               config: str | None = ConfigOpt) -> None:
    """Hide exceptions from the work queue until a date."""
    day = None if until.strip().lower() == "none" else day_option(until, "--until", within=None)
    _act(ident, "snooze", actor, config, until=day, note=note)

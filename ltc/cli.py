"""``ltc``: a thin command-line shell over the same functions the Prefect flows call.

Every error an operator can act on is printed as one line on stderr with a non-zero exit code;
no traceback.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from canonical import db
from canonical.errors import ConfigError, LtcError
from canonical.store import Store
from ltc import mapping_cmd, reconcile_cmd, runtime, sandbox_cmd, ui_cmd
from ltc.config import Config, load_config
from ltc.push_cmd import push_orders_cmd
from ltc.statement_cmd import import_statement

app = typer.Typer(
    help="ltc-hub: Lead-to-Cash integration hub.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration file (ltc.yaml).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(sandbox_cmd.app, name="sandbox")
app.add_typer(ui_cmd.app, name="ui")

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="Path of ltc.yaml (default: $LTC_CONFIG or ./ltc.yaml).")


def store_url(config_path: str | None = None) -> str:
    return runtime.store_url(load_config(config_path))


def open_store(config_path: str | None = None, *, auto_create: bool = True) -> Store:
    return runtime.open_store(config_path, auto_create=auto_create)


@db_app.command("upgrade")
def db_upgrade(config: str | None = ConfigOpt) -> None:
    """Create the schema in an empty database, or migrate it to this version."""
    url = store_url(config)
    engine = db.make_engine(url)
    before, after = db.upgrade(engine)
    if before == after:
        console.print(f"schema of {db.mask_url(url)} is up to date (revision {after})")
    else:
        console.print(f"schema of {db.mask_url(url)} upgraded: {before or 'empty'} -> {after}")


@db_app.command("current")
def db_current(config: str | None = ConfigOpt) -> None:
    """Print the schema revision of the database and the one this ltc-hub needs."""
    url = store_url(config)
    engine = db.make_engine(url)
    console.print(f"database {db.mask_url(url)}: revision {db.current_revision(engine) or 'none'}; "
                  f"this ltc-hub needs {db.head_revision()}")


@config_app.command("check")
def config_check(config: str | None = ConfigOpt) -> None:
    """Validate ltc.yaml and say exactly what is wrong and where."""
    cfg = load_config(config)
    console.print(
        f"configuration OK: {len(cfg.sources)} source(s)"
        + (f" ({', '.join(f'{n}={s.kind}' for n, s in cfg.sources.items())})" if cfg.sources else "")
        + f", reporting currency {cfg.reporting_currency}"
        + (f", ERP {cfg.erp.source}" if cfg.erp else "")
    )


def _fmt(value: Any, width: int = 40) -> str:
    if value is None:
        return "-"
    text = value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _cursor(value: Any) -> str:
    """The high-water mark of a stream's cursor, readably (the full JSON is in stream_state)."""
    if isinstance(value, dict):
        hw = value.get("hw")
        mark = hw[0][:19] if isinstance(hw, list) and hw and hw[0] else "-"
        return mark + (" (resuming)" if value.get("run") else "")
    return _fmt(value, 24)


def render_status(store: Store) -> None:
    states = store.stream_states()
    url = db.mask_url(store.engine.url.render_as_string(hide_password=False))
    if not states:
        console.print(f"Store {url}: empty — no stream has been synced yet (run `ltc sync` or `make demo`).")
        return
    table = Table(title=f"Streams in {url}")
    for col in ("source", "stream", "status", "synced up to", "last run", "seen", "written",
                "quar.", "src/store", "message"):
        table.add_column(col, overflow="fold")
    for s in states:
        completeness = f"{s['source_count']}/{s['store_count']}" if s["source_count"] is not None else "-"
        last = s["last_run_at"].strftime("%Y-%m-%d %H:%M") if s["last_run_at"] else "-"
        table.add_row(
            s["connector"], s["stream"], _fmt(s["status"]), _cursor(s["cursor"]), last,
            str(s["records_seen"]), str(s["records_written"]), str(s["quarantined"]), completeness,
            _fmt(s["message"], 60),
        )
    console.print(table)
    counts = store.table_counts()
    console.print("Canonical rows: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    open_ex = _open_exceptions(store)
    console.print("Open exceptions: " + (", ".join(f"{k}={v}" for k, v in open_ex.items()) or "none")
                  + ("  (`ltc exceptions list`)" if open_ex else ""))


def _open_exceptions(store: Store) -> dict[str, int]:
    import sqlalchemy as sa

    from reconcile.tables import recon_exception as ex

    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(ex.c.code, sa.func.count()).where(ex.c.status != "resolved")
                            .group_by(ex.c.code).order_by(ex.c.code))
        return {code: int(n) for code, n in rows}


@app.command()
def sync(
    source: list[str] = typer.Option(None, "--source", "-s", help="Source name(s) from ltc.yaml; default: all."),
    stream: list[str] = typer.Option(None, "--stream", help="Only these streams."),
    full_refresh: bool = typer.Option(False, "--full-refresh", help="Ignore saved cursors; re-read everything."),
    config: str | None = ConfigOpt,
) -> None:
    """Pull the configured sources into the raw landing (checkpointed per page).

    Exit code 0 when every stream completed, 3 when a stream paused on a vendor quota (state saved;
    run again later to resume), 1 when a stream failed.
    """
    if _run_sources(load_config(config), runtime.open_store(config), source, stream or None, full_refresh):
        raise typer.Exit(3)


@app.command()
def status(config: str | None = ConfigOpt) -> None:
    """Per stream: status, cursor, last run, records, quarantined, completeness."""
    render_status(open_store(config))


def _run_sources(cfg: Config, store: Store, only: list[str] | None = None, streams: list[str] | None = None,
                 full_refresh: bool = False) -> bool:
    """Sync the sources and print a table; True if any stream paused on a quota."""
    from connectors.base import sync as sync_connector

    table = Table(title="sync")
    for col in ("source", "stream", "status", "records", "written", "unchanged", "quarantined", "message"):
        table.add_column(col)
    paused = False
    for name in runtime.source_names(cfg, only):
        connector = runtime.build_connector(cfg, name)
        try:
            for r in sync_connector(connector, store, streams=streams, full_refresh=full_refresh):
                paused = paused or r.status == "paused"
                table.add_row(name, r.stream, r.status, str(r.records), str(r.written), str(r.unchanged),
                              str(r.quarantined), _fmt(r.message, 70))
        finally:
            connector.close()
    console.print(table)
    return paused


def _print_summary(summary: dict[str, Any]) -> None:
    rec = summary["reconcile"]
    console.print(f"mapping: {summary['mapping']}")
    console.print(f"identity: {summary['identity']}")
    console.print(f"reconcile: {rec['chains']} deal chains; rows {rec['rows']}; states {rec['states']}")
    if rec["exceptions"]:
        console.print("exceptions: " + ", ".join(f"{k}={v}" for k, v in sorted(rec["exceptions"].items())))
    console.print("next: `ltc exceptions list`, `ltc status`")


@app.command()
def run(
    source: list[str] = typer.Option(None, "--source", "-s", help="Source name(s); default: all."),
    as_of: str | None = typer.Option(None, help="Reconcile as of this date (YYYY-MM-DD); default today."),
    config: str | None = ConfigOpt,
) -> None:
    """The main job without Prefect: sync, map, resolve identities, reconcile, report (as the pipeline flow does)."""
    from ltc.pipeline import after_sync, write_report

    cfg = load_config(config)
    store = runtime.open_store(config)
    paused = _run_sources(cfg, store, source)
    _print_summary(after_sync(store, cfg, _date(as_of)))
    console.print(f"report: {write_report(store, cfg).html}")
    if paused:
        raise typer.Exit(3)


def _date(value: str | None) -> date:
    if value is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--as-of {value!r} is not a date (YYYY-MM-DD)") from None


@app.command()
def demo(
    world: str | None = typer.Option(None, "--world", help="Replay this world directory (docs/world.md); "
                                     "default: generate one into .ltc/world/ and replay it."),
    seed: int = typer.Option(7, help="Seed of the generated world."),
    chains: int = typer.Option(300, help="Closed-won deal chains of the generated world."),
    erp: str = typer.Option("tryton", help="ERP of the generated world: tryton or odoo."),
    out: str | None = typer.Option(None, "--out", help="Where the reports go (default: .ltc/reports/)."),
    config: str | None = ConfigOpt,
) -> None:
    """The main job on a world: emulators serve it, then sync, map, identity, reconcile and the reports."""
    from ltc.demo import DEFAULT_REPORTS, DEFAULT_WORLD, generate_world, replay_world

    store = runtime.open_store(config)
    if world is None:
        if erp not in ("tryton", "odoo"):
            raise ConfigError(f"--erp {erp!r}: the generated world's ERP is tryton or odoo")
        world = str(generate_world(DEFAULT_WORLD, chains=chains, seed=seed, erp=erp))
        console.print(f"generated world: {world} ({chains} chains, seed {seed}, ERP {erp})")
    summary = replay_world(store, world, out or DEFAULT_REPORTS, sync_table=_run_sources, echo=console.print)
    render_status(store)
    _print_summary(summary)
    console.print("reports: " + ", ".join(str(p) for p in summary["reports"]))


@app.command()
def report(
    out: str = typer.Option(".ltc/reports", "--out", help="Directory of the report files."),
    title: str | None = typer.Option(None, help="Title of the HTML report."),
    lang: str | None = typer.Option(None, "--lang", help="Language of the report: en or zh "
                                    "(default: that of reporting_locale in ltc.yaml)."),
    config: str | None = ConfigOpt,
) -> None:
    """Write the finance report of the latest reconciliation: report.html, CSV files, report.xlsx."""
    from reports.finance import write_reports

    files = write_reports(open_store(config), out, title=title, config=load_config(config), lang=lang)
    for path in files.all():
        console.print(str(path))


@app.command()
def serve(config: str | None = ConfigOpt,
          ui: bool = typer.Option(False, "--ui", help="Also serve the work queue (ltc ui) in this process.")) -> None:
    """Run the deployments of prefect.yaml on their schedules in this process (Prefect serve())."""
    from flows.serve import serve_all

    serve_all(config, ui=ui_cmd.server(config) if ui else None)


app.command("import-statement")(import_statement)
app.command("push-orders")(push_orders_cmd)
app.command("reconcile")(reconcile_cmd.reconcile)
app.add_typer(reconcile_cmd.exceptions_app, name="exceptions")
app.command("remap")(mapping_cmd.remap)
app.command("identity")(mapping_cmd.identity)


def main() -> None:
    """Console entry point: LtcError -> one line on stderr and its exit code."""
    try:
        app()
    except LtcError as exc:
        err_console.print(f"error: {exc}", soft_wrap=True, highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        sys.exit(130)

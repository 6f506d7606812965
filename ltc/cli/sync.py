"""``ltc sync``, ``ltc status`` and ``ltc run`` (the main job without Prefect)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import typer
from rich.table import Table

from canonical import db
from canonical.errors import ConfigError
from canonical.store import Store
from ltc.app import runtime
from ltc.app.config import Config, load_config
from ltc.app.status import open_exceptions
from ltc.cli.common import ConfigOpt, console, err_console, fmt


def _cursor(value: Any) -> str:
    """The high-water mark of a stream's cursor, readably (the full JSON is in stream_state)."""
    if isinstance(value, dict):
        hw = value.get("hw")
        mark = hw[0][:19] if isinstance(hw, list) and hw and hw[0] else "-"
        return mark + (" (resuming)" if value.get("run") else "")
    return fmt(value, 24)


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
            s["connector"], s["stream"], fmt(s["status"]), _cursor(s["cursor"]), last,
            str(s["records_seen"]), str(s["records_written"]), str(s["quarantined"]), completeness,
            fmt(s["message"], 60),
        )
    console.print(table)
    counts = store.table_counts()
    console.print("Canonical rows: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    open_ex = open_exceptions(store)
    console.print("Open exceptions: " + (", ".join(f"{k}={v}" for k, v in open_ex.items()) or "none")
                  + ("  (`ltc exceptions list`)" if open_ex else ""))


def run_sources(cfg: Config, store: Store, only: list[str] | None = None, streams: list[str] | None = None,
                full_refresh: bool = False, *, deep: bool = False) -> str | None:
    """Sync the sources and print a table; "paused" if any stream paused on a quota, else
    "incomplete" if any stream could not vouch for its completeness, else None."""
    table = Table(title="sync")
    for col in ("source", "stream", "status", "records", "written", "unchanged", "quarantined", "message"):
        table.add_column(col)
    seen: set[str] = set()

    def waiting(line: str) -> None:  # another process syncs this source: say why we wait
        err_console.print(line, highlight=False, markup=False)

    for name, r in runtime.sync_sources(cfg, store, only, streams=streams, full_refresh=full_refresh, deep=deep,
                                        on_wait=waiting):
        seen.add(r.status)
        table.add_row(name, r.stream, r.status, str(r.records), str(r.written), str(r.unchanged),
                      str(r.quarantined), fmt(r.message, 70))
    console.print(table)
    return "paused" if "paused" in seen else "incomplete" if "incomplete" in seen else None


def print_summary(summary: dict[str, Any]) -> None:
    rec = summary["reconcile"]
    console.print(f"mapping: {summary['mapping']}")
    console.print(f"identity: {summary['identity']}")
    console.print(f"reconcile: {rec['chains']} deal chains; rows {rec['rows']}; states {rec['states']}")
    if rec["exceptions"]:
        console.print("exceptions: " + ", ".join(f"{k}={v}" for k, v in sorted(rec["exceptions"].items())))
    console.print("next: `ltc exceptions list`, `ltc status`")


def sync(
    source: list[str] = typer.Option(None, "--source", "-s", help="Source name(s) from ltc.yaml; default: all."),
    stream: list[str] = typer.Option(None, "--stream", help="Only these streams."),
    full_refresh: bool = typer.Option(False, "--full-refresh", help="Ignore saved cursors; re-read everything."),
    deep: bool = typer.Option(False, "--deep", help="Run the deep completeness check now (compare the id sets "
                              "of source and store) instead of waiting for deep_check_every."),
    config: str | None = ConfigOpt,
) -> None:
    """Pull the configured sources into the raw landing (checkpointed per page).

    Exit code 0 when every stream completed, 3 when a stream paused on a vendor quota (state saved;
    run again later to resume), 1 when a stream failed or ended incomplete (see its message).
    """
    outcome = run_sources(load_config(config), runtime.open_store(config), source, stream or None, full_refresh,
                          deep=deep)
    if outcome == "paused":
        raise typer.Exit(3)
    if outcome == "incomplete":
        raise typer.Exit(1)


def status(config: str | None = ConfigOpt) -> None:
    """Per stream: status, cursor, last run, records, quarantined, completeness."""
    render_status(runtime.open_store(config))


def run(
    source: list[str] = typer.Option(None, "--source", "-s", help="Source name(s); default: all."),
    as_of: str | None = typer.Option(None, help="Reconcile as of this date (YYYY-MM-DD); default: the as-of a "
                                     "replayed world recorded in the store, else today."),
    config: str | None = ConfigOpt,
) -> None:
    """The main job without Prefect: every stage of the pipeline (sync, bank files, FX, map, identity,
    reconcile, report, notify), as the pipeline flow runs them.

    Exit code 0 when complete, 3 when a source paused on a vendor quota, 1 when a source or a stage
    failed; with a source missing the report says so in a banner and the last complete one is kept.
    """
    from ltc.app.pipeline import run_pipeline

    cfg = load_config(config)
    store = runtime.open_store(config)
    result = run_pipeline(store, cfg, _date(as_of) if as_of else None, sources=source or None,
                          echo=lambda line: console.print(line, highlight=False, markup=False))
    print_result(result)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def print_result(result: Any) -> None:
    """What a pipeline run did (:class:`ltc.app.pipeline.PipelineResult`), for a person."""
    table = Table(title="sync")
    for col in ("source", "stream", "status", "records", "written", "quarantined", "message"):
        table.add_column(col, overflow="fold")
    for name, st in result.sources.items():
        if not st.streams:
            table.add_row(name, "-", st.status, "-", "-", "-", st.message or "")
        for r in st.streams:
            table.add_row(name, str(r.get("stream")), str(r.get("status")), str(r.get("records", "-")),
                          str(r.get("written", r.get("new", "-"))), str(r.get("quarantined", r.get("rejected", "-"))),
                          str(r.get("message") or ""))
    if result.sources:
        console.print(table)
    console.print(f"as of {result.as_of.isoformat()}; stages: "
                  + ", ".join(f"{s.name} {s.status}" for s in result.stages), highlight=False)
    if result.reconcile:
        print_summary({"mapping": result.mapping, "identity": result.identity, "reconcile": result.reconcile})
    if result.held_back:
        console.print(f"held back (a missing source could explain them): {len(result.held_back)} new exception(s)")
    if result.report:
        console.print(f"report: {result.report}", highlight=False)
    for line in result.banners():
        err_console.print(f"PARTIAL: {line}", highlight=False, markup=False)
    if result.previous_report:
        err_console.print(f"the last complete report is kept: {result.previous_report}", highlight=False)


def _date(value: str | None) -> date:
    if value is None:
        return datetime.now(UTC).date()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--as-of {value!r} is not a date (YYYY-MM-DD)") from None

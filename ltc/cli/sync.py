"""``ltc sync``, ``ltc status`` and ``ltc run`` (the main job without Prefect)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from canonical import db
from canonical.errors import LtcError
from canonical.store import Store
from connectors.base import StreamResult
from ltc.app import runtime
from ltc.app.config import Config, load_config
from ltc.app.status import freshness, open_exceptions, source_schedules
from ltc.cli.common import ConfigOpt, console, day_option, err_console, fmt
from ltc.cli.progress import BarProgress, ProgressOpt, reporter


def _cursor(value: Any) -> str:
    """The high-water mark of a stream's cursor, readably (the full JSON is in stream_state)."""
    if isinstance(value, dict):
        hw = value.get("hw")
        mark = hw[0][:19] if isinstance(hw, list) and hw and hw[0] else "-"
        return mark + (" (resuming)" if value.get("run") else "")
    return fmt(value, 24)


def render_status(store: Store, cfg: Config | None = None, config_path: str | None = None,
                  fail_share: float = 0.05) -> None:
    """Streams (status, cursor, last run, counts, freshness against the source's schedule), then each
    stream's message in full (one line each, wrapped by the terminal, never cut), quarantine shares,
    discovered fields, canonical rows and open exceptions."""
    states = store.stream_states()
    url = db.mask_url(store.engine.url.render_as_string(hide_password=False))
    if not states:
        console.print(f"Store {url}: empty — no stream has been synced yet (run `ltc sync` or `make demo`).")
        return
    schedules = source_schedules(cfg, config_path) if cfg is not None else {}
    now = datetime.now(UTC)
    table = Table(title=f"Streams in {url}")
    for col in ("source", "stream", "status", "synced up to", "last run", "seen", "written",
                "quar.", "src/store", "freshness"):
        table.add_column(col, overflow="fold")
    for s in states:
        completeness = f"{s['source_count']}/{s['store_count']}" if s["source_count"] is not None else "-"
        last = s["last_run_at"].strftime("%Y-%m-%d %H:%M") if s["last_run_at"] else "-"
        table.add_row(
            s["connector"], s["stream"], fmt(s["status"]), _cursor(s["cursor"]), last,
            str(s["records_seen"]), str(s["records_written"]), str(s["quarantined"]), completeness,
            freshness(schedules.get(s["connector"]), s.get("last_success_at"), now),
        )
    console.print(table)
    messages = [s for s in states if s["message"]]
    if messages:
        console.print("Messages:")
        for s in messages:
            console.print(f"  {s['connector']}.{s['stream']} ({s['status']}): {s['message']}",
                          highlight=False, markup=False, soft_wrap=True)
    for name, sch in sorted(schedules.items()):
        console.print(f"schedule of {name}: {sch.describe()}", highlight=False, markup=False)
    synced = {s["connector"] for s in states}
    for name, src in (cfg.sources.items() if cfg is not None else []):
        if src.kind != "camt053" and name not in synced:
            console.print(f"{name}: never synced (`ltc sync --source {name}`)", highlight=False, markup=False)
    from ltc.app.discovery import describe, last_applied
    from ltc.app.unread import lines, stream_health

    for line in lines(stream_health(store, fail_share)):
        console.print(f"Quarantine: {line}", highlight=False)
    for line in describe(last_applied(store)):
        console.print(f"Discovered field: {line}", highlight=False)
    counts = store.table_counts()
    console.print("Canonical rows: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    open_ex = open_exceptions(store)
    console.print("Open exceptions: " + (", ".join(f"{k}={v}" for k, v in open_ex.items()) or "none")
                  + ("  (`ltc exceptions list`)" if open_ex else ""))


SEVERITY = {0: 0, 3: 1, 1: 2, 2: 3}  # exit codes, least to most severe: ok, paused, failed, operator-fixable


def worst(codes: list[int]) -> int:
    """The most severe exit code: 2 (an operator must fix something) > 1 (failed) > 3 (paused) > 0."""
    return max(codes, key=lambda c: SEVERITY.get(c, 2), default=0)


def result_code(r: StreamResult) -> int:
    if isinstance(r, runtime.FailedStream):
        return r.exit_code
    return {"success": 0, "paused": 3}.get(r.status, 1)


def run_sources(cfg: Config, store: Store, only: list[str] | None = None, streams: list[str] | None = None,
                full_refresh: bool = False, *, deep: bool = False, progress: str = "auto") -> int:
    """Sync the sources (each isolated: one that fails does not stop the others), show progress,
    print a table and a summary per source; returns the worst exit code (:func:`worst`)."""
    table = Table(title="sync")
    for col in ("source", "stream", "status", "records", "written", "unchanged", "quarantined", "message"):
        table.add_column(col, overflow="fold")
    per_source: dict[str, list[StreamResult]] = {}

    def waiting(line: str) -> None:  # another process syncs this source: say why we wait
        err_console.print(line, highlight=False, markup=False)

    with reporter(err_console, progress) as on_progress:
        for name, r in runtime.sync_sources(cfg, store, only, streams=streams, full_refresh=full_refresh, deep=deep,
                                            on_wait=waiting, on_progress=on_progress):
            per_source.setdefault(name, []).append(r)
            table.add_row(name, r.stream, r.status, str(r.records), str(r.written), str(r.unchanged),
                          str(r.quarantined), r.message or "")
    console.print(table)
    codes: list[int] = []
    for name, results in per_source.items():
        code = worst([result_code(r) for r in results])
        codes.append(code)
        records = sum(r.records for r in results)
        bad = next((r for r in results if result_code(r) == code and code), None)
        if bad is None:
            console.print(f"{name}: ok, {records:,} records in {len(results)} stream(s)", highlight=False)
        else:
            what = {3: "paused", 1: "failed", 2: "needs an operator"}[code] if code in (1, 2, 3) else "failed"
            err_console.print(f"{name}: {what} ({bad.stream}): {bad.message or bad.status}",
                              highlight=False, markup=False, soft_wrap=True)
    outcome = worst(codes)
    if len(per_source) > 1:
        counts = {label: sum(1 for c in codes if c == code) for label, code in
                  (("ok", 0), ("paused", 3), ("failed", 1), ("need an operator", 2))}
        console.print(f"sync: {len(per_source)} sources: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
                      + f" (exit {outcome})", highlight=False)
    return outcome


def print_summary(summary: dict[str, Any]) -> None:
    """The run summary: unread data first (quarantine and missing required fields per stream), the
    identifier fields applied by discovery, then mapping, identity and reconciliation."""
    from ltc.app.discovery import describe
    from ltc.app.unread import lines

    for line in lines(summary.get("unread") or []):
        console.print(f"quarantine: {line}", highlight=False)
    if summary.get("failed"):
        err_console.print(f"error: {summary['failed']}", soft_wrap=True, highlight=False, markup=False)
    for line in describe(summary.get("discovered") or []):
        console.print(f"discovered field: {line}", highlight=False)
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
    progress: str = ProgressOpt,
) -> None:
    """Pull the configured sources into the raw landing (checkpointed per page).

    Each source is isolated: one that fails does not stop the others. Exit code (the worst of all
    sources): 0 every stream completed; 3 a stream paused on a vendor quota (state saved; run again
    later to resume); 1 a stream failed or ended incomplete (see its message); 2 an operator must fix
    something (credentials rejected, server unreachable, configuration).
    """
    outcome = run_sources(load_config(config), runtime.open_store(config), source, stream or None, full_refresh,
                          deep=deep, progress=progress)
    if outcome:
        raise typer.Exit(outcome)


def status(config: str | None = ConfigOpt) -> None:
    """Per stream: status, cursor, last run, records, quarantined, completeness, freshness against the
    source's schedule (ltc.yaml `schedule`, else prefect.yaml), and each stream's message in full."""
    cfg: Config | None
    try:
        cfg = load_config(config)
    except LtcError:  # status still shows the store with a broken ltc.yaml (`ltc config check` names the problem)
        cfg = None
    share = (cfg or Config()).quarantine_fail_share
    render_status(runtime.open_store(config), cfg, config, share)


def run(
    source: list[str] = typer.Option(None, "--source", "-s", help="Source name(s); default: all."),
    as_of: str | None = typer.Option(None, help="Reconcile as of this date (YYYY-MM-DD); default: the as-of a "
                                     "replayed world recorded in the store, else today."),
    config: str | None = ConfigOpt,
    progress: str = ProgressOpt,
) -> None:
    """The main job without Prefect: every stage of the pipeline (sync, bank files, FX, map, identity,
    reconcile, report, notify), as the pipeline flow runs them.

    Exit code 0 when complete, 3 when a source paused on a vendor quota, 1 when a source or a stage
    failed, 2 when an operator must fix something (credentials rejected, an unreachable URL,
    configuration); with a source missing the report says so in a banner and the last complete one
    is kept. Progress (stages, streams) goes to stderr: bars on a terminal, periodic lines otherwise.
    """
    from ltc.app.pipeline import run_pipeline

    day = day_option(as_of, "--as-of") if as_of else None
    cfg = load_config(config)
    store = runtime.open_store(config)
    with reporter(err_console, progress) as on_progress:
        result = run_pipeline(store, cfg, day, sources=source or None,
                              echo=echo_line(on_progress), on_progress=on_progress)
    print_result(result)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def echo_line(on_progress: Any) -> Any:
    """Where the pipeline's own lines go: on stdout; with bars on a terminal, on their console (stderr)
    so that they print above the bars instead of through them."""
    target = err_console if isinstance(on_progress, BarProgress) else console
    return lambda line: target.print(line, highlight=False, markup=False, soft_wrap=True)


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
        print_summary({"unread": result.unread, "failed": result.quarantine_failure, "discovered": result.discovered,
                       "mapping": result.mapping, "identity": result.identity, "reconcile": result.reconcile})
    if result.held_back:
        console.print(f"held back (a missing source could explain them): {len(result.held_back)} new exception(s)")
    if result.report:
        console.print(f"report: {result.report}", highlight=False)
    for line in result.banners():
        if line != result.quarantine_failure:  # print_summary names that one
            err_console.print(f"PARTIAL: {line}", highlight=False, markup=False)
    if result.previous_report:
        err_console.print(f"the last complete report is kept: {result.previous_report}", highlight=False)


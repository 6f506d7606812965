"""The main job, one plain-Python definition: a list of stages and a small result object.

:data:`STAGES` is the whole job, in order::

    sync      every API source of ltc.yaml (each failure isolated: the others go on)
    import    new bank files of each camt053/MT940 source's folder
    fx        FX rates: the ERP's own rate stream, ECB reference-rate files, CSV files
    map       pending raw records -> canonical rows
    identity  clusters of the same customer
    reconcile deal -> order -> invoice -> payment, exceptions, KPIs (as of ``as_of``)
    report    the finance report (HTML, CSV, XLSX) into ``reports_dir``
    notify    ``ltc.app.notify.notify_run(result, config)`` when that module exists

``ltc demo``, ``ltc run`` and the ``ltc-pipeline`` Prefect flow (flows/pipeline.py, one task per
stage) all call :func:`run_pipeline` / :func:`run_stage`, so what a schedule does and what an
operator runs by hand are the same code. The outcome is a :class:`PipelineResult`.

Partial data is never complete: when a source is paused or failed, the later stages still run on
what there is, but the exceptions that source's missing records could explain are marked
``partial`` (and the new ones held back from alerts), the report carries a banner naming the source
and since when, the previous complete report is kept in ``<reports_dir>/last-complete/``, and
:attr:`PipelineResult.status` is ``paused`` or ``failed`` (``ltc run`` exits 3 or 1, the flow run
ends Failed).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from canonical.errors import ConfigError, error_text
from canonical.forking import fork_lock, forks, start_child
from canonical.identity import run_identity
from canonical.store import Store
from ltc.app.config import Config
from ltc.app.discovery import MapAhead, applied_overrides, describe, map_with_discovery
from ltc.app.hints import hint_for
from ltc.app.progress import OnProgress, ProgressEvent, StreamTimer
from ltc.app.progress import stage as progress_stage
from ltc.app.unread import failure, stream_health
from mappings.engine import map_processes, mark_pending, run_mapping
from reconcile.engine import run_reconciliation
from reconcile.stream import Mapper, sequential

log = logging.getLogger("ltc.pipeline")

# What each kind of source holds, and the exception codes its missing records could explain: with
# that source paused or failed, such an exception may be an artefact of the gap, not a finding.
ROLE = {"salesforce": "crm", "hubspot": "crm", "tryton": "erp", "odoo": "erp", "stripe": "payments",
        "camt053": "bank"}
EXPLAINED_BY: dict[str, frozenset[str]] = {
    "crm": frozenset({"ORDER_WITHOUT_DEAL", "WON_NOT_ORDERED", "AMOUNT_MISMATCH", "CURRENCY_MISMATCH",
                      "LINE_MISMATCH", "STAGE_CONFLICT", "AMBIGUOUS_MATCH", "CUSTOMER_MISMATCH"}),
    "erp": frozenset({"WON_NOT_ORDERED", "ORDER_WITHOUT_DEAL", "AMOUNT_MISMATCH", "CURRENCY_MISMATCH",
                      "LINE_MISMATCH", "ORDERED_NOT_INVOICED", "OVER_INVOICED", "INVOICE_WITHOUT_ORDER",
                      "DUPLICATE_INVOICE", "INVOICE_OVERDUE", "UNAPPLIED_PAYMENT", "PAYMENT_MISMATCH",
                      "AMBIGUOUS_MATCH", "STAGE_CONFLICT", "CUSTOMER_MISMATCH"}),
    "payments": frozenset({"INVOICE_OVERDUE", "UNAPPLIED_PAYMENT", "PAYMENT_MISMATCH", "INVOICE_WITHOUT_ORDER",
                           "DUPLICATE_INVOICE", "AMBIGUOUS_MATCH", "STAGE_CONFLICT", "CUSTOMER_MISMATCH"}),
    "bank": frozenset({"INVOICE_OVERDUE", "UNAPPLIED_PAYMENT", "PAYMENT_MISMATCH", "AMBIGUOUS_MATCH",
                       "CUSTOMER_MISMATCH"}),
}
LAST_COMPLETE = "last-complete"  # the previous complete report, kept beside a partial one
MARKER = ".ltc-report.json"  # written next to each report: its as-of, run, complete or partial


@dataclass
class SourceStatus:
    """One source in this run: ``ok``, ``paused`` (a vendor quota; state saved), ``incomplete`` (a stream
    could not vouch for its completeness: source and store counts differ) or ``failed``."""

    name: str
    kind: str
    status: str = "ok"
    message: str | None = None
    since: datetime | None = None  # its data is complete up to here (last successful sync), when not ok
    streams: list[dict[str, Any]] = field(default_factory=list)  # per stream: stream, status, records, ...
    hint: str | None = None  # what an operator does about it (ltc.app.hints)
    exit_code: int | None = None  # failed: the error's exit code (2: an operator must fix it)

    @property
    def missing(self) -> bool:
        return self.status in ("paused", "failed", "incomplete")

    def banner(self) -> str:
        since = (f"its data is missing since {self.since:%Y-%m-%d %H:%M} UTC (last complete sync)" if self.since
                 else "it has never synced completely")
        what = {"paused": "paused (vendor quota; it resumes on the next run)", "failed": "failed",
                "incomplete": "incomplete (its record count and the store's differ)"}[self.status]
        return f"Source {self.name} ({self.kind}) {what}; {since}" + (f": {self.message}" if self.message else "")


@dataclass
class StageRun:
    name: str
    status: str  # ok | skipped | failed
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


@dataclass
class PipelineResult:
    """What one pipeline run did: what the CLI prints, the flow's artifacts show and notifications send."""

    as_of: date
    run_id: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    stages: list[StageRun] = field(default_factory=list)
    sources: dict[str, SourceStatus] = field(default_factory=dict)
    exceptions: dict[str, int] = field(default_factory=dict)  # open exceptions by code (held-back ones excluded)
    new_fingerprints: list[str] = field(default_factory=list)  # opened (or reopened) by this run, not held back
    held_back: list[str] = field(default_factory=list)  # new ones the missing sources could explain
    partial_fingerprints: list[str] = field(default_factory=list)  # open ones marked partial in this run
    kpis: dict[str, str] = field(default_factory=dict)  # "kpi" or "kpi/variant" -> value (overall, as text)
    report: str | None = None  # the HTML report's path
    by_code: list[dict[str, Any]] = field(default_factory=list)  # the report's rows: code, count, amount_reporting,
    #                                                              reporting_currency, owners (as the report shows them)
    previous_report: str | None = None  # the last complete report, kept when this one is partial
    fx: dict[str, Any] = field(default_factory=dict)  # loaded, stale pairs, unconverted
    mapping: dict[str, int] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)
    reconcile: dict[str, Any] = field(default_factory=dict)
    failed_stage: str | None = None
    failed_stage_exit_code: int | None = None  # the failed stage's error's exit code (2: an operator must fix it)
    error: str | None = None
    unread: list[dict[str, Any]] = field(default_factory=list)  # streams with quarantined records (ltc.app.unread)
    discovered: list[Any] = field(default_factory=list)  # identifier fields applied by discovery
    quarantine_failure: str | None = None  # a stream over quarantine_fail_share: the run failed

    @property
    def partial(self) -> bool:
        return any(s.missing for s in self.sources.values()) or self.failed_stage is not None

    @property
    def status(self) -> str:
        """``completed``, ``paused`` (a source paused, none failed) or ``failed`` (a source failed or ended
        incomplete, or a stage failed)."""
        if self.failed_stage is not None or self.quarantine_failure \
                or any(s.status in ("failed", "incomplete") for s in self.sources.values()):
            return "failed"
        if any(s.status == "paused" for s in self.sources.values()):
            return "paused"
        return "completed"

    @property
    def exit_code(self) -> int:
        """0 completed, 3 paused, 1 failed, 2 when a source or a stage failed in a way an operator must fix
        (credentials rejected, an unreachable URL, configuration, a full disk): the worst, 2 > 1 > 3 > 0."""
        code = {"completed": 0, "paused": 3, "failed": 1}[self.status]
        if code == 1 and (self.failed_stage_exit_code == 2
                          or any(s.status == "failed" and s.exit_code == 2 for s in self.sources.values())):
            return 2
        return code

    def banners(self) -> list[str]:
        lines = [s.banner() for s in self.sources.values() if s.missing]
        if self.failed_stage:
            lines.append(f"Stage {self.failed_stage} failed: {self.error}")
        lines += [f"Stage {s.name} failed: {s.message}" for s in self.stages  # after one that does not block
                  if s.status == "failed" and s.name != self.failed_stage]
        if self.quarantine_failure:
            lines.append(self.quarantine_failure)
        return lines

    def reason(self) -> str:
        """One line: why this run is not complete (empty when it is)."""
        return "; ".join(self.banners())

    def stage(self, name: str) -> StageRun | None:
        return next((s for s in self.stages if s.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(status=self.status, partial=self.partial, exit_code=self.exit_code)
        return json.loads(json.dumps(out, default=str))


SyncOne = Callable[["Context", str], list[dict[str, Any]]]


@dataclass
class Context:
    """What the stages share: the store, ltc.yaml, the as-of, the result they fill, and the hooks
    the shells plug in (``sync_one``: how one source is synced; ``echo``: a line of progress)."""

    store: Store
    cfg: Config
    result: PipelineResult
    sync_one: SyncOne | None = None
    echo: Callable[[str], Any] = lambda line: None
    sources: list[str] | None = None  # only these sources (default: all)
    on_progress: OnProgress | None = None  # stages and streams as they go (ltc.app.progress)
    report_title: str | None = None
    mapper: Mapper = sequential  # runs the reconcile buckets (the Prefect flow passes one that reports progress)
    profiled: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    """Discovery samples profiled during the sync (:func:`_sample_synced`), reused by the map stage."""
    map_ahead: bool = False  # the map stage will run: a source may be mapped once synced, while others sync
    import_ahead: bool = False  # the import stage will run: it may import while the API sources sync
    imported: tuple[dict[str, Any], dict[str, SourceStatus], list[str]] | BaseException | None = None
    """The import done during the sync (:func:`_import_now`), which the import stage reports."""
    ahead: MapAhead | None = None
    """The sources mapped during the sync (:func:`_sample_synced`), which the map stage waits for."""


# --- the stages ----------------------------------------------------------------------------------

def _default_sync_one(ctx: Context, name: str) -> list[dict[str, Any]]:
    from connectors.base import sync
    from ltc.app.runtime import build_connector

    connector = build_connector(ctx.cfg, name)
    try:
        on_page = StreamTimer(ctx.on_progress) if ctx.on_progress is not None else None
        return [asdict(r) for r in sync(connector, ctx.store, on_page=on_page)]
    finally:
        connector.close()


def _since(store: Store, source: str) -> datetime | None:
    """When the source's data was last complete: the oldest last success among its streams."""
    times = [s["last_success_at"] for s in store.stream_states() if s["connector"] == source]
    if not times or any(t is None for t in times):
        return None
    return min(times)


def _source_status(name: str, kind: str, streams: list[dict[str, Any]]) -> SourceStatus:
    st = SourceStatus(name, kind, streams=streams)
    statuses = {s.get("status") for s in streams}
    if "failed" in statuses:
        st.status = "failed"
    elif "paused" in statuses:
        st.status = "paused"
    elif "incomplete" in statuses:
        st.status = "incomplete"
    st.message = next((s.get("message") for s in streams if s.get("status") in ("failed", "paused", "incomplete")
                       and s.get("message")), None)
    return st


def stage_sync(ctx: Context) -> dict[str, Any]:
    """Sync every API source; a source that fails is recorded as failed and the others go on.

    With the default ``sync_one`` the sources are synced side by side (at most :data:`SYNC_WORKERS`;
    each in a forked child where fork is available (:func:`_sync_forked`), else one thread each): a
    source mostly waits on its vendor (network, the vendor's rate limit: Stripe test mode allows 25
    reads a second), and that wait need not hold up the others; in children, their decoding and
    landing also use every core. Each
    source still syncs its streams in order on its own connector; progress events are passed on one
    at a time, and the sources are recorded and echoed in configuration order once all are done. A
    shell's own ``sync_one`` (the Prefect flow runs each source as a subflow, bound to its parent
    flow's context) is called for one source after the other."""
    from concurrent.futures import ThreadPoolExecutor

    from ltc.app.runtime import source_names

    names = [n for n in source_names(ctx.cfg, ctx.sources) if ctx.cfg.sources[n].kind != "camt053"]
    on_progress = ctx.on_progress
    if on_progress is not None and len(names) > 1:
        lock = threading.Lock()
        inner = on_progress

        def serialised(event: ProgressEvent) -> None:
            with lock:
                inner(event)

        on_progress = serialised
    if len(names) <= 1 or ctx.sync_one is not None:  # a shell's own sync_one (Prefect subflows): in order
        statuses = [_sync_source(ctx, name, on_progress) for name in names]
    elif sync_processes():
        statuses = _sync_forked(ctx, names, on_progress)
    else:
        with ThreadPoolExecutor(max_workers=min(len(names), SYNC_WORKERS), thread_name_prefix="sync") as pool:
            statuses = list(pool.map(lambda name: _sync_source(ctx, name, on_progress), names))
    for name, st in zip(names, statuses, strict=True):
        ctx.result.sources[name] = st
        ctx.echo(f"sync {name}: {st.status}" + (f" ({st.message})" if st.message else ""))
    return {n: ctx.result.sources[n].status for n in names}


SYNC_WORKERS = 4  # sources synced at once
SYNC_PROCESSES = True  # with fork (Linux): each source in a forked child, so that sources use every core


def sync_processes() -> bool:
    """Whether the sync stage forks a child per source: where fork is available (:func:`forks`), unless
    :data:`SYNC_PROCESSES` is off or an admin sets ``LTC_SYNC_PROCESSES=off`` (then one thread per source)."""
    env = os.environ.get("LTC_SYNC_PROCESSES", "").strip().lower()
    return SYNC_PROCESSES and env not in ("0", "off", "false", "no") and forks()


def _sync_forked(ctx: Context, names: list[str], on_progress: OnProgress | None) -> list[SourceStatus]:
    """Each source's :func:`_sync_source` in a forked child (at most :data:`SYNC_WORKERS` at once):
    decoding a vendor's pages and landing them is CPU work, which threads of one process do one at a
    time (the GIL). A child lands into the same database on its own connections; on SQLite the
    children take turns to write through one lock they share (the store's turn lock, made a process
    lock). Progress events come back over each child's pipe and are passed on here, one at a time."""
    from multiprocessing.connection import wait

    turn = fork_lock() if ctx.store.engine.dialect.name == "sqlite" else None
    # this process writes meanwhile too (the bank statements' import, the marks of a source mapped ahead)
    own = ctx.store.use_turn(turn) if turn is not None else None
    statuses: dict[str, SourceStatus] = {}
    running: dict[Any, tuple[str, Any]] = {}  # pipe -> (source, process)
    waiting = list(names)
    banks: list[str] = []  # the statement sources imported meanwhile, to map ahead

    def start(name: str) -> None:
        process, mine = start_child(_sync_child, ctx, name, turn, on_progress is not None, name=f"ltc-sync-{name}")
        running[mine] = (name, process)

    try:
        while waiting or running:
            while waiting and len(running) < SYNC_WORKERS:
                start(waiting.pop(0))
            if ctx.import_ahead and ctx.imported is None:  # this process only waits for the children meanwhile
                banks = _import_now(ctx)
            ready: list[Any] = wait(list(running))
            for conn in ready:
                name, process = running[conn]
                try:
                    kind, value = conn.recv()
                except EOFError:  # the child died without an answer
                    kind, value = "done", SourceStatus(
                        name, ctx.cfg.sources[name].kind, status="failed",
                        message=f"the sync of {name} ended without a result (exit code {process.exitcode})")
                if kind == "progress":
                    if on_progress is not None:
                        on_progress(value)
                    continue
                statuses[name] = value
                del running[conn]
                conn.close()
                process.join()
                if running and not waiting:
                    for source in [name, *banks]:
                        _sample_synced(ctx, source, turn)
                    banks = []
    finally:
        for conn, (_name, process) in running.items():
            process.kill()
            process.join()
            conn.close()
        if own is not None:  # once the children mapping ahead are done, if any (:meth:`MapAhead.finish`)
            if ctx.ahead is not None and ctx.ahead.started:
                ctx.ahead.own_turn = own
            else:
                ctx.store.use_turn(own)
    return [statuses[name] for name in names]


def _import_now(ctx: Context) -> list[str]:
    """The import stage's work (:func:`_imports`), done while the API sources sync in their children (the
    statement files are read from a folder, whatever the vendors answer); the import stage reports it.
    Returns the statement sources that imported something, which may then be mapped ahead."""
    try:
        ctx.imported = done = _imports(ctx)
    except Exception as exc:  # raised by the import stage, as if it had run there
        ctx.imported = exc
        return []
    return [name for name, counts in done[0].items() if counts.get("new") or counts.get("changed")]


def _sample_synced(ctx: Context, name: str, turn: Any = None) -> None:
    """While the last sources sync in their children (this process only waits for them), map ``name``, whose
    sync has ended, in a forked child (:class:`ltc.app.discovery.MapAhead`; ``turn``: the sync's SQLite
    writers' lock, which that child and this process then share), when the map stage is to run; else profile
    its discovery sample for the map stage (:func:`ltc.app.discovery.sample_early`). Only ahead of time: a
    problem here is left to the map stage, which maps and profiles what is not done."""
    from ltc.app.discovery import sample_early

    try:
        if ctx.map_ahead and map_processes():
            if ctx.ahead is None:
                ctx.ahead = MapAhead(ctx.store, ctx.cfg, ctx.profiled, turn)
            if ctx.ahead.start(name):
                return
        if ctx.cfg.discover_fields:
            sample_early(ctx.store, ctx.cfg, name, ctx.profiled)
    except Exception as exc:  # the map stage maps and profiles it itself, and says what is wrong
        log.debug("mapping of %s left to the map stage: %s", name, exc)


def _sync_child(ctx: Context, name: str, turn: Any, progress: bool, conn: Any) -> None:
    """A forked child: sync one source on new connections (the parent's stay untouched), answer its status."""
    def relay(event: ProgressEvent) -> None:
        conn.send(("progress", event))

    try:
        with ctx.store.forked_child(turn):
            conn.send(("done", _sync_source(ctx, name, relay if progress else None)))
    finally:
        conn.close()


def _sync_source(ctx: Context, name: str, on_progress: OnProgress | None) -> SourceStatus:
    """One source's sync as its status (a failure isolated: one dead source never stops the others)."""
    from ltc.app.runtime import exit_code_of

    sync_one = ctx.sync_one or _default_sync_one
    kind = ctx.cfg.sources[name].kind
    try:
        with progress_stage(f"sync {name}", on_progress):
            own = ctx if on_progress is ctx.on_progress else replace(ctx, on_progress=on_progress)
            st = _source_status(name, kind, sync_one(own, name))
        st.hint = hint_for(name, status=st.status)
    except Exception as exc:
        log.warning("source %s failed: %s", name, exc)
        st = SourceStatus(name, kind, status="failed", message=error_text(exc)[:500],
                          hint=hint_for(name, exc), exit_code=exit_code_of(exc))
    if st.missing:
        st.since = _since(ctx.store, name)
    return st


def stage_import(ctx: Context) -> dict[str, Any]:
    """Import the new statement files (camt.053, MT940) of each camt053 source's folder (or report the
    import done while the API sources synced, :func:`_import_now`)."""
    done, ctx.imported = ctx.imported, None
    if isinstance(done, BaseException):
        raise done
    out, statuses, lines = done if done is not None else _imports(ctx)
    for line in lines:
        ctx.echo(line)
    ctx.result.sources.update(statuses)
    return out


def _imports(ctx: Context) -> tuple[dict[str, Any], dict[str, SourceStatus], list[str]]:
    """Each camt053 source's import: its counts, its status and the lines to echo."""
    from connectors.statements import run_import

    out: dict[str, Any] = {}
    statuses: dict[str, SourceStatus] = {}
    lines: list[str] = []
    for name, src in ctx.cfg.sources.items():
        if src.kind != "camt053" or (ctx.sources and name not in ctx.sources):
            continue
        folder = src.options.get("folder")
        try:
            if not folder:
                raise ConfigError(f"sources.{name}.options.folder: the folder to watch for statement files is not set")
            if not Path(str(folder)).is_dir():
                raise ConfigError(f"sources.{name}.options.folder: {folder} is not a directory")
            counts = run_import(ctx.store, folder=folder, source=name).counts
            st = SourceStatus(name, "camt053", streams=[{"stream": "statements", "status": "success", **counts}])
            lines.append(f"bank {name}: {counts['statements']} statement(s), {counts['entries']} entries, "
                         f"{counts['new']} new, {counts['rejected']} rejected, {counts['skipped']} file(s) already imported")
            out[name] = counts
        except Exception as exc:  # exit 2 for what an operator fixes (no folder set, a folder that is gone)
            from ltc.app.runtime import exit_code_of

            st = SourceStatus(name, "camt053", status="failed", message=error_text(exc)[:500],
                              exit_code=exit_code_of(exc))
            lines.append(f"bank {name}: failed ({error_text(exc, typed=False)})")
            out[name] = {"failed": str(exc)}
        statuses[name] = st
    return out, statuses, lines


def stage_fx(ctx: Context) -> dict[str, Any]:
    """Refresh the FX rates from every configured rate source; report stale pairs and rejected rows. A rate
    file or URL that cannot be read, or holds no usable rate, fails the stage (:class:`ltc.app.fx.RatesNotRefreshed`)
    once the others are loaded; the later stages still run on the rates there are (:attr:`Stage.blocks`)."""
    from ltc.app.fx import RatesNotRefreshed, refresh_rates

    detail = refresh_rates(ctx.store, ctx.cfg, ctx.result.as_of)
    ctx.result.fx = detail
    if detail.get("loaded") or detail.get("stale") or detail.get("errors") or detail.get("rejected"):
        ctx.echo(f"fx rates: {detail.get('loaded', 0)} loaded" + (
            f", {detail['rejected_rows']} row(s) rejected" if detail.get("rejected_rows") else "") + (
            f"; stale: {', '.join(detail['stale'])}" if detail.get("stale") else ""))
    for line in detail.get("rejected", []):
        log.info("fx: rejected %s", line)  # echoed: a shell shows it (a warning would show it twice)
        ctx.echo(f"fx rates: rejected {line}")
    if detail.get("errors"):
        raise RatesNotRefreshed(detail["errors"], detail["errors_exit_code"])
    return detail


def stage_map(ctx: Context) -> dict[str, Any]:
    """Map (with the identifier fields discovery found in the landed data); then the quarantine per
    stream, which fails the run when a stream is over ``quarantine_fail_share`` (:mod:`ltc.app.unread`)."""
    mapped, discovered = map_with_discovery(ctx.store, ctx.cfg, enabled=ctx.cfg.discover_fields,
                                            profiled=ctx.profiled, ahead=ctx.ahead)
    totals: dict[str, int] = {}
    for counts in mapped.values():
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + int(value)
    res = ctx.result
    res.mapping = totals
    res.discovered = list(discovered)
    res.unread = stream_health(ctx.store, ctx.cfg.quarantine_fail_share)
    res.quarantine_failure = failure(res.unread, ctx.cfg.quarantine_fail_share)
    for line in describe(res.discovered):
        ctx.echo(f"discovered field: {line}")
    if res.quarantine_failure:
        log.warning("%s", res.quarantine_failure)
    return totals


def stage_identity(ctx: Context) -> dict[str, Any]:
    ctx.result.identity = dict(run_identity(ctx.store, config=ctx.cfg))
    return ctx.result.identity


def stage_reconcile(ctx: Context) -> dict[str, Any]:
    before = _open_fingerprints(ctx.store)
    rec = run_reconciliation(ctx.store, ctx.cfg, ctx.result.as_of, mapper=ctx.mapper)
    res = ctx.result
    res.reconcile = rec.summary()
    res.kpis = _kpis(rec.kpis)
    _open_book(ctx, before)
    return {"run_id": rec.run_id, "as_of": rec.as_of.isoformat(), "chains": rec.chains,
            "exceptions": res.exceptions, "new": len(res.new_fingerprints), "held_back": len(res.held_back)}


def stage_report(ctx: Context) -> dict[str, Any]:
    res = ctx.result
    out = Path(ctx.cfg.reports_dir)
    kept = keep_last_complete(out) if res.partial else None
    files = write_report(ctx.store, ctx.cfg, title=ctx.report_title, banners=res.banners(),
                         previous_complete=f"{LAST_COMPLETE}/report.html" if kept else None, notes=fx_notes(res.fx))
    res.report = str(files.html)
    res.by_code = [dict(r) for r in (files.report.by_code if files.report else [])]
    res.previous_report = str(kept) if kept else None
    marker = out / f"{MARKER}.{os.getpid()}.tmp"  # moved into place whole, as the report's files are
    marker.write_text(json.dumps({"as_of": res.as_of.isoformat(), "run_id": res.run_id,
                                  "complete": not res.partial, "banners": res.banners()}), encoding="utf-8")
    os.replace(marker, out / MARKER)
    if not res.partial:
        shutil.rmtree(out / LAST_COMPLETE, ignore_errors=True)
    return {"report": res.report, "previous_report": res.previous_report,
            "files": [str(p) for p in files.all()]}


def stage_notify(ctx: Context) -> dict[str, Any]:
    """Alerts and the digest (``ltc.app.notify``); a notifier never fails the run."""
    from ltc.app.notify import notify_run

    try:
        sent = notify_run(ctx.result, ctx.cfg, ctx.store)
    except Exception as exc:  # notify_run logs its own failures; this is the last guard
        log.warning("notifications failed (the run goes on): %s", exc)
        return {"failed": f"{type(exc).__name__}: {exc}"[:300]}
    lines = [f"{d.event} → {d.target}: {'sent' if d.ok else 'FAILED ' + (d.error or '')}" for d in sent.deliveries]
    for line in lines:
        ctx.echo(f"notify: {line}")
    return {"deliveries": lines}


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Context], dict[str, Any]]
    description: str
    after_failure: bool = False  # runs even when an earlier stage failed (report the failure, notify it)
    blocks: bool = True  # when it fails, the later stages are skipped (False: they run, and the run still fails)


STAGES: list[Stage] = [
    Stage("sync", stage_sync, "sync every API source"),
    Stage("import", stage_import, "import new bank statement files"),
    Stage("fx", stage_fx, "refresh FX rates", blocks=False),  # the rates loaded before stay: reconcile with them
    Stage("map", stage_map, "map raw records to the canonical model"),
    Stage("identity", stage_identity, "resolve customer identities"),
    Stage("reconcile", stage_reconcile, "reconcile deal -> order -> invoice -> payment"),
    Stage("report", stage_report, "write the finance report"),
    Stage("notify", stage_notify, "send notifications", after_failure=True),
]


def run_stage(ctx: Context, stage: Stage) -> StageRun:
    """Run one stage into ``ctx.result``; a stage's exception is recorded (the result then fails) and re-raised."""
    t0 = time.monotonic()
    try:
        detail = stage.run(ctx)
    except Exception as exc:
        from ltc.app.runtime import exit_code_of

        run = StageRun(stage.name, "failed", round(time.monotonic() - t0, 3), message=error_text(exc))
        ctx.result.stages.append(run)
        code = exit_code_of(exc)
        if ctx.result.failed_stage is None:
            ctx.result.failed_stage = stage.name
            ctx.result.failed_stage_exit_code = code
        elif code == 2:  # a later stage failed too (after one that does not block): the worst code, 2 > 1
            ctx.result.failed_stage_exit_code = 2
        ctx.result.error = ctx.result.error or error_text(exc, typed=False)[:500]
        raise
    status = "skipped" if set(detail) == {"skipped"} else "ok"
    run = StageRun(stage.name, status, round(time.monotonic() - t0, 3), detail=detail)
    ctx.result.stages.append(run)
    return run


def _brief(run: StageRun) -> str:
    """A few words on what a stage did, for its progress line."""
    d = run.detail
    if run.name == "reconcile" and "chains" in d:
        return f"{d['chains']} chains, {sum(d.get('exceptions', {}).values())} open exceptions"
    if run.name == "map" and "mapped" in d:
        return f"{d['mapped']} mapped, {d.get('quarantined', 0)} quarantined"
    if run.name == "fx" and "loaded" in d:
        return f"{d['loaded']} rates loaded"
    return run.status


def begin(store: Store, cfg: Config, as_of: date | None = None) -> PipelineResult:
    """A new pipeline run: its as-of (given, else the store's recorded one, else today) and its ``run`` row."""
    day = as_of or default_as_of(store, cfg)
    result = PipelineResult(as_of=day)
    result.run_id = store.begin_run("pipeline")
    _record_as_of(store, result.run_id, day)
    return result


def finish(store: Store, result: PipelineResult) -> PipelineResult:
    status = {"completed": "success", "paused": "paused", "failed": "failed"}[result.status]
    if result.run_id:
        store.finish_run(result.run_id, status, {"as_of": result.as_of.isoformat(), "partial": result.partial,
                                                 "sources": {n: s.status for n, s in result.sources.items()},
                                                 "stages": [s.name for s in result.stages],
                                                 "exceptions": result.exceptions, "report": result.report},
                         result.reason() or None)
    return result


def run_pipeline(store: Store, cfg: Config, as_of: date | None = None, *, sync_one: SyncOne | None = None,
                 echo: Callable[[str], Any] = lambda line: None, sources: list[str] | None = None,
                 skip: tuple[str, ...] = (), report_title: str | None = None,
                 on_progress: OnProgress | None = None) -> PipelineResult:
    """Run :data:`STAGES` (minus ``skip``) on the store; returns what happened (never raises for a
    source that fails; a failing stage ends the run ``failed`` and the later stages, but notify, are skipped)."""
    result = begin(store, cfg, as_of)
    ctx = Context(store, cfg, result, sync_one=sync_one, echo=echo, sources=sources, report_title=report_title,
                  on_progress=on_progress, map_ahead="map" not in skip, import_ahead="import" not in skip)
    failed = False
    try:
        for stage in STAGES:
            if stage.name in skip or (failed and not stage.after_failure):
                continue
            try:  # sync shows a stage per source instead of one for all
                with progress_stage(stage.name, on_progress if stage.name != "sync" else None) as done:
                    done(_brief(run_stage(ctx, stage)))
            except Exception as exc:  # reported by echo (and in the result): logged again, a shell showed it twice
                log.info("stage %s failed: %s", stage.name, error_text(exc, typed=False))
                echo(f"stage {stage.name} failed: {error_text(exc, typed=False)}")
                failed = failed or stage.blocks
    finally:  # a stage before the map stage failed: the sources mapped ahead are not waited for
        if ctx.ahead is not None:
            ctx.ahead.cancel()
    return finish(store, result)


# --- as-of ---------------------------------------------------------------------------------------

def _record_as_of(store: Store, run_id: str, day: date) -> None:
    from canonical.tables import run

    with store.engine.begin() as conn:
        conn.execute(run.update().where(run.c.id == run_id).values(counts={"as_of": day.isoformat()}))


def recorded_as_of(store: Store) -> date | None:
    """The as-of a replayed world left in the store (its ``demo-world`` run), if any."""
    from canonical.tables import run

    with store.engine.connect() as conn:
        counts = conn.execute(sa.select(run.c.counts).where(run.c.kind == "demo-world")
                              .order_by(run.c.started_at.desc()).limit(1)).scalar()
    value = (counts or {}).get("as_of") if isinstance(counts, dict) else None
    return date.fromisoformat(value) if value else None


def default_as_of(store: Store, cfg: Config) -> date:
    """The as-of to use when none is given: a replayed world's own, else today in the company's time zone
    (ltc.yaml ``timezone``)."""
    return recorded_as_of(store) or cfg.today()


# --- after reconcile: the open book, partial marks -------------------------------------------------

def _kpis(frame: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    cols = set(frame.columns)
    for row in frame.iter_rows(named=True):
        if "owner" in cols and row.get("owner") is not None:  # overall rows only
            continue
        if row.get("value") is None:
            continue
        key = row["kpi"] + (f"/{row['variant']}" if row.get("variant") else "")
        out.setdefault(key, str(row["value"]))
    return dict(sorted(out.items()))


def _open_fingerprints(store: Store) -> set[str]:
    from reconcile.tables import recon_exception as rx

    with store.engine.connect() as conn:
        return set(conn.execute(sa.select(rx.c.fingerprint).where(rx.c.status == "open")).scalars())


def _open_book(ctx: Context, before: set[str]) -> None:
    """Open exceptions by code, the new ones (open now, not before this run: opened or reopened), and —
    with a source missing — the partial marks."""
    from reconcile.tables import recon_exception as rx

    res = ctx.result
    missing = [s for s in res.sources.values() if s.missing]
    explainable = frozenset().union(*(EXPLAINED_BY.get(ROLE.get(s.kind, ""), frozenset()) for s in missing))
    partial_note = {"sources": [{"name": s.name, "status": s.status,
                                 "since": s.since.isoformat() if s.since else None} for s in missing]}
    with ctx.store.engine.begin() as conn:
        rows = conn.execute(sa.select(rx.c.fingerprint, rx.c.code, rx.c.evidence).where(rx.c.status == "open")).all()
        for fp, code, evidence in rows:
            ev = dict(evidence or {})
            is_new = fp not in before
            if code in explainable:
                res.partial_fingerprints.append(fp)
                ev["partial"] = partial_note
                conn.execute(rx.update().where(rx.c.fingerprint == fp).values(evidence=ev))
                if is_new:
                    res.held_back.append(fp)
                    continue
            elif "partial" in ev:
                ev.pop("partial")
                conn.execute(rx.update().where(rx.c.fingerprint == fp).values(evidence=ev))
            res.exceptions[code] = res.exceptions.get(code, 0) + 1
            if is_new:
                res.new_fingerprints.append(fp)
    res.exceptions = dict(sorted(res.exceptions.items()))


# --- reports ---------------------------------------------------------------------------------------

def keep_last_complete(out: Path) -> Path | None:
    """Before a partial report overwrites ``out``: keep the complete report there in ``out/last-complete/``
    (a partial one after a partial one keeps the complete one saved before). Returns its HTML path."""
    kept = out / LAST_COMPLETE
    marker = out / MARKER
    complete = False
    if marker.exists():
        try:
            complete = bool(json.loads(marker.read_text(encoding="utf-8")).get("complete"))
        except (ValueError, OSError):
            complete = False
    elif (out / "report.html").exists():
        complete = True  # a report from before markers existed: treat it as the last complete one
    if complete:
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True)
        for p in out.iterdir():
            if p.is_file():
                shutil.copy2(p, kept / p.name)
    return kept / "report.html" if (kept / "report.html").exists() else None


def fx_notes(fx: dict[str, Any]) -> list[str]:
    """What the report says about the FX rates of this run: stale pairs, rate rows rejected (the rate sources that
    could not be read fail the fx stage: the report's banner names them)."""
    notes = []
    if fx.get("stale"):
        notes.append(f"Stale FX rates (newest older than {fx.get('max_age_days')} days): " + ", ".join(fx["stale"]))
    if fx.get("rejected"):
        notes.append(f"FX rate rows rejected ({fx.get('rejected_rows', len(fx['rejected']))}): "
                     + "; ".join(fx["rejected"]))
    return notes


def write_report(store: Store, cfg: Config, *, title: str | None = None, banners: list[str] | None = None,
                 previous_complete: str | None = None, notes: list[str] | None = None) -> Any:
    """The finance report of the latest reconciliation into ``reports_dir`` (HTML, CSV, XLSX)."""
    from reports.finance import write_reports

    return write_reports(store, cfg.reports_dir, config=cfg, title=title, banners=banners or [],
                         previous_complete=previous_complete, notes=notes or [])


# --- compatibility and helpers -----------------------------------------------------------------------

def after_sync(store: Store, cfg: Config, as_of: date, *, mapper: Mapper = sequential) -> dict[str, Any]:
    """Map, resolve identities, reconcile (no sync, no report): the summary as a dict. ``mapper`` runs
    the reconcile buckets (the Prefect flow passes one that reports progress)."""
    result = begin(store, cfg, as_of)
    ctx = Context(store, cfg, result, mapper=mapper)
    try:
        for stage in STAGES:
            if stage.name in ("map", "identity", "reconcile"):
                run_stage(ctx, stage)
    finally:
        finish(store, result)
    return {"unread": result.unread, "failed": result.quarantine_failure, "discovered": result.discovered,
            "mapping": result.mapping, "identity": result.identity, "reconcile": result.reconcile}


def remap(store: Store, cfg: Config, source: str | None = None) -> tuple[int, dict[str, dict[str, int]]]:
    """Mark the raw records (of ``source``, or all) pending and map them again: (marked, counts per source).

    An unknown ``source`` (not in ltc.yaml and nothing landed for it) is a ConfigError.
    """
    if source is not None and source not in cfg.sources and store.count_raw(source, include_deleted=True) == 0:
        known = sorted(set(cfg.sources))
        raise ConfigError(f"unknown source {source!r}: not in ltc.yaml and nothing landed for it"
                          + (f" (configured: {', '.join(known)})" if known else ""))
    marked = mark_pending(store, source)
    extra = applied_overrides(store) if cfg.discover_fields else None  # the discovered fields stay applied
    return marked, run_mapping(store, source, config=cfg, extra=extra)

"""``run_reconciliation``: the store path around the frame-level core (no Prefect).

The store's live canonical rows are exported column-wise to Parquet in a scratch directory
(:func:`reconcile.frames.export_frames`, :mod:`canonical.columnar`: no Python rows), partitioned by
customer cluster and reconciled bucket by bucket (:mod:`reconcile.stream`), so memory is bounded by one
bucket at any size; each bucket's result frames and KPI inputs go to the scratch directory and the KPIs
are computed from them. The links and allocations of the previous run are replaced at once (bulk: ADBC ingest in
the SQLite helper process, ``COPY`` on PostgreSQL; :class:`canonical.columnar.BulkWriter`): each bucket's rows are
appended as soon as the bucket has written them (most of them before its checks run), while it and the next bucket
are computed, into fresh tables swapped in for the old ones with their indexes (PostgreSQL: all in one
transaction; SQLite: each bucket committed and checkpointed on its own, the swap in one short transaction); the
commit follows the last bucket (this process computes the KPIs and makes the exception lifecycle's rows meanwhile, converted for the driver: :func:`reconcile.lifecycle.prepare`), and SQLite's checkpoint of it runs during the lifecycle step. The tables are
exported one by one in the background by two helper processes, in the order they are read: reference discovery
starts once the deal, order and invoice tables are there (the payments are exported meanwhile), the other tables
are exported while it runs; with several buckets the line tables (which the pre-pass's bucket assignment does not
read either) come last, exported from the last backwards by the second helper while the first exports the others. In a second transaction the KPI snapshot is
stored (with the open book after the lifecycle: open exceptions, amount at risk) and the exception
lifecycle (:mod:`reconcile.lifecycle`) applied: on PostgreSQL while the links' commit builds their indexes, on SQLite
once it is done. The run is recorded in the
``run`` table with its counts; a conservation failure marks the run failed and re-raises.

Frames already in memory (``frames=``) are reconciled in one shot instead; the results are the same.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from canonical import columnar, db
from canonical.locks import stage_lock
from canonical.scratch import scratch_dir
from canonical.store import Store, now
from reconcile import lifecycle
from reconcile.core import ROWS_PER_PARTITION, Settings, _Clock, buckets_for, reconcile_frames
from reconcile.frames import Frames, conform, exported, start_export, store_table
from reconcile.kpi import KPI_SCHEMA, closed_deals, compute_kpis, kpis_from_inputs, period, period_leads
from reconcile.partition import LINE_TABLES, NOT_READ
from reconcile.stream import (
    DISCOVERY_TABLES,
    FRAMES,
    KPI_INPUTS,
    LINK_FRAMES,
    BucketSummary,
    Mapper,
    clear_out,
    combine,
    plan_buckets,
    read_frame,
    run_bucket,
    run_memory,
    sequential,
)
from reconcile.tables import kpi_snapshot, recon_allocation, recon_link


@dataclass
class ReconcileResult:
    run_id: str
    as_of: date
    exceptions: pl.DataFrame
    totals: dict[str, Any]
    chains: int
    kpis: pl.DataFrame
    partitions: int = 1
    lifecycle: dict[str, int] = field(default_factory=dict)
    out: Path | None = None  # the result frames, <frame>/<bucket>.parquet (or .arrow), when the caller kept them

    def frame(self, name: str) -> pl.DataFrame:
        """A result frame of the run (``chains``, ``links``, ``allocations``, …), when kept (``keep=``)."""
        if self.out is None:
            raise ValueError("the result frames were not kept (run_reconciliation(..., keep=DIR))")
        return read_frame(self.out / name)

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "as_of": self.as_of.isoformat(), **self.totals,
                "lifecycle": self.lifecycle, "chains": self.chains, "partitions": self.partitions}


def _with_exposure(kpis: pl.DataFrame, rows: list[dict[str, Any]], as_of: date) -> pl.DataFrame:
    """The run's KPIs plus the open book after its lifecycle sync (open exceptions, amount at risk)."""
    extra = pl.DataFrame(rows, schema=KPI_SCHEMA).with_columns(  # type: ignore[arg-type]
        pl.lit(kpis["period_start"][0] if kpis.height else as_of, pl.Date).alias("period_start"),
        pl.lit(kpis["period_end"][0] if kpis.height else as_of, pl.Date).alias("period_end"))
    return pl.concat([kpis, extra.select(kpis.columns)], how="vertical_relaxed")


def run_reconciliation(store: Store, config: Any, as_of: date, *, frames: Frames | None = None,
                       period_start: date | None = None, period_end: date | None = None,
                       partitions: int | None = None, mapper: Mapper = sequential,
                       scratch: str | Path | None = None, keep: str | Path | None = None) -> ReconcileResult:
    """Reconcile the store as of ``as_of`` (config: ``ltc.app.config.Config`` or ``ReconcileConfig``).

    ``partitions`` forces the number of buckets (default: grows with the input); ``mapper`` runs the
    buckets (default: one after the other in this process; ``flows/reconcile.py`` passes a Dask-backed
    one); ``scratch`` is where the export and the buckets go (default: the system temp dir; with workers
    on other machines, a directory they all see); ``keep`` keeps the result frames there.

    Holds the store's ``reconcile`` lock: a second reconciliation waits for the first instead of
    interleaving with it (which doubled links and allocations); a run a killed process left
    ``running`` is closed as failed first."""
    with stage_lock(store.engine, "reconcile"):
        store.close_interrupted("reconcile")
        return _reconcile(store, config, as_of, frames, period_start, period_end, partitions, mapper,
                          scratch, keep)


def _reconcile(store: Store, config: Any, as_of: date, frames: Frames | None, period_start: date | None,
               period_end: date | None, partitions: int | None, mapper: Mapper,
               scratch: str | Path | None, keep: str | Path | None) -> ReconcileResult:
    settings = Settings.from_config(config)
    clock = _Clock()
    run_id = store.begin_run("reconcile")
    writers: list[columnar.BulkWriter] = []  # their checkpoints run on during the lifecycle step
    removing: list[threading.Thread] = []  # the scratch directory's removal runs on during the lifecycle step too
    steps = functools.partial(_reconcile_steps, store, settings, as_of, frames, period_start, period_end, partitions,
                              mapper, scratch, keep, run_id=run_id, clock=clock, writers=writers, removing=removing)
    try:
        return _recorded(store, run_id, writers, steps)
    finally:
        for t in removing:  # removed when the run returns
            t.join()


def _recorded(store: Store, run_id: str, writers: list[columnar.BulkWriter],
              steps: Callable[[], ReconcileResult]) -> ReconcileResult:
    """The run's ``steps``, recorded: a success with its counts, or a failure with its error once the links'
    checkpoints have settled."""
    try:
        result = steps()
    except Exception as exc:
        for w in writers:
            w.settle()
        store.finish_run(run_id, "failed", message=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    store.finish_run(run_id, "success", counts={"exceptions": result.totals["exceptions"],
                                                "lifecycle": result.lifecycle, "states": result.totals["states"],
                                                "partitions": result.partitions})
    return result


def _reconcile_steps(store: Store, settings: Settings, as_of: date, frames: Frames | None, period_start: date | None,
                     period_end: date | None, partitions: int | None, mapper: Mapper, scratch: str | Path | None,
                     keep: str | Path | None, *, run_id: str, clock: _Clock, writers: list[columnar.BulkWriter],
                     removing: list[threading.Thread]) -> ReconcileResult:
    """Reconcile in a scratch directory, then the exception lifecycle and the KPI snapshot; the links'
    checkpoints settled before it returns."""
    def book(result: ReconcileResult, at: datetime, found: dict[str, dict[str, Any]] | None) -> None:
        """The exception lifecycle and the KPI snapshot (with the open book after it), in a transaction of their own."""
        at_clock = _Clock()
        with store.engine.connect() as conn, _no_checkpoint(conn, bool(writers)), conn.begin():
            result.lifecycle = lifecycle.sync(conn, result.exceptions, run_id, at, found)
            result.kpis = _with_exposure(result.kpis, lifecycle.exposure(conn, settings.reporting_currency), as_of)
            _insert_small(conn, kpi_snapshot, result.kpis.with_columns(pl.lit(run_id).alias("run_id"),
                                                                       pl.lit(as_of).alias("as_of")))
        at_clock("KPI snapshot + exception lifecycle")

    # removed by a thread of its own once the block is left (``removing``; joined when the run returns) while the
    # lifecycle step runs, which waited for it (at 1M chains, the spill and discovered tables alone, 2.3 GB, took 0.6 s
    # to remove); those of killed runs are removed first (canonical.scratch)
    with scratch_dir("ltc-recon-", scratch, removing=removing) as tmp:
        out = Path(keep) if keep is not None else Path(tmp) / "out"
        if frames is not None:
            result = _one_shot(frames, settings, as_of, period_start, period_end, out, run_id)
            _store_links(store, out)
            rest: Callable[[], None] = functools.partial(book, result, now(), None)
        else:
            result, rest = _bucketed(store, settings, as_of, period_start, period_end, Path(tmp), out, run_id,
                                     partitions, mapper, writers, book, kept=keep is not None)
        clock("reconcile + KPIs, links + allocations stored")
    rest()  # the lifecycle step, unless done (PostgreSQL); the scratch directory is removed meanwhile
    clock = _Clock()  # the lifecycle step timed itself (book): the checkpoint's wait alone from here
    for w in writers:
        w.settle()
    clock("links' checkpoint")
    if keep is None:
        result.out = None
    return result


def _no_checkpoint(conn: sa.Connection, pending: bool) -> contextlib.AbstractContextManager[None]:
    """SQLite, while the links' checkpoint runs in the helper (``pending``): this connection's commits do not
    checkpoint (its automatic checkpoint would copy the links' WAL itself, the lifecycle step waiting for it)."""
    return db.no_autocheckpoint(conn) if pending else contextlib.nullcontext()


def _one_shot(fr: Frames, s: Settings, as_of: date, start: date | None, end: date | None, out: Path,
              run_id: str) -> ReconcileResult:
    core = reconcile_frames(fr, s, as_of)
    clear_out(out)
    for name in FRAMES:
        getattr(core, name).write_parquet(out / name / "00000.parquet")
    return ReconcileResult(run_id=run_id, as_of=as_of, exceptions=core.exceptions, totals=core.totals,
                           chains=core.chains.height, kpis=compute_kpis(fr, core, s, as_of, start, end), out=out)


def _bucketed(store: Store, s: Settings, as_of: date, start: date | None, end: date | None, tmp: Path, out: Path,
              run_id: str, partitions: int | None, mapper: Mapper, writers: list[columnar.BulkWriter],
              book: Callable[[ReconcileResult, datetime, dict[str, dict[str, Any]]], None], kept: bool = True
              ) -> tuple[ReconcileResult, Callable[[], None]]:
    """The store path's reconciliation (export, pre-pass, buckets, KPIs, links stored) and ``book``, the exception
    lifecycle, given its time and its rows (:func:`reconcile.lifecycle.prepare`), made while the links are committed.
    On PostgreSQL ``book``'s transaction runs while the links' commit does too (its index builds: 6 s at 1M chains);
    on SQLite after it, by the caller (what is returned beside the result: a no-op on PostgreSQL), as there is one
    writer at a time and a transaction of this process's engine, which begins deferred, could not write after a
    commit made since its first read. Unless the result frames are ``kept``, the buckets write only the links and
    allocations (what is stored)."""
    clock = _Clock()
    # the KPIs read created_at; reference discovery (the pre-pass of plan_buckets) reads the texts and vendor
    # ids that the buckets then leave out
    omit = {name: set(cols) - {"created_at", "ref_text", "source_id", "reference", "order_ref"} for name, cols in NOT_READ.items()}
    # every table exported in the background by two helper processes, a table at a time each, in the order they are
    # read: reference discovery's (deal, order and invoice build its index; payment, discovered last, is exported
    # while the others are), then the others (leads: for the KPIs), exported while discovery runs
    buckets = _buckets(store, partitions)
    several = buckets > 1
    rest = [name for name in Frames.__dataclass_fields__ if name not in DISCOVERY_TABLES]
    # with several buckets, the line tables (the bulk of the rest) come last: the pre-pass does not read them, the
    # spill waits for them (not discovery, which waited 4-6 s for them at 1M chains); the second helper, done with
    # discovery's tables, exports them from the last backwards while the first exports the others in order (one
    # helper after the other did all of the rest: the spill waited 12 s for the lines at 1M chains, loaded machine)
    lines = [name for name in rest if name in LINE_TABLES] if several else []
    others = [name for name in rest if name not in lines]
    src = tmp / "in"
    # each bucket's links and allocations go to the store as it finishes, while the next bucket is computed (the
    # last one's while the KPIs are); they replace the previous run's at once when committed last (fresh tables
    # swapped in, see BulkWriter: on PostgreSQL in one transaction, on SQLite committed bucket by bucket)
    with run_memory(buckets), \
            start_export(store, src, [*DISCOVERY_TABLES, *others, *lines], omit, lead=len(DISCOVERY_TABLES),
                         from_end=several) as exporting, \
            ThreadPoolExecutor(1, thread_name_prefix="ltc-commit") as pool, \
            columnar.BulkWriter(store.engine, [recon_link.name, recon_allocation.name],
                                rows_hint=exporting.rows, swap=True) as writer:
        clock("export started")

        def waiting(label: str, names: Iterable[str]) -> Callable[[], object]:
            """Waits for the tables' export, the wait on the profile's clock (LTC_RECON_PROFILE)."""
            def wait() -> None:
                at = _Clock()
                for name in names:
                    exporting.wait(exported(src, name))
                at(label)
            return wait

        plan = plan_buckets(src, tmp / "spill", out, partitions,
                            ready=waiting("  discovery waited for the other tables' export", others),
                            lines=waiting("  the spill waited for the lines' export", lines) if lines else None,
                            arrived=lambda name: waiting(f"  discovery waited for {name}'s export", [name])())
        clock("pre-pass + spill (the other tables exported meanwhile)")

        # a bucket run in this process hands its links to the writer as soon as they are on disk: its order, invoice
        # and payment links and its allocations before its checks run (they are written meanwhile), the quote and
        # delivery links after them (reconcile.stream.run_bucket); one run elsewhere (a Dask worker) when its
        # summary comes back
        _WRITERS[run_id] = (writer, set(), threading.Lock())

        def one(k: int) -> Any:
            return run_bucket(plan, k, s, as_of, (start, end), written=functools.partial(_written, run_id, out),
                              frames=FRAMES if kept else LINK_FRAMES)

        def stored(done: Iterable[BucketSummary]) -> Iterator[BucketSummary]:
            for b in done:
                _written(run_id, out, b.bucket)
                yield b

        try:
            res = combine(stored(mapper(one, range(plan.n))), plan.n, out)
        finally:
            _WRITERS.pop(run_id, None)
        clock("buckets")
        beside = store.engine.dialect.name == "postgresql"  # book() while the links are committed
        if beside and several:
            # PostgreSQL's appends (COPY) run in this process: a bucket's links read and converted there at once, which
            # beside the KPIs' reads made the peak of a large run (at 1M chains 1,434 -> 1,511 MB in this step). The
            # KPIs wait for them: the index builds that follow outlast the KPIs, the lifecycle's rows and its
            # transaction together, so the run ends no later
            writer.drain()
            clock("the last links appended")
        # the last appends, the index rebuilds and the commit run in the helper (or on COPY's connection): this
        # process meanwhile computes the KPIs and makes the lifecycle's rows
        committed = pool.submit(writer.finish, False)
        try:
            inputs = {name: pl.read_parquet(out / f"kpi_{name}" / "*.parquet") for name in KPI_INPUTS}
            # the deal and lead tables scanned for the rows the KPIs read, not read whole: at 1M chains this step
            # set the run's peak (+91 MB on SQLite, +70 MB on PostgreSQL), and read whole they took 94 MB more
            within = period(as_of, start, end)
            inputs["closed"] = closed_deals(pl.scan_parquet(src / "deal.parquet").select(
                "owner", "stage", "close_date", "created_at"), *within).collect()
            leads = period_leads(pl.scan_parquet(src / "lead.parquet").select(
                "owner", "created_at", "converted_at"), *within).collect()
            kpis = kpis_from_inputs(inputs, conform("lead", leads), s, as_of, start, end)
            clock("KPIs (the links committed meanwhile)")
            at = now()
            found = lifecycle.prepare(res.exceptions, run_id, at, store.engine.dialect)
            clock("lifecycle rows made (the links committed meanwhile)")
            result = ReconcileResult(run_id=run_id, as_of=as_of, exceptions=res.exceptions, totals=res.totals,
                                     chains=res.chains, kpis=kpis, partitions=plan.n, out=out)
            if beside:
                book(result, at, found)
        finally:
            committed.result()
        writers.append(writer)
    clock("links + allocations stored")
    return result, (lambda: None) if beside else functools.partial(book, result, at, found)


def _buckets(store: Store, partitions: int | None) -> int:
    """How many buckets the run will have (:func:`reconcile.stream.bucket_count`), from the store's live rows, as far
    as it matters here: 1 or more (counted no further than one bucket holds: a large store's full count read every
    page of its payments and invoices once more, before the export could start)."""
    if partitions is not None:
        return buckets_for(0, partitions)
    limit = 2 * ROWS_PER_PARTITION + 1
    rows = 0
    with store.engine.connect() as conn:
        for name in ("payment", "invoice"):
            t = store_table(name)
            live = sa.select(sa.literal(1)).select_from(t).where(t.c.deleted_at.is_(None)).limit(limit - rows)
            rows += conn.execute(sa.select(sa.func.count()).select_from(live.subquery())).scalar_one()
            if rows >= limit:
                break
    return buckets_for(rows)


#: the bulk writers of the runs under way in this process (run id -> writer, files handed to it, a lock)
_WRITERS: dict[str, tuple[columnar.BulkWriter, set[str], threading.Lock]] = {}


def _written(run_id: str, out: Path, k: int) -> None:
    """Links or allocations of bucket ``k`` are on disk: hand those not handed yet to the run's writer (a bucket run
    here hands its links in two parts, :func:`reconcile.stream.run_bucket`; a no-op in a process other than the
    driver's, where the driver hands them over when the bucket's summary arrives)."""
    got = _WRITERS.get(run_id)
    if got is None:
        return
    writer, done, lock = got
    with lock:
        jobs = _link_jobs(out, [k], skip=done)
        done.update(f for j in jobs for f in j.files)
        writer.add(jobs)


def _parts(folder: Path, k: int) -> list[Path]:
    """Bucket ``k``'s files of one result frame, in their order (``<k>.arrow``, then ``<k>-1.arrow``, …; or Parquet)."""
    first = [p for p in (folder / f"{k:05d}{columnar.IPC}", folder / f"{k:05d}.parquet") if p.exists()]
    rest = sorted((p for p in folder.glob(f"{k:05d}-*") if p.suffix in columnar.FRAME_SUFFIXES),
                  key=lambda p: int(p.stem.partition("-")[2]))
    return [*first, *rest]


def _link_jobs(out: Path, buckets: Iterable[int] | None = None, skip: Collection[str] = ()) -> list[columnar.Load]:
    """The links and allocations of the buckets (default: all of them) as bulk-write jobs (but ``skip``'s files)."""
    def files(name: str) -> tuple[str, ...]:
        ks = buckets if buckets is not None else sorted({int(p.name[:5]) for p in (out / name).iterdir()
                                                          if p.suffix in columnar.FRAME_SUFFIXES})
        return tuple(str(p) for k in ks for p in _parts(out / name, k) if str(p) not in skip)

    return [columnar.Load(columnar.shape(t), files(name), wrap={"evidence": "text"})
            for t, name in ((recon_link, "links"), (recon_allocation, "allocations"))]


def _store_links(store: Store, out: Path) -> None:
    """Replace the previous run's links and allocations with this run's (one transaction, bulk)."""
    columnar.bulk_load(store.engine, _link_jobs(out), delete=[recon_link.name, recon_allocation.name],
                       swap=True)


def _insert_small(conn: sa.Connection, table: sa.Table, df: pl.DataFrame) -> None:
    """A small frame (the KPI snapshot) inserted in the caller's transaction."""
    if df.is_empty():
        return
    if conn.dialect.name == "postgresql":
        columnar.copy_frame(conn, table, df)
        return
    out = columnar.storage_frame(table, df, "sqlite")
    cols = ", ".join(f'"{c}"' for c in out.columns)
    conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({cols}) VALUES ({", ".join("?" * out.width)})', out.rows())

"""Reconcile a directory of canonical tables (``<table>.parquet``, as ``World.save`` writes) bucket by bucket.

The in-memory path (:func:`reconcile.core.reconcile_frames`) needs every table in memory, and
returns every result frame. This one never holds more than one bucket: the pre-pass
(:func:`reconcile.partition.assign_buckets`) reads only key columns, :func:`reconcile.partition.spill`
writes each bucket's rows to a scratch directory one table at a time (:func:`plan_buckets`), and each
bucket is then read, reconciled (:func:`reconcile.core.reconcile_one`) and its result frames written to
``out`` (``<out>/<frame>/<bucket>.parquet``; the links and allocations, written early for the store writer, as
``<bucket>.arrow``) before the next one is read (:func:`run_bucket`).
Exceptions (small) and totals are returned; they equal the one-shot run's (same rows, same order), as
the bucket results do as sets.

:func:`run_bucket` is plain Python over paths and small values, so the buckets of one plan can run in
any order, in other processes or on other machines (``flows/reconcile.py`` maps it over the buckets with
a Dask task runner; the scratch and ``out`` directories must then be on storage every worker sees).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from canonical import columnar
from canonical.interpreter import no_huge_pages
from canonical.scratch import scratch_dir
from reconcile.core import Settings, _Clock, buckets_for, merge_totals, reconcile_one
from reconcile.discovery import discover_directory, link_tables
from reconcile.frames import SCHEMAS, Frames
from reconcile.kpi import kpi_inputs
from reconcile.partition import SPLIT, parquet_reader, read_bucket, shared_tables, spill

FRAMES = ("chains", "links", "allocations", "invoice_balances", "payment_balances", "states")
#: the KPI inputs of every bucket (reconcile.kpi.kpi_inputs), kept next to the result frames
KPI_INPUTS = ("ar", "cycle", "won_not_invoiced", "cash", "issued", "unconverted", "c2c", "quoted", "delivery")


@dataclass(frozen=True)
class BucketPlan:
    """Where the buckets of one run are: the source tables, their spilled parts, the results."""

    source: Path  # the canonical tables (<table>.parquet)
    spill: Path  # <k>/<table>.parquet per bucket (unused when n == 1)
    n: int
    out: Path | None  # <frame>/<k>.parquet per bucket (None: result frames not kept)
    shared: dict[str, pl.DataFrame]  # fx_rate (+ empty lead): small, every bucket reads them


@dataclass
class BucketSummary:
    """What one bucket hands back to the driver (the result frames are in ``plan.out``)."""

    bucket: int
    exceptions: pl.DataFrame
    totals: dict[str, Any]
    chains: int


@dataclass
class StreamResult:
    exceptions: pl.DataFrame
    totals: dict[str, Any]
    partitions: int
    out: Path | None  # where the result frames were written (None: not kept)
    chains: int = 0

    def frame(self, name: str) -> pl.DataFrame:
        """One result frame, all buckets (reads ``out``)."""
        if self.out is None:
            raise ValueError("result frames were not kept (pass out=...)")
        return read_frame(self.out / name)


def read_frame(folder: Path) -> pl.DataFrame:
    """A result frame's files in ``folder`` (Parquet, or Arrow IPC where written early: :func:`run_bucket`), in the
    order of their names."""
    files = sorted(p for p in folder.iterdir() if p.suffix in columnar.FRAME_SUFFIXES)
    return pl.concat([columnar.read_file(p) for p in files], how="vertical_relaxed") if files else pl.DataFrame()


def _rows(directory: Path, name: str) -> int:
    path = directory / f"{name}.parquet"
    return pl.scan_parquet(path).select(pl.len()).collect().item() if path.exists() else 0


def bucket_count(directory: str | Path, partitions: int | None = None) -> int:
    """Buckets for the tables in ``directory``: ``partitions``, else one per ``ROWS_PER_PARTITION``
    payments + invoices (one shot up to twice that)."""
    if partitions is not None:
        return buckets_for(0, partitions)
    src = Path(directory)
    return buckets_for(_rows(src, "payment") + _rows(src, "invoice"))


def clear_out(out: str | Path) -> Path:
    """``out`` with an empty folder per result frame and KPI input (a previous run's buckets removed)."""
    outdir = Path(out)
    for name in (*FRAMES, *(f"kpi_{k}" for k in KPI_INPUTS)):
        if (outdir / name).exists():
            shutil.rmtree(outdir / name)
        (outdir / name).mkdir(parents=True)
    return outdir


#: the tables reference discovery reads (the others may still be on their way: ``plan_buckets``' ``ready``)
DISCOVERY_TABLES = ("deal", "order", "invoice", "payment")


def run_memory(buckets: int) -> contextlib.AbstractContextManager[None]:
    """How a run of ``buckets`` holds its memory: one bucket's is nearly all new, in small pages
    (:func:`canonical.interpreter.no_huge_pages`); several use freed memory again, in the huge pages the allocator
    asks for."""
    return contextlib.nullcontext() if buckets > 1 else no_huge_pages()


def plan_buckets(directory: str | Path, scratch: str | Path, out: str | Path | None = None,
                 partitions: int | None = None, ready: Callable[[], object] | None = None,
                 lines: Callable[[], object] | None = None,
                 arrived: Callable[[str], object] | None = None) -> BucketPlan:
    """The pre-pass and the spill: every bucket's rows written under ``scratch`` (one table in memory at a time).
    ``ready``: waited for once reference discovery, which reads only :data:`DISCOVERY_TABLES`, is done (the
    store path exports the other tables meanwhile); ``lines``: waited for only before the first of
    :data:`reconcile.partition.LINE_TABLES` is read (the store path exports them while the buckets are assigned);
    ``arrived(name)``: waited for before discovery first reads each of :data:`DISCOVERY_TABLES` (the store path
    exports them one by one: :func:`reconcile.discovery.discover_directory`)."""
    # reference discovery over the whole world first (it needs every known identifier), into the scratch space
    src = discover_directory(directory, Path(scratch) / "discovered", ready=ready, arrived=arrived)

    def lines_ready() -> None:
        if lines is not None:
            lines()
            link_tables(directory, src)

    n = bucket_count(src, partitions)
    read = parquet_reader(src)
    outdir = clear_out(out) if out is not None else None
    shared = shared_tables(read)
    if n > 1:
        spill(read, n, scratch, lines_ready)
    else:
        lines_ready()
    return BucketPlan(source=src, spill=Path(scratch), n=n, out=outdir, shared=shared)


#: the result frames written first, and handed to ``run_bucket``'s ``written`` (the store path stores them)
LINK_FRAMES = ("links", "allocations")


def run_bucket(plan: BucketPlan, k: int, s: Settings, as_of: date,
               kpi_period: tuple[date | None, date | None] | None = None,
               written: Callable[[int], object] | None = None,
               frames: Collection[str] = FRAMES) -> BucketSummary:
    """Reconcile bucket ``k``; its result frames of ``frames`` (default: all; the store path, keeping none, writes
    only the links and allocations it stores) and, with ``kpi_period``, its KPI inputs go to ``plan.out``,
    :data:`LINK_FRAMES` first: ``written(k)`` is called as soon as they are on disk, in three parts as the core makes
    them (:func:`reconcile.core.reconcile_one`'s ``links_ready``: the order and invoice links ``<k>.arrow``, the
    payment links and the allocations ``<k>-1.arrow``, the quote and delivery links ``<k>-2.arrow``; Arrow IPC,
    :func:`canonical.columnar.write_ipc`), ``written(k)`` called after each."""
    if plan.n > 1:
        fr = read_bucket(plan.spill, k, plan.shared)
    else:
        read = parquet_reader(plan.source)
        fr = Frames(**plan.shared, **{name: read(name, list(SCHEMAS[name])) for name in SPLIT})
    out = plan.out

    def links_ready(part: int, links: pl.DataFrame | None, allocations: pl.DataFrame | None) -> None:
        # the links (three parts: <k>.arrow, <k>-1.arrow, <k>-2.arrow) and the allocations, as they are made
        assert out is not None and written is not None
        for name, df in (("links", links), ("allocations", allocations)):
            if df is not None:
                # Arrow IPC with lz4: read back once, at once, by the store writer (lz4 Parquet cost this process a
                # third more CPU to write them, on the buckets' critical path: columnar.write_ipc)
                columnar.write_ipc(df, out / name / (f"{k:05d}{columnar.IPC}" if part == 0
                                                     else f"{k:05d}-{part}{columnar.IPC}"))
        written(k)

    early = out is not None and written is not None
    res = reconcile_one(fr, s, as_of, links_ready if early else None)
    if out is not None:
        for name in (*LINK_FRAMES, *(f for f in FRAMES if f not in LINK_FRAMES)):
            if name not in frames:
                continue
            # no column statistics: a tenth of the write's CPU, and nothing reads the result frames by ranges
            if early and name in LINK_FRAMES:
                continue
            getattr(res, name).write_parquet(out / name / f"{k:05d}.parquet", compression="lz4", statistics=False)
        if kpi_period is not None:
            for name, df in kpi_inputs(fr, res, s, as_of, *kpi_period, deals=False).items():
                df.write_parquet(out / f"kpi_{name}" / f"{k:05d}.parquet", compression="lz4")
    return BucketSummary(bucket=k, exceptions=res.exceptions, totals=res.totals, chains=res.chains.height)


Mapper = Callable[[Callable[[int], BucketSummary], Sequence[int]], Iterable[BucketSummary]]


def sequential(fn: Callable[[int], BucketSummary], buckets: Sequence[int]) -> Iterator[BucketSummary]:
    """The default mapper: one bucket after the other in this process (memory bounded by one bucket), each
    handed on as it is done (the store path writes a bucket's links while the next one is computed)."""
    clock = _Clock()
    for k in buckets:
        done = fn(k)
        clock(f"bucket {k}")
        yield done


def combine(summaries: Iterable[BucketSummary], n: int, out: Path | None) -> StreamResult:
    """The run's exceptions (sorted as the one-shot run sorts them) and totals from its buckets."""
    got = sorted(summaries, key=lambda b: b.bucket)
    if [b.bucket for b in got] != list(range(n)):
        raise RuntimeError(f"buckets missing from the run: {sorted(set(range(n)) - {b.bucket for b in got})}")
    exceptions = pl.concat([b.exceptions for b in got], how="vertical_relaxed").sort(["code", "fingerprint"])
    return StreamResult(exceptions=exceptions, totals=merge_totals([b.totals for b in got]), partitions=n, out=out,
                        chains=sum(b.chains for b in got))


def reconcile_world(directory: str | Path, s: Settings, as_of: date, out: str | Path | None = None,
                    partitions: int | None = None, scratch: str | Path | None = None,
                    mapper: Mapper = sequential,
                    kpi_period: tuple[date | None, date | None] | None = None) -> StreamResult:
    """Reconcile the world in ``directory`` bucket by bucket (``partitions``: default grows with the input;
    ``mapper`` runs :func:`run_bucket` over the buckets, by default one after the other here)."""
    clock = _Clock()
    with run_memory(bucket_count(directory, partitions)), \
            scratch_dir("ltc-recon-", scratch) as tmp:
        plan = plan_buckets(directory, tmp, out, partitions)
        clock("pre-pass + spill")

        def one(k: int) -> BucketSummary:
            return run_bucket(plan, k, s, as_of, kpi_period)

        return combine(mapper(one, range(plan.n)), plan.n, plan.out)

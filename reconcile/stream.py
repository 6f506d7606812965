"""Reconcile a directory of canonical tables (``<table>.parquet``, as ``World.save`` writes) bucket by bucket.

The in-memory path (:func:`reconcile.core.reconcile_frames`) needs every table in memory, and
returns every result frame. This one never holds more than one bucket: the pre-pass
(:func:`reconcile.partition.assign_buckets`) reads only key columns, :func:`reconcile.partition.spill`
writes each bucket's rows to a scratch directory one table at a time, and each bucket is then read,
reconciled (:func:`reconcile.core.reconcile_one`) and its result frames written to ``out``
(``<out>/<frame>/<bucket>.parquet``) before the next one is read. Exceptions (small) and totals are
returned; they equal the one-shot run's (same rows, same order), as the bucket results do as sets.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from reconcile.core import ROWS_PER_PARTITION, Settings, _Clock, merge_totals, reconcile_one
from reconcile.frames import SCHEMAS, Frames
from reconcile.partition import SPLIT, parquet_reader, read_bucket, shared_tables, spill

FRAMES = ("chains", "links", "allocations", "invoice_balances", "payment_balances", "states")


@dataclass
class StreamResult:
    exceptions: pl.DataFrame
    totals: dict[str, Any]
    partitions: int
    out: Path | None  # where the result frames were written (None: not kept)

    def frame(self, name: str) -> pl.DataFrame:
        """One result frame, all buckets (reads ``out``)."""
        if self.out is None:
            raise ValueError("result frames were not kept (pass out=...)")
        return pl.read_parquet(self.out / name / "*.parquet")


def _rows(directory: Path, name: str) -> int:
    path = directory / f"{name}.parquet"
    return pl.scan_parquet(path).select(pl.len()).collect().item() if path.exists() else 0


def reconcile_world(directory: str | Path, s: Settings, as_of: date, out: str | Path | None = None,
                    partitions: int | None = None, scratch: str | Path | None = None) -> StreamResult:
    """Reconcile the world in ``directory`` bucket by bucket (``partitions``: default grows with the input)."""
    src = Path(directory)
    rows = _rows(src, "payment") + _rows(src, "invoice")
    n = partitions if partitions is not None else 1 if rows <= 2 * ROWS_PER_PARTITION else -(-rows // ROWS_PER_PARTITION)
    read = parquet_reader(src)
    clock = _Clock()
    outdir = Path(out) if out is not None else None
    if outdir is not None:
        for name in FRAMES:
            (outdir / name).mkdir(parents=True, exist_ok=True)
            for stale in (outdir / name).glob("*.parquet"):  # a previous run's buckets
                stale.unlink()
    ex: list[pl.DataFrame] = []
    totals: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ltc-recon-", dir=scratch) as tmp:
        shared = shared_tables(read)
        if n > 1:
            spill(read, n, tmp)
        clock("pre-pass + spill")
        for k in range(n):
            fr = read_bucket(tmp, k, shared) if n > 1 else Frames(
                **shared, **{name: read(name, list(SCHEMAS[name])) for name in SPLIT})
            res = reconcile_one(fr, s, as_of)
            del fr
            ex.append(res.exceptions)
            totals.append(res.totals)
            if outdir is not None:
                for name in FRAMES:
                    getattr(res, name).write_parquet(outdir / name / f"{k:05d}.parquet", compression="lz4")
            del res
            clock(f"bucket {k}")
    exceptions = pl.concat(ex, how="vertical_relaxed").sort(["code", "fingerprint"])
    return StreamResult(exceptions=exceptions, totals=merge_totals(totals), partitions=n, out=outdir)

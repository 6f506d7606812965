"""``run_reconciliation``: the store path around the frame-level core (no Prefect).

Reads the live canonical rows, runs :func:`reconcile.core.reconcile_frames`, computes the KPIs,
then in one transaction replaces the links and allocations of the previous run, applies the
exception lifecycle (:mod:`reconcile.lifecycle`) and stores a KPI snapshot. The run is recorded in
the ``run`` table with its counts; a conservation failure marks the run failed and re-raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import polars as pl
import sqlalchemy as sa

from canonical.locks import stage_lock
from canonical.store import Store, now
from canonical.tables import Amount
from reconcile import lifecycle
from reconcile.core import CoreResult, Settings, reconcile_frames
from reconcile.frames import Frames, load_frames
from reconcile.kpi import KPI_SCHEMA, compute_kpis
from reconcile.tables import kpi_snapshot, recon_allocation, recon_link


@dataclass
class ReconcileResult:
    run_id: str
    as_of: date
    core: CoreResult
    kpis: pl.DataFrame
    lifecycle: dict[str, int] = field(default_factory=dict)

    @property
    def exceptions(self) -> pl.DataFrame:
        return self.core.exceptions

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "as_of": self.as_of.isoformat(), **self.core.totals,
                "lifecycle": self.lifecycle, "chains": self.core.chains.height}


def _insert_frame(conn: sa.Connection, table: sa.Table, df: pl.DataFrame, chunk: int = 50000) -> None:
    """Bulk insert a result frame at the driver level: the conversions happen column-wise in Polars
    (amounts as exact decimal text, ``evidence`` as JSON text, dates as ISO text on SQLite), not per
    value in SQLAlchemy's bind processing — at 100k chains that was most of the store path's time."""
    if df.is_empty():
        return
    pg = conn.dialect.name == "postgresql"
    cols, exprs, marks = [], [], []
    for name in df.columns:
        if name not in table.c:
            continue
        col = table.c[name]
        expr = pl.col(name)
        mark = "%s" if pg else "?"
        if isinstance(col.type, Amount):
            expr = expr.cast(pl.String)
            mark = "%s::numeric" if pg else "?"
        elif name == "evidence":
            expr = pl.struct(expr.cast(pl.String).alias("text")).struct.json_encode()
            mark = "%s::jsonb" if pg else "?"
        elif isinstance(col.type, sa.Date) and not pg:
            expr = expr.cast(pl.Date).dt.to_string("%Y-%m-%d")
        cols.append(name)
        exprs.append(expr.alias(name))
        marks.append(mark)
    sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({', '.join(marks)})"
    out = df.select(exprs)
    for i in range(0, out.height, chunk):
        conn.exec_driver_sql(sql, out.slice(i, chunk).rows())


def _with_exposure(kpis: pl.DataFrame, rows: list[dict[str, Any]], as_of: date) -> pl.DataFrame:
    """The run's KPIs plus the open book after its lifecycle sync (open exceptions, amount at risk)."""
    extra = pl.DataFrame(rows, schema=KPI_SCHEMA).with_columns(  # type: ignore[arg-type]
        pl.lit(kpis["period_start"][0] if kpis.height else as_of, pl.Date).alias("period_start"),
        pl.lit(kpis["period_end"][0] if kpis.height else as_of, pl.Date).alias("period_end"))
    return pl.concat([kpis, extra.select(kpis.columns)], how="vertical_relaxed")


def run_reconciliation(store: Store, config: Any, as_of: date, *, frames: Frames | None = None,
                       period_start: date | None = None, period_end: date | None = None) -> ReconcileResult:
    """Reconcile the store as of ``as_of`` (config: ``ltc.app.config.Config`` or ``ReconcileConfig``).

    Holds the store's ``reconcile`` lock: a second reconciliation waits for the first instead of
    interleaving with it (which doubled links and allocations); a run a killed process left
    ``running`` is closed as failed first."""
    with stage_lock(store.engine, "reconcile"):
        store.close_interrupted("reconcile")
        return _reconcile(store, config, as_of, frames, period_start, period_end)


def _reconcile(store: Store, config: Any, as_of: date, frames: Frames | None, period_start: date | None,
               period_end: date | None) -> ReconcileResult:
    settings = Settings.from_config(config)
    run_id = store.begin_run("reconcile")
    try:
        fr = frames if frames is not None else load_frames(store)
        core = reconcile_frames(fr, settings, as_of)
        kpis = compute_kpis(fr, core, settings, as_of, period_start, period_end)
        at = now()
        with store.engine.begin() as conn:
            conn.execute(sa.delete(recon_link))
            conn.execute(sa.delete(recon_allocation))
            _insert_frame(conn, recon_link, core.links.with_columns(pl.lit(run_id).alias("run_id")))
            _insert_frame(conn, recon_allocation, core.allocations.with_columns(pl.lit(run_id).alias("run_id")))
            counts = lifecycle.sync(conn, core.exceptions, run_id, at)
            kpis = _with_exposure(kpis, lifecycle.exposure(conn, settings.reporting_currency), as_of)
            _insert_frame(conn, kpi_snapshot, kpis.with_columns(pl.lit(run_id).alias("run_id"),
                                                                pl.lit(as_of).alias("as_of")))
    except Exception as exc:
        store.finish_run(run_id, "failed", message=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    result = ReconcileResult(run_id=run_id, as_of=as_of, core=core, kpis=kpis, lifecycle=counts)
    store.finish_run(run_id, "success", counts={"exceptions": core.totals["exceptions"], "lifecycle": counts,
                                                "states": core.totals["states"]})
    return result

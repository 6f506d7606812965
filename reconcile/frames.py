"""The canonical tables as Polars frames: the input of the frame-level reconciliation core.

Money columns are ``Decimal(38, 4)`` (exact); dates are ``Date``. :func:`prepare` casts whatever a
caller built (the store loader, the scenario generator, a test) to these schemas, so the core can
rely on them. :func:`load_frames` reads the live (not tombstoned) canonical rows of a store into memory and
:func:`export_frames` streams them to Parquet files (the bucketed store path), both column-wise
(:mod:`canonical.columnar`): a frame named like a canonical entity or a store table loads with no code here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

import reconcile.tables  # noqa: F401  (registers fx_rate on the metadata)
from canonical import columnar, tables
from canonical.store import Store

MONEY = pl.Decimal(38, 4)
RATE = pl.Decimal(38, 10)

# reference discovery (reconcile/discovery.py): the candidate text (a store column) and what was found in it
_REFS: dict[str, Any] = {"ref_text": pl.String, "ref_rule": pl.String, "ref_evidence": pl.String,
                         "ref_ambiguous": pl.String, "ref_candidates": pl.List(pl.String)}

SCHEMAS: dict[str, dict[str, Any]] = {
    "deal": {
        "id": pl.String, "source_id": pl.String, "account_id": pl.String, "stage": pl.String,
        "currency": pl.String, "amount": MONEY, "close_date": pl.Date, "created_at": pl.Datetime("us", "UTC"),
        "owner": pl.String, "order_ref": pl.String,
    },
    "deal_line": {
        "id": pl.String, "deal_id": pl.String, "product_code": pl.String, "quantity": MONEY,
        "currency": pl.String, "unit_price": MONEY, "amount": MONEY,
    },
    "order": {
        "id": pl.String, "source_id": pl.String, "number": pl.String, "account_id": pl.String,
        "deal_ref": pl.String, "order_date": pl.Date, "state": pl.String, "currency": pl.String,
        "untaxed": MONEY, "total": MONEY, **_REFS,
    },
    "order_line": {
        "id": pl.String, "order_id": pl.String, "product_code": pl.String, "quantity": MONEY,
        "currency": pl.String, "unit_price": MONEY, "amount": MONEY,
    },
    "invoice": {
        "id": pl.String, "source_id": pl.String, "number": pl.String, "kind": pl.String,
        "account_id": pl.String, "order_ref": pl.String, "deal_ref": pl.String, "issue_date": pl.Date,
        "due_date": pl.Date, "status": pl.String, "currency": pl.String, "total": MONEY, **_REFS,
    },
    "payment": {
        "id": pl.String, "source_id": pl.String, "kind": pl.String, "account_id": pl.String,
        "currency": pl.String, "amount": MONEY, "fee": MONEY, "payment_date": pl.Date,
        "payer_name": pl.String, "remittance": pl.String, "invoice_ref": pl.String, "deal_ref": pl.String,
        "settlement_ref": pl.String, "status": pl.String, "reference": pl.String, "found_invoice_ids": pl.List(pl.String), **_REFS,
    },
    "account": {
        "id": pl.String, "source_system": pl.String, "name": pl.String, "tax_id": pl.String,
        "country": pl.String, "owner": pl.String,
    },
    "cross_ref": {"entity": pl.String, "member_id": pl.String, "cluster_id": pl.String},
    "fx_rate": {"base": pl.String, "quote": pl.String, "rate_date": pl.Date, "rate": RATE},
    "quote": {
        "id": pl.String, "deal_id": pl.String, "deal_ref": pl.String, "status": pl.String, "quote_date": pl.Date,
        "valid_until": pl.Date, "currency": pl.String, "untaxed": MONEY, "total": MONEY,
    },
    "quote_line": {
        "id": pl.String, "quote_id": pl.String, "product_code": pl.String, "quantity": MONEY,
        "currency": pl.String, "amount": MONEY,
    },
    "contract": {
        "id": pl.String, "number": pl.String, "deal_id": pl.String, "deal_ref": pl.String, "status": pl.String,
        "start_date": pl.Date, "end_date": pl.Date, "signed_date": pl.Date, "currency": pl.String, "value": MONEY,
    },
    "delivery": {
        "id": pl.String, "number": pl.String, "order_id": pl.String, "order_ref": pl.String, "state": pl.String,
        "planned_date": pl.Date, "shipped_date": pl.Date, "delivered_date": pl.Date,
    },
    "delivery_line": {
        "id": pl.String, "delivery_id": pl.String, "product_code": pl.String, "quantity": MONEY,
    },
    "lead": {
        "id": pl.String, "status": pl.String, "created_at": pl.Datetime("us", "UTC"),
        "converted_at": pl.Datetime("us", "UTC"), "owner": pl.String,
    },
}

@dataclass
class Frames:
    """One frame per canonical table the reconciliation reads (see :data:`SCHEMAS`)."""

    deal: pl.DataFrame
    deal_line: pl.DataFrame
    order: pl.DataFrame
    order_line: pl.DataFrame
    invoice: pl.DataFrame
    payment: pl.DataFrame
    account: pl.DataFrame
    cross_ref: pl.DataFrame
    fx_rate: pl.DataFrame
    quote: pl.DataFrame
    quote_line: pl.DataFrame
    contract: pl.DataFrame
    delivery: pl.DataFrame
    delivery_line: pl.DataFrame
    lead: pl.DataFrame

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name).height for f in fields(self)}


def empty(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[name])


def conform(name: str, df: pl.DataFrame | None) -> pl.DataFrame:
    """Select and cast the columns of ``SCHEMAS[name]``; a missing column becomes nulls."""
    if df is None:
        return empty(name)
    cols = []
    for col, dtype in SCHEMAS[name].items():
        if col in df.columns:
            cols.append(pl.col(col).cast(dtype))
        else:
            cols.append(pl.lit(None, dtype=dtype).alias(col))
    return df.select(cols)


def with_inverse_rates(rates: pl.DataFrame) -> pl.DataFrame:
    """Add ``quote -> base`` rates (1/rate, 10 places) where a source only gives one direction."""
    rates = conform("fx_rate", rates)
    if rates.is_empty():
        return rates
    have = set(rates.select("base", "quote", "rate_date").iter_rows())
    extra = [
        (q, b, d, (Decimal(1) / r).quantize(Decimal("1e-10")))
        for b, q, d, r in rates.select("base", "quote", "rate_date", "rate").iter_rows()
        if (q, b, d) not in have and r
    ]
    if not extra:
        return rates
    inv = pl.DataFrame(extra, schema=SCHEMAS["fx_rate"], orient="row")
    return pl.concat([rates, inv])


def prepare(**frames: pl.DataFrame | None) -> Frames:
    """Build :class:`Frames` from any subset of tables (missing ones are empty)."""
    out = {name: conform(name, frames.get(name)) for name in SCHEMAS}
    out["fx_rate"] = with_inverse_rates(out["fx_rate"])
    return Frames(**out)


def store_table(name: str) -> sa.Table:
    """The store table of a frame: the canonical entity of that name, else the table of that name."""
    table = tables.entity_tables.get(name)
    if table is None:
        table = tables.metadata.tables.get(name)
    if table is None:
        raise KeyError(f"no store table for frame {name!r}")
    return table


def _columns(name: str) -> tuple[sa.Table, list[str]]:
    table = store_table(name)
    return table, [c for c in SCHEMAS[name] if c in table.c]


def read_store_frame(store: Store, name: str) -> pl.DataFrame:
    """The live rows of one frame's table, read column-wise (:mod:`canonical.columnar`) and conformed."""
    table, cols = _columns(name)
    return conform(name, columnar.read_table(store.engine, table, cols, dtypes=SCHEMAS[name]))


def load_frames(store: Store) -> Frames:
    """Live canonical rows of the store, plus account cross-refs and FX rates (every table in memory)."""
    wanted = {name: (*_columns(name), SCHEMAS[name]) for name in SCHEMAS}
    return prepare(**columnar.read_tables(store.engine, wanted))


def export_frames(store: Store, directory: str | Path, names: Sequence[str] | None = None,
                  omit: Mapping[str, Collection[str]] | None = None, readers: int = 2) -> Path:
    """Write the live rows of every frame's table to ``directory/<name>.parquet`` (the layout
    :func:`reconcile.stream.reconcile_world` reads), streamed in batches: memory bounded by a batch.
    ``omit``: columns not to read, per frame (a reader of the files gets them as nulls); ``readers``: see
    :func:`canonical.columnar.export_tables`."""
    with start_export(store, directory, names, omit, readers) as exporting:
        exporting.wait_all()
    return Path(directory)


def start_export(store: Store, directory: str | Path, names: Sequence[str] | None = None,
                 omit: Mapping[str, Collection[str]] | None = None, readers: int = 2,
                 lead: int = 0, from_end: bool = False) -> columnar.Exporting:
    """:func:`export_frames` in the background, table by table in the order of ``names``
    (:func:`canonical.columnar.start_export`): ``directory/<name>.parquet`` may be read once
    ``exporting.wait(exported(directory, name))`` returns."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name in names or SCHEMAS:
        table, cols = _columns(name)
        cols = [c for c in cols if c not in (omit or {}).get(name, ())]
        jobs.append(columnar.Export(columnar.shape(table), tuple(cols), str(exported(out, name)), SCHEMAS[name]))
    return columnar.start_export(store.engine, jobs, readers=readers, lead=lead, from_end=from_end)


def exported(directory: str | Path, name: str) -> Path:
    """The file :func:`export_frames` writes a frame's rows to."""
    return Path(directory) / f"{name}.parquet"


def days(a: pl.Expr, b: date | pl.Expr) -> pl.Expr:
    """Whole days from ``a`` to ``b`` (``b - a``)."""
    bb = pl.lit(b, dtype=pl.Date) if isinstance(b, date) else b
    return (bb - a).dt.total_days()

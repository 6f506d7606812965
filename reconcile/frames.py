"""The canonical tables as Polars frames: the input of the frame-level reconciliation core.

Money columns are ``Decimal(38, 4)`` (exact); dates are ``Date``. :func:`prepare` casts whatever a
caller built (the store loader, the scenario generator, a test) to these schemas, so the core can
rely on them. :func:`load_frames` reads the live (not tombstoned) canonical rows of a store.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl
import sqlalchemy as sa

from canonical import tables
from canonical.store import Store
from reconcile.tables import fx_rate

MONEY = pl.Decimal(38, 4)
RATE = pl.Decimal(38, 10)

SCHEMAS: dict[str, dict[str, Any]] = {
    "deal": {
        "id": pl.String, "source_id": pl.String, "account_id": pl.String, "stage": pl.String,
        "currency": pl.String, "amount": MONEY, "close_date": pl.Date, "created_at": pl.Datetime("us", "UTC"),
        "owner": pl.String,
    },
    "deal_line": {
        "id": pl.String, "deal_id": pl.String, "product_code": pl.String, "quantity": MONEY,
        "currency": pl.String, "unit_price": MONEY, "amount": MONEY,
    },
    "order": {
        "id": pl.String, "source_id": pl.String, "number": pl.String, "account_id": pl.String,
        "deal_ref": pl.String, "order_date": pl.Date, "state": pl.String, "currency": pl.String,
        "untaxed": MONEY, "total": MONEY,
    },
    "order_line": {
        "id": pl.String, "order_id": pl.String, "product_code": pl.String, "quantity": MONEY,
        "currency": pl.String, "unit_price": MONEY, "amount": MONEY,
    },
    "invoice": {
        "id": pl.String, "source_id": pl.String, "number": pl.String, "kind": pl.String,
        "account_id": pl.String, "order_ref": pl.String, "deal_ref": pl.String, "issue_date": pl.Date,
        "due_date": pl.Date, "status": pl.String, "currency": pl.String, "total": MONEY,
    },
    "payment": {
        "id": pl.String, "source_id": pl.String, "kind": pl.String, "account_id": pl.String,
        "currency": pl.String, "amount": MONEY, "fee": MONEY, "payment_date": pl.Date,
        "payer_name": pl.String, "remittance": pl.String, "invoice_ref": pl.String, "deal_ref": pl.String,
        "settlement_ref": pl.String, "status": pl.String,
    },
    "account": {
        "id": pl.String, "source_system": pl.String, "name": pl.String, "tax_id": pl.String,
        "country": pl.String, "owner": pl.String,
    },
    "cross_ref": {"entity": pl.String, "member_id": pl.String, "cluster_id": pl.String},
    "fx_rate": {"base": pl.String, "quote": pl.String, "rate_date": pl.Date, "rate": RATE},
    "lead": {
        "id": pl.String, "status": pl.String, "created_at": pl.Datetime("us", "UTC"),
        "converted_at": pl.Datetime("us", "UTC"), "owner": pl.String,
    },
}

# canonical entity name -> store table name
_TABLES = {"deal": "deal", "deal_line": "deal_line", "order": "order", "order_line": "order_line",
           "invoice": "invoice", "payment": "payment", "account": "account", "lead": "lead"}


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


def _read(conn: sa.Connection, entity: str) -> pl.DataFrame:
    """Live rows of one canonical table, fetched at the driver level and typed column-wise in Polars.

    Amounts come as exact decimal text (SQLite stores text; PostgreSQL casts NUMERIC to text), dates
    and instants as SQLite's ISO text; Polars parses whole columns instead of SQLAlchemy converting
    every value (at 100k chains that halves the load). Text Polars cannot parse exactly (an
    exponent form such as ``1E+3``) goes through ``Decimal`` for that column."""
    table = tables.table_for(entity)
    pg = conn.dialect.name == "postgresql"
    wanted = [c for c in SCHEMAS[entity] if c in table.c]
    select_cols: list[Any] = []
    raw_schema: dict[str, Any] = {}
    for c in wanted:
        col, dtype = table.c[c], SCHEMAS[entity][c]
        as_text = isinstance(col.type, tables.Amount) or (not pg and (dtype == pl.Date or isinstance(dtype, pl.Datetime)))
        select_cols.append(sa.cast(col, sa.Text).label(c) if pg and isinstance(col.type, tables.Amount) else col)
        raw_schema[c] = pl.String if as_text else dtype
    stmt = sa.select(*select_cols).where(table.c.deleted_at.is_(None))
    rows = conn.exec_driver_sql(str(stmt.compile(dialect=conn.dialect))).fetchall()
    df = pl.DataFrame(rows, schema=raw_schema, orient="row")
    out: list[Any] = []
    for c in wanted:
        dtype = SCHEMAS[entity][c]
        if raw_schema[c] != pl.String or dtype == pl.String:
            out.append(pl.col(c))
        elif dtype == pl.Date:
            out.append(pl.col(c).str.slice(0, 10).str.to_date("%Y-%m-%d"))
        elif isinstance(dtype, pl.Datetime):  # SQLite: naive UTC "YYYY-MM-DD HH:MM:SS[.ffffff]"
            out.append(pl.col(c).str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us").dt.replace_time_zone("UTC"))
        else:
            out.append(_decimal_column(df[c], dtype))
    return df.select(out)


def _decimal_column(text: pl.Series, dtype: Any) -> pl.Series:
    try:
        return text.cast(dtype, strict=True)
    except pl.exceptions.InvalidOperationError:
        return pl.Series(text.name, [None if v is None else Decimal(v) for v in text.to_list()], dtype=dtype)


def load_frames(store: Store) -> Frames:
    """Live canonical rows of the store, plus account cross-refs and FX rates."""
    with store.engine.connect() as conn:
        loaded: dict[str, pl.DataFrame | None] = {name: _read(conn, ent) for name, ent in _TABLES.items()}
        xr = tables.cross_ref
        loaded["cross_ref"] = pl.DataFrame(
            [tuple(r) for r in conn.execute(sa.select(xr.c.entity, xr.c.member_id, xr.c.cluster_id))],
            schema=SCHEMAS["cross_ref"], orient="row",
        )
        loaded["fx_rate"] = pl.DataFrame(
            [tuple(r) for r in conn.execute(sa.select(fx_rate.c.base, fx_rate.c.quote, fx_rate.c.rate_date,
                                                      fx_rate.c.rate))],
            schema=SCHEMAS["fx_rate"], orient="row",
        )
    return prepare(**loaded)


def days(a: pl.Expr, b: date | pl.Expr) -> pl.Expr:
    """Whole days from ``a`` to ``b`` (``b - a``)."""
    bb = pl.lit(b, dtype=pl.Date) if isinstance(b, date) else b
    return (bb - a).dt.total_days()

"""Stage 12, row_states: exactly one state per source row — matched, partial, exception or excluded."""

from __future__ import annotations

import polars as pl

from reconcile.settings import Settings
from reconcile.stages.expr import ZERO, tol
from reconcile.stages.invoices import Invoices
from reconcile.stages.orders import Orders
from reconcile.stages.payments import Payments
from reconcile.stages.settlement import Settlement


def row_states(orders: Orders, invoices: Invoices, payments: Payments, settlement: Settlement,
               ex: pl.DataFrame, s: Settings) -> pl.DataFrame:
    """Columns: entity (deal, order, invoice, payment), id, state."""
    in_ex = ex.select(pl.col("records").alias("id")).explode("id").unique()
    flag = in_ex.with_columns(pl.lit(True).alias("in_ex"))

    def state(df: pl.DataFrame, entity: str, excluded: pl.Expr, partial: pl.Expr) -> pl.DataFrame:
        return df.join(flag, on="id", how="left").select(
            pl.lit(entity).alias("entity"), "id",
            pl.when(excluded).then(pl.lit("excluded")).when(pl.col("in_ex").fill_null(False)).then(pl.lit("exception"))
            .when(partial).then(pl.lit("partial")).otherwise(pl.lit("matched")).alias("state"),
        )

    ib, pbal = settlement.ib, settlement.pbal
    d = state(orders.deal, "deal", ~pl.col("won"), pl.lit(False))
    o = state(orders.order, "order", ~pl.col("active"), pl.lit(False))
    i = state(invoices.inv.join(ib.select(pl.col("invoice_id").alias("id"), "settled", "paid"), on="id", how="left"),
              "invoice", ~pl.col("active"), (~pl.col("settled").fill_null(True)) & (pl.col("paid").fill_null(ZERO) != 0))
    p = state(payments.pay.join(pbal.select(pl.col("payment_id").alias("id"), "unapplied", "applied"), on="id",
                                how="left"),
              "payment", ~pl.col("active"), pl.col("unapplied").fill_null(ZERO) > tol(s, pl.col("amount")))
    return pl.concat([d, o, i, p])

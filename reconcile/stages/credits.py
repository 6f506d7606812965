"""Stage 4, apply_credits: credit notes spread over their order's (or chain's) invoices, in due-date order."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from reconcile.stages.contract import expect
from reconcile.stages.expr import split
from reconcile.stages.invoices import Invoices


@dataclass(frozen=True)
class Credits:
    """``credits``: the active credit notes of a chain. ``credit_by_inv``: invoice_id, credited.
    ``credit_applied``: cn, applied (per credit note)."""

    credits: pl.DataFrame
    credit_by_inv: pl.DataFrame
    credit_applied: pl.DataFrame


def apply_credits(invoices: Invoices) -> Credits:
    inv, targets = invoices.inv, invoices.targets
    expect("apply_credits", "inv", inv, ("id", "active", "is_credit", "chain_id", "order_id", "total"))
    credits = inv.filter(pl.col("active") & pl.col("is_credit") & pl.col("chain_id").is_not_null())
    cpairs = credits.select(pl.col("id").alias("cn"), pl.col("total").alias("cn_total"), "order_id", "chain_id").join(
        targets.select(pl.col("id").alias("invoice_id"), "order_id", "chain_id", "due_date", "number", "total"),
        on=["chain_id"], how="inner",
    ).filter(pl.col("order_id").is_null() | pl.col("order_id_right").is_null()
             | (pl.col("order_id") == pl.col("order_id_right"))).sort(["cn", "due_date", "number", "invoice_id"])
    cpairs = cpairs.with_columns(split(cpairs, "cn", "cn_total", "total").alias("credit"))
    credit_by_inv = cpairs.group_by("invoice_id").agg(pl.col("credit").sum().alias("credited"))
    credit_applied = cpairs.group_by("cn").agg(pl.col("credit").sum().alias("applied"))
    return Credits(credits=credits, credit_by_inv=credit_by_inv, credit_applied=credit_applied)

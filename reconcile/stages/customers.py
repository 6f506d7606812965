"""Stage 10, check_customers: customer clusters whose members disagree on tax id or country, or that hold
two records of one system (a single-account cluster can disagree with nobody)."""

from __future__ import annotations

import polars as pl

from reconcile.frames import MONEY
from reconcile.stages.contract import expect
from reconcile.stages.identity import Identity


def check_customers(ident: Identity) -> list[pl.DataFrame]:
    """CUSTOMER_MISMATCH exceptions (cluster level)."""
    acct = ident.acct
    expect("check_customers", "acct", acct, ("id", "cluster_id", "tax_id", "country", "source_system"))
    cm = acct.filter(pl.len().over("cluster_id") > 1).with_columns(pl.col("tax_id").str.replace_all(r"[\s\-.]", "").str.to_uppercase().alias("tax"),
                           pl.col("country").str.to_uppercase().alias("cty")).group_by("cluster_id").agg(
        pl.col("tax").drop_nulls().n_unique().alias("n_tax"), pl.col("cty").drop_nulls().n_unique().alias("n_cty"),
        (pl.col("source_system").len() - pl.col("source_system").n_unique()).alias("dups"))
    cm = cm.filter((pl.col("n_tax") > 1) | (pl.col("n_cty") > 1) | (pl.col("dups") > 0))
    cm = cm.join(acct.select("cluster_id", "id").join(cm.select("cluster_id"), on="cluster_id", how="semi").group_by(
        "cluster_id").agg(pl.col("id").sort().alias("ids")), on="cluster_id", how="left")
    return [cm.select(
        pl.lit("CUSTOMER_MISMATCH").alias("code"), pl.lit(None, pl.String).alias("chain_id"),
        pl.concat_list(pl.col("cluster_id")).alias("keys"), pl.col("ids").alias("records"),
        pl.lit(None, pl.String).alias("currency"), pl.lit(None, MONEY).alias("amount"), "cluster_id",
        pl.format("tax ids {}, countries {}, same-system duplicates {}", "n_tax", "n_cty", "dups").alias("detail"),
    )]

"""Stage 8, check_lines: per chain and product, the deal's lines and the orders' lines agree
(quantity exactly, amount within tolerance; same-currency chains only)."""

from __future__ import annotations

import polars as pl

from reconcile.frames import MONEY, Frames
from reconcile.settings import Settings
from reconcile.stages.chains import Chains
from reconcile.stages.contract import expect
from reconcile.stages.expr import ZERO, tol


def check_lines(fr: Frames, chains: Chains, s: Settings) -> list[pl.DataFrame]:
    """LINE_MISMATCH exceptions."""
    ch, act_orders = chains.ch, chains.act_orders
    expect("check_lines", "deal_line", fr.deal_line, ("deal_id", "product_code", "quantity", "amount"))
    expect("check_lines", "order_line", fr.order_line, ("order_id", "product_code", "quantity", "amount"))
    same_ccy = ch.filter((pl.col("n_orders") > 0) & ~pl.col("ccy_differs").fill_null(False)).select(pl.col("id").alias("chain"))
    # deal lines and order lines side by side per (chain, product) in one group-by (a full join of the two
    # sums); a null product never pairs with the other side's null product, as in a join
    nul = pl.lit(None, MONEY)
    side_lines = pl.concat([
        fr.deal_line.select(pl.col("deal_id").alias("chain"), "product_code", pl.col("quantity").alias("dq"),
                            pl.col("amount").alias("da"), nul.alias("oq"), nul.alias("oa"),
                            pl.lit(1, pl.UInt32).alias("nd"), pl.lit(0, pl.UInt32).alias("no")),
        fr.order_line.join(act_orders.select(pl.col("id").alias("order_id"), pl.col("deal_id").alias("chain")),
                           on="order_id").select("chain", "product_code", nul.alias("dq"), nul.alias("da"),
                                                 pl.col("quantity").alias("oq"), pl.col("amount").alias("oa"),
                                                 pl.lit(0, pl.UInt32).alias("nd"), pl.lit(1, pl.UInt32).alias("no")),
    ]).join(same_ccy, on="chain", how="semi").with_columns(
        pl.when(pl.col("product_code").is_null()).then(pl.col("nd")).alias("null_side")
    ).sort("chain", "product_code", "null_side", nulls_last=True)
    # grouped by runs of the sorted keys (a group-by on several string keys is far slower than a sort)
    new_chain = pl.col("chain").ne_missing(pl.col("chain").shift(1))
    new_key = new_chain | pl.col("product_code").ne_missing(pl.col("product_code").shift(1)) | pl.col(
        "null_side").ne_missing(pl.col("null_side").shift(1))
    lm = side_lines.with_columns(new_key.cum_sum().alias("__g"), new_chain.cum_sum().alias("__cg")).group_by(
        "__g").agg(
        pl.col("chain").first(), pl.col("__cg").first(), pl.col("product_code").first(), pl.col("dq").sum(),
        pl.col("da").sum(), pl.col("oq").sum(), pl.col("oa").sum(), pl.col("nd").sum(), pl.col("no").sum(),
    ).filter((pl.col("nd").sum().over("__cg") > 0) & (pl.col("no").sum().over("__cg") > 0)).with_columns(
        pl.when(pl.col("nd") > 0).then(pl.col("dq")).alias("dq"), pl.when(pl.col("nd") > 0).then(pl.col("da")).alias("da"),
        pl.when(pl.col("no") > 0).then(pl.col("oq")).alias("oq"), pl.when(pl.col("no") > 0).then(pl.col("oa")).alias("oa"))
    lm = lm.filter(pl.col("dq").is_null() | pl.col("oq").is_null() | (pl.col("dq") != pl.col("oq"))
                   | ((pl.col("da") - pl.col("oa")).abs() > tol(s, pl.col("da")))).group_by("chain").agg(
        pl.col("product_code").sort().alias("products"),
        (pl.col("da").fill_null(ZERO) - pl.col("oa").fill_null(ZERO)).abs().sum().cast(MONEY).alias("diff"))
    return [lm.join(ch.select(pl.col("id").alias("chain"), "currency", "cluster_id"), on="chain").select(
        pl.lit("LINE_MISMATCH").alias("code"), pl.col("chain").alias("chain_id"), pl.concat_list(pl.col("chain")).alias("keys"),
        pl.concat_list(pl.col("chain")).alias("records"), "currency", pl.col("diff").alias("amount"), "cluster_id",
        pl.format("products differ: {}", pl.col("products").list.join(",")).alias("detail"),
    )]

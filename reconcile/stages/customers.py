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
    multi = acct.filter(pl.len().over("cluster_id") > 1).with_columns(_tax("tax_id").alias("tax"),
                                                                      pl.col("country").str.to_uppercase().alias("cty"))
    cm = multi.group_by("cluster_id").agg(
        pl.col("tax").drop_nulls().n_unique().alias("n_tax"), pl.col("cty").drop_nulls().n_unique().alias("n_cty"),
        (pl.col("source_system").len() - pl.col("source_system").n_unique()).alias("dups"))
    cm = cm.filter((pl.col("n_tax") > 1) | (pl.col("n_cty") > 1) | (pl.col("dups") > 0))
    # the detail's lists only for the (few) clusters reported
    cm = cm.join(multi.join(cm.select("cluster_id"), on="cluster_id", how="semi").group_by("cluster_id").agg(
        pl.format("{}={}", _short("id"), "tax").drop_nulls().sort().str.join(", ").alias("taxes"),
        pl.format("{}={}", _short("id"), "cty").drop_nulls().sort().str.join(", ").alias("ctys")),
        on="cluster_id", how="left")
    cm = cm.join(acct.select("cluster_id", "id").join(cm.select("cluster_id"), on="cluster_id", how="semi").group_by(
        "cluster_id").agg(pl.col("id").sort().alias("ids")), on="cluster_id", how="left")
    return [cm.select(
        pl.lit("CUSTOMER_MISMATCH").alias("code"), pl.lit(None, pl.String).alias("chain_id"),
        pl.concat_list(pl.col("cluster_id")).alias("keys"), pl.col("ids").alias("records"),
        pl.lit(None, pl.String).alias("currency"), pl.lit(None, MONEY).alias("amount"), "cluster_id",
        pl.format("tax ids {} ({}), countries {} ({}), same-system duplicates {}", "n_tax", "taxes", "n_cty", "ctys",
                  "dups").alias("detail"),
    )]


def _tax(col: str) -> pl.Expr:
    return pl.col(col).str.replace_all(r"[\s\-./]", "").str.to_uppercase()


def _short(col: str) -> pl.Expr:
    """``salesforce:account:001A`` -> ``salesforce 001A`` (the full ids are in the exception's records)."""
    return pl.col(col).str.replace(r"^([^:]*):[^:]*:", "$1 ").fill_null("-")


def customer_mismatch(chains: pl.DataFrame, orders: pl.DataFrame, deal: pl.DataFrame, acct: pl.DataFrame | None
                      ) -> pl.DataFrame:
    """Chain-level ``CUSTOMER_MISMATCH`` (``chains``: the flagged won deals + order_ids): the deal's customer
    record and the order's (both in ``records``), and what disagrees — the first of tax id, country, name
    that both have and differ on — with both values in ``detail``. A pair whose only difference is a name
    written in another script (a Chinese legal name against its English one) is no mismatch."""
    if acct is None:
        acct = pl.DataFrame(schema={"id": pl.String, "tax_id": pl.String, "country": pl.String, "nname": pl.String,
                                    "name": pl.String})
    info = acct.select("id", _tax("tax_id").alias("tax"), pl.col("country").str.to_uppercase().alias("cty"), "nname",
                       "name")
    pairs = orders.filter((pl.col("cluster_id") != pl.col("deal_cluster")).fill_null(True)).join(
        chains.select(pl.col("id").alias("deal_id")), on="deal_id", how="semi").select(
        "deal_id", pl.col("id").alias("order_id"), pl.col("account_id").alias("o_acct")).join(
        deal.select(pl.col("id").alias("deal_id"), pl.col("account_id").alias("d_acct")), on="deal_id", how="left")
    pairs = pairs.join(info.rename(lambda c: f"d_{c}"), left_on="d_acct", right_on="d_id", how="left").join(
        info.rename(lambda c: f"o_{c}"), left_on="o_acct", right_on="o_id", how="left")

    def differs(f: str) -> pl.Expr:
        return (pl.col(f"d_{f}") != pl.col(f"o_{f}")).fill_null(False)

    def val(side: str) -> pl.Expr:
        f = pl.col("field")
        return (pl.when(f == "tax_id").then(pl.col(f"{side}_tax")).when(f == "country").then(pl.col(f"{side}_cty"))
                .when(f == "name").then(pl.col(f"{side}_name")).otherwise(pl.col(f"{side}_acct")))

    field = (pl.when(differs("tax")).then(pl.lit("tax_id")).when(differs("cty")).then(pl.lit("country"))
             .when(differs("nname")).then(pl.lit("name")).otherwise(pl.lit("customer")))
    pairs = pairs.with_columns(field.alias("field")).with_columns(val("d").alias("dv"), val("o").alias("ov"))
    # names in two scripts (深圳市恒瑞科技有限公司 / Shenzhen Hengrui Technology Co., Ltd.) cannot be compared:
    # with no identifier or country in conflict, the reference that links deal and order stands
    cjk = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]"
    cross_script = pl.col("d_name").str.contains(cjk) != pl.col("o_name").str.contains(cjk)
    pairs = pairs.filter(~((pl.col("field") == "name") & cross_script.fill_null(False)))
    first = pairs.sort("deal_id", "order_id").group_by("deal_id", maintain_order=True).agg(
        pl.col("order_id").first(), pl.col("d_acct").first(), pl.col("o_acct").first(), pl.col("field").first(),
        pl.col("dv").first(), pl.col("ov").first(), pl.col("o_acct").drop_nulls().unique().sort().alias("o_accts"))
    got = chains.join(first, left_on="id", right_on="deal_id", how="inner")
    return got.select(
        pl.lit("CUSTOMER_MISMATCH").alias("code"), pl.col("id").alias("chain_id"), pl.concat_list(pl.col("id")).alias("keys"),
        pl.concat_list(pl.col("id"), pl.col("order_ids"),
                       pl.when(pl.col("d_acct").is_not_null()).then(pl.concat_list("d_acct"))
                       .otherwise(pl.lit([], pl.List(pl.String))), pl.col("o_accts").fill_null([])).alias("records"),
        "currency", pl.lit(None, MONEY).alias("amount"), "cluster_id",
        pl.format("order customer is not the deal's customer: {} {} = {} (deal {}) vs {} = {} (order {})",
                  pl.col("field").fill_null("customer"), _short("d_acct"), pl.col("dv").fill_null("-"),
                  _short("id"), _short("o_acct"), pl.col("ov").fill_null("-"), _short("order_id")).alias("detail"),
    )

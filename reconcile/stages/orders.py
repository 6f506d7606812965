"""Stage 2, link_orders: each order to its deal, by the deal reference, else by customer + amount + date."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from reconcile.frames import MONEY, RATE, Frames, days
from reconcile.settings import Settings
from reconcile.stages.contract import expect
from reconcile.stages.expr import INACTIVE_ORDER, ambiguous_ref, norm, tol
from reconcile.stages.identity import Identity


@dataclass(frozen=True)
class Orders:
    """``deal``: deals + cluster_id, dkey (normalized source id), won.
    ``unique_keys``: dkey, ref_deal — the deal keys held by exactly one deal.
    ``order``: orders + cluster_id, dref, active, net, n_deals, deal_id, rule_id, deal_won, deal_ccy, deal_cluster.
    ``links``: deal -> order links; ``exceptions``: AMBIGUOUS_MATCH (by reference, by amount), ORDER_WITHOUT_DEAL."""

    deal: pl.DataFrame
    unique_keys: pl.DataFrame
    order: pl.DataFrame
    links: list[pl.DataFrame]
    exceptions: list[pl.DataFrame]


def link_orders(fr: Frames, ident: Identity, s: Settings) -> Orders:
    expect("link_orders", "deal", fr.deal, ("id", "source_id", "account_id", "stage", "amount", "currency",
                                           "close_date"))
    expect("link_orders", "order", fr.order, ("id", "account_id", "deal_ref", "state", "untaxed", "total",
                                             "currency", "order_date"))
    ex_parts: list[pl.DataFrame] = []
    deal = ident.cluster_of(fr.deal).with_columns(norm("source_id").alias("dkey"),
                                                 (pl.col("stage") == "closed_won").alias("won"))
    # a reference resolves when exactly one deal has that source id (n_deals); lists only for the rare rest
    dkeys = deal.group_by("dkey").agg(pl.len().alias("n_deals"), pl.col("id").min().alias("did"))
    multi = deal.join(dkeys.filter(pl.col("n_deals") > 1).select("dkey"), on="dkey").group_by("dkey").agg(
        pl.col("id").sort().alias("dids"))
    unique_keys = dkeys.filter(pl.col("n_deals") == 1).select("dkey", pl.col("did").alias("ref_deal"))
    order = ident.cluster_of(fr.order).with_columns(
        norm("deal_ref").alias("dref"), (~pl.col("state").is_in(INACTIVE_ORDER) | pl.col("state").is_null())
        .alias("active"), pl.coalesce("untaxed", "total").alias("net"),
    )
    order = order.join(dkeys, left_on="dref", right_on="dkey", how="left").with_columns(
        pl.col("n_deals").fill_null(0),
        pl.when(pl.col("n_deals") == 1).then(pl.col("did")).alias("deal_id"),
        pl.when(pl.col("n_deals") == 1).then(pl.coalesce("ref_rule", pl.lit("order.deal_ref"))).alias("rule_id"),
    ).drop("did")
    ref_ambig = order.filter((pl.col("n_deals") > 1) & pl.col("active")).join(multi, left_on="dref", right_on="dkey")
    ex_parts.append(ref_ambig.select(
        pl.lit("AMBIGUOUS_MATCH").alias("code"), pl.lit(None, pl.String).alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list("id", "dids").alias("records"),
        "currency", pl.col("net").abs().alias("amount"), pl.col("cluster_id"),
        pl.format("order deal_ref {} matches {} deals", "deal_ref", "n_deals").alias("detail"),
    ))

    # heuristic order -> deal: same cluster, amount within tolerance, order date in window
    unlinked = order.filter(pl.col("deal_id").is_null() & pl.col("active") & (pl.col("n_deals") <= 1))
    free_deals = deal.filter(pl.col("won")).join(
        order.filter(pl.col("deal_id").is_not_null()).select("deal_id").unique(), left_on="id",
        right_on="deal_id", how="anti",
    )
    cand = unlinked.select("id", "cluster_id", "net", "currency", "order_date").join(
        free_deals.select(pl.col("id").alias("cand_deal"), "cluster_id", pl.col("amount").alias("damt"),
                          pl.col("currency").alias("dccy"), "close_date"),
        on="cluster_id", how="inner",
    ).with_columns((pl.col("net") - pl.col("damt")).abs().alias("diff"))
    cand = cand.with_columns(
        ((pl.col("currency") == pl.col("dccy")) & (pl.col("diff") <= tol(s, pl.col("damt")))
         & days(pl.col("close_date"), pl.col("order_date")).is_between(-30, s.order_match_window_days)).alias("ok")
    )
    ranked = cand.sort(["id", "diff", "cand_deal"]).with_columns(pl.int_range(pl.len()).over("id").alias("rk"))
    fits = ranked.filter(pl.col("ok")).filter(pl.col("diff") == pl.col("diff").min().over("id")).with_columns(
        pl.len().over("id").alias("n_c"), pl.len().over("cand_deal").alias("n_o")
    )
    runner = ranked.filter(pl.col("rk") == 1).select("id", pl.col("cand_deal").alias("runner_up_id"),
                                                     pl.col("diff").alias("ru_diff"))
    accepted = fits.filter((pl.col("n_c") == 1) & (pl.col("n_o") == 1)).join(runner, on="id", how="left")
    amb_orders = fits.filter((pl.col("n_c") > 1) | (pl.col("n_o") > 1)).group_by("id").agg(
        pl.col("cand_deal").sort().alias("cands")
    )
    order = order.join(accepted.select("id", pl.col("cand_deal").alias("h_deal")), on="id", how="left").with_columns(
        pl.coalesce("deal_id", "h_deal").alias("deal_id"),
        pl.when(pl.col("rule_id").is_null() & pl.col("h_deal").is_not_null())
        .then(pl.lit("order.identity_amount")).otherwise(pl.col("rule_id")).alias("rule_id"),
    ).drop("h_deal")
    order = order.join(deal.select(pl.col("id").alias("deal_id"), pl.col("won").alias("deal_won"),
                                   pl.col("currency").alias("deal_ccy"), pl.col("cluster_id").alias("deal_cluster")),
                       on="deal_id", how="left")
    links = [order.filter(pl.col("deal_id").is_not_null()).join(
        accepted.select("id", "runner_up_id", (pl.col("ru_diff") - pl.col("diff")).alias("margin")), on="id", how="left"
    ).select(
        pl.col("deal_id").alias("chain_id"), pl.lit("deal").alias("from_entity"), pl.col("deal_id").alias("from_id"),
        pl.lit("order").alias("to_entity"), pl.col("id").alias("to_id"), "rule_id",
        pl.when(pl.col("rule_id") != "order.identity_amount").then(pl.lit(Decimal(1), RATE)).otherwise(
            pl.lit(Decimal("0.8"), RATE)).alias("confidence"),
        "runner_up_id", pl.col("margin").cast(MONEY),
        pl.when(pl.col("rule_id") == "order.deal_ref").then(pl.format("deal_ref={}", "deal_ref"))
        .when(pl.col("rule_id") != "order.identity_amount").then(
            pl.format("deal_ref={} found in {}", "deal_ref", pl.col("ref_evidence").fill_null("-")))
        .otherwise(pl.format("cluster={} amount={}", "cluster_id", "net")).alias("evidence"),
    )]
    ex_parts.append(order.join(amb_orders, on="id", how="inner").select(
        pl.lit("AMBIGUOUS_MATCH").alias("code"), pl.lit(None, pl.String).alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list(pl.col("id"), pl.col("cands")).alias("records"),
        "currency", pl.col("net").abs().alias("amount"), "cluster_id",
        pl.format("order fits {} deals by customer and amount", pl.col("cands").list.len()).alias("detail"),
    ))
    amb_order_ids = amb_orders.select("id")
    # a reference found by value that fits several deals is reported, never used
    ref_amb = pl.col("ref_ambiguous").is_not_null()
    ex_parts.append(ambiguous_ref(order.filter(pl.col("deal_id").is_null() & pl.col("active") & ref_amb)
                                  .join(amb_order_ids, on="id", how="anti").with_columns(pl.col("net").abs().alias("amount"))))
    ex_parts.append(order.filter(pl.col("deal_id").is_null() & pl.col("active") & (pl.col("n_deals") <= 1) & ~ref_amb)
                    .join(amb_order_ids, on="id", how="anti").select(
        pl.lit("ORDER_WITHOUT_DEAL").alias("code"), pl.lit(None, pl.String).alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list(pl.col("id")).alias("records"),
        "currency", pl.col("total").abs().alias("amount"), "cluster_id",  # a return order's total is negative
        pl.format("deal_ref={}", pl.col("deal_ref").fill_null("-")).alias("detail"),
    ))
    return Orders(deal=deal, unique_keys=unique_keys, order=order, links=links, exceptions=ex_parts)

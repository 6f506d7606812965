"""Stage 7, check_chains: each won deal against its orders (ordered at all, currency, amount, customer)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from reconcile.frames import MONEY, Frames, days
from reconcile.settings import Settings
from reconcile.stages.contract import expect
from reconcile.stages.customers import customer_mismatch
from reconcile.stages.expr import conv, tol, with_rate
from reconcile.stages.orders import Orders


@dataclass(frozen=True)
class Chains:
    """``ch``: the won deals + n_orders, no_rate, ccy_differs, ordered_deal_ccy (orders' net in the deal's
    currency), ordered_own / ordered_ccy / n_ccy (the orders' own figure and currency),
    other_customer, age. ``act_orders``: active linked orders + to_deal (rate to the deal's currency).
    ``exceptions``: WON_NOT_ORDERED, CURRENCY_MISMATCH, AMOUNT_MISMATCH, CUSTOMER_MISMATCH (chain level)."""

    ch: pl.DataFrame
    act_orders: pl.DataFrame
    exceptions: list[pl.DataFrame]


def check_chains(fr: Frames, orders: Orders, s: Settings, as_of: date, acct: pl.DataFrame | None = None) -> Chains:
    """``acct``: the accounts (``Identity.acct``), for what a CUSTOMER_MISMATCH names."""
    deal, order = orders.deal, orders.order
    expect("check_chains", "order", order, ("id", "active", "deal_id", "deal_ccy", "deal_cluster", "net",
                                            "order_date", "cluster_id"))
    ex_parts: list[pl.DataFrame] = []
    won = deal.filter(pl.col("won"))
    act_orders = order.filter(pl.col("active") & pl.col("deal_id").is_not_null())
    act_orders = with_rate(act_orders, fr.fx_rate, "currency", "deal_ccy", "order_date", "to_deal")
    per_chain = act_orders.select(
        "deal_id", pl.col("to_deal").is_null().alias("no_rate"),
        (pl.col("currency") != pl.col("deal_ccy")).alias("ccy_differs"),
        pl.when(pl.col("to_deal").is_not_null()).then(conv("net", "to_deal")).alias("ordered_deal_ccy"),
        (pl.col("cluster_id") != pl.col("deal_cluster")).fill_null(True).alias("other_customer"),
        "net", "currency",
    ).group_by("deal_id").agg(
        pl.len().alias("n_orders"), pl.col("no_rate").max(), pl.col("ccy_differs").max(),
        pl.col("ordered_deal_ccy").sum().cast(MONEY), pl.col("other_customer").max(),
        pl.col("net").sum().cast(MONEY).alias("ordered_own"), pl.col("currency").n_unique().alias("n_ccy"),
        pl.col("currency").first().alias("ordered_ccy"),
    ).with_columns(pl.col("ccy_differs").fill_null(False))  # any() of the group; max() is its fast form
    ch = won.join(per_chain, left_on="id", right_on="deal_id", how="left").with_columns(
        pl.col("n_orders").fill_null(0), days(pl.col("close_date"), as_of).alias("age")
    )
    amt_ok = (pl.col("ordered_deal_ccy") - pl.col("amount")).abs() <= tol(s, pl.col("amount"), pl.col("ccy_differs"))
    # the deal's figure ordered in another currency, which the rate does not explain: the currency was keyed
    # wrong (USD 10,000 ordered as EUR 10,000), not an amount difference
    same_figure = (pl.col("ccy_differs") & (pl.col("n_ccy") == 1) & ~amt_ok.fill_null(False)
                   & ((pl.col("ordered_own") - pl.col("amount")).abs() <= tol(s, pl.col("amount"))).fill_null(False))
    ccy_bad = (pl.col("n_orders") > 0) & pl.col("ccy_differs") & (pl.col("no_rate").fill_null(False) | same_figure)
    ch_flag = ccy_bad | ((pl.col("n_orders") > 0) & pl.col("other_customer"))
    amt_bad = (pl.col("n_orders") > 0) & ~pl.col("no_rate") & pl.col("amount").is_not_null() & ~amt_ok & ~ccy_bad
    # the (few) flagged chains get the list of their orders, for the exceptions' records
    flagged = ch.filter(ch_flag | amt_bad)
    flagged = flagged.join(act_orders.select("deal_id", pl.col("id").alias("oid")).join(
        flagged.select(pl.col("id").alias("deal_id")), on="deal_id").group_by("deal_id").agg(
        pl.col("oid").sort().alias("order_ids")), left_on="id", right_on="deal_id", how="left")
    ex_parts.append(ch.filter((pl.col("n_orders") == 0) & (pl.col("age") > s.grace_days_won_not_ordered)).select(
        pl.lit("WON_NOT_ORDERED").alias("code"), pl.col("id").alias("chain_id"), pl.concat_list(pl.col("id")).alias("keys"),
        pl.concat_list(pl.col("id")).alias("records"), "currency", "amount", "cluster_id",
        pl.format("closed {} days ago, no order", "age").alias("detail"),
    ))
    ex_parts.append(flagged.filter(ccy_bad).select(
        pl.lit("CURRENCY_MISMATCH").alias("code"), pl.col("id").alias("chain_id"), pl.concat_list(pl.col("id")).alias("keys"),
        pl.concat_list(pl.col("id"), pl.col("order_ids")).alias("records"), "currency", "amount", "cluster_id",
        pl.when(pl.col("no_rate")).then(pl.lit("order currency differs from the deal's and no FX rate explains it"))
        .otherwise(pl.format("deal {} {} ordered as {} {} (at the day's rate {} {}): same figure, other currency",
                             "currency", "amount", pl.col("ordered_ccy"), "ordered_own", "currency",
                             "ordered_deal_ccy")).alias("detail"),
    ))
    ex_parts.append(flagged.filter(amt_bad).select(
        pl.lit("AMOUNT_MISMATCH").alias("code"), pl.col("id").alias("chain_id"), pl.concat_list(pl.col("id")).alias("keys"),
        pl.concat_list(pl.col("id"), pl.col("order_ids")).alias("records"), "currency",
        (pl.col("ordered_deal_ccy") - pl.col("amount")).abs().alias("amount"), "cluster_id",
        pl.format("deal {} vs ordered {}", "amount", "ordered_deal_ccy").alias("detail"),
    ))
    ex_parts.append(customer_mismatch(flagged.filter((pl.col("n_orders") > 0) & pl.col("other_customer")),
                                      act_orders, deal, acct))
    return Chains(ch=ch, act_orders=act_orders, exceptions=ex_parts)

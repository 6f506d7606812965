"""Stage 9, check_billing: what was ordered against what was invoiced, and deals billed without being won."""

from __future__ import annotations

from datetime import date

import polars as pl

from reconcile.frames import MONEY, Frames, days
from reconcile.settings import Settings
from reconcile.stages.chains import Chains
from reconcile.stages.contract import expect
from reconcile.stages.expr import ZERO, conv, tol, with_rate
from reconcile.stages.invoices import Invoices
from reconcile.stages.orders import Orders
from reconcile.stages.payments import Payments


def check_billing(fr: Frames, orders: Orders, invoices: Invoices, chains: Chains, s: Settings,
                  as_of: date) -> list[pl.DataFrame]:
    """ORDERED_NOT_INVOICED (after the grace period) and OVER_INVOICED, per order of a won chain."""
    inv, order, act_orders = invoices.inv, orders.order, chains.act_orders
    expect("check_billing", "inv", inv, ("id", "active", "is_dup", "is_credit", "order_id", "currency", "total",
                                         "issue_date"))
    ex_parts: list[pl.DataFrame] = []
    # invoiced vs ordered per order of a won chain (duplicates excluded; credit notes net)
    inv_o = inv.filter(pl.col("active") & ~pl.col("is_dup") & pl.col("order_id").is_not_null()).join(
        order.select(pl.col("id").alias("order_id"), pl.col("currency").alias("occy")), on="order_id")
    inv_o = with_rate(inv_o, fr.fx_rate, "currency", "occy", "issue_date", "to_o").with_columns(
        (conv("total", "to_o") * pl.when(pl.col("is_credit")).then(-1).otherwise(1)).cast(MONEY).alias("net_o"))
    invoiced = inv_o.select("order_id", "net_o", pl.when(~pl.col("is_credit")).then(pl.col("net_o")).alias("g")).group_by(
        "order_id").agg(pl.col("net_o").sum().cast(MONEY).alias("invoiced"), pl.col("g").sum().cast(MONEY).alias("gross"))
    oc = act_orders.filter(pl.col("deal_won")).join(invoiced, left_on="id", right_on="order_id", how="left").with_columns(
        pl.col("invoiced").fill_null(ZERO).cast(MONEY), pl.col("gross").fill_null(ZERO).cast(MONEY),
        days(pl.col("order_date"), as_of).alias("age"))
    # not invoiced: gross billing short of the order; over-invoiced: net of credit notes above it
    gap = (pl.col("total") - pl.col("gross")).cast(MONEY)
    excess = (pl.col("invoiced") - pl.col("total")).cast(MONEY)
    oc = oc.filter(((gap > tol(s, pl.col("total"))) & (pl.col("age") > s.grace_days_ordered_not_invoiced))
                   | (excess > tol(s, pl.col("total"))))
    oc = oc.join(inv_o.select("order_id", "id").join(oc.select(pl.col("id").alias("order_id")), on="order_id",
                                                     how="semi").group_by("order_id").agg(
        pl.col("id").sort().alias("inv_ids")), left_on="id", right_on="order_id", how="left").with_columns(
        pl.col("inv_ids").fill_null([]))
    ex_parts.append(oc.filter((gap > tol(s, pl.col("total"))) & (pl.col("age") > s.grace_days_ordered_not_invoiced))
                    .select(
        pl.lit("ORDERED_NOT_INVOICED").alias("code"), pl.col("deal_id").alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list(pl.col("id"), pl.col("inv_ids")).alias("records"),
        "currency", gap.alias("amount"), "cluster_id",
        pl.format("ordered {} invoiced {} after {} days", "total", "invoiced", "age").alias("detail"),
    ))
    ex_parts.append(oc.filter(excess > tol(s, pl.col("total"))).select(
        pl.lit("OVER_INVOICED").alias("code"), pl.col("deal_id").alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list(pl.col("id"), pl.col("inv_ids")).alias("records"),
        "currency", excess.alias("amount"), "cluster_id",
        pl.format("ordered {} invoiced {}", "total", "invoiced").alias("detail"),
    ))
    return ex_parts


def check_stage_conflicts(orders: Orders, invoices: Invoices, payments: Payments,
                          fx_rate: pl.DataFrame | None = None) -> list[pl.DataFrame]:
    """STAGE_CONFLICT: a deal that is not won but invoiced or paid.

    The amount at risk is in the deal's currency: what its active bills total (credit notes aside), else, billed
    nothing, what was paid on it (net of refunds), else what its credit notes total; each figure converted at the
    rate of its day (``fx_rate``); where one has no rate, in their own currency when they share one, else none."""
    inv, pay, deal = invoices.inv, payments.pay, orders.deal
    rows = pl.concat([
        inv.filter(pl.col("active") & pl.col("chain_id").is_not_null()).select(
            "chain_id", "id", pl.when(pl.col("is_credit")).then(2).otherwise(0).alias("tier"),
            pl.col("total").alias("amount"), "currency", pl.col("issue_date").alias("day")),
        pay.filter(pl.col("active") & pl.col("ref_deal").is_not_null()).select(
            pl.col("ref_deal").alias("chain_id"), "id", pl.lit(1).alias("tier"),
            (pl.col("amount") * pl.col("sign")).cast(MONEY).alias("amount"), "currency", pl.col("pdate").alias("day")),
    ], how="vertical_relaxed").join(
        deal.filter(~pl.col("won")).select(pl.col("id").alias("chain_id"), "stage", pl.col("currency").alias("dccy"),
                                           "cluster_id"), on="chain_id")
    rows = with_rate(rows, fx_rate if fx_rate is not None else pl.DataFrame(), "currency", "dccy", "day", "to_deal")
    # the figures of the first tier the chain has (bills, else payments, else credit notes)
    at_risk = rows.filter(pl.col("tier") == pl.col("tier").min().over("chain_id")).group_by("chain_id").agg(
        conv("amount", "to_deal").sum().alias("amount"), pl.col("to_deal").is_null().max().alias("no_rate"),
        pl.col("amount").sum().alias("own"), pl.col("currency").n_unique().alias("n_ccy"),
        pl.col("currency").first().alias("own_ccy"))
    own = pl.col("no_rate") & (pl.col("n_ccy") == 1)
    sc = rows.group_by("chain_id").agg(pl.col("id").sort().alias("ids"), pl.col("stage").first(),
                                       pl.col("dccy").first().alias("currency"), pl.col("cluster_id").first())
    sc = sc.join(at_risk, on="chain_id")
    return [sc.select(
        pl.lit("STAGE_CONFLICT").alias("code"), "chain_id", pl.concat_list(pl.col("chain_id")).alias("keys"),
        pl.concat_list(pl.col("chain_id"), pl.col("ids")).alias("records"),
        pl.when(own).then(pl.col("own_ccy")).otherwise(pl.col("currency")).alias("currency"),
        pl.when(~pl.col("no_rate")).then(pl.col("amount")).when(own).then(pl.col("own")).abs().cast(MONEY)
        .alias("amount"), "cluster_id",
        pl.format("deal stage {} but invoiced or paid", "stage").alias("detail"),
    )]

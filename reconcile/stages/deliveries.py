"""Stage check_deliveries: the delivery stage between an order and its invoices.

A delivery names its order by canonical id (``order_id``) or by the order's number (``order_ref``, case
and spaces ignored, resolved only when one active order has it). A delivery counts as *out* when its state
is ``shipped`` or ``delivered``; its date is the delivered date, else the shipped date.

* ``DELIVERED_NOT_INVOICED``: an active order with a delivery out for at least
  ``grace_days_delivered_not_invoiced`` days (default 7) and no active invoice (credit notes and duplicates
  aside). Keys: the order. Amount: the order total.
* ``INVOICED_NOT_DELIVERED``: an active order invoiced at least ``grace_days_invoiced_not_delivered`` days
  ago (its first invoice) with no delivery out, checked only for orders of a system that reports
  deliveries (an ERP whose shipments are not synced would otherwise flag every order). Keys: the order.
  Amount: the invoiced total; severity by amount in the reporting currency (:func:`severity`).

Links ``order -> delivery`` put deliveries on the chain.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import polars as pl

from reconcile.frames import MONEY, RATE
from reconcile.settings import Settings
from reconcile.stages.contract import EXCEPTION_COLUMNS, expect
from reconcile.stages.expr import norm

OUT_STATES = ["shipped", "delivered"]
EX_COLS = list(EXCEPTION_COLUMNS)
#: INVOICED_NOT_DELIVERED severity by invoiced amount (reporting currency): below 1,000 low, below 10,000
#: medium, else high (100,000 and more is critical, as for every code)
SEVERITY_STEPS = ((Decimal(1000), "low"), (Decimal(10000), "medium"))



def resolve_order(delivery: pl.DataFrame, order: pl.DataFrame) -> pl.DataFrame:
    """``delivery`` with ``oid``: its ``order_id`` when that order exists, else the one active order numbered
    ``order_ref``."""
    hit = order.select(pl.col("id").alias("order_id"), pl.lit(True).alias("__hit"))
    by_no = order.filter(pl.col("active")).group_by(norm(pl.col("number")).alias("__ref")).agg(
        pl.col("id").min().alias("__ro"), pl.len().alias("__n")).filter(pl.col("__n") == 1).drop("__n")
    out = delivery.join(hit, on="order_id", how="left").with_columns(norm(pl.col("order_ref")).alias("__ref"))
    return out.join(by_no, on="__ref", how="left").with_columns(
        pl.when(pl.col("__hit").fill_null(False)).then(pl.col("order_id")).otherwise(pl.col("__ro")).alias("oid"),
        pl.when(pl.col("__hit").fill_null(False)).then(pl.lit("delivery.order_id"))
        .otherwise(pl.lit("delivery.order_ref")).alias("rule_id"),
    ).drop("__hit", "__ref", "__ro")


def check_deliveries(delivery: pl.DataFrame, order: pl.DataFrame, inv: pl.DataFrame, s: Settings, as_of: date
          ) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    """(exception parts, link parts). ``order``: the core's orders (``active``, ``deal_id``, ``cluster_id``);
    ``inv``: its invoices (``active``, ``is_credit``, ``is_dup``, ``order_id``, ``issue_date``)."""
    expect("check_deliveries", "order", order, ("id", "number", "active", "deal_id", "cluster_id", "total", "currency"))
    expect("check_deliveries", "inv", inv, ("id", "active", "is_credit", "is_dup", "order_id", "issue_date", "total",
                                            "currency"))
    if delivery.height == 0:
        return [], []
    dl = resolve_order(delivery, order)
    dl = dl.join(order.select(pl.col("id").alias("oid"), pl.col("deal_id").alias("chain_id")), on="oid", how="left")
    links = [dl.filter(pl.col("oid").is_not_null()).select(
        "chain_id", pl.lit("order").alias("from_entity"), pl.col("oid").alias("from_id"),
        pl.lit("delivery").alias("to_entity"), pl.col("id").alias("to_id"), "rule_id",
        pl.lit(Decimal(1), RATE).alias("confidence"), pl.lit(None, pl.String).alias("runner_up_id"),
        pl.lit(None, MONEY).alias("margin"),
        pl.format("order_ref={}", pl.coalesce("order_ref", "oid")).alias("evidence"))]
    out = dl.filter(pl.col("state").is_in(OUT_STATES) & pl.col("oid").is_not_null()).with_columns(
        pl.coalesce("delivered_date", "shipped_date").alias("out_on"))
    per_order = out.group_by("oid").agg(pl.col("out_on").min().alias("first_out"))
    bills = inv.filter(pl.col("active") & ~pl.col("is_credit") & ~pl.col("is_dup") & pl.col("order_id").is_not_null())
    billed = bills.group_by("order_id").agg(
        pl.col("total").sum().alias("invoiced"), pl.col("issue_date").min().alias("first_issue"),
        pl.col("currency").first().alias("i_ccy"))
    act = order.filter(pl.col("active"))
    dni = act.join(per_order, left_on="id", right_on="oid", how="inner").join(
        billed, left_on="id", right_on="order_id", how="anti").filter(
        pl.col("first_out") <= as_of - timedelta(days=s.grace_days_delivered_not_invoiced))
    systems = dl.select(pl.col("id").str.split(":").list.first().alias("sys")).unique()["sys"]
    ind = act.filter(pl.col("id").str.split(":").list.first().is_in(systems.implode())).join(
        billed, left_on="id", right_on="order_id", how="inner").join(
        per_order, left_on="id", right_on="oid", how="anti").filter(
        pl.col("first_issue") <= as_of - timedelta(days=s.grace_days_invoiced_not_delivered))
    # the records' id lists only for the (few) orders reported
    dni = dni.join(_ids(out, "oid", dni, "dids"), left_on="id", right_on="oid", how="left")
    ind = ind.join(_ids(bills, "order_id", ind, "iids"), left_on="id", right_on="order_id", how="left")
    ex = [
        dni.select(pl.lit("DELIVERED_NOT_INVOICED").alias("code"), pl.col("deal_id").alias("chain_id"),
                   pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list(pl.col("id"), pl.col("dids")).alias("records"),
                   "currency", pl.col("total").alias("amount"), "cluster_id",
                   pl.format("order {} out since {}, no invoice", pl.col("number").fill_null("-"), "first_out")
                   .alias("detail")),
        ind.select(pl.lit("INVOICED_NOT_DELIVERED").alias("code"), pl.col("deal_id").alias("chain_id"),
                   pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list(pl.col("id"), pl.col("iids")).alias("records"),
                   pl.col("i_ccy").alias("currency"), pl.col("invoiced").alias("amount"), "cluster_id",
                   pl.format("order {} invoiced since {}, nothing shipped", pl.col("number").fill_null("-"),
                             "first_issue").alias("detail")),
    ]
    return [e.select(EX_COLS) for e in ex], links


def _ids(rows: pl.DataFrame, key: str, orders: pl.DataFrame, name: str) -> pl.DataFrame:
    """(``key``, ``name``): the sorted ids of ``rows`` per order of ``orders`` (its ``id``)."""
    return rows.select(key, "id").join(orders.select(pl.col("id").alias(key)), on=key, how="semi").group_by(key).agg(
        pl.col("id").sort().alias(name))


def severity(amount_reporting: pl.Expr, amount: pl.Expr) -> pl.Expr:
    """The severity of an ``INVOICED_NOT_DELIVERED`` by its amount (reporting currency, else its own)."""
    a = pl.coalesce(amount_reporting, amount).abs()
    (low, low_sev), (mid, mid_sev) = SEVERITY_STEPS
    return (pl.when(a.is_null()).then(pl.lit("medium")).when(a < pl.lit(low, MONEY)).then(pl.lit(low_sev))
            .when(a < pl.lit(mid, MONEY)).then(pl.lit(mid_sev)).otherwise(pl.lit("high")))


def delivery_chain_columns(links: list[pl.DataFrame], delivery: pl.DataFrame) -> pl.DataFrame:
    """Per chain: the number of deliveries and of those out, and the last date one went out."""
    schema = {"chain_id": pl.String, "n_deliveries": pl.UInt32, "n_delivered": pl.UInt32, "last_delivered": pl.Date}
    if not links:
        return pl.DataFrame(schema=schema)
    lk = pl.concat(links, how="vertical_relaxed").filter(pl.col("chain_id").is_not_null())
    d = lk.join(delivery.select(pl.col("id").alias("to_id"), "state",
                                pl.coalesce("delivered_date", "shipped_date").alias("out_on")), on="to_id")
    return d.group_by("chain_id").agg(
        pl.len().cast(pl.UInt32).alias("n_deliveries"),
        pl.col("state").is_in(OUT_STATES).sum().cast(pl.UInt32).alias("n_delivered"),
        pl.col("out_on").filter(pl.col("state").is_in(OUT_STATES)).max().alias("last_delivered"),
    ).select(list(schema))

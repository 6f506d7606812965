"""Stage 3, link_invoices: each invoice to its order (order reference) or deal (deal reference); duplicates."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import polars as pl

from reconcile.frames import MONEY, RATE, Frames
from reconcile.settings import Settings
from reconcile.stages.contract import expect
from reconcile.stages.expr import INACTIVE_INVOICE, ambiguous_ref, norm
from reconcile.stages.identity import Identity
from reconcile.stages.orders import Orders


@dataclass(frozen=True)
class Invoices:
    """``inv``: invoices + cluster_id, oref, dref, ikey, active, is_credit, order_id, ref_deal, chain_id,
    rule_id, is_dup (``total`` is the absolute amount).
    ``targets``: the active invoices that are neither credit notes nor duplicates (what payments settle).
    ``links``: order/deal -> invoice; ``exceptions``: INVOICE_WITHOUT_ORDER, DUPLICATE_INVOICE."""

    inv: pl.DataFrame
    targets: pl.DataFrame
    links: list[pl.DataFrame]
    exceptions: list[pl.DataFrame]


def link_invoices(fr: Frames, ident: Identity, orders: Orders, s: Settings | None = None) -> Invoices:
    """``s``: for the duplicate window (:attr:`Settings.duplicate_window_days`)."""
    s = s or Settings()
    expect("link_invoices", "invoice", fr.invoice, ("id", "number", "kind", "account_id", "order_ref", "deal_ref",
                                                   "issue_date", "status", "currency", "total"))
    expect("link_invoices", "order", orders.order, ("id", "number", "active", "deal_id"))
    ex_parts: list[pl.DataFrame] = []
    okeys = orders.order.filter(pl.col("active")).with_columns(norm("number").alias("okey")).group_by("okey").agg(
        pl.col("id").first().alias("order_id"), pl.len().alias("n_ord"),
        pl.col("deal_id").first().alias("o_deal"),
    )
    inv = ident.cluster_of(fr.invoice).with_columns(
        norm("order_ref").alias("oref"), norm("deal_ref").alias("dref"), norm("number").alias("ikey"),
        (~pl.col("status").is_in(INACTIVE_INVOICE) | pl.col("status").is_null()).alias("active"),
        (pl.col("kind") == "credit_note").alias("is_credit"), pl.col("total").abs().alias("total"),
    )
    inv = inv.join(okeys, left_on="oref", right_on="okey", how="left").join(
        orders.unique_keys,
        left_on="dref", right_on="dkey", how="left",
    ).with_columns(
        pl.when(pl.col("n_ord") == 1).then(pl.col("order_id")).alias("order_id"),
    ).with_columns(
        pl.coalesce(pl.when(pl.col("order_id").is_not_null()).then(pl.col("o_deal")), pl.col("ref_deal")).alias("chain_id"),
        pl.coalesce(pl.when(pl.col("order_id").is_not_null() | pl.col("ref_deal").is_not_null()).then(pl.col("ref_rule")),
                    pl.when(pl.col("order_id").is_not_null()).then(pl.lit("invoice.order_ref"))
                    .when(pl.col("ref_deal").is_not_null()).then(pl.lit("invoice.deal_ref"))).alias("rule_id"),
    ).drop("o_deal", "n_ord")
    links = [inv.filter(pl.col("rule_id").is_not_null()).select(
        "chain_id",
        pl.when(pl.col("order_id").is_not_null()).then(pl.lit("order")).otherwise(pl.lit("deal")).alias("from_entity"),
        pl.coalesce("order_id", "ref_deal").alias("from_id"), pl.lit("invoice").alias("to_entity"),
        pl.col("id").alias("to_id"), "rule_id", pl.lit(Decimal(1), RATE).alias("confidence"),
        pl.lit(None, pl.String).alias("runner_up_id"), pl.lit(None, MONEY).alias("margin"),
        pl.format("order_ref={} deal_ref={}", pl.col("order_ref").fill_null("-"), pl.col("deal_ref").fill_null("-"))
        .alias("evidence").pipe(lambda e: pl.when(pl.col("ref_rule").is_not_null()).then(
            pl.format("{} found in {}", e, pl.col("ref_evidence").fill_null("-"))).otherwise(e)),
    )]
    # a reference found by value that fits several orders/deals is reported, never used
    ex_parts.append(ambiguous_ref(inv.filter(pl.col("active") & pl.col("rule_id").is_null()
                                             & pl.col("ref_ambiguous").is_not_null())))
    ex_parts.append(inv.filter(pl.col("active") & pl.col("rule_id").is_null() & pl.col("ref_ambiguous").is_null()).select(
        pl.lit("INVOICE_WITHOUT_ORDER").alias("code"), pl.lit(None, pl.String).alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list(pl.col("id")).alias("records"),
        "currency", pl.col("total").alias("amount"), "cluster_id",
        pl.format("order_ref={}", pl.col("order_ref").fill_null("-")).alias("detail"),
    ))

    # duplicates: same order (or customer), amount, issue date, currency; first by number/id is the original
    bills = inv.filter(pl.col("active") & ~pl.col("is_credit")).with_columns(
        pl.coalesce("order_id", "cluster_id").alias("dk"))
    # only bills that share their key with another are sorted and listed (the groups of more than one)
    dkeys = ["dk", "total", "issue_date", "currency"]
    dgroups = bills.filter(pl.len().over(dkeys) > 1).sort(["number", "id"]).group_by(dkeys).agg(
        pl.col("id").alias("ids"), pl.col("chain_id").first(), pl.col("cluster_id").first()
    ).filter(pl.col("ids").list.len() > 1).with_columns(
        pl.format("{} invoices of {} on {}", pl.col("ids").list.len(), "total", "issue_date").alias("detail"))
    # two bills of one order that together do not exceed it are instalments, even on one day
    billed = bills.filter(pl.col("order_id").is_not_null()).group_by("order_id").agg(
        pl.col("total").sum().cast(MONEY).alias("billed"), pl.col("currency").n_unique().alias("n_ccy"))
    within = billed.join(orders.order.select(pl.col("id").alias("order_id"), pl.col("total").abs().alias("ordered")),
                         on="order_id").filter((pl.col("n_ccy") == 1) & (pl.col("billed") <= pl.col("ordered")))
    dgroups = dgroups.join(within.select(pl.col("order_id").alias("dk")), on="dk", how="anti")
    dgroups = pl.concat([dgroups, _rebilled(bills, orders.order, dgroups, s.duplicate_window_days)])
    ex_parts.append(dgroups.select(
        pl.lit("DUPLICATE_INVOICE").alias("code"), "chain_id", pl.col("ids").list.sort().alias("keys"),
        pl.col("ids").list.sort().alias("records"), "currency",
        (pl.col("total") * (pl.col("ids").list.len() - 1)).cast(MONEY).alias("amount"), "cluster_id", "detail",
    ))
    dup_ids = dgroups.select(pl.col("ids").list.slice(1).alias("id")).explode("id")
    inv = inv.with_columns(pl.col("id").is_in(dup_ids["id"].implode()).alias("is_dup"))
    targets = inv.filter(pl.col("active") & ~pl.col("is_credit") & ~pl.col("is_dup"))
    return Invoices(inv=inv, targets=targets, links=links, exceptions=ex_parts)


def _rebilled(bills: pl.DataFrame, order: pl.DataFrame, same_day: pl.DataFrame, window: int) -> pl.DataFrame:
    """An order billed again for the same amount within ``window`` days (another number, a later date),
    where the bills together exceed the order's total: the later bills are duplicates, not instalments
    (instalments add up to the order). Groups already caught as same-day duplicates are left out."""
    cols: dict[str, Any] = {"dk": pl.String, "total": MONEY, "issue_date": pl.Date, "currency": pl.String,
            "ids": pl.List(pl.String), "chain_id": pl.String, "cluster_id": pl.String, "detail": pl.String}
    if window <= 0 or "total" not in order.columns:
        return pl.DataFrame(schema=cols)
    seen = same_day.select(pl.col("ids").list.slice(1).alias("id")).explode("id")
    on_order = bills.filter(pl.col("order_id").is_not_null()).join(seen, on="id", how="anti")
    billed = on_order.group_by("order_id").agg(pl.col("total").sum().cast(MONEY).alias("billed"),
                                               pl.col("currency").n_unique().alias("n_ccy"))
    over = billed.join(order.select(pl.col("id").alias("order_id"), pl.col("total").abs().alias("ordered"),
                                    pl.col("currency").alias("o_ccy")), on="order_id").filter(
        (pl.col("n_ccy") == 1) & (pl.col("billed") > pl.col("ordered")))
    cand = on_order.join(over.select("order_id", "o_ccy"), on="order_id").filter(pl.col("currency") == pl.col("o_ccy"))
    cand = cand.sort(["order_id", "total", "issue_date", "number", "id"]).with_columns(
        (pl.col("issue_date") - pl.col("issue_date").shift(1).over(["order_id", "total"])).dt.total_days()
        .alias("gap"))
    # a run of same-amount bills each within the window of the one before: one group, the first is the original
    cand = cand.with_columns((pl.col("gap").is_null() | (pl.col("gap") > window)).cum_sum().over(
        ["order_id", "total"]).alias("run"))
    groups = cand.group_by(["order_id", "total", "run"]).agg(
        pl.col("id").alias("ids"), pl.col("issue_date").first(), pl.col("issue_date").last().alias("last"),
        pl.col("number").alias("numbers"), pl.col("currency").first(), pl.col("chain_id").first(),
        pl.col("cluster_id").first()).filter(pl.col("ids").list.len() > 1)
    return groups.select(
        pl.col("order_id").alias("dk"), "total", "issue_date", "currency", "ids", "chain_id", "cluster_id",
        pl.format("{} bills of {} for one order within {} days ({}), more than the order's total",
                  pl.col("ids").list.len(), "total", (pl.col("last") - pl.col("issue_date")).dt.total_days(),
                  pl.col("numbers").list.join(", ")).alias("detail"),
    ).select(list(cols)).cast(cols)  # type: ignore[arg-type]

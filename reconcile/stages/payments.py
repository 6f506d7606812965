"""Stage 5, allocate_payments: each payment to the invoices it pays.

In order: explicit references (``invoice_ref`` and invoice numbers found in the remittance text), then
a unique 1:1 fit by amount within the payment's pool (its chain by ``deal_ref``, else its customer
cluster), then a bounded subset sum over the pool's open invoices. A tie at any step is ambiguous, never
a guess. A payment in another currency is converted at the dated rate.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl

from reconcile.frames import MONEY, RATE, Frames
from reconcile.settings import Settings
from reconcile.stages.contract import expect
from reconcile.stages.credits import Credits
from reconcile.stages.expr import (
    INACTIVE_PAYMENT,
    NAME_KEY,
    ZERO,
    conv,
    name_key_of,
    norm,
    split,
    tol,
    with_rate,
)
from reconcile.stages.identity import Identity
from reconcile.stages.invoices import Invoices
from reconcile.stages.orders import Orders


@dataclass(frozen=True)
class Payments:
    """``pay``: payments + active, sign, amount (absolute), nname (null where the pre-pass computed it and the payment
    has an account: read only where it has none), pdate, cluster_id, dkey, ref_deal.
    ``act_pay``: the active ones. ``alloc``: payment_id, invoice_id, rule_id, currency, amount_inv, pccy,
    payment_amount, rate, signed. ``bal``: per target invoice total, credited, paid, fx, residual.
    ``ambiguous``: id, cands, detail (payments that fit several invoices or subsets).
    ``links``: invoice -> payment and payment -> settlement links."""

    pay: pl.DataFrame
    act_pay: pl.DataFrame
    alloc: pl.DataFrame
    bal: pl.DataFrame
    ambiguous: pl.DataFrame
    links: list[pl.DataFrame]


def invoice_balances(targets: pl.DataFrame, credits: Credits, allocs: pl.DataFrame) -> pl.DataFrame:
    """Per target invoice: total, credited, paid (signed allocations), fx (any converted), residual."""
    paid = allocs.select("invoice_id", "signed", (pl.col("rate") != 1).alias("fx")).group_by("invoice_id").agg(
        pl.col("signed").sum().alias("paid"), pl.col("fx").max())  # any() (never null); max() is faster
    return targets.select(pl.col("id").alias("invoice_id"), "total").join(
        credits.credit_by_inv, on="invoice_id", how="left").join(
        paid, on="invoice_id", how="left"
    ).with_columns(pl.col("credited").fill_null(ZERO).cast(MONEY), pl.col("paid").fill_null(ZERO).cast(MONEY),
                   pl.col("fx").fill_null(False)).with_columns(
        (pl.col("total") - pl.col("credited") - pl.col("paid")).cast(MONEY).alias("residual")
    )


def _allocation_rows(p: pl.DataFrame) -> pl.DataFrame:
    return p.with_columns(
        pl.when(pl.col("rate") == 1).then(pl.col("payment_amount")).otherwise(conv("payment_amount", "rate"))
        .alias("amount_inv")
    ).with_columns((pl.col("amount_inv") * pl.col("sign")).cast(MONEY).alias("signed")).select(
        pl.col("id").alias("payment_id"), "invoice_id", "rule_id", "currency", "amount_inv", "pccy",
        "payment_amount", "rate", "signed",
    )


def allocate_payments(fr: Frames, ident: Identity, orders: Orders, invoices: Invoices, credits: Credits,
                      s: Settings, as_of: date) -> Payments:
    expect("allocate_payments", "payment", fr.payment, ("id", "kind", "account_id", "currency", "amount",
                                                       "payment_date", "payer_name", "remittance", "invoice_ref",
                                                       "deal_ref", "settlement_ref", "status", "fee"))
    expect("allocate_payments", "targets", invoices.targets, ("id", "ikey", "due_date", "number", "total",
                                                             "currency", "chain_id", "cluster_id"))
    targets = invoices.targets
    pay = fr.payment.with_columns(
        (~pl.col("status").is_in(INACTIVE_PAYMENT) | pl.col("status").is_null()).alias("active"),
        pl.when(pl.col("kind") == "refund").then(-1).otherwise(1).alias("sign"),
        # the payer's name key (from the pre-pass only where the payment has no account: the only rows that use it)
        pl.col("amount").abs().alias("amount"), name_key_of(fr.payment, "payer_name").alias("nname"),
        pl.coalesce("payment_date", pl.lit(as_of)).alias("pdate"),
    ).drop(NAME_KEY, strict=False)
    pay = ident.cluster_of(pay).join(ident.name_to_cluster, on="nname", how="left").with_columns(
        pl.when(pl.col("account_id").is_null()).then(pl.col("name_cluster")).otherwise(pl.col("cluster_id"))
        .alias("cluster_id")
    ).drop("name_cluster")
    # a payer name several customers carry (homonyms, entities not linked): the payment's pool is all of them
    shared = ident.shared_names.select("nname").unique()["nname"]
    pay = pay.with_columns(pl.when(pl.col("account_id").is_null() & pl.col("cluster_id").is_null()
                                   & pl.col("nname").is_in(shared.implode())).then(pl.col("nname"))
                           .alias("shared_name"))
    pay = pay.join(orders.unique_keys,
                   left_on=norm("deal_ref"), right_on="dkey", how="left")
    act_pay = pay.filter(pl.col("active"))
    # explicit invoice references: invoice_ref + tokens of the remittance text that are invoice numbers
    tokens = pl.concat([
        act_pay.select("id", norm("invoice_ref").alias("tok")),
        act_pay.select("id", pl.col("remittance").str.to_uppercase().str.extract_all(r"[A-Z0-9][A-Z0-9_/\-]+")
                       .alias("tok")).explode("tok"),
    ]).drop_nulls()
    ref_inv = targets.select(pl.col("id").alias("invoice_id"), "ikey", "due_date", "number", "total", "currency",
                             pl.col("chain_id").alias("inv_chain"))
    # configured first (a pair found both ways keeps the configured rule), then what discovery found
    found = act_pay.filter(pl.col("found_invoice_ids").is_not_null()).select(
        "id", pl.col("found_invoice_ids").alias("invoice_id"), pl.col("ref_rule").alias("rule_id")).explode("invoice_id")
    xpairs = pl.concat([
        tokens.join(ref_inv, left_on="tok", right_on="ikey", how="inner").drop("tok").with_columns(
            pl.lit("payment.invoice_ref").alias("rule_id")),
        found.join(ref_inv, on="invoice_id", how="inner").drop("ikey"),
    ], how="diagonal").unique(["id", "invoice_id"], keep="first", maintain_order=True).join(
        act_pay.select("id", "amount", pl.col("currency").alias("pccy"), "pdate", "sign"), on="id"
    )
    xpairs = with_rate(xpairs, fr.fx_rate, "pccy", "currency", "pdate", "rate")
    xpairs = with_rate(xpairs, fr.fx_rate, "currency", "pccy", "pdate", "inv_rate")
    xpairs = xpairs.filter(pl.col("rate").is_not_null() & pl.col("inv_rate").is_not_null()).with_columns(
        conv("total", "inv_rate").alias("cap_p")
    ).sort(["id", "due_date", "number", "invoice_id"])
    xpairs = xpairs.with_columns(split(xpairs, "id", "amount", "cap_p").alias("payment_amount"))
    explicit_ids = xpairs.select("id").unique()

    alloc_x = _allocation_rows(xpairs)
    bal0 = invoice_balances(targets, credits, alloc_x)

    # heuristics on the rest: pool = chain (deal_ref) or customer cluster
    rest = act_pay.join(explicit_ids, on="id", how="anti").filter(pl.col("sign") == 1)
    rest = rest.with_columns(
        pl.when(pl.col("ref_deal").is_not_null()).then(pl.format("chain:{}", "ref_deal"))
        .when(pl.col("cluster_id").is_not_null()).then(pl.format("cl:{}", "cluster_id"))
        .when(pl.col("shared_name").is_not_null()).then(pl.format("nm:{}", "shared_name")).alias("pool")
    )
    open_inv = targets.join(bal0.select("invoice_id", "residual"), left_on="id", right_on="invoice_id").filter(
        pl.col("residual") > tol(s, pl.col("total"))
    )
    pools = pl.concat([
        open_inv.filter(pl.col("chain_id").is_not_null()).select(pl.format("chain:{}", "chain_id").alias("pool"),
                                                                 pl.col("id").alias("invoice_id"), "residual", "total",
                                                                 "currency", "due_date", "number"),
        open_inv.filter(pl.col("cluster_id").is_not_null()).select(pl.format("cl:{}", "cluster_id").alias("pool"),
                                                                   pl.col("id").alias("invoice_id"), "residual", "total",
                                                                   "currency", "due_date", "number"),
        open_inv.join(ident.shared_names.join(rest.select(pl.col("shared_name").alias("nname")).drop_nulls().unique(),
                                              on="nname"), on="cluster_id").select(
            pl.format("nm:{}", "nname").alias("pool"), pl.col("id").alias("invoice_id"), "residual", "total",
            "currency", "due_date", "number"),
    ])
    hp = rest.filter(pl.col("pool").is_not_null()).select(
        "id", "pool", "amount", pl.col("currency").alias("pccy"), "pdate", "sign"
    ).join(pools, on="pool", how="inner")
    hp = with_rate(hp, fr.fx_rate, "pccy", "currency", "pdate", "rate")
    hp = with_rate(hp, fr.fx_rate, "currency", "pccy", "pdate", "inv_rate")
    hp = hp.filter(pl.col("rate").is_not_null() & pl.col("inv_rate").is_not_null()).with_columns(
        conv("amount", "rate").alias("conv")
    ).with_columns((pl.col("conv") - pl.col("residual")).abs().alias("diff"))
    hp = hp.with_columns((pl.col("diff") <= tol(s, pl.col("residual"), pl.col("pccy") != pl.col("currency"))).alias("ok"))
    ranked_p = hp.sort(["id", "diff", "invoice_id"]).with_columns(pl.int_range(pl.len()).over("id").alias("rk"))
    # within tolerance, the strictly closest candidate wins; equal best fits are ambiguous
    fit = ranked_p.filter(pl.col("ok")).filter(pl.col("diff") == pl.col("diff").min().over("id")).with_columns(
        pl.len().over("id").alias("n_c"), pl.col("id").n_unique().over("invoice_id").alias("n_p"))
    h1 = fit.filter((pl.col("n_c") == 1) & (pl.col("n_p") == 1))
    ru = ranked_p.filter(pl.col("rk") == 1).select("id", pl.col("invoice_id").alias("runner_up_id"),
                                                    pl.col("diff").alias("ru_diff"))
    h1 = h1.join(ru, on="id", how="left").with_columns(
        pl.when(pl.col("runner_up_id") == pl.col("invoice_id")).then(None).otherwise(pl.col("runner_up_id"))
        .alias("runner_up_id")
    )
    amb_p = fit.filter((pl.col("n_c") > 1) | (pl.col("n_p") > 1)).group_by("id").agg(
        pl.col("invoice_id").sort().alias("cands"), pl.col("amount").first(), pl.col("pccy").first()
    )
    h1_alloc = h1.with_columns(
        pl.when(pl.col("pool").str.starts_with("chain:")).then(pl.lit("payment.deal_ref_amount"))
        .when(pl.col("pool").str.starts_with("nm:")).then(pl.lit("payment.payer_name_amount"))
        .otherwise(pl.lit("payment.customer_amount")).alias("rule_id"), pl.col("amount").alias("payment_amount"),
    )
    # H2: bounded subset sum over the residual (same currency only; one customer's invoices: not a shared name)
    tried = pl.concat([h1.select("id"), amb_p.select("id")]).unique()
    taken = h1.select("invoice_id").unique()
    sub_pay = rest.filter(pl.col("pool").is_not_null() & ~pl.col("pool").str.starts_with("nm:")).join(
        tried, on="id", how="anti")
    sub_pools = pools.join(taken, on="invoice_id", how="anti")
    h2_rows, h2_amb = subset_sum(sub_pay, sub_pools, s)
    h2 = pl.DataFrame(h2_rows, schema={"id": pl.String, "invoice_id": pl.String, "k": pl.Int64}, orient="row")
    # an invoice claimed by two payments' unique subsets is ambiguous for both
    clash = h2.group_by("invoice_id").agg(pl.col("id").n_unique().alias("n")).filter(pl.col("n") > 1)
    clash_pay = h2.join(clash, on="invoice_id").select("id").unique()
    h2 = h2.join(clash_pay, on="id", how="anti")
    h2 = h2.join(sub_pay.select("id", "amount", pl.col("currency").alias("pccy"), "sign", "pool"), on="id").join(
        sub_pools.select("pool", "invoice_id", "residual", "currency", "due_date", "number"), on=["pool", "invoice_id"]
    ).with_columns(pl.lit(Decimal(1), RATE).alias("rate")).sort(["id", "due_date", "number", "invoice_id"])
    h2 = h2.with_columns(split(h2, "id", "amount", "residual").alias("payment_amount"),
                         pl.lit("payment.subset_sum").alias("rule_id"))
    # a discovered reference that fits several invoices: reported when nothing else placed the payment
    placed = pl.concat([explicit_ids, h1.select("id"), h2.select("id")])
    ref_amb_p = rest.filter(pl.col("ref_ambiguous").is_not_null()).join(placed, on="id", how="anti").select(
        "id", pl.col("ref_candidates").fill_null([]).alias("cands"), pl.format("reference {}", "ref_ambiguous")
        .alias("detail"))
    amb_all = pl.concat([
        amb_p.select("id", "cands", pl.lit("payment fits several invoices 1:1 by amount").alias("detail")),
        ref_amb_p,
        pl.DataFrame(h2_amb, schema={"id": pl.String, "cands": pl.List(pl.String)}, orient="row").with_columns(
            pl.lit("several invoice subsets sum to the payment").alias("detail")),
        clash_pay.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("cands"),
                               pl.lit("two payments claim the same invoices").alias("detail")),
    ]).unique("id", keep="first")

    alloc = pl.concat([alloc_x, _allocation_rows(h1_alloc), _allocation_rows(h2)])
    bal = invoice_balances(targets, credits, alloc)

    # payment links with evidence, runner-up and margin
    no_note = pl.lit(None, pl.String).alias("note")
    links = [pl.concat([
        xpairs.select("id", "invoice_id", "rule_id", pl.lit(Decimal(1), RATE).alias("confidence"),
                      pl.lit(None, pl.String).alias("runner_up_id"), pl.lit(None, MONEY).alias("margin"), no_note),
        h1_alloc.select("id", "invoice_id", "rule_id", pl.lit(Decimal("0.9"), RATE).alias("confidence"), "runner_up_id",
                        (pl.col("ru_diff") - pl.col("diff")).cast(MONEY).alias("margin"),
                        pl.when(pl.col("pool").str.starts_with("nm:")).then(pl.format(
                            " payer name '{}' is carried by several customers; the amount fits one open invoice",
                            pl.col("pool").str.slice(3))).alias("note")),
        h2.select("id", "invoice_id", "rule_id", pl.lit(Decimal("0.8"), RATE).alias("confidence"),
                  pl.lit(None, pl.String).alias("runner_up_id"), pl.lit(None, MONEY).alias("margin"), no_note),
    ]).join(invoices.inv.select(pl.col("id").alias("invoice_id"), "chain_id"), on="invoice_id", how="left").join(
        act_pay.select("id", "ref_rule", "ref_evidence", "fee", pl.col("currency").alias("pccy")), on="id",
        how="left").select(
        "chain_id", pl.lit("invoice").alias("from_entity"), pl.col("invoice_id").alias("from_id"),
        pl.lit("payment").alias("to_entity"), pl.col("id").alias("to_id"), "rule_id", "confidence", "runner_up_id",
        # a discovered reference keeps the field it was found in and the value; a fee the payment is net of
        # (bank charges, PSP fee: the gross is applied) is named
        "margin", pl.concat_str(
            pl.when(pl.col("rule_id") == pl.col("ref_rule")).then(
                pl.format("rule={} found in {}", "rule_id", pl.col("ref_evidence").fill_null("-")))
            .otherwise(pl.format("rule={}", "rule_id")),
            pl.col("note").fill_null(""),
            pl.when(pl.col("fee") > 0).then(pl.format(" fee={} {} (gross applied)", pl.col("fee").round(2).cast(pl.Decimal(38, 2)), "pccy"))
            .otherwise(pl.lit("")),
        ).alias("evidence"),
    ), act_pay.filter(pl.col("settlement_ref").is_not_null()).select(
        pl.lit(None, pl.String).alias("chain_id"), pl.lit("payment").alias("from_entity"), pl.col("id").alias("from_id"),
        pl.lit("settlement").alias("to_entity"), pl.col("settlement_ref").alias("to_id"),
        pl.lit("payment.settlement_ref").alias("rule_id"), pl.lit(Decimal(1), RATE).alias("confidence"),
        pl.lit(None, pl.String).alias("runner_up_id"), pl.lit(None, MONEY).alias("margin"),
        pl.format("fee={}", pl.col("fee").cast(pl.String).fill_null("0")).alias("evidence"),
    )]
    return Payments(pay=pay, act_pay=act_pay, alloc=alloc, bal=bal, ambiguous=amb_all, links=links)


def subset_sum(pays: pl.DataFrame, pools: pl.DataFrame, s: Settings) -> tuple[list[tuple[str, str, int]], list[tuple[str, list[str]]]]:
    """Unique subsets (2..max_subset_invoices) of a pool's open invoices that sum to the payment."""
    by_pool: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    need = pays.select("pool").unique()
    for row in pools.join(need, on="pool").select("pool", "invoice_id", "residual", "currency", "due_date").iter_rows():
        by_pool[row[0]].append(row[1:])
    found: list[tuple[str, str, int]] = []
    ambiguous: list[tuple[str, list[str]]] = []
    tol_abs, tol_rel = s.tolerance_abs, s.tolerance_rel
    for pid, pool, amount, ccy, pdate in pays.select("id", "pool", "amount", "currency", "pdate").sort("id").iter_rows():
        cands = [c for c in by_pool.get(pool, ()) if c[2] == ccy]
        if len(cands) < 2:
            continue
        cands.sort(key=lambda c: (abs((c[3] - pdate).days) if c[3] and pdate else 10**6, c[0]))
        cands = sorted(cands[: s.subset_pool_max], key=lambda c: c[0])
        tol_ = max(tol_abs, tol_rel * abs(amount))
        # every subset within tolerance; the strictly closest wins, equal best fits are ambiguous
        hits: list[tuple[Decimal, tuple[str, ...]]] = []
        exact = 0
        for k in range(2, min(s.max_subset_invoices, len(cands)) + 1):
            for combo in itertools.combinations(cands, k):
                diff = abs(sum((c[1] for c in combo), ZERO) - amount)
                if diff <= tol_:
                    hits.append((diff, tuple(c[0] for c in combo)))
                    exact += diff == 0
            if exact > 1:
                break
        if not hits:
            continue
        best = min(h[0] for h in hits)
        top = [h[1] for h in hits if h[0] == best]
        if len(top) == 1:
            found.extend((pid, inv, len(top[0])) for inv in top[0])
        else:
            ambiguous.append((pid, sorted({i for h in top for i in h})))
    return found, ambiguous

"""The frame-level reconciliation core: canonical frames in, chains/links/allocations/exceptions out.

Everything is set-based Polars on exact ``Decimal`` money; only the bounded subset-sum search
runs in Python, and only on the small residual of payments that no reference and no unique 1:1
amount explains (per customer pool, at most ``subset_pool_max`` open invoices, subsets of at most
``max_subset_invoices``). No decision depends on input order: candidates are counted, a link is
made only when it is unique both ways, and every tie becomes ``AMBIGUOUS_MATCH``. Where an order of
rows is needed (spreading one payment over several invoices) it is a data order (due date, number,
id), never the load order.

Passes:

1. Identity: account -> cluster (``cross_ref``); bank payer name -> cluster by normalized name.
2. Orders -> deals by ``deal_ref`` (rule ``order.deal_ref``), else by cluster + amount + date
   (``order.identity_amount``, unique both ways, runner-up and margin kept).
3. Invoices -> orders by ``order_ref``, else -> deals by ``deal_ref``.
4. Credit notes spread over the invoices of their order.
5. Payments: explicit references (``invoice_ref`` + invoice numbers found in the remittance), then
   ``deal_ref`` / customer pool 1:1 by amount (mutually unique), then bounded subset sum.
   FX: a payment in another currency is converted at the dated rate; the invoice's residual within
   ``fx_tolerance_rel`` becomes an explicit FX difference. Fees are kept per payment (gross applied).
6. Chain checks, exceptions, row states, and the conservation check (fails loudly).
"""

from __future__ import annotations

import itertools
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import polars as pl

from canonical.errors import LtcError
from reconcile import stages_delivery, stages_quote
from reconcile.codes import BASE_SEVERITY, fingerprint
from reconcile.frames import MONEY, RATE, Frames, days

ZERO = Decimal(0)
_ACTIVE_ORDER = ["draft", "quotation", "cancelled"]  # states that are not (yet / any more) an order
_INACTIVE_INVOICE = ["void", "draft"]
_INACTIVE_PAYMENT = ["failed", "canceled", "cancelled", "reversed"]
_NAME_SUFFIXES = r"\b(INC|INCORPORATED|CORP|CORPORATION|CO|COMPANY|LTD|LIMITED|LLC|GMBH|AG|SA|SARL|BV|PLC)\b"


class ConservationError(LtcError):
    """The reconciliation does not tie out: a row has no state or two, or sums differ."""

    exit_code = 3


@dataclass(frozen=True)
class Settings:
    """Tolerances and grace periods (from ``ltc.app.config.ReconcileConfig``) + the reporting currency."""

    tolerance_abs: Decimal = Decimal("0.01")
    tolerance_rel: Decimal = Decimal("0.001")
    fx_tolerance_rel: Decimal = Decimal("0.02")
    grace_days_won_not_ordered: int = 7
    grace_days_ordered_not_invoiced: int = 30
    grace_days_delivered_not_invoiced: int = 7
    grace_days_invoiced_not_delivered: int = 7
    max_subset_invoices: int = 6
    subset_pool_max: int = 14
    order_match_window_days: int = 120
    reporting_currency: str = "USD"

    @classmethod
    def from_config(cls, cfg: Any, reporting_currency: str | None = None) -> Settings:
        """From a ``Config`` (uses its ``reconcile`` and ``reporting_currency``) or a ``ReconcileConfig``."""
        rc = getattr(cfg, "reconcile", cfg)
        rep = reporting_currency or getattr(cfg, "reporting_currency", None) or "USD"
        names = {f for f in cls.__dataclass_fields__ if f != "reporting_currency"}
        kwargs = {n: getattr(rc, n) for n in names if getattr(rc, n, None) is not None}
        return cls(reporting_currency=rep, **kwargs)


@dataclass
class CoreResult:
    chains: pl.DataFrame
    links: pl.DataFrame
    allocations: pl.DataFrame
    invoice_balances: pl.DataFrame
    payment_balances: pl.DataFrame
    exceptions: pl.DataFrame
    states: pl.DataFrame
    totals: dict[str, Any]


class _Clock:
    """Section timings on stderr when LTC_RECON_PROFILE is set (benchmark tuning)."""

    def __init__(self) -> None:
        self.on = bool(os.environ.get("LTC_RECON_PROFILE"))
        self.t = time.perf_counter()
        self.cpu = time.process_time()

    def __call__(self, label: str) -> None:
        if self.on:
            now = time.perf_counter()
            import resource
            import sys

            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            cpu = time.process_time()
            print(f"  {label}: {now - self.t:.2f}s cpu={cpu - self.cpu:.2f}s peak_rss={rss}MB", file=sys.stderr)
            self.t, self.cpu = now, cpu


# --- small expression helpers ---------------------------------------------------------------------

def _m(v: Decimal | int | str) -> pl.Expr:
    return pl.lit(Decimal(v), dtype=MONEY)


def _norm(col: str | pl.Expr) -> pl.Expr:
    e = pl.col(col) if isinstance(col, str) else col
    return e.str.strip_chars().str.to_uppercase()


def normalize_name(col: str | pl.Expr) -> pl.Expr:
    """Upper-case, punctuation off, legal suffixes off, spaces collapsed: 'Acme, Inc.' == 'ACME INC'."""
    e = pl.col(col) if isinstance(col, str) else col
    return (
        e.str.to_uppercase()
        .str.replace_all(r"[^A-Z0-9 ]", " ")
        .str.replace_all(_NAME_SUFFIXES, " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def _tol(s: Settings, amount: pl.Expr, fx: pl.Expr | bool = False) -> pl.Expr:
    """max(abs tolerance, rel tolerance x |amount|); the FX relative tolerance where ``fx``."""
    rel = pl.lit(s.tolerance_rel, dtype=pl.Decimal(38, 6))
    base = pl.max_horizontal(_m(s.tolerance_abs), amount.abs() * rel).cast(MONEY)
    if fx is False:
        return base
    fx_e = pl.lit(True) if fx is True else fx
    fxt = pl.max_horizontal(_m(s.tolerance_abs), amount.abs() * pl.lit(s.fx_tolerance_rel, dtype=pl.Decimal(38, 6)))
    return pl.when(fx_e).then(fxt.cast(MONEY)).otherwise(base)


def _with_rate(df: pl.DataFrame, rates: pl.DataFrame, frm: str, to: str | pl.Expr, on: str,
               name: str = "rate") -> pl.DataFrame:
    """Attach the latest rate ``frm -> to`` dated on or before ``on`` (1 when equal, null if unknown).

    Row order is not kept (callers sort or aggregate); only rows whose currencies differ are joined.
    """
    to_e = (to if isinstance(to, pl.Expr) else pl.col(to)).alias("__to")
    same_mask = (pl.col(frm) == to_e).fill_null(False)
    same = df.filter(same_mask).with_columns(pl.lit(Decimal(1), dtype=RATE).alias(name))
    other = df.filter(~same_mask)
    if other.height == 0:
        return same
    if rates.height == 0:
        return pl.concat([same, other.with_columns(pl.lit(None, dtype=RATE).alias(name))])
    r = rates.select(pl.col("base").alias("__b"), pl.col("quote").alias("__q"), pl.col("rate_date").alias("__on"),
                     pl.col("rate").alias(name)).sort("__on")
    got = other.with_columns(to_e, pl.col(on).alias("__on")).sort("__on", nulls_last=True).join_asof(
        r, on="__on", by_left=[frm, "__to"], by_right=["__b", "__q"], strategy="backward", check_sortedness=False,
    ).drop("__to", "__on")
    return pl.concat([same, got.select(same.columns)])


def _conv(amount: str, rate: str) -> pl.Expr:
    return (pl.col(amount) * pl.col(rate)).round(2).cast(MONEY)


def _split(pairs: pl.DataFrame, payer: str, total: str, cap: str) -> pl.Expr:
    """Spread each payer's ``total`` over its targets in data order: caps first, remainder on the last.

    ``pairs`` must be sorted by payer then target order. Σ over a payer == its total (if >= 0).
    """
    # runs of equal payers are the groups (sorted), so no window: cumulative sum minus its value at the run's start
    first = pl.col(payer).ne_missing(pl.col(payer).shift(1))
    last = pl.col(payer).ne_missing(pl.col(payer).shift(-1))
    c = pl.col(cap).fill_null(0)
    upto = c.cum_sum() - c
    before = pl.when(pl.col(cap).is_not_null()).then(upto - pl.when(first).then(upto).forward_fill())
    remaining = (pl.col(total) - before).clip(lower_bound=0)
    return pl.when(last).then(remaining).otherwise(pl.min_horizontal(pl.col(cap), remaining)).cast(MONEY)


# --- the core ------------------------------------------------------------------------------------

# payments + invoices per bucket: bounds the intermediates' memory (~1 GB per bucket); smaller inputs run
# in one shot, where the partition pre-pass would cost more time than it saves memory
ROWS_PER_PARTITION = 200_000


def reconcile_frames(fr: Frames, s: Settings, as_of: date, partitions: int | None = None) -> CoreResult:
    """Reconcile the frames; large inputs run bucket by bucket (see :mod:`reconcile.partition`).

    ``partitions`` forces the number of buckets (1 = one shot); by default it grows with the input.
    The result does not depend on it.
    """
    rows = fr.payment.height + fr.invoice.height
    n = partitions if partitions is not None else 1 if rows <= 2 * ROWS_PER_PARTITION else -(-rows // ROWS_PER_PARTITION)
    if n <= 1:
        return reconcile_one(fr, s, as_of)
    from reconcile.partition import partitions as split

    clock = _Clock()
    results = []
    for part in split(fr, n):
        clock("partition")
        results.append(reconcile_one(part, s, as_of))
    return _merge(results)


def merge_totals(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The totals of several partitions' results as one run's totals."""
    totals: dict[str, Any] = {"rows": {}, "states": {}, "cash": {}, "exceptions": {}}
    for t in parts:
        for part in ("rows", "states", "exceptions"):
            for k, v in t[part].items():
                totals[part][k] = totals[part].get(k, 0) + v
        for ccy, c in t["cash"].items():
            acc = totals["cash"].setdefault(ccy, {})
            for k, v in c.items():
                acc[k] = str(Decimal(acc[k]) + Decimal(v)) if k in acc else v
    for part in ("states", "cash", "exceptions"):
        totals[part] = dict(sorted(totals[part].items()))
    return totals


def _merge(results: list[CoreResult]) -> CoreResult:
    def cat(name: str) -> pl.DataFrame:
        return pl.concat([getattr(r, name) for r in results], how="vertical_relaxed")

    return CoreResult(chains=cat("chains"), links=cat("links"), allocations=cat("allocations"),
                      invoice_balances=cat("invoice_balances"), payment_balances=cat("payment_balances"),
                      exceptions=cat("exceptions").sort(["code", "fingerprint"]), states=cat("states"),
                      totals=merge_totals([r.totals for r in results]))


def reconcile_one(fr: Frames, s: Settings, as_of: date) -> CoreResult:
    """One shot over all the frames (what each partition runs)."""
    clock = _Clock()
    ex_parts: list[pl.DataFrame] = []
    link_parts: list[pl.DataFrame] = []

    # 1. identity ------------------------------------------------------------------------------
    xref = fr.cross_ref.filter(pl.col("entity") == "account").select(
        pl.col("member_id").alias("account_id"), "cluster_id"
    ).unique("account_id", keep="first")
    acct = fr.account.join(xref, left_on="id", right_on="account_id", how="left").with_columns(
        pl.coalesce("cluster_id", "id").alias("cluster_id"), normalize_name("name").alias("nname")
    )
    cluster_owner = acct.filter(pl.col("owner").is_not_null()).group_by("cluster_id").agg(
        pl.col("owner").min().alias("cluster_owner")
    )
    # a name maps to its cluster when all accounts of that name are in one (only repeated names need counting)
    named = acct.filter(pl.col("nname").is_not_null() & (pl.col("nname") != "")).select(
        "nname", "cluster_id", (pl.len().over("nname") > 1).alias("rep"))
    name_to_cluster = pl.concat([
        named.filter(~pl.col("rep")).select("nname", pl.col("cluster_id").alias("name_cluster")),
        named.filter(pl.col("rep")).group_by("nname").agg(
            pl.col("cluster_id").n_unique().alias("n_cl"), pl.col("cluster_id").first().alias("name_cluster")
        ).filter(pl.col("n_cl") == 1).select("nname", "name_cluster"),
    ])

    def cluster_of(df: pl.DataFrame, col: str = "account_id") -> pl.DataFrame:
        return df.join(xref.rename({"account_id": col}), on=col, how="left").with_columns(
            pl.coalesce("cluster_id", col).alias("cluster_id")
        )

    clock("identity")
    # 2. deals and orders -------------------------------------------------------------------------
    deal = cluster_of(fr.deal).with_columns(_norm("source_id").alias("dkey"),
                                           (pl.col("stage") == "closed_won").alias("won"))
    # a reference resolves when exactly one deal has that source id (n_deals); lists only for the rare rest
    dkeys = deal.group_by("dkey").agg(pl.len().alias("n_deals"), pl.col("id").min().alias("did"))
    multi = deal.join(dkeys.filter(pl.col("n_deals") > 1).select("dkey"), on="dkey").group_by("dkey").agg(
        pl.col("id").sort().alias("dids"))
    unique_keys = dkeys.filter(pl.col("n_deals") == 1).select("dkey", pl.col("did").alias("ref_deal"))
    order = cluster_of(fr.order).with_columns(
        _norm("deal_ref").alias("dref"), (~pl.col("state").is_in(_ACTIVE_ORDER) | pl.col("state").is_null())
        .alias("active"), pl.coalesce("untaxed", "total").alias("net"),
    )
    order = order.join(dkeys, left_on="dref", right_on="dkey", how="left").with_columns(
        pl.col("n_deals").fill_null(0),
        pl.when(pl.col("n_deals") == 1).then(pl.col("did")).alias("deal_id"),
        pl.when(pl.col("n_deals") == 1).then(pl.lit("order.deal_ref")).alias("rule_id"),
    ).drop("did")
    ref_ambig = order.filter((pl.col("n_deals") > 1) & pl.col("active")).join(multi, left_on="dref", right_on="dkey")
    ex_parts.append(ref_ambig.select(
        pl.lit("AMBIGUOUS_MATCH").alias("code"), pl.lit(None, pl.String).alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list("id", "dids").alias("records"),
        "currency", pl.col("net").alias("amount"), pl.col("cluster_id"),
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
        ((pl.col("currency") == pl.col("dccy")) & (pl.col("diff") <= _tol(s, pl.col("damt")))
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
    link_parts.append(order.filter(pl.col("deal_id").is_not_null()).join(
        accepted.select("id", "runner_up_id", (pl.col("ru_diff") - pl.col("diff")).alias("margin")), on="id", how="left"
    ).select(
        pl.col("deal_id").alias("chain_id"), pl.lit("deal").alias("from_entity"), pl.col("deal_id").alias("from_id"),
        pl.lit("order").alias("to_entity"), pl.col("id").alias("to_id"), "rule_id",
        pl.when(pl.col("rule_id") == "order.deal_ref").then(pl.lit(Decimal(1), RATE)).otherwise(
            pl.lit(Decimal("0.8"), RATE)).alias("confidence"),
        "runner_up_id", pl.col("margin").cast(MONEY),
        pl.when(pl.col("rule_id") == "order.deal_ref").then(pl.format("deal_ref={}", "deal_ref"))
        .otherwise(pl.format("cluster={} amount={}", "cluster_id", "net")).alias("evidence"),
    ))
    ex_parts.append(order.join(amb_orders, on="id", how="inner").select(
        pl.lit("AMBIGUOUS_MATCH").alias("code"), pl.lit(None, pl.String).alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list(pl.col("id"), pl.col("cands")).alias("records"),
        "currency", pl.col("net").alias("amount"), "cluster_id",
        pl.format("order fits {} deals by customer and amount", pl.col("cands").list.len()).alias("detail"),
    ))
    amb_order_ids = amb_orders.select("id")
    ex_parts.append(order.filter(pl.col("deal_id").is_null() & pl.col("active") & (pl.col("n_deals") <= 1))
                    .join(amb_order_ids, on="id", how="anti").select(
        pl.lit("ORDER_WITHOUT_DEAL").alias("code"), pl.lit(None, pl.String).alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list(pl.col("id")).alias("records"),
        "currency", pl.col("total").alias("amount"), "cluster_id",
        pl.format("deal_ref={}", pl.col("deal_ref").fill_null("-")).alias("detail"),
    ))

    clock("orders")
    # 3. invoices ----------------------------------------------------------------------------------
    okeys = order.filter(pl.col("active")).with_columns(_norm("number").alias("okey")).group_by("okey").agg(
        pl.col("id").first().alias("order_id"), pl.len().alias("n_ord"),
        pl.col("deal_id").first().alias("o_deal"),
    )
    inv = cluster_of(fr.invoice).with_columns(
        _norm("order_ref").alias("oref"), _norm("deal_ref").alias("dref"), _norm("number").alias("ikey"),
        (~pl.col("status").is_in(_INACTIVE_INVOICE) | pl.col("status").is_null()).alias("active"),
        (pl.col("kind") == "credit_note").alias("is_credit"), pl.col("total").abs().alias("total"),
    )
    inv = inv.join(okeys, left_on="oref", right_on="okey", how="left").join(
        unique_keys,
        left_on="dref", right_on="dkey", how="left",
    ).with_columns(
        pl.when(pl.col("n_ord") == 1).then(pl.col("order_id")).alias("order_id"),
    ).with_columns(
        pl.coalesce(pl.when(pl.col("order_id").is_not_null()).then(pl.col("o_deal")), pl.col("ref_deal")).alias("chain_id"),
        pl.when(pl.col("order_id").is_not_null()).then(pl.lit("invoice.order_ref"))
        .when(pl.col("ref_deal").is_not_null()).then(pl.lit("invoice.deal_ref")).alias("rule_id"),
    ).drop("o_deal", "n_ord")
    link_parts.append(inv.filter(pl.col("rule_id").is_not_null()).select(
        "chain_id",
        pl.when(pl.col("order_id").is_not_null()).then(pl.lit("order")).otherwise(pl.lit("deal")).alias("from_entity"),
        pl.coalesce("order_id", "ref_deal").alias("from_id"), pl.lit("invoice").alias("to_entity"),
        pl.col("id").alias("to_id"), "rule_id", pl.lit(Decimal(1), RATE).alias("confidence"),
        pl.lit(None, pl.String).alias("runner_up_id"), pl.lit(None, MONEY).alias("margin"),
        pl.format("order_ref={} deal_ref={}", pl.col("order_ref").fill_null("-"), pl.col("deal_ref").fill_null("-"))
        .alias("evidence"),
    ))
    ex_parts.append(inv.filter(pl.col("active") & pl.col("rule_id").is_null()).select(
        pl.lit("INVOICE_WITHOUT_ORDER").alias("code"), pl.lit(None, pl.String).alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list(pl.col("id")).alias("records"),
        "currency", pl.col("total").alias("amount"), "cluster_id",
        pl.format("order_ref={}", pl.col("order_ref").fill_null("-")).alias("detail"),
    ))

    # duplicates: same order (or customer), amount, issue date, currency; first by number/id is the original
    bills = inv.filter(pl.col("active") & ~pl.col("is_credit")).with_columns(
        pl.coalesce("order_id", "cluster_id").alias("dk"))
    dgroups = bills.sort(["number", "id"]).group_by(["dk", "total", "issue_date", "currency"]).agg(
        pl.col("id").alias("ids"), pl.col("chain_id").first(), pl.col("cluster_id").first()
    ).filter(pl.col("ids").list.len() > 1)
    ex_parts.append(dgroups.select(
        pl.lit("DUPLICATE_INVOICE").alias("code"), "chain_id", pl.col("ids").list.sort().alias("keys"),
        pl.col("ids").list.sort().alias("records"), "currency",
        (pl.col("total") * (pl.col("ids").list.len() - 1)).cast(MONEY).alias("amount"), "cluster_id",
        pl.format("{} invoices of {} on {}", pl.col("ids").list.len(), "total", "issue_date").alias("detail"),
    ))
    dup_ids = dgroups.select(pl.col("ids").list.slice(1).alias("id")).explode("id")
    inv = inv.with_columns(pl.col("id").is_in(dup_ids["id"].implode()).alias("is_dup"))
    targets = inv.filter(pl.col("active") & ~pl.col("is_credit") & ~pl.col("is_dup"))
    # quotes, contracts, deliveries (reconcile/stages_*.py)
    stage_ex, stage_links = stages_quote.check(fr.quote, fr.quote_line, fr.contract, deal, fr.deal_line, order, s)
    del_ex, del_links = stages_delivery.check(fr.delivery, order, inv, s, as_of)
    ex_parts += stage_ex + del_ex
    link_parts += stage_links + del_links

    clock("invoices")
    # 4. credit notes over their order's (or chain's) invoices --------------------------------------
    credits = inv.filter(pl.col("active") & pl.col("is_credit") & pl.col("chain_id").is_not_null())
    cpairs = credits.select(pl.col("id").alias("cn"), pl.col("total").alias("cn_total"), "order_id", "chain_id").join(
        targets.select(pl.col("id").alias("invoice_id"), "order_id", "chain_id", "due_date", "number", "total"),
        on=["chain_id"], how="inner",
    ).filter(pl.col("order_id").is_null() | pl.col("order_id_right").is_null()
             | (pl.col("order_id") == pl.col("order_id_right"))).sort(["cn", "due_date", "number", "invoice_id"])
    cpairs = cpairs.with_columns(_split(cpairs, "cn", "cn_total", "total").alias("credit"))
    credit_by_inv = cpairs.group_by("invoice_id").agg(pl.col("credit").sum().alias("credited"))
    credit_applied = cpairs.group_by("cn").agg(pl.col("credit").sum().alias("applied"))

    clock("credits")
    # 5. payments ----------------------------------------------------------------------------------
    pay = fr.payment.with_columns(
        (~pl.col("status").is_in(_INACTIVE_PAYMENT) | pl.col("status").is_null()).alias("active"),
        pl.when(pl.col("kind") == "refund").then(-1).otherwise(1).alias("sign"),
        pl.col("amount").abs().alias("amount"), normalize_name("payer_name").alias("nname"),
        pl.coalesce("payment_date", pl.lit(as_of)).alias("pdate"),
    )
    pay = cluster_of(pay).join(name_to_cluster, on="nname", how="left").with_columns(
        pl.when(pl.col("account_id").is_null()).then(pl.col("name_cluster")).otherwise(pl.col("cluster_id"))
        .alias("cluster_id")
    ).drop("name_cluster")
    pay = pay.join(unique_keys,
                   left_on=_norm("deal_ref"), right_on="dkey", how="left")
    act_pay = pay.filter(pl.col("active"))
    # explicit invoice references: invoice_ref + tokens of the remittance text that are invoice numbers
    tokens = pl.concat([
        act_pay.select("id", _norm("invoice_ref").alias("tok")),
        act_pay.select("id", pl.col("remittance").str.to_uppercase().str.extract_all(r"[A-Z0-9][A-Z0-9_/\-]+")
                       .alias("tok")).explode("tok"),
    ]).drop_nulls()
    ref_inv = targets.select(pl.col("id").alias("invoice_id"), "ikey", "due_date", "number", "total", "currency",
                             pl.col("chain_id").alias("inv_chain"))
    xpairs = tokens.join(ref_inv, left_on="tok", right_on="ikey", how="inner").unique(["id", "invoice_id"]).join(
        act_pay.select("id", "amount", pl.col("currency").alias("pccy"), "pdate", "sign"), on="id"
    )
    xpairs = _with_rate(xpairs, fr.fx_rate, "pccy", "currency", "pdate", "rate")
    xpairs = _with_rate(xpairs, fr.fx_rate, "currency", "pccy", "pdate", "inv_rate")
    xpairs = xpairs.filter(pl.col("rate").is_not_null() & pl.col("inv_rate").is_not_null()).with_columns(
        _conv("total", "inv_rate").alias("cap_p")
    ).sort(["id", "due_date", "number", "invoice_id"])
    xpairs = xpairs.with_columns(_split(xpairs, "id", "amount", "cap_p").alias("payment_amount"),
                                 pl.lit("payment.invoice_ref").alias("rule_id"))
    explicit_ids = xpairs.select("id").unique()

    # invoices' residual before heuristics
    def balances(allocs: pl.DataFrame) -> pl.DataFrame:
        paid = allocs.select("invoice_id", "signed", (pl.col("rate") != 1).alias("fx")).group_by("invoice_id").agg(
            pl.col("signed").sum().alias("paid"), pl.col("fx").max())  # any() (never null); max() is faster
        return targets.select(pl.col("id").alias("invoice_id"), "total").join(credit_by_inv, on="invoice_id", how="left").join(
            paid, on="invoice_id", how="left"
        ).with_columns(pl.col("credited").fill_null(ZERO).cast(MONEY), pl.col("paid").fill_null(ZERO).cast(MONEY),
                       pl.col("fx").fill_null(False)).with_columns(
            (pl.col("total") - pl.col("credited") - pl.col("paid")).cast(MONEY).alias("residual")
        )

    def finish(p: pl.DataFrame) -> pl.DataFrame:
        return p.with_columns(
            pl.when(pl.col("rate") == 1).then(pl.col("payment_amount")).otherwise(_conv("payment_amount", "rate"))
            .alias("amount_inv")
        ).with_columns((pl.col("amount_inv") * pl.col("sign")).cast(MONEY).alias("signed")).select(
            pl.col("id").alias("payment_id"), "invoice_id", "rule_id", "currency", "amount_inv", "pccy",
            "payment_amount", "rate", "signed",
        )

    clock("explicit refs")
    alloc_x = finish(xpairs)
    bal0 = balances(alloc_x)

    clock("balances0")
    # heuristics on the rest: pool = chain (deal_ref) or customer cluster
    rest = act_pay.join(explicit_ids, on="id", how="anti").filter(pl.col("sign") == 1)
    rest = rest.with_columns(
        pl.when(pl.col("ref_deal").is_not_null()).then(pl.format("chain:{}", "ref_deal"))
        .when(pl.col("cluster_id").is_not_null()).then(pl.format("cl:{}", "cluster_id")).alias("pool")
    )
    open_inv = targets.join(bal0.select("invoice_id", "residual"), left_on="id", right_on="invoice_id").filter(
        pl.col("residual") > _tol(s, pl.col("total"))
    )
    pools = pl.concat([
        open_inv.filter(pl.col("chain_id").is_not_null()).select(pl.format("chain:{}", "chain_id").alias("pool"),
                                                                 pl.col("id").alias("invoice_id"), "residual", "total",
                                                                 "currency", "due_date", "number"),
        open_inv.filter(pl.col("cluster_id").is_not_null()).select(pl.format("cl:{}", "cluster_id").alias("pool"),
                                                                   pl.col("id").alias("invoice_id"), "residual", "total",
                                                                   "currency", "due_date", "number"),
    ])
    hp = rest.filter(pl.col("pool").is_not_null()).select(
        "id", "pool", "amount", pl.col("currency").alias("pccy"), "pdate", "sign"
    ).join(pools, on="pool", how="inner")
    hp = _with_rate(hp, fr.fx_rate, "pccy", "currency", "pdate", "rate")
    hp = _with_rate(hp, fr.fx_rate, "currency", "pccy", "pdate", "inv_rate")
    hp = hp.filter(pl.col("rate").is_not_null() & pl.col("inv_rate").is_not_null()).with_columns(
        _conv("amount", "rate").alias("conv")
    ).with_columns((pl.col("conv") - pl.col("residual")).abs().alias("diff"))
    hp = hp.with_columns((pl.col("diff") <= _tol(s, pl.col("residual"), pl.col("pccy") != pl.col("currency"))).alias("ok"))
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
        .otherwise(pl.lit("payment.customer_amount")).alias("rule_id"), pl.col("amount").alias("payment_amount"),
    )
    clock("h1")
    # H2: bounded subset sum over the residual (same currency only)
    tried = pl.concat([h1.select("id"), amb_p.select("id")]).unique()
    taken = h1.select("invoice_id").unique()
    sub_pay = rest.filter(pl.col("pool").is_not_null()).join(tried, on="id", how="anti")
    sub_pools = pools.join(taken, on="invoice_id", how="anti")
    h2_rows, h2_amb = _subset_sum(sub_pay, sub_pools, s)
    h2 = pl.DataFrame(h2_rows, schema={"id": pl.String, "invoice_id": pl.String, "k": pl.Int64}, orient="row")
    # an invoice claimed by two payments' unique subsets is ambiguous for both
    clash = h2.group_by("invoice_id").agg(pl.col("id").n_unique().alias("n")).filter(pl.col("n") > 1)
    clash_pay = h2.join(clash, on="invoice_id").select("id").unique()
    h2 = h2.join(clash_pay, on="id", how="anti")
    h2 = h2.join(sub_pay.select("id", "amount", pl.col("currency").alias("pccy"), "sign", "pool"), on="id").join(
        sub_pools.select("pool", "invoice_id", "residual", "currency", "due_date", "number"), on=["pool", "invoice_id"]
    ).with_columns(pl.lit(Decimal(1), RATE).alias("rate")).sort(["id", "due_date", "number", "invoice_id"])
    h2 = h2.with_columns(_split(h2, "id", "amount", "residual").alias("payment_amount"),
                         pl.lit("payment.subset_sum").alias("rule_id"))
    amb_all = pl.concat([
        amb_p.select("id", "cands", pl.lit("payment fits several invoices 1:1 by amount").alias("detail")),
        pl.DataFrame(h2_amb, schema={"id": pl.String, "cands": pl.List(pl.String)}, orient="row").with_columns(
            pl.lit("several invoice subsets sum to the payment").alias("detail")),
        clash_pay.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("cands"),
                               pl.lit("two payments claim the same invoices").alias("detail")),
    ]).unique("id", keep="first")

    clock("h2")
    alloc = pl.concat([alloc_x, finish(h1_alloc), finish(h2)])
    bal = balances(alloc)

    # payment links with evidence, runner-up and margin
    link_parts.append(pl.concat([
        xpairs.select("id", "invoice_id", "rule_id", pl.lit(Decimal(1), RATE).alias("confidence"),
                      pl.lit(None, pl.String).alias("runner_up_id"), pl.lit(None, MONEY).alias("margin")),
        h1_alloc.select("id", "invoice_id", "rule_id", pl.lit(Decimal("0.9"), RATE).alias("confidence"), "runner_up_id",
                        (pl.col("ru_diff") - pl.col("diff")).cast(MONEY).alias("margin")),
        h2.select("id", "invoice_id", "rule_id", pl.lit(Decimal("0.8"), RATE).alias("confidence"),
                  pl.lit(None, pl.String).alias("runner_up_id"), pl.lit(None, MONEY).alias("margin")),
    ]).join(inv.select(pl.col("id").alias("invoice_id"), "chain_id"), on="invoice_id", how="left").select(
        "chain_id", pl.lit("invoice").alias("from_entity"), pl.col("invoice_id").alias("from_id"),
        pl.lit("payment").alias("to_entity"), pl.col("id").alias("to_id"), "rule_id", "confidence", "runner_up_id",
        "margin", pl.format("rule={}", "rule_id").alias("evidence"),
    ))
    link_parts.append(act_pay.filter(pl.col("settlement_ref").is_not_null()).select(
        pl.lit(None, pl.String).alias("chain_id"), pl.lit("payment").alias("from_entity"), pl.col("id").alias("from_id"),
        pl.lit("settlement").alias("to_entity"), pl.col("settlement_ref").alias("to_id"),
        pl.lit("payment.settlement_ref").alias("rule_id"), pl.lit(Decimal(1), RATE).alias("confidence"),
        pl.lit(None, pl.String).alias("runner_up_id"), pl.lit(None, MONEY).alias("margin"),
        pl.format("fee={}", pl.col("fee").cast(pl.String).fill_null("0")).alias("evidence"),
    ))

    clock("pay links")
    # payment balances and unapplied cash
    applied = alloc.group_by("payment_id").agg(pl.col("payment_amount").sum().alias("applied"))
    pbal = act_pay.select(pl.col("id").alias("payment_id"), "amount", "currency", "sign", "fee", "cluster_id",
                          "ref_deal", "pdate").join(applied, on="payment_id", how="left").with_columns(
        pl.col("applied").fill_null(ZERO).cast(MONEY)
    ).with_columns((pl.col("amount") - pl.col("applied")).cast(MONEY).alias("unapplied"))
    amb_ids = amb_all.select(pl.col("id").alias("payment_id"))
    unapplied = pbal.filter(pl.col("unapplied") > _tol(s, pl.col("amount"))).join(amb_ids, on="payment_id", how="anti")
    ex_parts.append(pbal.join(amb_all.rename({"id": "payment_id"}), on="payment_id").select(
        pl.lit("AMBIGUOUS_MATCH").alias("code"), pl.col("ref_deal").alias("chain_id"),
        pl.concat_list(pl.col("payment_id")).alias("keys"), pl.concat_list("payment_id", "cands").alias("records"),
        "currency", pl.col("unapplied").alias("amount"), "cluster_id", "detail",
    ))
    ex_parts.append(unapplied.select(
        pl.lit("UNAPPLIED_PAYMENT").alias("code"), pl.col("ref_deal").alias("chain_id"),
        pl.concat_list(pl.col("payment_id")).alias("keys"), pl.concat_list(pl.col("payment_id")).alias("records"),
        "currency", pl.col("unapplied").alias("amount"), "cluster_id",
        pl.format("{} {} matches no invoice", "unapplied", "currency").alias("detail"),
    ))

    clock("pay balances")
    # invoice settlement
    last_alloc = alloc.select("invoice_id", "payment_id").join(pbal.select("payment_id", "pdate"), on="payment_id")
    last_alloc = last_alloc.filter(pl.col("pdate") == pl.col("pdate").max().over("invoice_id")).group_by(
        "invoice_id").agg(pl.col("payment_id").max())
    ib = bal.join(targets.select(pl.col("id").alias("invoice_id"), "due_date", "issue_date", "currency", "chain_id",
                                 "cluster_id", "order_id"), on="invoice_id").with_columns(
        (pl.col("residual").abs() <= _tol(s, pl.col("total"))).alias("in_tol"),
        (pl.col("fx") & (pl.col("residual").abs() <= _tol(s, pl.col("total"), True))).alias("in_fx_tol"),
        days(pl.col("due_date"), as_of).alias("days_past_due"),
    ).with_columns(
        pl.when(pl.col("in_fx_tol") & pl.col("fx")).then(pl.col("residual")).alias("fx_difference"),
        pl.when(pl.col("in_tol") & ~pl.col("fx")).then(pl.col("residual")).alias("writeoff"),
        (pl.col("in_tol") | pl.col("in_fx_tol")).alias("settled"),
    ).with_columns(
        pl.when(pl.col("settled")).then(_m(0)).otherwise(pl.col("residual")).cast(MONEY).alias("open_amount"),
        pl.when(pl.col("days_past_due") <= 0).then(pl.lit("current")).when(pl.col("days_past_due") <= 30)
        .then(pl.lit("1-30")).when(pl.col("days_past_due") <= 60).then(pl.lit("31-60"))
        .when(pl.col("days_past_due") <= 90).then(pl.lit("61-90")).otherwise(pl.lit("90+")).alias("bucket"),
    )
    past_due = pl.col("days_past_due") > 0
    ex_parts.append(ib.filter(~pl.col("settled") & (pl.col("paid") == 0) & (pl.col("credited") == 0) & past_due).select(
        pl.lit("INVOICE_OVERDUE").alias("code"), "chain_id", pl.concat_list(pl.col("invoice_id")).alias("keys"),
        pl.concat_list(pl.col("invoice_id")).alias("records"), "currency", pl.col("residual").alias("amount"),
        "cluster_id", pl.format("{} days past due, bucket {}", "days_past_due", "bucket").alias("detail"),
    ))
    mism = ib.filter(~pl.col("settled") & ((pl.col("residual") < 0) | (((pl.col("paid") != 0) | (pl.col("credited") != 0)) & past_due)))
    mism_pays = alloc.select("invoice_id", "payment_id").join(mism.select("invoice_id"), on="invoice_id", how="semi")
    ex_parts.append(mism.join(mism_pays.group_by("invoice_id").agg(pl.col("payment_id").sort()), on="invoice_id", how="left")
                    .select(
        pl.lit("PAYMENT_MISMATCH").alias("code"), "chain_id", pl.concat_list(pl.col("invoice_id")).alias("keys"),
        pl.concat_list(pl.col("invoice_id"), pl.col("payment_id").fill_null([])).alias("records"), "currency",
        pl.col("residual").abs().alias("amount"), "cluster_id",
        pl.when(pl.col("residual") < 0).then(pl.format("overpaid by {}", pl.col("residual").abs()))
        .otherwise(pl.format("short paid by {}, {} days past due", "residual", "days_past_due")).alias("detail"),
    ))

    clock("invoice settlement")
    # 6. chains ----------------------------------------------------------------------------------
    won = deal.filter(pl.col("won"))
    act_orders = order.filter(pl.col("active") & pl.col("deal_id").is_not_null())
    act_orders = _with_rate(act_orders, fr.fx_rate, "currency", "deal_ccy", "order_date", "to_deal")
    per_chain = act_orders.select(
        "deal_id", pl.col("to_deal").is_null().alias("no_rate"),
        (pl.col("currency") != pl.col("deal_ccy")).alias("ccy_differs"),
        pl.when(pl.col("to_deal").is_not_null()).then(_conv("net", "to_deal")).alias("ordered_deal_ccy"),
        (pl.col("cluster_id") != pl.col("deal_cluster")).fill_null(True).alias("other_customer"),
    ).group_by("deal_id").agg(
        pl.len().alias("n_orders"), pl.col("no_rate").max(), pl.col("ccy_differs").max(),
        pl.col("ordered_deal_ccy").sum().cast(MONEY), pl.col("other_customer").max(),
    ).with_columns(pl.col("ccy_differs").fill_null(False))  # any() of the group; max() is its fast form
    ch = won.join(per_chain, left_on="id", right_on="deal_id", how="left").with_columns(
        pl.col("n_orders").fill_null(0), days(pl.col("close_date"), as_of).alias("age")
    )
    ch_flag = (pl.col("n_orders") > 0) & ((pl.col("ccy_differs") & pl.col("no_rate")) | pl.col("other_customer"))
    amt_ok = (pl.col("ordered_deal_ccy") - pl.col("amount")).abs() <= _tol(s, pl.col("amount"), pl.col("ccy_differs"))
    amt_bad = (pl.col("n_orders") > 0) & ~pl.col("no_rate") & pl.col("amount").is_not_null() & ~amt_ok
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
    ex_parts.append(flagged.filter((pl.col("n_orders") > 0) & pl.col("ccy_differs") & pl.col("no_rate")).select(
        pl.lit("CURRENCY_MISMATCH").alias("code"), pl.col("id").alias("chain_id"), pl.concat_list(pl.col("id")).alias("keys"),
        pl.concat_list(pl.col("id"), pl.col("order_ids")).alias("records"), "currency", "amount", "cluster_id",
        pl.lit("order currency differs from the deal's and no FX rate explains it").alias("detail"),
    ))
    ex_parts.append(flagged.filter(amt_bad).select(
        pl.lit("AMOUNT_MISMATCH").alias("code"), pl.col("id").alias("chain_id"), pl.concat_list(pl.col("id")).alias("keys"),
        pl.concat_list(pl.col("id"), pl.col("order_ids")).alias("records"), "currency",
        (pl.col("ordered_deal_ccy") - pl.col("amount")).abs().alias("amount"), "cluster_id",
        pl.format("deal {} vs ordered {}", "amount", "ordered_deal_ccy").alias("detail"),
    ))
    ex_parts.append(flagged.filter((pl.col("n_orders") > 0) & pl.col("other_customer")).select(
        pl.lit("CUSTOMER_MISMATCH").alias("code"), pl.col("id").alias("chain_id"), pl.concat_list(pl.col("id")).alias("keys"),
        pl.concat_list(pl.col("id"), pl.col("order_ids")).alias("records"), "currency", pl.lit(None, MONEY).alias("amount"),
        "cluster_id", pl.lit("order customer is not the deal's customer").alias("detail"),
    ))
    clock("chain checks")
    # lines: per chain and product, quantities and amounts must agree (same-currency chains)
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
                   | ((pl.col("da") - pl.col("oa")).abs() > _tol(s, pl.col("da")))).group_by("chain").agg(
        pl.col("product_code").sort().alias("products"),
        (pl.col("da").fill_null(ZERO) - pl.col("oa").fill_null(ZERO)).abs().sum().cast(MONEY).alias("diff"))
    ex_parts.append(lm.join(ch.select(pl.col("id").alias("chain"), "currency", "cluster_id"), on="chain").select(
        pl.lit("LINE_MISMATCH").alias("code"), pl.col("chain").alias("chain_id"), pl.concat_list(pl.col("chain")).alias("keys"),
        pl.concat_list(pl.col("chain")).alias("records"), "currency", pl.col("diff").alias("amount"), "cluster_id",
        pl.format("products differ: {}", pl.col("products").list.join(",")).alias("detail"),
    ))
    clock("lines")
    # invoiced vs ordered per order of a won chain (duplicates excluded; credit notes net)
    inv_o = inv.filter(pl.col("active") & ~pl.col("is_dup") & pl.col("order_id").is_not_null()).join(
        order.select(pl.col("id").alias("order_id"), pl.col("currency").alias("occy")), on="order_id")
    inv_o = _with_rate(inv_o, fr.fx_rate, "currency", "occy", "issue_date", "to_o").with_columns(
        (_conv("total", "to_o") * pl.when(pl.col("is_credit")).then(-1).otherwise(1)).cast(MONEY).alias("net_o"))
    invoiced = inv_o.select("order_id", "net_o", pl.when(~pl.col("is_credit")).then(pl.col("net_o")).alias("g")).group_by(
        "order_id").agg(pl.col("net_o").sum().cast(MONEY).alias("invoiced"), pl.col("g").sum().cast(MONEY).alias("gross"))
    oc = act_orders.filter(pl.col("deal_won")).join(invoiced, left_on="id", right_on="order_id", how="left").with_columns(
        pl.col("invoiced").fill_null(ZERO).cast(MONEY), pl.col("gross").fill_null(ZERO).cast(MONEY),
        days(pl.col("order_date"), as_of).alias("age"))
    # not invoiced: gross billing short of the order; over-invoiced: net of credit notes above it
    gap = (pl.col("total") - pl.col("gross")).cast(MONEY)
    excess = (pl.col("invoiced") - pl.col("total")).cast(MONEY)
    oc = oc.filter(((gap > _tol(s, pl.col("total"))) & (pl.col("age") > s.grace_days_ordered_not_invoiced))
                   | (excess > _tol(s, pl.col("total"))))
    oc = oc.join(inv_o.select("order_id", "id").join(oc.select(pl.col("id").alias("order_id")), on="order_id",
                                                     how="semi").group_by("order_id").agg(
        pl.col("id").sort().alias("inv_ids")), left_on="id", right_on="order_id", how="left").with_columns(
        pl.col("inv_ids").fill_null([]))
    ex_parts.append(oc.filter((gap > _tol(s, pl.col("total"))) & (pl.col("age") > s.grace_days_ordered_not_invoiced))
                    .select(
        pl.lit("ORDERED_NOT_INVOICED").alias("code"), pl.col("deal_id").alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list(pl.col("id"), pl.col("inv_ids")).alias("records"),
        "currency", gap.alias("amount"), "cluster_id",
        pl.format("ordered {} invoiced {} after {} days", "total", "invoiced", "age").alias("detail"),
    ))
    ex_parts.append(oc.filter(excess > _tol(s, pl.col("total"))).select(
        pl.lit("OVER_INVOICED").alias("code"), pl.col("deal_id").alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"), pl.concat_list(pl.col("id"), pl.col("inv_ids")).alias("records"),
        "currency", excess.alias("amount"), "cluster_id",
        pl.format("ordered {} invoiced {}", "total", "invoiced").alias("detail"),
    ))
    clock("invoiced vs ordered")
    # stage conflicts: a deal that is not won but invoiced or paid
    lost_inv = inv.filter(pl.col("active") & pl.col("chain_id").is_not_null()).select("chain_id", "id", "total")
    lost_pay = pay.filter(pl.col("active") & pl.col("ref_deal").is_not_null()).select(
        pl.col("ref_deal").alias("chain_id"), "id", "amount")
    sc = pl.concat([lost_inv.rename({"total": "amount"}), lost_pay]).join(
        deal.filter(~pl.col("won")).select(pl.col("id").alias("chain_id"), "stage", "currency", "cluster_id"),
        on="chain_id").group_by("chain_id").agg(pl.col("id").sort().alias("ids"), pl.col("stage").first(),
                                                pl.col("currency").first(), pl.col("cluster_id").first())
    sc = sc.join(inv.filter(pl.col("active") & ~pl.col("is_credit")).group_by("chain_id").agg(
        pl.col("total").sum().alias("billed")), on="chain_id", how="left")
    ex_parts.append(sc.select(
        pl.lit("STAGE_CONFLICT").alias("code"), "chain_id", pl.concat_list(pl.col("chain_id")).alias("keys"),
        pl.concat_list(pl.col("chain_id"), pl.col("ids")).alias("records"), "currency",
        pl.col("billed").cast(MONEY).alias("amount"), "cluster_id",
        pl.format("deal stage {} but invoiced or paid", "stage").alias("detail"),
    ))
    # customers whose members disagree on tax id / country, or with two records in one system
    # (a single-account cluster can disagree with nobody: only clusters of several accounts are counted)
    cm = acct.filter(pl.len().over("cluster_id") > 1).with_columns(pl.col("tax_id").str.replace_all(r"[\s\-.]", "").str.to_uppercase().alias("tax"),
                           pl.col("country").str.to_uppercase().alias("cty")).group_by("cluster_id").agg(
        pl.col("tax").drop_nulls().n_unique().alias("n_tax"), pl.col("cty").drop_nulls().n_unique().alias("n_cty"),
        (pl.col("source_system").len() - pl.col("source_system").n_unique()).alias("dups"))
    cm = cm.filter((pl.col("n_tax") > 1) | (pl.col("n_cty") > 1) | (pl.col("dups") > 0))
    cm = cm.join(acct.select("cluster_id", "id").join(cm.select("cluster_id"), on="cluster_id", how="semi").group_by(
        "cluster_id").agg(pl.col("id").sort().alias("ids")), on="cluster_id", how="left")
    ex_parts.append(cm.select(
        pl.lit("CUSTOMER_MISMATCH").alias("code"), pl.lit(None, pl.String).alias("chain_id"),
        pl.concat_list(pl.col("cluster_id")).alias("keys"), pl.col("ids").alias("records"),
        pl.lit(None, pl.String).alias("currency"), pl.lit(None, MONEY).alias("amount"), "cluster_id",
        pl.format("tax ids {}, countries {}, same-system duplicates {}", "n_tax", "n_cty", "dups").alias("detail"),
    ))

    clock("stage+customer")
    exceptions = _finish_exceptions(ex_parts, deal, cluster_owner, ib, fr, s, as_of)

    clock("finish exceptions")
    # allocations (with the settling residual on each invoice's last allocation)
    allocations = alloc.join(last_alloc.with_columns(pl.lit(True).alias("is_last")), on=["invoice_id", "payment_id"],
                             how="left").join(ib.select("invoice_id", "fx_difference", "writeoff"), on="invoice_id",
                                              how="left").select(
        "payment_id", "invoice_id", "rule_id", "currency", pl.col("signed").alias("amount"),
        pl.col("pccy").alias("payment_currency"), "payment_amount",
        pl.col("rate").alias("fx_rate"),
        pl.when(pl.col("is_last")).then(pl.col("fx_difference")).alias("fx_difference"),
        pl.when(pl.col("is_last")).then(pl.col("writeoff")).alias("writeoff"),
    )
    links = pl.concat(link_parts, how="vertical_relaxed")

    clock("alloc+links out")
    states = _states(fr, deal, order, inv, act_pay, pay, ib, pbal, exceptions, s)
    clock("states")
    chains = ch.select(
        pl.col("id").alias("chain_id"), "owner", "currency", "amount", "close_date", "n_orders",
    ).join(ib.group_by("chain_id").agg(pl.col("total").sum().alias("invoiced"), pl.col("paid").sum().alias("paid"),
                                       pl.col("open_amount").sum().alias("open_ar")), on="chain_id", how="left")
    chains = chains.join(stages_quote.chain_columns(fr.quote, fr.contract, stage_links), on="chain_id", how="left").join(
        stages_delivery.chain_columns(del_links, fr.delivery), on="chain_id", how="left")
    totals = _conservation(fr, inv, targets, credits, credit_applied, act_pay, pbal, alloc, ib, exceptions, states)
    clock("conservation")
    # Row order of the frames is unspecified (content is order-independent); exceptions are sorted.
    return CoreResult(chains=chains, links=links, allocations=allocations,
                      invoice_balances=ib, payment_balances=pbal,
                      exceptions=exceptions, states=states, totals=totals)


def _subset_sum(pays: pl.DataFrame, pools: pl.DataFrame, s: Settings) -> tuple[list[tuple[str, str, int]], list[tuple[str, list[str]]]]:
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
        tol = max(tol_abs, tol_rel * abs(amount))
        # every subset within tolerance; the strictly closest wins, equal best fits are ambiguous
        hits: list[tuple[Decimal, tuple[str, ...]]] = []
        exact = 0
        for k in range(2, min(s.max_subset_invoices, len(cands)) + 1):
            for combo in itertools.combinations(cands, k):
                diff = abs(sum((c[1] for c in combo), ZERO) - amount)
                if diff <= tol:
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


def _finish_exceptions(parts: list[pl.DataFrame], deal: pl.DataFrame, cluster_owner: pl.DataFrame,
                       ib: pl.DataFrame, fr: Frames, s: Settings, as_of: date) -> pl.DataFrame:
    cols = ["code", "chain_id", "keys", "records", "currency", "amount", "cluster_id", "detail"]
    ex = pl.concat([p.select(cols).with_columns(pl.col("amount").cast(MONEY)) for p in parts], how="vertical_relaxed")
    ex = ex.join(deal.select(pl.col("id").alias("chain_id"), pl.col("owner").alias("deal_owner"),
                             pl.col("currency").alias("chain_ccy")), on="chain_id", how="left")
    ex = ex.join(cluster_owner, on="cluster_id", how="left").with_columns(
        pl.coalesce("deal_owner", "cluster_owner").alias("owner"),
    )
    ex = _with_rate(ex.with_columns(pl.lit(as_of).alias("as_of")), fr.fx_rate, "currency",
                    pl.lit(s.reporting_currency), "as_of", "rep_rate")
    ex = ex.with_columns(
        pl.lit(s.reporting_currency).alias("reporting_currency"),
        pl.when(pl.col("rep_rate").is_not_null()).then(_conv("amount", "rep_rate")).alias("amount_reporting"),
    )
    overdue_bucket = ib.select(pl.concat_list(pl.col("invoice_id")).alias("keys"), "bucket")
    ex = ex.join(overdue_bucket, on="keys", how="left")
    big = pl.col("amount_reporting") >= _m(100000)
    base = pl.col("code").replace_strict(BASE_SEVERITY, default="medium")
    sev = (pl.when(pl.col("code") == "INVOICE_OVERDUE").then(
        pl.col("bucket").replace_strict({"1-30": "low", "31-60": "medium", "61-90": "high", "90+": "critical"},
                                        default="medium"))
        .when(big.fill_null(False)).then(pl.lit("critical"))
        .when(pl.col("code") == "INVOICED_NOT_DELIVERED").then(
            stages_delivery.severity(pl.col("amount_reporting"), pl.col("amount")))
        .otherwise(base))
    ex = ex.with_columns(sev.alias("severity"), pl.col("keys").list.sort(), pl.col("records").list.unique().list.sort())
    fps = [fingerprint(c, k) for c, k in ex.select("code", "keys").iter_rows()]
    ex = ex.with_columns(pl.Series("fingerprint", fps, dtype=pl.String))
    ex = ex.unique("fingerprint", keep="first")
    return ex.select(
        "fingerprint", "code", "severity", "chain_id", "keys", "records", "owner", "currency", "amount",
        "reporting_currency", "amount_reporting", "bucket", "detail",
    ).sort(["code", "fingerprint"])


def _states(fr: Frames, deal: pl.DataFrame, order: pl.DataFrame, inv: pl.DataFrame, act_pay: pl.DataFrame,
            pay: pl.DataFrame, ib: pl.DataFrame, pbal: pl.DataFrame, ex: pl.DataFrame, s: Settings) -> pl.DataFrame:
    """Exactly one state per source row: matched, partial, exception or excluded."""
    in_ex = ex.select(pl.col("records").alias("id")).explode("id").unique()
    flag = in_ex.with_columns(pl.lit(True).alias("in_ex"))

    def state(df: pl.DataFrame, entity: str, excluded: pl.Expr, partial: pl.Expr) -> pl.DataFrame:
        return df.join(flag, on="id", how="left").select(
            pl.lit(entity).alias("entity"), "id",
            pl.when(excluded).then(pl.lit("excluded")).when(pl.col("in_ex").fill_null(False)).then(pl.lit("exception"))
            .when(partial).then(pl.lit("partial")).otherwise(pl.lit("matched")).alias("state"),
        )

    d = state(deal, "deal", ~pl.col("won"), pl.lit(False))
    o = state(order, "order", ~pl.col("active"), pl.lit(False))
    i = state(inv.join(ib.select(pl.col("invoice_id").alias("id"), "settled", "paid"), on="id", how="left"), "invoice",
              ~pl.col("active"), (~pl.col("settled").fill_null(True)) & (pl.col("paid").fill_null(ZERO) != 0))
    p = state(pay.join(pbal.select(pl.col("payment_id").alias("id"), "unapplied", "applied"), on="id", how="left"),
              "payment", ~pl.col("active"), pl.col("unapplied").fill_null(ZERO) > _tol(s, pl.col("amount")))
    return pl.concat([d, o, i, p])


def _conservation(fr: Frames, inv: pl.DataFrame, targets: pl.DataFrame, credits: pl.DataFrame,
                  credit_applied: pl.DataFrame, act_pay: pl.DataFrame, pbal: pl.DataFrame, alloc: pl.DataFrame,
                  ib: pl.DataFrame, ex: pl.DataFrame, states: pl.DataFrame) -> dict[str, Any]:
    """Every row in exactly one state; sums tie out per invoice, per chain, per payment and in total."""
    problems: list[str] = []
    expected = {"deal": fr.deal.height, "order": fr.order.height, "invoice": fr.invoice.height,
                "payment": fr.payment.height}
    got = dict(states.group_by("entity").len().iter_rows())
    for ent, n in expected.items():
        if got.get(ent, 0) != n:
            problems.append(f"{ent}: {n} rows in, {got.get(ent, 0)} states out")
    # (entity, id) pairs are unique when each entity's ids are (a cheap count first, the group-by only to report)
    any_dup = any(part["id"].n_unique() != part.height for part in states.partition_by("entity"))
    dup = states.group_by("entity", "id").len().filter(pl.col("len") > 1) if any_dup else states.clear()
    if dup.height:
        problems.append(f"{dup.height} rows with more than one state, e.g. {dup.row(0)}")
    # allocations only between active payments and active invoices
    dangling = alloc.join(act_pay.select(pl.col("id").alias("payment_id")), on="payment_id", how="anti").height + \
        alloc.join(targets.select(pl.col("id").alias("invoice_id")), on="invoice_id", how="anti").height
    if dangling:
        problems.append(f"{dangling} allocations to rows that are not active payments/invoices")
    over = pbal.filter(pl.col("applied") > pl.col("amount"))
    if over.height:
        problems.append(f"{over.height} payments applied beyond their amount, e.g. {over.row(0)}")
    # cash: per currency, received = applied + unapplied as the exceptions report it + tolerance residue
    pstate = pbal.join(states.filter(pl.col("entity") == "payment").select(pl.col("id").alias("payment_id"), "state"),
                       on="payment_id")
    bad_matched = pstate.filter((pl.col("state") == "matched") & (pl.col("applied") == 0) & (pl.col("amount") != 0))
    if bad_matched.height:
        problems.append(f"{bad_matched.height} payments 'matched' with nothing applied, e.g. {bad_matched.row(0)}")
    cash_ex = ex.filter(pl.col("code").is_in(["UNAPPLIED_PAYMENT", "AMBIGUOUS_MATCH"])).select(
        pl.col("keys").list.first().alias("payment_id"), pl.col("amount").alias("reported")
    ).join(pbal.select("payment_id"), on="payment_id")
    per = pbal.join(cash_ex, on="payment_id", how="left").group_by("currency").agg(
        pl.col("amount").sum().alias("received"), pl.col("applied").sum().alias("applied"),
        pl.col("reported").fill_null(ZERO).sum().alias("reported"),
        pl.when(pl.col("reported").is_null()).then(pl.col("unapplied")).otherwise(ZERO).sum().alias("residue"),
    )
    for ccy, rec, app, rep, res in per.sort("currency").iter_rows():
        if rec != app + rep + res:
            problems.append(f"{ccy}: received {rec} != applied {app} + reported unapplied {rep} + residue {res}")
    # invoices: total = credited + paid + residual; per chain as well
    chk = ib.filter(pl.col("total") != pl.col("credited") + pl.col("paid") + pl.col("residual"))
    if chk.height:
        problems.append(f"{chk.height} invoices do not tie out, e.g. {chk.row(0)}")
    paid_alloc = alloc.group_by("invoice_id").agg(pl.col("signed").sum().alias("a"))
    chain_tie = ib.join(paid_alloc, on="invoice_id", how="left").group_by("chain_id", "currency").agg(
        pl.col("paid").sum().alias("paid"), pl.col("a").fill_null(ZERO).sum().alias("a"))
    bad_chain = chain_tie.filter(pl.col("paid") != pl.col("a"))
    if bad_chain.height:
        problems.append(f"{bad_chain.height} chains whose payments do not tie out, e.g. {bad_chain.row(0)}")
    cn_total = credits.select(pl.col("total").sum()).item() or ZERO
    cn_applied = credit_applied.select(pl.col("applied").sum()).item() or ZERO
    if cn_applied > cn_total:
        problems.append(f"credit notes applied {cn_applied} exceed their total {cn_total}")
    if problems:
        raise ConservationError("reconciliation does not tie out: " + "; ".join(problems[:5]))
    return {
        "rows": expected,
        "states": {f"{e}:{st}": n for e, st, n in states.group_by("entity", "state").len().sort(["entity", "state"]).iter_rows()},
        "cash": {ccy: {"received": str(rec), "applied": str(app), "unapplied": str(rep + res)}
                 for ccy, rec, app, rep, res in per.sort("currency").iter_rows()},
        "exceptions": dict(ex.group_by("code").len().sort("code").iter_rows()),
    }

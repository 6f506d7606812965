"""Small Polars expression helpers shared by the reconcile stages (money literals, tolerances, FX)."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from canonical.names import name_key
from reconcile.frames import MONEY, RATE
from reconcile.settings import Settings

ZERO = Decimal(0)
INACTIVE_ORDER = ["draft", "quotation", "cancelled"]  # states that are not (yet / any more) an order
INACTIVE_INVOICE = ["void", "draft"]
INACTIVE_PAYMENT = ["failed", "canceled", "cancelled", "reversed"]


def m(v: Decimal | int | str) -> pl.Expr:
    """A money literal."""
    return pl.lit(Decimal(v), dtype=MONEY)


def norm(col: str | pl.Expr) -> pl.Expr:
    """A reference key: stripped, upper-case."""
    e = pl.col(col) if isinstance(col, str) else col
    return e.str.strip_chars().str.to_uppercase()


#: the column of an account / payment frame that holds its name key when the partition pre-pass has computed it
#: (``reconcile.partition.spill``): the account's name key; for a payment, its payer's name key where it has no
#: account, else null. :func:`name_key_of` reads it instead of normalising the names again.
NAME_KEY = "__name_key"


def name_key_of(df: pl.DataFrame, col: str) -> pl.Expr:
    """The name key of ``col``: what the pre-pass computed (:data:`NAME_KEY`, which the caller then drops), else
    :func:`normalize_name`."""
    return pl.col(NAME_KEY) if NAME_KEY in df.columns else normalize_name(col)


def normalize_name(col: str | pl.Expr) -> pl.Expr:
    """The company-name key identity uses (:func:`canonical.names.normalize_name`: scripts other than
    Latin kept, legal forms of many jurisdictions off, full-width folded): 'Acme, Inc.' == 'ACME INC'."""
    return name_key(col)


def ambiguous_ref(df: pl.DataFrame) -> pl.DataFrame:
    """``AMBIGUOUS_MATCH`` for records whose discovered reference fits several targets (reported, never used)."""
    return df.select(
        pl.lit("AMBIGUOUS_MATCH").alias("code"), pl.lit(None, pl.String).alias("chain_id"),
        pl.concat_list(pl.col("id")).alias("keys"),
        pl.concat_list(pl.col("id"), pl.col("ref_candidates").fill_null([])).alias("records"),
        "currency", pl.col("amount") if "amount" in df.columns else pl.col("total").alias("amount"), "cluster_id",
        pl.format("reference {}", "ref_ambiguous").alias("detail"),
    )


def tol(s: Settings, amount: pl.Expr, fx: pl.Expr | bool = False) -> pl.Expr:
    """max(abs tolerance, rel tolerance x |amount|); the FX relative tolerance where ``fx``."""
    rel = pl.lit(s.tolerance_rel, dtype=pl.Decimal(38, 6))
    base = pl.max_horizontal(m(s.tolerance_abs), amount.abs() * rel).cast(MONEY)
    if fx is False:
        return base
    fx_e = pl.lit(True) if fx is True else fx
    fxt = pl.max_horizontal(m(s.tolerance_abs), amount.abs() * pl.lit(s.fx_tolerance_rel, dtype=pl.Decimal(38, 6)))
    return pl.when(fx_e).then(fxt.cast(MONEY)).otherwise(base)


def with_rate(df: pl.DataFrame, rates: pl.DataFrame, frm: str, to: str | pl.Expr, on: str,
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


def conv(amount: str, rate: str) -> pl.Expr:
    """``amount x rate``, rounded to cents; the amount itself at a rate of 1 (the same currency, nothing converted:
    a KWD 1.005 stays 1.005, where rounding it to 1.00 made a chain that agrees to the mill disagree by 0.005)."""
    return pl.when(pl.col(rate) == 1).then(pl.col(amount)).otherwise(
        (pl.col(amount) * pl.col(rate)).round(2)).cast(MONEY)


def split(pairs: pl.DataFrame, payer: str, total: str, cap: str) -> pl.Expr:
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


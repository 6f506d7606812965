"""Stage 13, conservation: every row in exactly one state and every sum tied out — per invoice, per chain,
per payment and per currency — or :class:`ConservationError` (the run fails loudly, nothing is stored)."""

from __future__ import annotations

from typing import Any

import polars as pl

from canonical.errors import LtcError
from reconcile.frames import Frames
from reconcile.stages.expr import ZERO


class ConservationError(LtcError):
    """The reconciliation does not tie out: a row has no state or two, or sums differ. A failed stage (exit 1, as the
    README's exit codes say): 3 means a pause on a vendor quota, which a run resumes, and this is no pause."""

    exit_code = 1


def conservation(fr: Frames, inv: pl.DataFrame, targets: pl.DataFrame, credits: pl.DataFrame,
                 credit_applied: pl.DataFrame, act_pay: pl.DataFrame, pbal: pl.DataFrame, alloc: pl.DataFrame,
                 ib: pl.DataFrame, ex: pl.DataFrame, states: pl.DataFrame) -> dict[str, Any]:
    """Every row in exactly one state; sums tie out per invoice, per chain, per payment and in total.

    Returns the run's totals (rows, states, cash per currency, exceptions per code)."""
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

"""Stage 6, settle: what each payment left unapplied and what each invoice still owes, as of a day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from reconcile.frames import MONEY, days
from reconcile.settings import Settings
from reconcile.stages.contract import expect
from reconcile.stages.expr import ZERO, m, tol
from reconcile.stages.invoices import Invoices
from reconcile.stages.payments import Payments


@dataclass(frozen=True)
class Settlement:
    """``pbal``: payment_id, amount, currency, sign, fee, cluster_id, ref_deal, pdate, applied, unapplied.
    ``ib`` (invoice balances): invoice_id, total, credited, paid, fx, residual, due_date, issue_date, currency,
    chain_id, cluster_id, order_id, in_tol, in_fx_tol, days_past_due, bank_charge, fx_difference, writeoff,
    settled, open_amount, bucket (``writeoff`` includes ``bank_charge``). ``last_alloc``: invoice_id, payment_id (the latest payment of each invoice).
    ``exceptions``: AMBIGUOUS_MATCH (payments), UNAPPLIED_PAYMENT, INVOICE_OVERDUE, PAYMENT_MISMATCH."""

    pbal: pl.DataFrame
    ib: pl.DataFrame
    last_alloc: pl.DataFrame
    exceptions: list[pl.DataFrame]


def settle(invoices: Invoices, payments: Payments, s: Settings, as_of: date) -> Settlement:
    alloc, act_pay, amb_all = payments.alloc, payments.act_pay, payments.ambiguous
    expect("settle", "act_pay", act_pay, ("id", "amount", "currency", "sign", "fee", "cluster_id", "ref_deal", "pdate"))
    expect("settle", "alloc", alloc, ("payment_id", "invoice_id", "payment_amount"))
    ex_parts: list[pl.DataFrame] = []
    # payment balances and unapplied cash
    applied = alloc.group_by("payment_id").agg(pl.col("payment_amount").sum().alias("applied"))
    pbal = act_pay.select(pl.col("id").alias("payment_id"), "amount", "currency", "sign", "fee", "cluster_id",
                          "ref_deal", "pdate").join(applied, on="payment_id", how="left").with_columns(
        pl.col("applied").fill_null(ZERO).cast(MONEY)
    ).with_columns((pl.col("amount") - pl.col("applied")).cast(MONEY).alias("unapplied"))
    amb_ids = amb_all.select(pl.col("id").alias("payment_id"))
    # cash nobody could apply at all is unapplied whatever its size: the tolerance forgives what is left of a
    # payment that paid something (a cent over), not a payment that paid nothing (a 0.01 verification deposit,
    # or any payment under a tolerance as wide as ``tolerance_rel: 1``)
    unapplied = pbal.filter(
        (pl.col("unapplied") > tol(s, pl.col("amount"))) | ((pl.col("applied") == 0) & (pl.col("amount") != 0))
    ).join(amb_ids, on="payment_id", how="anti")
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

    # invoice settlement
    last_alloc = alloc.select("invoice_id", "payment_id").join(pbal.select("payment_id", "pdate"), on="payment_id")
    last_alloc = last_alloc.filter(pl.col("pdate") == pl.col("pdate").max().over("invoice_id")).group_by(
        "invoice_id").agg(pl.col("payment_id").max())
    ib = payments.bal.join(invoices.targets.select(pl.col("id").alias("invoice_id"), "due_date", "issue_date",
                                                   "currency", "chain_id", "cluster_id", "order_id"),
                           on="invoice_id").with_columns(
        (pl.col("residual").abs() <= tol(s, pl.col("total"))).alias("in_tol"),
        (pl.col("fx") & (pl.col("residual").abs() <= tol(s, pl.col("total"), True))).alias("in_fx_tol"),
        days(pl.col("due_date"), as_of).alias("days_past_due"),
    )
    ib = _bank_charges(ib, alloc, act_pay, s).with_columns(
        pl.when(pl.col("in_fx_tol") & pl.col("fx")).then(pl.col("residual")).alias("fx_difference"),
        pl.when(pl.col("in_tol") & ~pl.col("fx")).then(pl.col("residual"))
        .when(pl.col("bank_charge").is_not_null()).then(pl.col("bank_charge")).alias("writeoff"),
        (pl.col("in_tol") | pl.col("in_fx_tol") | pl.col("bank_charge").is_not_null()).alias("settled"),
    ).with_columns(
        pl.when(pl.col("settled")).then(m(0)).otherwise(pl.col("residual")).cast(MONEY).alias("open_amount"),
        # no due date (a Stripe invoice charged automatically) is past due by no days: current, as the overdue and
        # mismatch checks below take it, not the 90+ a null fell through to
        pl.when(pl.col("days_past_due").fill_null(0) <= 0).then(pl.lit("current")).when(pl.col("days_past_due") <= 30)
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
    return Settlement(pbal=pbal, ib=ib, last_alloc=last_alloc, exceptions=ex_parts)


def _bank_charges(ib: pl.DataFrame, alloc: pl.DataFrame, act_pay: pl.DataFrame, s: Settings) -> pl.DataFrame:
    """``ib`` + ``bank_charge``: the short amount of an invoice written off as an un-itemised bank charge.

    Only when configured for the invoice's currency (``bank_charge_max``), the invoice was paid (in its own
    currency, no FX), is short by more than the ordinary tolerance and at most the cap (and at most
    ``bank_charge_rel`` x its total when set), and none of its payments has a recorded fee: a payment whose
    bank or PSP reported the charges already had its gross applied, so what is still short is no charge."""
    if not s.bank_charge_max:
        return ib.with_columns(pl.lit(None, MONEY).alias("bank_charge"))
    caps = pl.DataFrame({"currency": list(s.bank_charge_max), "charge_cap": list(s.bank_charge_max.values())},
                        schema={"currency": pl.String, "charge_cap": MONEY})
    fee_known = alloc.select("invoice_id", "payment_id").join(
        act_pay.select(pl.col("id").alias("payment_id"), (pl.col("fee").fill_null(ZERO) != 0).alias("has_fee")),
        on="payment_id").group_by("invoice_id").agg(pl.col("has_fee").max())
    short = pl.col("residual")
    ok = (~pl.col("in_tol") & ~pl.col("fx") & (pl.col("paid") > 0) & (short > 0) & (short <= pl.col("charge_cap"))
          & ~pl.col("has_fee").fill_null(False))
    if s.bank_charge_rel is not None:
        ok = ok & (short <= pl.col("total") * pl.lit(s.bank_charge_rel, dtype=pl.Decimal(38, 6)))
    return ib.join(caps, on="currency", how="left").join(fee_known, on="invoice_id", how="left").with_columns(
        pl.when(ok.fill_null(False)).then(short).cast(MONEY).alias("bank_charge")).drop("charge_cap", "has_fee")


def with_bank_charges(links: pl.DataFrame, st: Settlement) -> pl.DataFrame:
    """The invoice -> payment links + the bank charge written off on the invoice's last payment (evidence)."""
    charged = st.ib.filter(pl.col("bank_charge").is_not_null())
    if charged.is_empty():
        return links
    note = charged.join(st.last_alloc, on="invoice_id").select(
        pl.col("invoice_id").alias("from_id"), pl.col("payment_id").alias("to_id"),
        pl.lit("invoice").alias("from_entity"), pl.lit("payment").alias("to_entity"),
        pl.format(" bank_charge={} {} written off (short paid within bank_charge_max)",
                  pl.col("bank_charge").round(2).cast(pl.Decimal(38, 2)), "currency").alias("charge_note"))
    return links.join(note, on=["from_entity", "from_id", "to_entity", "to_id"], how="left").with_columns(
        pl.concat_str("evidence", pl.col("charge_note").fill_null("")).alias("evidence")).drop("charge_note")

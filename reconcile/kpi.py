"""Lead-to-Cash KPIs, each with its formula variant named (the ``variant`` column), for a period and by owner.

Variants (period = ``[start, end]``, AR and money in the reporting currency at the ``as_of`` rate):

* ``dso`` / ``ending_ar_over_period_sales_x_days``: open AR at as_of / invoices issued in period × days.
* ``o2c_cycle_days`` / ``mean_last_payment_minus_order_date`` and ``median_…``: chains fully settled whose
  last payment falls in the period; payment date − order date.
* ``won_not_invoiced_count`` / ``won_not_invoiced_amount`` / ``closed_won_no_invoice_after_grace``:
  closed-won deals closed ≥ grace days before as_of with no active invoice.
* ``unapplied_cash`` / ``sum_unapplied_at_as_of``; ``unapplied_ratio`` / ``unapplied_over_period_receipts``.
* ``ar_aging_<bucket>`` / ``open_amount_by_days_past_due`` (current, 1-30, 31-60, 61-90, 90+).
* ``invoice_accuracy`` / ``error_free_over_issued_pct``: invoices issued in period that no billing
  exception (duplicate, without order, over-invoiced, line or amount mismatch) names.
* ``lead_conversion_rate`` / ``converted_in_creation_cohort_pct``: of leads created in period.
* ``win_rate`` / ``won_over_won_plus_lost_pct``: deals closed in period.
* ``sales_cycle_days`` / ``mean_close_minus_created_won`` and ``median_…``: closed-won in period.
* ``fx_unconverted`` / ``amounts_without_fx_rate_left_out``: open invoices, unapplied receipts and
  won-not-invoiced deals whose currency has no rate to the reporting currency at as_of: the money KPIs
  above exclude them (never count them as 0); this says how many.
* ``order_delivery_on_time`` / ``in_full`` / ``otif`` (variant ``order_level_last_out_vs_latest_planned_pct``):
  active orders whose last delivery went out (shipped or delivered) in the period. On time: that last
  date is on or before the latest planned date of its deliveries (no planned date: on time). In full:
  for every product code of the order's lines, the quantity out is at least the quantity ordered.
  OTIF: both. Order level (not line level): one short line makes the whole order not in full.
* ``quote_to_close_rate`` / ``won_over_closed_quoted_deals_pct``: deals closed (won or lost) in period that
  had a quote sent (sent, accepted, rejected or expired).
* ``contract_to_cash_days`` / ``mean_last_payment_minus_contract_signed_date`` and ``median_…``: chains fully
  settled whose last payment falls in the period and whose deal has a signed contract.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import TypeVar

import polars as pl

from reconcile.core import CoreResult, Settings
from reconcile.frames import MONEY, Frames, days
from reconcile.stages.deliveries import OUT_STATES
from reconcile.stages.expr import conv, with_rate
from reconcile.stages.quotes import QUOTE_SENT

KPI_SCHEMA = {"kpi": pl.String, "variant": pl.String, "owner": pl.String, "value": pl.Decimal(38, 4),
              "unit": pl.String, "numerator": pl.Decimal(38, 4), "denominator": pl.Decimal(38, 4)}
BILLING_ERRORS = ["DUPLICATE_INVOICE", "INVOICE_WITHOUT_ORDER", "OVER_INVOICED", "LINE_MISMATCH", "AMOUNT_MISMATCH"]
BUCKETS = ["current", "1-30", "31-60", "61-90", "90+"]


def _d(e: pl.Expr) -> pl.Expr:
    return e.cast(pl.Decimal(38, 4))


def _ratio(num: str, den: str, scale: int = 1) -> pl.Expr:
    # exact decimal ratio rounded to 4 places; null when the denominator is zero
    return pl.when(pl.col(den) != 0).then(
        (pl.col(num).cast(pl.Decimal(38, 4)) * scale / pl.col(den).cast(pl.Decimal(38, 4))).round(4)
    ).cast(pl.Decimal(38, 4))


def _by_owner(df: pl.DataFrame, aggs: list[pl.Expr]) -> pl.DataFrame:
    overall = df.select(aggs).with_columns(pl.lit(None, pl.String).alias("owner"))
    per = df.filter(pl.col("owner").is_not_null()).group_by("owner").agg(aggs)
    return pl.concat([overall, per.select(overall.columns)], how="vertical_relaxed")


def _rows(df: pl.DataFrame, kpi: str, variant: str, unit: str, value: pl.Expr,
          num: str | None = None, den: str | None = None) -> pl.DataFrame:
    return df.select(
        pl.lit(kpi).alias("kpi"), pl.lit(variant).alias("variant"), "owner", _d(value).alias("value"),
        pl.lit(unit).alias("unit"),
        (_d(pl.col(num)) if num else pl.lit(None, pl.Decimal(38, 4))).alias("numerator"),
        (_d(pl.col(den)) if den else pl.lit(None, pl.Decimal(38, 4))).alias("denominator"),
    )


def period(as_of: date, period_start: date | None, period_end: date | None) -> tuple[date, date]:
    end = period_end or as_of
    return period_start or end - timedelta(days=89), end


def kpi_inputs(fr: Frames, core: CoreResult, s: Settings, as_of: date,
               period_start: date | None = None, period_end: date | None = None, *, deals: bool = True
               ) -> dict[str, pl.DataFrame]:
    """The rows every KPI aggregates, from one reconciled part (a bucket or the whole world).

    Each frame is row-local to a chain (a chain's deal, orders, invoices, payments and exceptions are in
    one bucket), so the inputs of several buckets concatenated equal the one-shot run's inputs, and
    :func:`kpis_from_inputs` over them gives the same KPIs. Leads are not here: they are not bucketed;
    nor, with ``deals=False``, the closed deals (:func:`closed_deals`, from the deal table alone)."""
    start, end = period(as_of, period_start, period_end)
    def in_period(c: str) -> pl.Expr:
        return (pl.col(c).is_between(start, end))
    rep = pl.lit(s.reporting_currency)
    owners = fr.deal.select(pl.col("id").alias("chain_id"), "owner")
    out: dict[str, pl.DataFrame] = {}

    # AR, DSO, aging
    ib = core.invoice_balances.join(owners, on="chain_id", how="left").with_columns(pl.lit(as_of).alias("asof"))
    ib = with_rate(ib, fr.fx_rate, "currency", rep, "asof", "r")
    unconverted = [ib.filter(pl.col("r").is_null() & (pl.col("open_amount") != 0)).select(
        "owner", "currency", pl.col("open_amount").alias("amount"))]
    ib = ib.filter(pl.col("r").is_not_null()).with_columns(
        conv("open_amount", "r").alias("open_rep"), conv("total", "r").alias("total_rep"))
    out["ar"] = ib.select("owner", "open_rep", "bucket",
                          pl.when(in_period("issue_date")).then(pl.col("total_rep")).alias("sales_rep"))

    # order-to-cash cycle
    last_pay = core.allocations.join(core.payment_balances.select("payment_id", "pdate"), on="payment_id").group_by(
        "invoice_id").agg(pl.col("pdate").max().alias("paid_on"))
    settled = ib.join(last_pay, on="invoice_id").group_by("chain_id", "owner").agg(
        pl.col("settled").all().alias("all_settled"), pl.col("paid_on").max())
    first_order = core.links.filter((pl.col("from_entity") == "deal") & (pl.col("to_entity") == "order")).join(
        fr.order.select(pl.col("id").alias("to_id"), "order_date"), on="to_id").group_by("chain_id").agg(
        pl.col("order_date").min())
    out["cycle"] = settled.filter(pl.col("all_settled") & in_period("paid_on")).join(
        first_order, on="chain_id").select("owner", days(pl.col("order_date"), pl.col("paid_on")).alias("d"))
    signed = core.links.filter(pl.col("to_entity") == "contract").join(
        fr.contract.select(pl.col("id").alias("to_id"), "signed_date"), on="to_id").group_by("chain_id").agg(
        pl.col("signed_date").min()).drop_nulls()
    out["c2c"] = settled.filter(pl.col("all_settled") & in_period("paid_on")).join(signed, on="chain_id").select(
        "owner", days(pl.col("signed_date"), pl.col("paid_on")).alias("d"))
    out["quoted"] = quoted_deals(fr, core, start, end)
    out["delivery"] = delivered_orders(fr, core, start, end)

    # won not invoiced
    invoiced_chains = core.invoice_balances.select("chain_id").drop_nulls().unique()
    won = fr.deal.filter((pl.col("stage") == "closed_won")
                         & (days(pl.col("close_date"), as_of) >= s.grace_days_ordered_not_invoiced))
    wni = won.join(invoiced_chains, left_on="id", right_on="chain_id", how="anti").with_columns(
        pl.lit(as_of).alias("asof"))
    wni = with_rate(wni, fr.fx_rate, "currency", rep, "asof", "r")
    unconverted.append(wni.filter(pl.col("r").is_null()).select("owner", "currency", "amount"))
    out["won_not_invoiced"] = wni.select("owner", conv("amount", "r").alias("a"))  # counted; no rate: no amount

    # unapplied cash
    pb = core.payment_balances.join(owners.rename({"chain_id": "ref_deal"}), on="ref_deal", how="left").with_columns(
        pl.lit(as_of).alias("asof"))
    pb = with_rate(pb, fr.fx_rate, "currency", rep, "asof", "r")
    unconverted.append(pb.filter(pl.col("r").is_null() & (pl.col("sign") == 1) & (pl.col("unapplied") != 0)).select(
        "owner", "currency", pl.col("unapplied").alias("amount")))
    out["unconverted"] = pl.concat([u.with_columns(pl.col("amount").cast(MONEY)) for u in unconverted],
                                   how="vertical_relaxed")
    pb = pb.filter(pl.col("r").is_not_null())
    out["cash"] = pb.filter(pl.col("sign") == 1).select(
        "owner", conv("unapplied", "r").alias("u"), conv("amount", "r").alias("rcv"),
        in_period("pdate").alias("in_period"))

    # invoice accuracy
    bad = core.exceptions.filter(pl.col("code").is_in(BILLING_ERRORS)).select(pl.col("records").alias("id")).explode(
        "id").unique()
    issued = fr.invoice.filter(in_period("issue_date") & ~pl.col("status").is_in(["void", "draft"]).fill_null(False))
    chain_of = core.links.filter(pl.col("to_entity") == "invoice").select(pl.col("to_id").alias("id"), "chain_id")
    issued = issued.join(chain_of, on="id", how="left").join(owners, on="chain_id", how="left").join(
        bad.with_columns(pl.lit(True).alias("bad")), on="id", how="left")
    # an invoice is wrong if it, or its chain (amount/line mismatch names the deal), is named
    out["issued"] = issued.select("owner", (pl.col("bad").fill_null(False) | pl.col("chain_id").is_in(
        bad["id"].implode())).alias("bad"))

    if deals:
        out["closed"] = closed_deals(fr.deal, start, end)
    return out


def quoted_deals(fr: Frames, core: CoreResult, start: date, end: date) -> pl.DataFrame:
    """Deals closed in the period that had a quote sent: ``owner``, ``won``."""
    sent = core.links.filter(pl.col("to_entity") == "quote").join(
        fr.quote.filter(pl.col("status").is_in(QUOTE_SENT)).select(
            pl.col("id").alias("to_id")), on="to_id").select("chain_id").unique()
    return fr.deal.filter(pl.col("close_date").is_between(start, end)
                          & pl.col("stage").is_in(["closed_won", "closed_lost"])).join(
        sent, left_on="id", right_on="chain_id").select("owner", (pl.col("stage") == "closed_won").alias("won"))


def delivered_orders(fr: Frames, core: CoreResult, start: date, end: date) -> pl.DataFrame:
    """Orders whose last delivery went out in the period: ``owner``, ``on_time``, ``in_full``."""
    dl = core.links.filter(pl.col("to_entity") == "delivery").select(
        pl.col("from_id").alias("order_id"), "chain_id", pl.col("to_id").alias("delivery_id"))
    dv = dl.join(fr.delivery.select(pl.col("id").alias("delivery_id"), "state", "planned_date",
                                    pl.coalesce("delivered_date", "shipped_date").alias("out_on")), on="delivery_id")
    out = dv.filter(pl.col("state").is_in(OUT_STATES))
    per = out.group_by("order_id", "chain_id").agg(pl.col("out_on").max().alias("last_out"),
                                                   pl.col("planned_date").max().alias("planned"))
    per = per.filter(pl.col("last_out").is_between(start, end))
    shipped = fr.delivery_line.join(out.select("delivery_id", "order_id"), on="delivery_id").group_by(
        "order_id", "product_code").agg(pl.col("quantity").sum().alias("q_out"))
    ordered = fr.order_line.join(per.select("order_id"), on="order_id").group_by("order_id", "product_code").agg(
        pl.col("quantity").sum().alias("q_ord"))
    short = ordered.join(shipped, on=["order_id", "product_code"], how="left").filter(
        pl.col("q_out").fill_null(0) < pl.col("q_ord")).select("order_id").unique().with_columns(
        pl.lit(True).alias("short"))
    owners = fr.deal.select(pl.col("id").alias("chain_id"), "owner")
    return per.join(short, on="order_id", how="left").join(owners, on="chain_id", how="left").select(
        "owner", (pl.col("planned").is_null() | (pl.col("last_out") <= pl.col("planned"))).alias("on_time"),
        (~pl.col("short").fill_null(False)).alias("in_full"))


#: a frame, or a lazy one (the store path scans the exported tables: only the rows a KPI reads are read into memory)
FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def closed_deals(deal: FrameT, start: date, end: date) -> FrameT:
    """The win-rate and sales-cycle input: deals closed in the period (needs only the deal table)."""
    return deal.filter(pl.col("close_date").is_between(start, end)
                       & pl.col("stage").is_in(["closed_won", "closed_lost"])).select(
        "owner", "stage", days(pl.col("created_at").dt.date(), pl.col("close_date")).alias("d"))


def period_leads(leads: FrameT, start: date, end: date) -> FrameT:
    """The lead-conversion input: the leads created in the period (their cohort)."""
    return leads.filter(pl.col("created_at").dt.date().is_between(start, end))


def kpis_from_inputs(inputs: dict[str, pl.DataFrame], leads: pl.DataFrame, s: Settings, as_of: date,
                     period_start: date | None = None, period_end: date | None = None) -> pl.DataFrame:
    """The KPI table from :func:`kpi_inputs` (of one part, or of several buckets concatenated) and the leads."""
    start, end = period(as_of, period_start, period_end)
    n_days = (end - start).days + 1
    out: list[pl.DataFrame] = []
    ib = inputs["ar"]
    ar = _by_owner(ib, [pl.col("open_rep").sum().alias("ar"), pl.col("sales_rep").sum().alias("sales")])
    out.append(_rows(ar, "dso", "ending_ar_over_period_sales_x_days", "days",
                     _ratio("ar", "sales", n_days), "ar", "sales"))
    for b in BUCKETS:
        ag = _by_owner(ib, [pl.col("open_rep").filter(pl.col("bucket") == b).sum().alias("v")])
        out.append(_rows(ag, f"ar_aging_{b}", "open_amount_by_days_past_due", s.reporting_currency, pl.col("v")))

    cy = _by_owner(inputs["cycle"], [pl.col("d").mean().alias("mean"), pl.col("d").median().alias("median"),
                                     pl.len().alias("n")])
    out.append(_rows(cy, "o2c_cycle_days", "mean_last_payment_minus_order_date", "days", pl.col("mean").round(2),
                     None, "n"))
    out.append(_rows(cy, "o2c_cycle_days", "median_last_payment_minus_order_date", "days", pl.col("median"), None, "n"))

    w = _by_owner(inputs["won_not_invoiced"], [pl.len().alias("n"), pl.col("a").sum().alias("amt")])
    out.append(_rows(w, "won_not_invoiced_count", "closed_won_no_invoice_after_grace", "count", pl.col("n")))
    out.append(_rows(w, "won_not_invoiced_amount", "closed_won_no_invoice_after_grace", s.reporting_currency,
                     pl.col("amt")))

    ua = _by_owner(inputs["cash"], [pl.col("u").sum().alias("un"), pl.col("u").filter("in_period").sum().alias("un_p"),
                                    pl.col("rcv").filter("in_period").sum().alias("rcv")])
    out.append(_rows(ua, "unapplied_cash", "sum_unapplied_at_as_of", s.reporting_currency, pl.col("un")))
    out.append(_rows(ua, "unapplied_ratio", "unapplied_over_period_receipts_pct", "pct", _ratio("un_p", "rcv", 100),
                     "un_p", "rcv"))

    unc = inputs.get("unconverted")
    if unc is not None:
        un = _by_owner(unc, [pl.len().alias("n")])
        out.append(_rows(un, "fx_unconverted", "amounts_without_fx_rate_left_out", "count", pl.col("n")))

    ia = _by_owner(inputs["issued"], [(~pl.col("bad")).sum().alias("ok"), pl.len().alias("n")])
    out.append(_rows(ia, "invoice_accuracy", "error_free_over_issued_pct", "pct", _ratio("ok", "n", 100), "ok", "n"))

    leads = period_leads(leads, start, end)
    lc = _by_owner(leads, [pl.col("converted_at").is_not_null().sum().alias("c"), pl.len().alias("n")])
    out.append(_rows(lc, "lead_conversion_rate", "converted_in_creation_cohort_pct", "pct", _ratio("c", "n", 100),
                     "c", "n"))
    closed = inputs["closed"]
    wr = _by_owner(closed, [(pl.col("stage") == "closed_won").sum().alias("w"), pl.len().alias("n")])
    out.append(_rows(wr, "win_rate", "won_over_won_plus_lost_pct", "pct", _ratio("w", "n", 100), "w", "n"))
    sc = closed.filter(pl.col("stage") == "closed_won")
    scl = _by_owner(sc, [pl.col("d").mean().alias("mean"), pl.col("d").median().alias("median"), pl.len().alias("n")])
    out.append(_rows(scl, "sales_cycle_days", "mean_close_minus_created_won", "days", pl.col("mean").round(2), None, "n"))
    out.append(_rows(scl, "sales_cycle_days", "median_close_minus_created_won", "days", pl.col("median"), None, "n"))

    c2c = _by_owner(inputs["c2c"], [pl.col("d").mean().alias("mean"), pl.col("d").median().alias("median"),
                                    pl.len().alias("n")])
    out.append(_rows(c2c, "contract_to_cash_days", "mean_last_payment_minus_contract_signed_date", "days",
                     pl.col("mean").round(2), None, "n"))
    out.append(_rows(c2c, "contract_to_cash_days", "median_last_payment_minus_contract_signed_date", "days",
                     pl.col("median"), None, "n"))
    qc = _by_owner(inputs["quoted"], [pl.col("won").sum().alias("w"), pl.len().alias("n")])
    out.append(_rows(qc, "quote_to_close_rate", "won_over_closed_quoted_deals_pct", "pct", _ratio("w", "n", 100),
                     "w", "n"))
    dr = _by_owner(inputs["delivery"], [pl.col("on_time").sum().alias("ot"), pl.col("in_full").sum().alias("if"),
                                        (pl.col("on_time") & pl.col("in_full")).sum().alias("otif"),
                                        pl.len().alias("n")])
    for kpi, num in (("order_delivery_on_time", "ot"), ("order_delivery_in_full", "if"), ("order_delivery_otif", "otif")):
        out.append(_rows(dr, kpi, "order_level_last_out_vs_latest_planned_pct", "pct", _ratio(num, "n", 100), num, "n"))

    res = pl.concat([o.cast(KPI_SCHEMA) for o in out], how="vertical_relaxed")  # type: ignore[arg-type]
    return res.with_columns(pl.lit(start).alias("period_start"), pl.lit(end).alias("period_end")).sort(
        ["kpi", "variant", "owner"], nulls_last=False)


def compute_kpis(fr: Frames, core: CoreResult, s: Settings, as_of: date,
                 period_start: date | None = None, period_end: date | None = None) -> pl.DataFrame:
    """The KPIs of one reconciled part (all of it in memory)."""
    return kpis_from_inputs(kpi_inputs(fr, core, s, as_of, period_start, period_end), fr.lead, s, as_of,
                            period_start, period_end)


ZERO = Decimal(0)
__all__ = ["BUCKETS", "KPI_SCHEMA", "MONEY", "closed_deals", "compute_kpis", "kpi_inputs", "kpis_from_inputs",
           "period_leads"]

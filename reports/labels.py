"""Human labels for what the report and the work queue show, marked for translation.

Each text is wrapped in ``N_`` (a no-op that the catalog extraction finds, see :mod:`reports.i18n`)
and translated when a page is rendered. Codes keep their code (``AMOUNT_MISMATCH``) next to the
translated title and explanation; a KPI keeps its formula variant's name next to the note that
says in words how it is computed.
"""

from __future__ import annotations

from typing import Any


def N_(text: str) -> str:  # noqa: N802 - the gettext convention for "mark, translate later"
    return text


KPI_LABELS: dict[str, str] = {
    "open_exceptions": N_("Open exceptions"),
    "amount_at_risk": N_("Amount at risk"),
    "dso": N_("Days sales outstanding (DSO)"),
    "o2c_cycle_days": N_("Order-to-cash cycle"),
    "won_not_invoiced_count": N_("Won, not invoiced (deals)"),
    "won_not_invoiced_amount": N_("Won, not invoiced (amount)"),
    "unapplied_cash": N_("Unapplied cash"),
    "unapplied_ratio": N_("Unapplied share of receipts"),
    "ar_aging_current": N_("AR not yet due"),
    "ar_aging_1-30": N_("AR 1–30 days past due"),
    "ar_aging_31-60": N_("AR 31–60 days past due"),
    "ar_aging_61-90": N_("AR 61–90 days past due"),
    "ar_aging_90+": N_("AR over 90 days past due"),
    "invoice_accuracy": N_("Invoice accuracy"),
    "lead_conversion_rate": N_("Lead conversion rate"),
    "win_rate": N_("Win rate"),
    "sales_cycle_days": N_("Sales cycle length"),
    "fx_unconverted": N_("Amounts without an FX rate"),
}

VARIANT_NOTES: dict[str, str] = {
    "amounts_without_fx_rate_left_out": N_("open invoices, unapplied receipts and won deals with no FX rate to the "
                                           "reporting currency: left out of the money KPIs, never counted as 0"),
    "open_or_acknowledged_after_run": N_("exceptions open or acknowledged after the run"),
    "sum_open_amount_in_reporting_currency": N_("sum of the open exceptions' amounts at risk, converted to the "
                                                "reporting currency"),
    "ending_ar_over_period_sales_x_days": N_("open receivables at the as-of date ÷ invoices issued in the "
                                             "period × days in the period"),
    "mean_last_payment_minus_order_date": N_("mean of last payment date − order date, chains settled in the period"),
    "median_last_payment_minus_order_date": N_("median of last payment date − order date, chains settled in the "
                                               "period"),
    "closed_won_no_invoice_after_grace": N_("closed-won deals past the grace period with no active invoice"),
    "sum_unapplied_at_as_of": N_("received cash not applied to any invoice at the as-of date"),
    "unapplied_over_period_receipts_pct": N_("unapplied cash received in the period ÷ cash received in the period"),
    "open_amount_by_days_past_due": N_("open invoice amounts by days past their due date"),
    "error_free_over_issued_pct": N_("invoices issued in the period that no billing exception names ÷ invoices "
                                     "issued"),
    "converted_in_creation_cohort_pct": N_("leads created in the period that were converted ÷ leads created"),
    "won_over_won_plus_lost_pct": N_("deals won ÷ deals won or lost, closed in the period"),
    "mean_close_minus_created_won": N_("mean of close date − created date, deals won in the period"),
    "median_close_minus_created_won": N_("median of close date − created date, deals won in the period"),
}

VARIANT_SHORT: dict[str, str] = {
    "mean_last_payment_minus_order_date": N_("mean"),
    "median_last_payment_minus_order_date": N_("median"),
    "mean_close_minus_created_won": N_("mean"),
    "median_close_minus_created_won": N_("median"),
}

UNITS: dict[str, str] = {"days": N_("days"), "count": N_("count"), "pct": N_("%")}

# Title and explanation per exception code (the code itself is never translated).
CODE_TITLES: dict[str, str] = {
    "WON_NOT_ORDERED": N_("Won, not ordered"),
    "ORDER_WITHOUT_DEAL": N_("Order without a deal"),
    "AMOUNT_MISMATCH": N_("Amount mismatch"),
    "CURRENCY_MISMATCH": N_("Currency mismatch"),
    "LINE_MISMATCH": N_("Line mismatch"),
    "ORDERED_NOT_INVOICED": N_("Ordered, not invoiced"),
    "OVER_INVOICED": N_("Over-invoiced"),
    "INVOICE_WITHOUT_ORDER": N_("Invoice without an order"),
    "DUPLICATE_INVOICE": N_("Duplicate invoice"),
    "INVOICE_OVERDUE": N_("Invoice overdue"),
    "UNAPPLIED_PAYMENT": N_("Unapplied payment"),
    "PAYMENT_MISMATCH": N_("Payment mismatch"),
    "AMBIGUOUS_MATCH": N_("Ambiguous match"),
    "STAGE_CONFLICT": N_("Stage conflict"),
    "DELIVERED_NOT_INVOICED": N_("Delivered, not invoiced"),
    "INVOICED_NOT_DELIVERED": N_("Invoiced, not delivered"),
    "CUSTOMER_MISMATCH": N_("Customer mismatch"),
}

CODE_EXPLANATIONS: dict[str, str] = {
    "WON_NOT_ORDERED": N_("A closed-won deal has no ERP order after the grace period: the sale may never be "
                          "billed."),
    "ORDER_WITHOUT_DEAL": N_("An ERP order that no CRM deal explains: check the deal reference or whether "
                             "the deal was lost."),
    "AMOUNT_MISMATCH": N_("The deal amount and the order total (or the order and what was invoiced) differ "
                          "beyond the tolerance."),
    "CURRENCY_MISMATCH": N_("The same chain is in different currencies and no FX rate explains it."),
    "LINE_MISMATCH": N_("Products, quantities or prices differ between the deal's lines and the order's "
                        "lines."),
    "ORDERED_NOT_INVOICED": N_("An order is not (fully) invoiced after the grace period: billing leakage."),
    "OVER_INVOICED": N_("More was invoiced than was ordered."),
    "INVOICE_WITHOUT_ORDER": N_("An invoice that no order explains."),
    "DUPLICATE_INVOICE": N_("The same bill was issued twice."),
    "INVOICE_OVERDUE": N_("An invoice is open past its due date with nothing paid; the aging bucket says "
                          "how late."),
    "UNAPPLIED_PAYMENT": N_("Cash was received that matches no invoice."),
    "PAYMENT_MISMATCH": N_("A payment is short (past due) or over the invoices it pays."),
    "AMBIGUOUS_MATCH": N_("Several candidates fit equally well; nothing was linked by guesswork."),
    "STAGE_CONFLICT": N_("The deal is lost or still open in the CRM, but it was invoiced or paid."),
    "DELIVERED_NOT_INVOICED": N_("Goods were shipped but not invoiced after the grace period: revenue leakage."),
    "INVOICED_NOT_DELIVERED": N_("Billed for what was not shipped."),
    "CUSTOMER_MISMATCH": N_("The same customer differs between CRM and ERP (name, tax id, country) or is "
                            "duplicated."),
}

CHAIN_STATUS: dict[str, str] = {
    "exception": N_("exception"),
    "won, not ordered": N_("won, not ordered"),
    "ordered, not invoiced": N_("ordered, not invoiced"),
    "partly paid": N_("partly paid"),
    "invoiced, unpaid": N_("invoiced, unpaid"),
    "paid": N_("paid"),
}

SEVERITY: dict[str, str] = {"low": N_("low"), "medium": N_("medium"), "high": N_("high"),
                            "critical": N_("critical")}
STATUS: dict[str, str] = {"open": N_("open"), "acknowledged": N_("acknowledged"), "resolved": N_("resolved")}
ENTITY: dict[str, str] = {"deal": N_("deal"), "order": N_("order"), "invoice": N_("invoice"),
                          "payment": N_("payment"), "account": N_("account"), "lead": N_("lead")}
ACTION: dict[str, str] = {
    "detected": N_("detected"), "reopened": N_("found again"), "auto_resolved": N_("auto-resolved"),
    "acknowledge": N_("acknowledged"), "resolve": N_("resolved"), "reopen": N_("reopened"),
    "assign": N_("assigned"), "comment": N_("comment"), "snooze": N_("snoozed"), "change": N_("changed"),
}
ROLE: dict[str, str] = {"viewer": N_("viewer"), "finance": N_("finance"), "admin": N_("admin")}
AGING_BUCKETS: dict[str, str] = {"current": N_("not due"), "1-30": N_("1–30 days"), "31-60": N_("31–60 days"),
                                 "61-90": N_("61–90 days"), "90+": N_("90+ days")}


def label(table: dict[str, str], key: Any, gettext: Any) -> str:
    """The translated label of ``key`` in ``table``; an unknown key is shown as it is."""
    if key is None:
        return ""
    text = table.get(str(key))
    return gettext(text) if text else str(key)

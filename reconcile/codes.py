"""Exception codes, their base severity, and the stable fingerprint.

A fingerprint hashes the code and the identifying source keys of a break (never amounts, which may
change while the break stays the same), so the same break found again is the same exception.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

CODES: dict[str, str] = {
    "WON_NOT_ORDERED": "closed-won deal with no ERP order after the grace period",
    "ORDER_WITHOUT_DEAL": "ERP order that no CRM deal explains",
    "AMOUNT_MISMATCH": "deal amount vs order total beyond tolerance",
    "CURRENCY_MISMATCH": "the same chain in different currencies without an FX explanation",
    "LINE_MISMATCH": "product / quantity / price differs between deal lines and order lines",
    "ORDERED_NOT_INVOICED": "order not (fully) invoiced after the grace period",
    "OVER_INVOICED": "invoiced more than ordered",
    "INVOICE_WITHOUT_ORDER": "invoice that no order explains",
    "DUPLICATE_INVOICE": "the same bill twice",
    "INVOICE_OVERDUE": "open past due date, nothing paid, with aging bucket",
    "UNAPPLIED_PAYMENT": "cash that matches no invoice",
    "PAYMENT_MISMATCH": "short (past due) or over payment against its invoice(s)",
    "AMBIGUOUS_MATCH": "several candidates fit equally",
    "STAGE_CONFLICT": "deal lost/open but invoiced or paid",
    "CUSTOMER_MISMATCH": "the same customer differs between systems (tax id, country) or is duplicated",
    "QUOTE_MISMATCH": "accepted quote vs deal amount (or currency) beyond tolerance, or its lines differ",
    "CONTRACT_MISMATCH": "active contract value vs the deal's ordered total beyond tolerance",
    "DELIVERED_NOT_INVOICED": "order shipped/delivered, no invoice after the grace period",
    "INVOICED_NOT_DELIVERED": "order invoiced, nothing shipped after the grace period",
}

BASE_SEVERITY: dict[str, str] = {
    "WON_NOT_ORDERED": "high",
    "ORDER_WITHOUT_DEAL": "medium",
    "AMOUNT_MISMATCH": "high",
    "CURRENCY_MISMATCH": "high",
    "LINE_MISMATCH": "medium",
    "ORDERED_NOT_INVOICED": "high",
    "OVER_INVOICED": "high",
    "INVOICE_WITHOUT_ORDER": "medium",
    "DUPLICATE_INVOICE": "high",
    "INVOICE_OVERDUE": "medium",  # raised by aging bucket, see core
    "UNAPPLIED_PAYMENT": "medium",
    "PAYMENT_MISMATCH": "medium",
    "AMBIGUOUS_MATCH": "medium",
    "STAGE_CONFLICT": "high",
    "CUSTOMER_MISMATCH": "low",
    "QUOTE_MISMATCH": "medium",
    "CONTRACT_MISMATCH": "high",
    "DELIVERED_NOT_INVOICED": "high",
    "INVOICED_NOT_DELIVERED": "medium",  # by amount, see reconcile/stages/deliveries.py
}

SEVERITIES = ("low", "medium", "high", "critical")
STATUSES = ("open", "acknowledged", "resolved")


def fingerprint(code: str, keys: Iterable[str]) -> str:
    """32 hex chars of BLAKE2b over the code and the sorted identifying keys."""
    blob = "\x1f".join([code, *sorted(keys)]).encode()
    return hashlib.blake2b(blob, digest_size=16).hexdigest()

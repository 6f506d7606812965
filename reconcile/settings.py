"""The reconciliation's tolerances and grace periods."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


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
    duplicate_window_days: int = 7
    # bank charges nobody itemised (no camt Chrgs/InstdAmt, MT940): an invoice paid short by at most
    # bank_charge_max[its currency] (and, when set, at most bank_charge_rel x its total) is settled with the
    # short amount written off as a bank charge, named on the link; off unless configured
    bank_charge_max: Mapping[str, Decimal] = field(default_factory=dict, hash=False)
    bank_charge_rel: Decimal | None = None
    reporting_currency: str = "USD"

    @classmethod
    def from_config(cls, cfg: Any, reporting_currency: str | None = None) -> Settings:
        """From a ``Config`` (uses its ``reconcile`` and ``reporting_currency``) or a ``ReconcileConfig``."""
        rc = getattr(cfg, "reconcile", cfg)
        rep = reporting_currency or getattr(cfg, "reporting_currency", None) or "USD"
        names = {f for f in cls.__dataclass_fields__ if f != "reporting_currency"}
        kwargs = {n: getattr(rc, n) for n in names if getattr(rc, n, None) is not None}
        return cls(reporting_currency=rep, **kwargs)

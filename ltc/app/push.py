"""Closed-won deals -> customer + sales order in the ERP of ltc.yaml ``erp.source``.

What ``ltc push-orders`` and the ``ltc-push-orders`` flow both run: load the configuration, open
the store and the ERP target, push (:func:`connectors.push.push_orders`), close both.
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors import push
from connectors.push import PushReport
from ltc.app import runtime
from ltc.app.config import load_config


def push_to_erp(config_path: str | None = None, *, dry_run: bool = False,
                deal_ids: Sequence[str] | None = None) -> PushReport:
    """Push the closed-won deals that need an ERP order (a dry run with ``dry_run`` or ``erp.dry_run``)."""
    cfg = load_config(config_path)
    target, confirm = push.make_target(cfg)  # looked up on the module: tests swap in their own ERP
    store = runtime.open_store(config_path, auto_create=False)
    try:
        return push.push_orders(store, target, dry_run=dry_run or (cfg.erp is not None and cfg.erp.dry_run),
                                confirm=confirm, deal_ids=deal_ids)
    finally:
        close = getattr(target, "close", None)
        if close is not None:
            close()
        store.close()

"""The stages after a sync, as plain Python: map pending raw records, resolve identities, reconcile.

`ltc run` (and `ltc demo`) call :func:`after_sync`, then :func:`write_report`; the Prefect flow ``ltc-pipeline`` runs the same
function as one task after its sync subflows, so what a schedule does and what an operator runs by
hand are the same code.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from canonical.errors import ConfigError
from canonical.identity import run_identity
from canonical.store import Store
from ltc.app.config import Config
from ltc.app.discovery import applied_overrides, map_with_discovery
from ltc.app.unread import failure, stream_health
from mappings.engine import mark_pending, run_mapping
from reconcile.engine import run_reconciliation


def after_sync(store: Store, cfg: Config, as_of: date) -> dict[str, Any]:
    """Map (with the discovered identifier fields), resolve identities, reconcile. The summary leads
    with the streams that have quarantined records (``unread``) and, when one is over
    ``quarantine_fail_share``, the line that fails the run (``failed``; see :mod:`ltc.app.unread`)."""
    mapped, discovered = map_with_discovery(store, cfg, enabled=cfg.discover_fields)
    identity = run_identity(store, config=cfg)
    result = run_reconciliation(store, cfg, as_of)
    totals: dict[str, int] = {}
    for counts in mapped.values():
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + int(value)
    streams = stream_health(store, cfg.quarantine_fail_share)
    return {"unread": streams, "failed": failure(streams, cfg.quarantine_fail_share),
            "discovered": discovered, "mapping": totals, "identity": identity, "reconcile": result.summary()}


def write_report(store: Store, cfg: Config) -> Any:
    """The finance report of the latest reconciliation into ``reports_dir`` (HTML, CSV, XLSX)."""
    from reports.finance import write_reports

    return write_reports(store, cfg.reports_dir, config=cfg)


def remap(store: Store, cfg: Config, source: str | None = None) -> tuple[int, dict[str, dict[str, int]]]:
    """Mark the raw records (of ``source``, or all) pending and map them again: (marked, counts per source).

    An unknown ``source`` (not in ltc.yaml and nothing landed for it) is a ConfigError.
    """
    if source is not None and source not in cfg.sources and store.count_raw(source, include_deleted=True) == 0:
        known = sorted(set(cfg.sources))
        raise ConfigError(f"unknown source {source!r}: not in ltc.yaml and nothing landed for it"
                          + (f" (configured: {', '.join(known)})" if known else ""))
    marked = mark_pending(store, source)
    extra = applied_overrides(store) if cfg.discover_fields else None  # the discovered fields stay applied
    return marked, run_mapping(store, source, config=cfg, extra=extra)

"""Finance status -> CRM deals and accounts: what ``ltc push-crm`` and the ``ltc-push-crm`` flow run.

Per CRM source: the finance status of the store's latest reconciliation
(:func:`reports.crm_status.finance_status`, links from ``push_crm`` in ltc.yaml), written by
:func:`connectors.crm_push.push` through the source's own connector.
"""

from __future__ import annotations

from collections.abc import Sequence

from canonical.errors import ConfigError
from canonical.store import Store
from connectors import crm_fields, crm_push
from connectors.crm_push import CrmPushReport, CrmTarget
from ltc.app import runtime
from ltc.app.config import Config, load_config
from reports import crm_status
from reports.crm_status import Links


def crm_sources(cfg: Config) -> list[str]:
    """The CRM sources push-crm writes to: ``push_crm.sources``, else every salesforce/hubspot source."""
    names = cfg.push_crm.sources or [n for n, s in cfg.sources.items() if s.kind in crm_fields.CRM_KINDS]
    if not names:
        raise ConfigError("push-crm: no salesforce or hubspot source in ltc.yaml to write the finance status to")
    return list(names)


def links_of(cfg: Config) -> Links:
    pc = cfg.push_crm
    return Links(ui_base_url=pc.ui_base_url, report_url=pc.report_url, deal_template=pc.deal_link,
                 account_template=pc.account_link)


def push_source(store: Store, cfg: Config, source: str, *, dry_run: bool = False, create_fields: bool = False,
                target: CrmTarget | None = None) -> CrmPushReport:
    """``ltc push-crm --source <source>``: the finance status of the store's latest reconciliation onto
    the deals and accounts of that CRM source (``target``: another writer, e.g. in tests)."""
    src = cfg.sources.get(source)
    if src is None or src.kind not in crm_fields.CRM_KINDS:
        crm_push.make_target(cfg, source)  # raises the one-line configuration error
        raise AssertionError("unreachable")  # pragma: no cover
    fields = crm_fields.names(src.kind, src.options, source)
    status = crm_status.finance_status(store, systems={source}, links=links_of(cfg),
                                       reporting_currency=cfg.reporting_currency, today=cfg.today())
    own = target is None
    target = target or crm_push.make_target(cfg, source)  # looked up on the module: tests swap in their own
    try:
        return crm_push.push(store, target, status, fields, dry_run=dry_run, create_fields=create_fields)
    finally:
        if own:
            target.close()


def push_to_crm(config_path: str | None = None, *, sources: Sequence[str] | None = None, dry_run: bool = False,
                create_fields: bool = False) -> list[CrmPushReport]:
    """Every CRM source's push (or the named ones), in order; the store is opened once."""
    cfg = load_config(config_path)
    names = list(sources or crm_sources(cfg))
    store = runtime.open_store(config_path, auto_create=False)
    try:
        return [push_source(store, cfg, name, dry_run=dry_run, create_fields=create_fields) for name in names]
    finally:
        store.close()

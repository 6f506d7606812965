"""Connector kinds: ``ltc.yaml`` ``sources.<name>.kind`` -> factory ``(name, SourceConfig) -> Connector``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from canonical.errors import ConfigError
from connectors import hubspot, jiandaoyun, odoo, salesforce, stripe, tryton, zoho
from connectors.base import Connector

KINDS: dict[str, Callable[[str, Any], Connector]] = {
    "hubspot": hubspot.from_config,
    "salesforce": salesforce.from_config,
    "stripe": stripe.from_config,
    "odoo": odoo.from_config,
    "tryton": tryton.make_connector,
    "zoho": zoho.from_config,
    "jiandaoyun": jiandaoyun.from_config,
}


def build(name: str, cfg: Any) -> Connector:
    """The connector for source ``name`` of ltc.yaml."""
    try:
        factory = KINDS[cfg.kind]
    except KeyError:
        raise ConfigError(f"sources.{name}: no connector for kind {cfg.kind!r} in this build") from None
    return factory(name, cfg)

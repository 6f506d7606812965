"""Connector kinds: ``ltc.yaml`` ``sources.<name>.kind`` -> factory ``(name, SourceConfig) -> Connector``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from canonical.errors import ConfigError
from connectors.base import Connector

KINDS: dict[str, Callable[[str, Any], Connector]] = {}


def build(name: str, cfg: Any) -> Connector:
    """The connector for source ``name`` of ltc.yaml.

    A kind not registered in :data:`KINDS` is looked up as ``connectors.<kind>.make_connector``.
    """
    factory = KINDS.get(cfg.kind)
    if factory is None:
        try:
            factory = importlib.import_module(f"connectors.{cfg.kind}").make_connector
        except (ImportError, AttributeError):
            raise ConfigError(f"sources.{name}: no connector for kind {cfg.kind!r} in this build") from None
    assert factory is not None
    return factory(name, cfg)

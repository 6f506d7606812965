"""What the CLI and the Prefect flows share: resolving the store and the sources of ltc.yaml."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

from canonical import db
from canonical.errors import ConfigError
from canonical.store import Store
from connectors import registry
from connectors.base import Connector, StreamResult, sync
from ltc.app.config import Config, load_config


def store_url(cfg: Config) -> str:
    """LTC_DATABASE_URL, else ltc.yaml's ``database_url``, else the embedded SQLite file."""
    return os.environ.get("LTC_DATABASE_URL") or cfg.database_url or db.DEFAULT_URL


def open_store(config_path: str | None = None, *, auto_create: bool = True) -> Store:
    return Store.open(store_url(load_config(config_path)), auto_create=auto_create)


def source_names(cfg: Config, only: list[str] | None = None) -> list[str]:
    """The configured sources to work on (all of them, or the named ones, checked)."""
    if not cfg.sources:
        raise ConfigError("no sources configured: add `sources:` to ltc.yaml (see `ltc config check`)")
    names = only or [n for n, s in cfg.sources.items() if s.kind != "camt053"]
    unknown = [n for n in names if n not in cfg.sources]
    if unknown:
        raise ConfigError(f"unknown source(s) {', '.join(unknown)}; configured: {', '.join(cfg.sources)}")
    return names


def build_connector(cfg: Config, name: str) -> Connector:
    src = cfg.sources[name]
    connector = registry.build(name, src)
    connector.lookback = timedelta(minutes=src.lookback_minutes)
    return connector


def sync_sources(cfg: Config, store: Store, only: list[str] | None = None, streams: list[str] | None = None,
                 full_refresh: bool = False) -> Iterator[tuple[str, StreamResult]]:
    """Sync the configured sources (or the named ones) one after the other: (source, result) per stream."""
    for name in source_names(cfg, only):
        connector = build_connector(cfg, name)
        try:
            for result in sync(connector, store, streams=streams, full_refresh=full_refresh):
                yield name, result
        finally:
            connector.close()

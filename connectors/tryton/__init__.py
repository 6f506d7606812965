"""Tryton (JSON-RPC) connector: pulls parties, sales, invoices and payments; receives pushed orders."""

from __future__ import annotations

from typing import Any

from canonical.errors import ConfigError


def client_for(name: str, source: Any) -> Any:
    """A logged-in :class:`~connectors.tryton.rpc.TrytonClient` for a ``kind: tryton`` source.

    ltc.yaml: ``base_url: http://host:8000``, ``options: {database: ltc}``, ``credentials:
    {login: {env: TRYTON_LOGIN}, password: {env: TRYTON_PASSWORD}}``.
    """
    from connectors.tryton.rpc import TrytonClient

    if not source.base_url:
        raise ConfigError(f"sources.{name}.base_url is required (e.g. http://127.0.0.1:8000)")
    database = source.options.get("database")
    if not database:
        raise ConfigError(f"sources.{name}.options.database is required (the Tryton database name)")
    for key in ("login", "password"):
        if key not in source.credentials:
            raise ConfigError(f"sources.{name}.credentials.{key} is required (e.g. {{env: TRYTON_{key.upper()}}})")
    client = TrytonClient(source.base_url, str(database), verify=source.options.get("ca_file") or True)
    client.login(source.credentials["login"].resolve(), source.credentials["password"].resolve())
    return client


def make_erp_target(name: str, source: Any) -> Any:
    """The push target for ``erp.source`` (see :mod:`connectors.push`)."""
    from connectors.tryton.target import TrytonTarget

    return TrytonTarget(
        client_for(name, source), name=name,
        product_category=source.options.get("product_category"),
        payment_term=source.options.get("payment_term"),
    )


def make_connector(name: str, source: Any, *, store: Any = None) -> Any:
    """The pull connector of a ``kind: tryton`` source (found by :func:`connectors.registry.build`).

    Delete detection compares ids with the store the sync binds (``options.detect_deletes``); the
    next page is asked for while a page is landed (``options.prefetch``, default true).
    """
    from datetime import timedelta

    from connectors.tryton.connector import TrytonConnector

    connector = TrytonConnector(
        name, client_for(name, source), lookback=timedelta(minutes=source.lookback_minutes),
        page_size=source.page_size, store=store,
        detect_deletes=bool(source.options.get("detect_deletes", True)),
        prefetch=bool(source.options.get("prefetch", True)),
    )
    if source.streams:
        unknown = sorted(set(source.streams) - {s.name for s in connector.streams})
        if unknown:
            raise ConfigError(f"sources.{name}.streams: unknown Tryton stream(s) {', '.join(unknown)}; "
                              f"known: {', '.join(s.name for s in connector.streams)}")
        connector.streams = tuple(s for s in connector.streams if s.name in source.streams)
    return connector

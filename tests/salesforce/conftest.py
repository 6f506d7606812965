"""Fixtures: a seeded Salesforce emulator over TLS and connectors pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from connectors.governor import RateGovernor
from connectors.http import RetryPolicy
from connectors.salesforce import SalesforceConnector
from sandbox.salesforce import Org, build_app
from sandbox.server import RunningServer, serve


@pytest.fixture
def org() -> Org:
    return Org(seed=7, size=12)


@pytest.fixture
def emulator(org: Org) -> Iterator[RunningServer]:
    srv = serve(build_app(org), tls=True)
    yield srv
    stop(srv)


def stop(srv: RunningServer) -> None:
    """Stop without uvicorn's graceful wait: on 3.11 it lingers ~10 s on closed TLS keep-alive sockets."""
    srv._server.force_exit = True
    srv.stop()


def credentials(org: Org, mode: str) -> dict[str, str]:
    c = org.creds
    if mode == "client_credentials":
        return {"client_id": c.client_id, "client_secret": c.client_secret}
    if mode == "password":
        return {"client_id": c.client_id, "client_secret": c.client_secret, "username": c.username,
                "password": c.password, "security_token": c.security_token}
    if mode == "jwt":
        return {"client_id": c.client_id, "username": c.username, "private_key": org.jwt_private_key_pem.decode()}
    assert mode == "direct"
    return {"access_token": c.static_token}


Make = Callable[..., SalesforceConnector]


@pytest.fixture
def make(emulator: RunningServer, org: Org) -> Iterator[Make]:
    made: list[SalesforceConnector] = []

    def factory(mode: str = "client_credentials", *, page_size: int = 50, pause_at: str = "0.80",
                creds: dict[str, str] | None = None, lookback_min: int = 10, **options: Any) -> SalesforceConnector:
        governor = RateGovernor("salesforce test", capacity=1000, interval_s=1.0, pause_at=Decimal(pause_at))
        conn = SalesforceConnector(
            "sf", base_url=emulator.url, credentials=creds or credentials(org, mode),
            options={"ca_file": emulator.ca_file, **options}, page_size=page_size,
            lookback=timedelta(minutes=lookback_min), governor=governor,
            policy=RetryPolicy(max_attempts=4, sleep=lambda s: None),
        )
        made.append(conn)
        return conn

    yield factory
    for conn in made:  # idle keep-alive connections would hold up the server's shutdown
        conn.close()

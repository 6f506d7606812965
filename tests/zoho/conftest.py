"""Zoho emulator + connector fixtures: a real HTTP server per test, connectors pointed at it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connectors.http import RetryPolicy
from connectors.zoho import ZohoConnector
from sandbox.server import RunningServer, serve
from sandbox.zoho import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, ZohoEmulator


def make_connector(server: RunningServer, **kwargs: Any) -> ZohoConnector:
    """A connector on its own tenant (governors and concurrency slots are per tenant), pointed at the
    emulator for both the accounts server and the API domain."""
    kwargs.setdefault("policy", RetryPolicy(base_s=0.01, max_backoff_s=0.05, max_wait_s=0.05))
    kwargs.setdefault("client_id", CLIENT_ID)
    kwargs.setdefault("client_secret", CLIENT_SECRET)
    kwargs.setdefault("refresh_token", REFRESH_TOKEN)
    return ZohoConnector("zoho", base_url=server.url, accounts_url=server.url,
                         tenant=f"t-{uuid.uuid4().hex[:8]}", **kwargs)


@pytest.fixture
def zoho() -> Iterator[Callable[..., tuple[ZohoEmulator, RunningServer]]]:
    """``emu, server = zoho(size=..., modules=[...], ...)``: started now, stopped after the test."""
    servers: list[RunningServer] = []

    def start(**kwargs: Any) -> tuple[ZohoEmulator, RunningServer]:
        emu = ZohoEmulator(**kwargs)
        srv = serve(emu.app)
        servers.append(srv)
        return emu, srv

    yield start
    for srv in reversed(servers):
        srv.stop()

"""HubSpot emulator + connector fixtures: a real HTTP server per test, connectors pointed at it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from connectors.governor import RateGovernor
from connectors.http import RetryPolicy
from connectors.hubspot import HubSpotConnector
from sandbox.hubspot import TOKEN, HubSpotEmulator
from sandbox.server import RunningServer, serve

FAST = {"burst_max": 1_000_000, "search_per_s": 1_000_000}


@contextmanager
def running(**kwargs: Any) -> Iterator[tuple[HubSpotEmulator, RunningServer]]:
    emu = HubSpotEmulator(**kwargs)
    with serve(emu.app) as server:
        yield emu, server


def make_connector(server: RunningServer, *, fast_search: bool = True, token: str = TOKEN,
                   **kwargs: Any) -> HubSpotConnector:
    """A connector on its own tenant (governors are per tenant); by default search is not paced at
    HubSpot's 5/s, so that tests with thousands of search pages stay fast."""
    kwargs.setdefault("policy", RetryPolicy(base_s=0.01, max_backoff_s=0.2))
    if fast_search:
        kwargs.setdefault("search_governor", RateGovernor("search", capacity=10_000, interval_s=1.0))
    return HubSpotConnector("hubspot", server.url, token, tenant=f"t-{uuid.uuid4().hex[:8]}", **kwargs)


@pytest.fixture
def hubspot() -> Iterator[Callable[..., tuple[HubSpotEmulator, RunningServer]]]:
    """``emu, server = hubspot(size=..., faults...)``: started now, stopped after the test."""
    stack: list[Any] = []

    def start(**kwargs: Any) -> tuple[HubSpotEmulator, RunningServer]:
        cm = running(**{**FAST, **kwargs})
        stack.append(cm)
        return cm.__enter__()

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)

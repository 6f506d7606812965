"""One Prefect test server for the whole session (it takes 7-17 s to start): flow tests only."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@contextmanager
def running_sandbox(world: Path) -> Iterator[dict[str, Any]]:
    """The emulators of the world directory ``world``, as ``ltc sandbox start --world`` runs them (its state kept
    in the working directory), with their state; stopped at the end."""
    from ltc.app import emulators

    emulators.start([], 7, 10, str(world))
    try:
        state = emulators.read_state()
        assert state is not None
        yield state
    finally:
        emulators.stop()

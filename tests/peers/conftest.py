"""A real trytond (SQLite) for the session: the cached module-activated database is copied, the
server started on a free loopback port, the accounting set up over JSON-RPC, and the server
stopped at the end. The first run ever builds the cache (~30-60 s); later sessions start in ~3 s."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from connectors.tryton.rpc import TrytonClient
from sandbox import tryton_peer
from sandbox.tryton_setup import TrytonSetup, setup_accounting


@pytest.fixture(scope="session")
def tryton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tryton_peer.TrytonPeer]:
    if importlib.util.find_spec("trytond") is None:
        pytest.skip("trytond is not installed (pip install -e '.[dev]')")
    peer = tryton_peer.TrytonPeer(tmp_path_factory.mktemp("trytond")).start()
    try:
        yield peer
    finally:
        peer.stop()


def new_client(server: tryton_peer.TrytonPeer) -> TrytonClient:
    client = TrytonClient(server.base_url, server.database)
    client.login(tryton_peer.ADMIN_LOGIN, tryton_peer.ADMIN_PASSWORD)
    return client


@pytest.fixture(scope="session")
def tryton_setup(tryton_server: tryton_peer.TrytonPeer) -> TrytonSetup:
    client = new_client(tryton_server)
    try:
        return setup_accounting(client)
    finally:
        client.close()


@pytest.fixture
def tryton(tryton_server: tryton_peer.TrytonPeer, tryton_setup: TrytonSetup) -> Iterator[TrytonClient]:
    """A logged-in client on the set-up database (shared by the session: use unique references)."""
    client = new_client(tryton_server)
    yield client
    client.close()

"""Contract case: the Tryton connector against a real trytond on loopback, started from the cached
module-activated template the way ``tests/peers/conftest.py`` does, seeded with one pushed and
confirmed sale (which creates its invoice) and that invoice posted; stopped afterwards."""

from __future__ import annotations

import importlib.util
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from canonical.store import Store
from connectors.push import push_orders
from connectors.tryton.connector import TrytonConnector
from connectors.tryton.rpc import TrytonClient
from connectors.tryton.target import TrytonTarget
from sandbox import tryton_peer
from sandbox.tryton_setup import post_invoices, setup_accounting
from tests.contract.runner import ContractCase
from tests.push.deals import put_deal


def _client(peer: tryton_peer.TrytonPeer) -> TrytonClient:
    client = TrytonClient(peer.base_url, peer.database)
    client.login(tryton_peer.ADMIN_LOGIN, tryton_peer.ADMIN_PASSWORD)
    return client


def _seed(client: TrytonClient, workdir: Path) -> None:
    """One closed-won deal pushed as a confirmed sale; its invoice posted."""
    setup_accounting(client)
    ref = f"OPP-{uuid.uuid4().hex[:8]}"
    with closing(Store.open(f"sqlite:///{workdir / 'crm.db'}")) as store:
        put_deal(store, ref, [("SKU-C1", "Widget", "2", "12.50")], account_name="Contract Customer")
        report = push_orders(store, TrytonTarget(client))
    assert [r.action for r in report.results] == ["create"], [r.message for r in report.results]
    [sale] = client.search_read("sale.sale", [["reference", "=", ref]], ["invoices"])
    post_invoices(client, list(sale["invoices"]))


@contextmanager
def case() -> Iterator[ContractCase]:
    if importlib.util.find_spec("trytond") is None:
        pytest.skip("trytond is not installed (pip install -e '.[dev]')")
    with tempfile.TemporaryDirectory(prefix="ltc-contract-trytond-") as tmp, \
            tryton_peer.running_peer(Path(tmp)) as peer:
        with closing(_client(peer)) as seeder:
            _seed(seeder, Path(tmp))
        good = _client(peer)
        # the session token authenticates every call: it must never reach a log line or an error
        token = (good._auth or "").removeprefix("Session ")
        assert token, "the Tryton login opened no session"
        bad = _client(peer)
        bad.logout()  # a dead session: every call is refused with HTTP 401
        with closing(good), closing(bad):
            yield ContractCase("tryton", TrytonConnector("tryton", good), secrets=[token],
                               bad_credentials_connector=TrytonConnector("tryton", bad))

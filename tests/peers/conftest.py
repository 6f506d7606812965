"""A real trytond (SQLite) for the session: the cached module-activated database is copied, the
server started on a free loopback port, the accounting set up over JSON-RPC, and the server
stopped at the end. The first run ever builds the cache (~30-60 s); later sessions start in ~3 s."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from canonical.store import Store
from connectors.push import PushReport, push_orders
from connectors.tryton.rpc import TrytonClient
from connectors.tryton.target import TrytonTarget
from sandbox import tryton_peer
from sandbox.tryton_setup import TrytonSetup, credit_invoice, pay_invoice, post_invoices, setup_accounting
from tests.push.deals import put_deal


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


@dataclass
class Scenario:
    """The shared story: two closed-won deals pushed (EUR with two lines, USD with one), both
    invoices posted, the EUR one paid in two parts, the USD one credited by a posted credit note."""

    push: PushReport
    paid_ref: str
    open_ref: str
    paid_sale: dict[str, Any]
    open_sale: dict[str, Any]
    paid_invoice: int
    open_invoice: int
    credit_note: int


@pytest.fixture(scope="session")
def scenario(
    tryton_server: tryton_peer.TrytonPeer, tryton_setup: TrytonSetup, tmp_path_factory: pytest.TempPathFactory
) -> Scenario:
    client = new_client(tryton_server)
    store = Store.open(f"sqlite:///{tmp_path_factory.mktemp('crm') / 'crm.db'}")
    paid_ref, open_ref = f"OPP-{uuid.uuid4().hex[:8]}", f"OPP-{uuid.uuid4().hex[:8]}"
    put_deal(store, paid_ref, [("SKU-P1", "Widget", "3", "12.50"), ("SKU-P2", "Support", "1", "99.99")],
             currency="EUR", account_ref=f"ACC-{paid_ref}", account_name="Paid Customer")
    put_deal(store, open_ref, [("SKU-P1", "Widget", "8", "12.50")], currency="USD",
             account_ref=f"ACC-{open_ref}", account_name="Open Customer")
    report = push_orders(store, TrytonTarget(client))
    assert [r.action for r in report.results] == ["create", "create"], [r.message for r in report.results]
    store.close()

    sales = {s["reference"]: s for s in client.search_read(
        "sale.sale", [["reference", "in", [paid_ref, open_ref]]], ["reference", "number", "invoices", "party"])}
    (paid_invoice,) = sales[paid_ref]["invoices"]
    (open_invoice,) = sales[open_ref]["invoices"]
    post_invoices(client, [paid_invoice, open_invoice])
    pay_invoice(client, paid_invoice, Decimal("100.00"), payment_method=tryton_setup.payment_method,
                description=f"wire {paid_ref} part 1")
    pay_invoice(client, paid_invoice, Decimal("51.24"), payment_method=tryton_setup.payment_method,
                description=f"wire {paid_ref} part 2")
    (credit_note,) = credit_invoice(client, open_invoice)
    post_invoices(client, [credit_note])
    client.close()
    return Scenario(report, paid_ref, open_ref, sales[paid_ref], sales[open_ref], paid_invoice, open_invoice, credit_note)

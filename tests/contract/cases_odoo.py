"""Contract case: the Odoo connector (JSON-RPC) on the in-memory Odoo of tests/odoo, through an httpx
MockTransport (no Odoo server is available here; payloads are shaped as Odoo documents them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager

import httpx

from connectors.http import RetryPolicy
from connectors.odoo import OdooClient, OdooConnector
from tests.contract.runner import ContractCase
from tests.odoo.fake_odoo import KEY, URL, FakeOdoo, partner

WRONG = "odoo-wrong-key-000000000000"


def seeded() -> FakeOdoo:
    fake = FakeOdoo()
    fake.models["res.partner"] = [partner(i, f"2026-11-20 09:{i // 60:02d}:{i % 60:02d}") for i in range(1, 40)]
    fake.models["sale.order"] = [
        {"id": i, "write_date": "2026-11-20 10:00:00", "create_date": "2026-11-20 10:00:00", "name": f"S{i:05d}",
         "partner_id": [i, f"Partner {i}"], "client_order_ref": False if i % 3 else f"006D{i:04d}",
         "state": "sale", "amount_total": 100.5 * i, "currency_id": [1, "EUR"], "order_line": [i * 10]}
        for i in range(1, 12)]
    return fake


@contextmanager
def case() -> Iterator[ContractCase]:
    fake = seeded()

    def handler(request: httpx.Request) -> httpx.Response:
        return fake.jsonrpc(request) if request.url.path == "/jsonrpc" else fake.json2(request)

    def connector(key: str) -> OdooConnector:
        client = OdooClient(URL, db="ltc", api_key=key, login="sync@example.test",
                            policy=RetryPolicy(max_attempts=2, sleep=lambda s: None),
                            http_transport=httpx.MockTransport(handler))
        return OdooConnector("odoo", client, streams=["partners", "sale_orders"], page_size=10)

    with closing(connector(KEY)) as good, closing(connector(WRONG)) as bad:

        yield ContractCase("odoo", good, secrets=[KEY, WRONG], bad_credentials_connector=bad)

"""Contract case: the Salesforce connector against the TLS emulator (client-credentials login)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from connectors.governor import RateGovernor
from connectors.http import RetryPolicy
from connectors.salesforce import SalesforceConnector
from sandbox.salesforce import Org, build_app
from sandbox.server import serve
from tests.contract.runner import ContractCase


@contextmanager
def case() -> Iterator[ContractCase]:
    org = Org(seed=11, size=6)
    srv = serve(build_app(org), tls=True)

    def connector(secret: str) -> SalesforceConnector:
        return SalesforceConnector(
            "sf-contract", base_url=srv.url,
            credentials={"client_id": org.creds.client_id, "client_secret": secret},
            options={"ca_file": srv.ca_file}, page_size=5,
            governor=RateGovernor("sf-contract", 1000, 1.0, pause_at=Decimal("0.8")),
            policy=RetryPolicy(max_attempts=2, sleep=lambda s: None),
        )

    good, bad = connector(org.creds.client_secret), connector("wrong-secret-123")
    try:
        yield ContractCase("salesforce", good, secrets=[org.creds.client_secret, "wrong-secret-123"],
                           bad_credentials_connector=bad)
    finally:
        good.close()
        bad.close()
        srv._server.force_exit = True  # uvicorn's graceful wait lingers on closed TLS keep-alives
        srv.stop()

"""Contract case: the HubSpot connector against the HubSpot emulator (real HTTP, every stream)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sandbox.hubspot import TOKEN
from tests.contract.runner import ContractCase
from tests.hubspot.conftest import make_connector, running


@contextmanager
def case() -> Iterator[ContractCase]:
    with running(size=60, burst_max=100_000, search_per_s=100_000) as (_, server):
        good = make_connector(server)
        bad = make_connector(server, token="pat-na1-not-the-right-token")
        try:
            yield ContractCase("hubspot", good, secrets=[TOKEN, "pat-na1-not-the-right-token"],
                               bad_credentials_connector=bad)
        finally:
            good.close()
            bad.close()

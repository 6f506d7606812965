"""Contract case for the in-memory reference connector (keeps the suite honest about the engine itself)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.connectors.fake import KeysetConnector, seeded
from tests.contract.runner import ContractCase


@contextmanager
def case() -> Iterator[ContractCase]:
    yield ContractCase("fake", KeysetConnector(seeded(25)))

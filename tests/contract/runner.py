"""The connector contract: what every connector must do, whatever its vendor.

Each system contributes ``tests/contract/cases_<system>.py`` with a ``case()`` context manager that
starts what it needs (an emulator, a peer) and yields a :class:`ContractCase`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from connectors.base import Connector


@dataclass
class ContractCase:
    name: str
    connector: Connector
    secrets: list[str] = field(default_factory=list)  # strings that must never be logged or shown
    bad_credentials_connector: Connector | None = None  # same source, wrong secret: must fail cleanly
    streams: list[str] | None = None  # default: every declared stream


CaseFactory = Callable[[], AbstractContextManager[ContractCase]]

"""Every connector, one contract: primary key declared, stops on an empty page, a re-run writes
nothing, and no secret ever reaches a log line or an error message."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Iterator

import pytest

import tests.contract as contract_pkg
from canonical.store import Store
from connectors.base import sync
from connectors.errors import ConnectorError
from tests.contract.runner import CaseFactory, ContractCase

CASES: dict[str, CaseFactory] = {
    mod.name.removeprefix("cases_"): importlib.import_module(f"tests.contract.{mod.name}").case
    for mod in pkgutil.iter_modules(contract_pkg.__path__)
    if mod.name.startswith("cases_")
}


@pytest.fixture(params=sorted(CASES), scope="module")
def case(request: pytest.FixtureRequest) -> Iterator[ContractCase]:
    with CASES[request.param]() as c:
        yield c


def test_every_stream_declares_a_primary_key(case: ContractCase) -> None:
    assert case.connector.streams, f"{case.name} declares no stream"
    for spec in case.connector.streams:
        assert spec.primary_key, f"{case.name}.{spec.name} has no primary key"
        assert spec.page_size > 0


def test_sync_terminates_and_a_rerun_writes_nothing(case: ContractCase, sqlite_store: Store,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    first = sync(case.connector, sqlite_store, streams=case.streams)
    assert first and all(r.status == "success" for r in first), [(r.stream, r.status, r.message) for r in first]
    assert sum(r.records for r in first) > 0, f"{case.name} pulled nothing from its sandbox"
    again = sync(case.connector, sqlite_store, streams=case.streams)
    assert [r.written for r in again] == [0] * len(again), "a re-run over unchanged data wrote records"
    assert all(r.pages >= 1 for r in again)
    _assert_no_secret(case, caplog.text)


def test_bad_credentials_fail_cleanly_without_leaking(case: ContractCase, sqlite_store: Store,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    if case.bad_credentials_connector is None:
        pytest.skip(f"{case.name} has no credentials to get wrong")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConnectorError) as err:
        sync(case.bad_credentials_connector, sqlite_store, streams=case.streams)
    assert "\n" not in str(err.value).strip()
    _assert_no_secret(case, caplog.text + str(err.value))


def _assert_no_secret(case: ContractCase, text: str) -> None:
    for secret in case.secrets:
        assert secret not in text, f"{case.name} leaked a secret into logs or errors"

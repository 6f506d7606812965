"""Salesforce paging faults: a repeating nextRecordsUrl ends the read (one line), a full page whose last row's
SystemModstamp cannot be read quarantines that row (no traceback from the read-ahead)."""

from __future__ import annotations

from typing import Any

import pytest

from canonical.store import Store
from connectors.base import sync
from connectors.errors import PagingBroken
from tests.connectors.deadline import within
from tests.salesforce.conftest import Make


def test_repeating_next_records_url_ends_the_read(make: Make) -> None:
    conn = make()
    calls: list[str] = []

    def call(what: str, fn: Any, **kw: Any) -> dict[str, Any]:
        calls.append(what)
        return {"done": False, "nextRecordsUrl": "/services/data/v59.0/queryAll/01gREPEAT-2", "records": [{"Id": "a"}]}

    conn._call = call  # type: ignore[method-assign]
    out = within(lambda: conn.query_all("SELECT Id FROM Account"))
    assert isinstance(out, PagingBroken)
    assert "returned the same page token twice" in str(out) and len(calls) == 2


def test_unreadable_stamp_on_the_last_row_of_a_full_page_is_quarantined(
        make: Make, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = make(page_size=2)
    rows = [{"Id": "001A", "SystemModstamp": "2026-01-01T00:00:00.000+0000", "Name": "a"},
            {"Id": "001B", "SystemModstamp": "31/12/2026 10:00", "Name": "b"}]
    served: list[str] = []

    def query_all(soql: str) -> list[dict[str, Any]]:
        served.append(soql)
        return [dict(r) for r in rows] if len(served) == 1 else []

    monkeypatch.setattr(conn, "query_all", query_all)
    monkeypatch.setattr(conn, "_wants_bulk", lambda obj: False)
    monkeypatch.setattr(conn, "count", lambda stream, window: None)
    monkeypatch.setattr(conn, "source_ids", lambda stream: None)
    result = sync(conn, sqlite_store, streams=[conn.streams[0].name])[0]
    assert result.quarantined >= 1 and result.records >= 1

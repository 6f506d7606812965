"""The sync engine ends a stream whose page token repeats (never a hang); odd ids and epochs are quarantined."""

from __future__ import annotations

from typing import Any

import pytest

from canonical.store import Store
from connectors.base import (
    Connector,
    Page,
    StreamResult,
    StreamSpec,
    Window,
    parse_instant,
    sync_stream,
    to_raw,
)
from tests.connectors.deadline import within

SPEC = StreamSpec("things", "thing", cursor_field="updated", page_size=2)


class Looping(Connector):
    """A source whose second page names the first page's token again."""

    kind = "looping"
    streams = (SPEC,)

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        n = int(token or 0)
        return Page([{"id": f"t{n}", "updated": "2026-01-01T00:00:00Z"}], next_token=str((n + 1) % 2))


def test_repeated_page_token_ends_the_stream_incomplete(sqlite_store: Store) -> None:
    result = within(lambda: sync_stream(Looping("loop"), SPEC, sqlite_store, run_id="r"))
    assert isinstance(result, StreamResult), result
    assert result.status == "incomplete"
    assert (result.message or "").startswith("loop returned the same page token twice: its paging is broken")
    assert sqlite_store.count_raw("loop", "thing") == 2  # the pages read stay


@pytest.mark.parametrize("value", [10**30, "1" * 40])
def test_huge_epoch_is_a_value_error(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_instant(value)


def test_to_raw_rejects_odd_and_duplicate_ids() -> None:
    recs = [{"id": 1, "updated": 1794999000}, {"id": "1", "updated": 1794999000}, {"id": True},
            {"id": {"a": 1}}, {"id": 1.5}, {"id": "x", "updated": 10**400}]
    raws, rejected = to_raw(SPEC, recs)
    assert [r.source_id for r in raws] == ["1"]
    reasons = [r.reason for r in rejected]
    assert len(reasons) == 5
    assert "more than once in one page" in reasons[0]
    assert all("not a string or an integer" in r for r in reasons[1:4])
    assert "unreadable updated" in reasons[4]

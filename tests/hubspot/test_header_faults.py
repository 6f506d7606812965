"""HubSpot rate-limit headers with bad values are ignored, not a traceback or a negative sleep."""

from __future__ import annotations

import pytest

from connectors.errors import PagingBroken
from connectors.governor import RateGovernor
from connectors.hubspot import HubSpotConnector, header_int, pace


def test_bad_rate_limit_headers_are_ignored() -> None:
    gov = RateGovernor("t", capacity=10, interval_s=1.0)
    conn = HubSpotConnector("hs", "https://hubspot.test", "pat-x", governor=gov)
    try:
        conn._observe({"X-HubSpot-RateLimit-Daily": "1000", "X-HubSpot-RateLimit-Daily-Remaining": "n/a",
                       "X-HubSpot-RateLimit-Max": "0", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                       "X-HubSpot-RateLimit-Remaining": "-5"})
    finally:
        conn.close()
    assert gov.capacity > 0 and gov.interval_s > 0 and gov.rate > 0
    assert gov.daily_used is None
    assert header_int({"X": "n/a"}, "X") is None and header_int({"X": "0"}, "X", least=1) is None
    assert header_int({"X": "7"}, "X") == 7


def test_pace_refuses_a_zero_limit() -> None:
    with pytest.raises(ValueError):
        pace(RateGovernor("t", capacity=10, interval_s=1.0), 0, 10.0)


def _search_conn(answer: dict[str, object]) -> HubSpotConnector:
    conn = HubSpotConnector("hs", "https://hubspot.test", "pat-x", governor=RateGovernor("t", capacity=10,
                                                                                          interval_s=1.0))
    conn._props["deals"] = ["hs_object_id", "hs_lastmodifieddate"]
    conn._post = lambda path, body, search=False: answer  # type: ignore[method-assign, assignment, misc]
    return conn


def test_search_ignoring_the_id_filter_ends_with_one_line() -> None:
    conn = _search_conn({"total": 3, "results": [{"id": "5"}, {"id": "7"}], "paging": {"next": {"after": "2"}}})
    try:
        state = {"p": "search", "until": 10, "wins": [[0, 10]], "last": None, "probed": False}
        first = conn._search_page("deals", state)
        assert first.next_token["last"] == "7"
        with pytest.raises(PagingBroken, match="returned the same page token twice"):
            conn._search_page("deals", first.next_token)
    finally:
        conn.close()


def test_search_record_without_id_does_not_end_the_paging() -> None:
    conn = _search_conn({"total": 3, "results": [{"id": "5"}, {"properties": {}}], "paging": {"next": {"after": "2"}}})
    try:
        state = {"p": "search", "until": 10, "wins": [[0, 10]], "last": None, "probed": False}
        assert conn._search_page("deals", state).next_token["last"] == "5"
    finally:
        conn.close()

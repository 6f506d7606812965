"""HubSpot rate-limit headers with bad values are ignored, not a traceback or a negative sleep."""

from __future__ import annotations

import pytest

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

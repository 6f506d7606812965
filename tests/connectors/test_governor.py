"""Token bucket fed by vendor headers; quota guard pauses at the configured share."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connectors.errors import QuotaPaused
from connectors.governor import RateGovernor, governor_for, reset_governors


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_bucket_paces_to_the_configured_rate() -> None:
    t = FakeTime()
    gov = RateGovernor("hs", capacity=190, interval_s=10, clock=t.clock, sleep=t.sleep)
    for _ in range(190 + 190):
        gov.acquire()
    # the first 190 are the burst; the next 190 need a full refill of 10 s
    assert 9.9 <= t.now <= 10.1


def test_vendor_remaining_header_wins_over_our_count() -> None:
    t = FakeTime()
    gov = RateGovernor("hs", capacity=190, interval_s=10, clock=t.clock, sleep=t.sleep)
    gov.observe_window(remaining=0, limit=190, interval_s=10)
    gov.acquire()
    assert t.now == pytest.approx(10 / 190)


def test_quota_guard_pauses_at_threshold() -> None:
    gov = RateGovernor("sf", capacity=25, interval_s=1, pause_at=Decimal("0.80"))
    gov.observe_daily(used=3999, limit=5000)
    gov.check_quota()
    gov.observe_daily(used=4000, limit=5000)
    with pytest.raises(QuotaPaused, match=r"4000/5000.*paused with state saved"):
        gov.check_quota()


def test_one_governor_per_tenant_and_system() -> None:
    reset_governors()
    a = governor_for("acme", "hubspot", lambda: RateGovernor("hubspot", 190, 10))
    b = governor_for("acme", "hubspot", lambda: RateGovernor("hubspot", 1, 1))
    c = governor_for("other", "hubspot", lambda: RateGovernor("hubspot", 190, 10))
    assert a is b and a is not c
    reset_governors()

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


class LateTime(FakeTime):
    """Every sleep wakes ``late`` seconds after it should (a busy machine)."""

    def __init__(self, late: float) -> None:
        super().__init__()
        self.late = late

    def sleep(self, s: float) -> None:
        self.now += s + self.late


def _calls_per_second(times: list[float]) -> int:
    """The most calls in any one-second window starting at a call."""
    return max(sum(1 for u in times if t <= u < t + 1) for t in times)


def test_pacer_makes_up_late_wake_ups_without_bursting() -> None:
    from connectors.governor import Pacer

    t = LateTime(late=0.004)
    pacer = Pacer("jdy", capacity=1, interval_s=1 / 29.4, clock=t.clock, sleep=t.sleep)
    times = []
    for _ in range(300):
        pacer.acquire()
        times.append(t.now)
    # 300 calls at 29.4/s take ~10.2 s although every sleep overshoots by 4 ms...
    assert times[-1] == pytest.approx(299 / 29.4, abs=0.01)
    assert _calls_per_second(times) <= 30  # ...and no one-second window holds more than 30
    # a token bucket of one token loses each overshoot: the same calls take 4 ms x 299 longer
    t2 = LateTime(late=0.004)
    bucket = RateGovernor("jdy", capacity=1, interval_s=1 / 29.4, clock=t2.clock, sleep=t2.sleep)
    for _ in range(300):
        bucket.acquire()
    assert t2.now > times[-1] + 1.0


def test_pacer_keeps_no_credit_when_idle_and_waits_after_a_refusal() -> None:
    from connectors.governor import Pacer

    t = FakeTime()
    pacer = Pacer("jdy", capacity=1, interval_s=0.1, clock=t.clock, sleep=t.sleep)
    pacer.acquire()
    t.now += 5.0  # idle
    start = t.now
    for _ in range(3):
        pacer.acquire()
    assert t.now == pytest.approx(start + 0.2)  # no burst of the idle time's slots
    pacer.penalize(1.0)
    before = t.now
    pacer.acquire()
    assert t.now >= before + 1.0


def test_a_rate_share_slows_every_governor_and_ends_with_its_block() -> None:
    """Streams of one source fanned out over k processes: each runs at 1/k, so that together they keep to the
    vendor's limit (burst, refill and the vendor's reported window alike)."""
    from connectors.governor import Pacer, rate_share

    t = FakeTime()
    gov = RateGovernor("hs", capacity=190, interval_s=10, clock=t.clock, sleep=t.sleep)
    with rate_share(0.5):
        for _ in range(95 + 95):
            gov.acquire()
        # half the burst (95), then half the rate: 95 more take the whole 10 s window
        assert 9.9 <= t.now <= 10.1
        gov.observe_window(remaining=40, limit=190, interval_s=10)
        assert gov.tokens <= 20  # of the 40 the vendor says are left, this process counts its half
        with rate_share(0.25):  # nested or concurrent shares: the smallest holds
            assert gov.rate == pytest.approx(190 / 10 / 4)
        assert gov.rate == pytest.approx(190 / 10 / 2)
    assert gov.rate == pytest.approx(19.0)  # the block ended: the whole rate again
    p = Pacer("jdy", capacity=30, interval_s=1, clock=t.clock, sleep=t.sleep)
    start = t.now
    with rate_share(1 / 3):
        for _ in range(11):
            p.acquire()
    assert t.now - start == pytest.approx(1.0)  # 10 slots of 1/10 s after the first: 30/s shared by three
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match="fraction"), rate_share(bad):
            pass

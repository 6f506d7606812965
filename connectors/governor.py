"""Rate governor: one token bucket per tenant + system, shared by every stream in the process.

The bucket starts from a configured rate and is corrected by what the vendor reports about itself
(``X-HubSpot-RateLimit-Remaining``/``-Max``/``-Interval-Milliseconds``, ``Sforce-Limit-Info``
``api-usage=used/limit``): when the vendor says fewer requests remain in its window than we have
tokens, we believe the vendor. A daily quota (Salesforce's rolling 24 h allocation, HubSpot's daily
limit) is tracked separately; past ``pause_at`` (a share of the allocation) :meth:`check_quota`
raises :class:`~connectors.errors.QuotaPaused` so that the run stops with its state saved.

A vendor's limit is per account, not per process: where one source's streams run in several processes at
once (``flows.sync.sync_on_dask``), each runs its streams inside :func:`rate_share` with its part of the rate
(1/k for k streams at once), so that together they keep to the limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from connectors.errors import QuotaPaused

_shares: list[float] = []  # the rate shares in force in this process (:func:`rate_share`)
_shares_lock = threading.Lock()


def current_share() -> float:
    """The share of each governor's rate this process may use: the smallest of those in force, else all of it."""
    with _shares_lock:
        return min(_shares, default=1.0)


@contextmanager
def rate_share(fraction: float) -> Iterator[None]:
    """Within the block, every governor of this process runs at ``fraction`` of its rate: it sends no faster, its
    bucket holds no more than that share of its capacity, and of the requests the vendor says are left in its
    window it counts only that share as its own. Nested or concurrent blocks: the smallest share holds."""
    if not 0 < fraction <= 1:
        raise ValueError(f"a rate share is a fraction in (0, 1], not {fraction}")
    with _shares_lock:
        _shares.append(fraction)
    try:
        yield
    finally:
        with _shares_lock:
            _shares.remove(fraction)


@dataclass
class RateGovernor:
    """Token bucket: ``capacity`` requests, refilled at ``capacity / interval_s`` per second."""

    name: str
    capacity: float
    interval_s: float
    pause_at: Decimal = Decimal("0.80")
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    tokens: float = field(init=False)
    daily_used: int | None = field(default=None, init=False)
    daily_limit: int | None = field(default=None, init=False)
    waited_s: float = field(default=0.0, init=False)
    _last: float = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.capacity)
        self._last = self.clock()

    @property
    def rate(self) -> float:
        """Requests per second this process may send (its :func:`rate_share` of the vendor's)."""
        return self.capacity / self.interval_s * current_share()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(float(self.capacity) * current_share(), self.tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self, cost: float = 1.0) -> None:
        """Block until ``cost`` tokens are available, then take them."""
        while True:
            with self._lock:
                self._refill()
                if self.tokens >= cost - 1e-9:  # float refill may land a hair short
                    self.tokens -= cost
                    return
                wait = (cost - self.tokens) / self.rate
            self.waited_s += wait
            self.sleep(wait)

    def observe_window(self, remaining: int, limit: int | None = None, interval_s: float | None = None) -> None:
        """The vendor's own count of requests left in its current window."""
        with self._lock:
            if limit and interval_s and limit > 0 and interval_s > 0 and (
                    limit != self.capacity or interval_s != self.interval_s):
                self.capacity, self.interval_s = float(limit), float(interval_s)
            self._refill()
            self.tokens = min(self.tokens, float(max(remaining, 0)) * current_share())

    def observe_daily(self, used: int, limit: int) -> None:
        with self._lock:
            self.daily_used, self.daily_limit = used, limit

    def penalize(self, wait_s: float) -> None:
        """After a 429: empty the bucket so that no stream sends before the window reopens."""
        with self._lock:
            self._refill()
            self.tokens = min(self.tokens, -wait_s * self.rate + 1)

    def quota_share(self) -> Decimal | None:
        if self.daily_used is None or not self.daily_limit:
            return None
        return Decimal(self.daily_used) / Decimal(self.daily_limit)

    def check_quota(self) -> None:
        share = self.quota_share()
        if share is not None and share >= self.pause_at:
            raise QuotaPaused(
                f"{self.name}: {self.daily_used}/{self.daily_limit} of the daily API allocation used "
                f"({share:.0%} >= pause threshold {self.pause_at:.0%}); paused with state saved, "
                "the next run resumes"
            )


@dataclass
class Pacer(RateGovernor):
    """For vendors whose limit is *N calls per second* (Jiandaoyun's 30/s): calls are given slots
    ``1 / rate`` apart, each slot following the previous *slot*, not the moment the caller woke up.

    A token bucket of one token loses every late wake-up (a sleep that overshoots by a few
    milliseconds on a busy machine becomes a slower rate); a bigger bucket allows bursts that a
    per-second window refuses. Here a late call is made up by the next one being on time, and never
    more: after an idle spell the next slot starts from now (no credit piles up)."""

    _next: float = field(default=0.0, init=False)

    def acquire(self, cost: float = 1.0) -> None:
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + cost / self.rate
        if slot > now:
            self.waited_s += slot - now
            self.sleep(slot - now)

    def penalize(self, wait_s: float) -> None:
        """After a refusal: no call before ``wait_s`` from now."""
        with self._lock:
            self._next = max(self._next, self.clock() + wait_s)


_registry: dict[tuple[str, str], RateGovernor] = {}
_registry_lock = threading.Lock()


def governor_for(tenant: str, system: str, factory: Callable[[], RateGovernor]) -> RateGovernor:
    """The process-wide governor of (tenant, system), created on first use by ``factory``."""
    key = (tenant, system)
    with _registry_lock:
        gov = _registry.get(key)
        if gov is None:
            gov = _registry[key] = factory()
        return gov


def reset_governors() -> None:
    """Forget every governor (tests)."""
    with _registry_lock:
        _registry.clear()

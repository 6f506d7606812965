"""Stripe fixtures: our emulator on a free loopback port (fresh state per test) and connectors on it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.governor import RateGovernor
from connectors.http import RetryPolicy
from connectors.stripe import StripeConnector
from sandbox.server import RunningServer, free_port, serve
from sandbox.stripe import StripeEmulator, create_app

T_NOW = 1_795_000_000.0  # 2026-11-17, a fixed "now" so seeded data is the same every run
KEY = "sk_test_emu_4eC39HqLyjWDarjtT1zdp7dc"
LOCALSTRIPE_KEY = "sk_test_localstripe_peer_0001"


class FakeTime:
    """Monotonic time that only moves when slept on (keeps the governor's 429 penalty instant)."""

    def __init__(self) -> None:
        self.t = 0.0

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


class FrozenClock:
    def __init__(self, t: float = T_NOW):
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Sandbox:
    emu: StripeEmulator
    server: RunningServer
    sleeps: list[float] = field(default_factory=list)
    _http: httpx.Client | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.url)
        return self._http

    def connector(self, **kw: Any) -> StripeConnector:
        kw.setdefault("api_key", KEY)
        t = FakeTime()
        return StripeConnector(
            "stripe", base_url=self.url, clock=self.emu.now,
            policy=RetryPolicy(max_attempts=4, sleep=self.sleeps.append),
            governor=RateGovernor("stripe-test", capacity=10_000, interval_s=1.0, clock=t.clock, sleep=t.sleep),
            **kw)

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [q for m, p, q in self.emu.requests if p == path and m == "GET"]


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    made: list[Sandbox] = []

    def make(**kw: Any) -> Sandbox:
        kw.setdefault("size", 12)
        emu = StripeEmulator(api_key=KEY, clock=FrozenClock(), **kw)
        sb = Sandbox(emu, serve(create_app(emulator=emu)))
        made.append(sb)
        return sb

    yield make
    for sb in made:
        if sb._http is not None:
            sb._http.close()
        sb.server.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox()


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    pytest.importorskip("localstripe")
    home = tmp_path_factory.mktemp("localstripe")
    port = free_port()
    # The stock `localstripe --from-scratch` binds every interface and pickles to the hard-coded
    # /tmp/localstripe.pickle (TMPDIR does not move it): the wrapper serves the same app on
    # 127.0.0.1 with in-memory state, so parallel runs never share or clobber a file.
    log = (home / "localstripe.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.localstripe_peer", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2],
                            env={**os.environ, "TMPDIR": str(home)})
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {LOCALSTRIPE_KEY}"}, timeout=30)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if http.get("/v1/customers").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"localstripe did not start: {(home / 'localstripe.log').read_text()[-500:]}")
            time.sleep(0.1)
        yield http
    finally:
        http.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

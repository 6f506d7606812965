"""End-to-end sync throughput: a connector against its emulator (in its own process) into SQLite.

    python bench/sync.py --source hubspot --records 100000 --mode unthrottled
    python bench/sync.py --source hubspot --mode throttled

Last line, unthrottled: ``sync_records_per_s=<n> peak_rss_mb=<n>``; throttled (the emulator enforces
the vendor's real limits): ``ceiling_ratio=<achieved / limit-implied records per s> http_429=<n>``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from canonical.store import Store  # noqa: E402
from connectors.base import sync  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _emulator_process(module: str, args: list[str], ready_path: str, headers: dict[str, str]
                      ) -> tuple[subprocess.Popen[bytes], str]:
    from sandbox.server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", str(port), *args], cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + ready_path, headers=headers, timeout=2).status_code < 500:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"the {module} emulator did not start")


def run_hubspot(args: argparse.Namespace) -> str:
    """Deals from HubSpot: the first-run load (archived pass, list pages of 100 with every property,
    the catch-up search) into SQLite. Throttled, the emulator enforces 190 requests / 10 s rolling,
    5 searches / s and a daily limit; the limit-implied ceiling is 19 list requests/s x 100 records.
    The emulator pre-renders its records' JSON: HubSpot's server time is not ours to measure, and on a
    small machine the emulator would otherwise compete with the client for the same cores."""
    from connectors.hubspot import LIST_PAGE, HubSpotConnector
    from sandbox.hubspot import TOKEN

    throttled = args.mode == "throttled"
    size = args.records or (20_000 if throttled else 100_000)
    limits = ["--rate-limits"] if throttled else ["--burst-max", str(10**9), "--search-per-s", str(10**9)]
    proc, url = _emulator_process("sandbox.hubspot", ["--size", str(size), "--lean", "--prerender", *limits],
                                  "/crm/v3/pipelines/deals", {"Authorization": f"Bearer {TOKEN}"})
    if throttled:
        time.sleep(10.5)  # let the readiness probe age out of the emulator's 10 s rolling window
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(f"sqlite:///{os.path.join(tmp, 'bench.db')}")
            connector = HubSpotConnector("hubspot", url, TOKEN, tenant=f"bench-{uuid.uuid4().hex[:6]}")
            start = time.perf_counter()
            [result] = sync(connector, store, streams=["deals"])
            elapsed = time.perf_counter() - start
            landed = store.count_raw("hubspot", "deals")
            requests = connector.http.requests_sent + connector.search_http.requests_sent
            print(f"hubspot deals: status={result.status} records={result.records} landed={landed}/{size} "
                  f"pages={result.pages} requests={requests} elapsed_s={elapsed:.2f}")
            if result.status != "success" or landed != size:
                raise SystemExit(f"incomplete sync: {result.status} {result.message}")
            rate = landed / elapsed
            if throttled:
                ceiling = 190 / 10 * LIST_PAGE
                return f"ceiling_ratio={rate / ceiling:.3f} http_429={connector.http_429}"
            return f"sync_records_per_s={rate:.0f} peak_rss_mb={peak_rss_mb():.1f}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


RUNNERS: dict[str, Callable[[argparse.Namespace], str]] = {
    "hubspot": run_hubspot,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, choices=["salesforce", "hubspot"])
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--mode", choices=["unthrottled", "throttled"], default="unthrottled")
    args = parser.parse_args()
    runner = RUNNERS.get(args.source)
    if runner is None:
        parser.error(f"no {args.source} benchmark in this build")
    print(runner(args))


if __name__ == "__main__":
    main()

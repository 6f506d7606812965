"""End-to-end sync throughput: a connector against its emulator (in its own process) into SQLite.

    python bench/sync.py --source hubspot --records 100000 --mode unthrottled
    python bench/sync.py --source hubspot --mode throttled
    python bench/sync.py --source salesforce --records 100000 --mode unthrottled
    python bench/sync.py --source hubspot --mode incremental      # 10k deals, every stream, nothing changed
    python bench/sync.py --source zoho --records 100000 --mode unthrottled
    python bench/sync.py --source zoho --mode throttled
    python bench/sync.py --source jiandaoyun --records 100000 --mode unthrottled
    python bench/sync.py --source jiandaoyun --mode throttled

Last line, unthrottled: ``sync_records_per_s=<n> peak_rss_mb=<n>``; throttled (the emulator enforces
the vendor's real limits): ``ceiling_ratio=<achieved / limit-implied records per s> http_429=<n>``;
incremental (HubSpot): ``nochange_requests=<n> ...``.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

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


def run_hubspot_incremental(args: argparse.Namespace) -> str:
    """A portal of 10k deals (contacts, companies, line items, products in proportion): a first run of every
    stream, then a second run where nothing changed; the requests of the second run are what a schedule
    pays for "nothing happened" (the association streams' full sweep is not due: it runs once a day)."""
    from connectors.hubspot import HubSpotConnector
    from sandbox.hubspot import TOKEN

    size = args.records or 10_000
    # a portal's history: records modified up to a minute apart over days (the default emulator puts all
    # 25k records within ten minutes, so the 10-minute lookback alone would re-read all of them)
    proc, url = _emulator_process("sandbox.hubspot", ["--size", str(size), "--burst-max", str(10**9),
                                                      "--search-per-s", str(10**9), "--edit-gap-ms", "60000"],
                                  "/crm/v3/pipelines/deals", {"Authorization": f"Bearer {TOKEN}"})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(f"sqlite:///{os.path.join(tmp, 'bench.db')}")

            def run() -> tuple[int, float, list[Any]]:
                connector = HubSpotConnector("hubspot", url, TOKEN, tenant=f"bench-{uuid.uuid4().hex[:6]}")
                start = time.perf_counter()
                results = sync(connector, store)
                elapsed = time.perf_counter() - start
                sent = connector.http.requests_sent + connector.search_http.requests_sent
                connector.close()
                bad = [(r.stream, r.status, r.message) for r in results if r.status != "success"]
                if bad:
                    raise SystemExit(f"incomplete sync: {bad}")
                return sent, elapsed, results

            full, full_s, _ = run()
            print(f"hubspot full run ({size} deals, all streams): requests={full} elapsed_s={full_s:.2f}", flush=True)
            quiet, quiet_s, results = run()
            written = sum(r.written for r in results)
            print(f"hubspot no-change run: requests={quiet} elapsed_s={quiet_s:.2f} written={written}; per stream: "
                  + ", ".join(f"{r.stream}={r.pages}p" for r in results), flush=True)
            return f"nochange_requests={quiet} nochange_s={quiet_s:.2f} full_requests={full}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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


SF_RECORDS_PER_ACCOUNT = Decimal("8.75")  # what sandbox.salesforce.Org.populate creates per account


def _salesforce_emulator(size: int, latency_s: float, conn: Any) -> None:
    """Child process: seed the org, serve it over TLS, report (url, ca_file, creds, total), wait."""
    from sandbox.salesforce import Faults, Org, build_app
    from sandbox.server import serve

    org = Org(seed=42, size=size, daily_limit=10_000_000, faults=Faults(latency_s=latency_s))
    gc.freeze()  # the seeded org is long-lived: keep the collector from rescanning it on every page
    srv = serve(build_app(org), tls=True)
    conn.send((srv.url, srv.ca_file, org.creds.client_id, org.creds.client_secret, org.total_records()))
    conn.recv()  # stop signal
    srv._server.force_exit = True
    srv.stop()


def run_salesforce(args: argparse.Namespace) -> str:
    from connectors.salesforce import SalesforceConnector

    size = max(1, int(Decimal(args.records or 100_000) / SF_RECORDS_PER_ACCOUNT))
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(
        target=_salesforce_emulator, args=(size, 0.02 if args.mode == "throttled" else 0.0, child), daemon=True)
    proc.start()
    url, ca_file, client_id, client_secret, total = parent.recv()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(f"sqlite:///{tmp}/bench.db")
            class Timed(SalesforceConnector):
                read_s = 0.0

                def read_page(self, *a: Any, **kw: Any) -> Any:
                    t = time.perf_counter()
                    try:
                        return super().read_page(*a, **kw)
                    finally:
                        Timed.read_s += time.perf_counter() - t

            conn = Timed("sf-bench", base_url=url,
                                       credentials={"client_id": client_id, "client_secret": client_secret},
                                       options={"ca_file": ca_file, "completeness": True,
                                                "prefetch": args.prefetch}, page_size=2000)
            started = time.perf_counter()
            results = sync(conn, store)
            elapsed = time.perf_counter() - started
            conn.close()
            pulled = sum(r.records for r in results)
            bad = [(r.stream, r.status, r.message) for r in results if r.status != "success" or r.message]
            landed = store.count_raw("sf-bench")
            store.close()
    finally:
        parent.send("stop")
        proc.join(timeout=15)
    print(f"salesforce: {total} records in the org, {pulled} pulled, {landed} landed in {elapsed:.1f} s "
          f"({Timed.read_s:.1f} s waiting for/parsing pages, the rest in the engine and the store); "
          f"problems: {bad or 'none'}", file=sys.stderr)
    if pulled != total or landed != total or bad:
        raise SystemExit(f"incomplete sync: org {total}, pulled {pulled}, landed {landed}, {bad}")
    return f"sync_records_per_s={pulled / elapsed:.0f} peak_rss_mb={peak_rss_mb():.0f}"


def run_zoho(args: argparse.Namespace) -> str:
    """Deals from Zoho CRM: the first run (COQL keyset pages of 2,000 keys, bodies by 100 ids) into SQLite.

    Throttled, the emulator enforces a concurrency limit of 5 calls in flight (the free edition's
    per-org limit) and answers each call after 500 ms (a Zoho call's usual time): the limit allows
    5 / 0.5 s = 10 calls/s, and a
    page of 2,000 records costs 21 calls (one COQL, twenty ``ids=`` reads of 100), so the ceiling is
    10 x 2000 / 21 records/s. Unthrottled, no latency and no concurrency limit (the connector keeps 5 in
    flight); the emulator pre-renders its records' JSON and runs in its own process."""
    from connectors.zoho import IDS_PER_CALL, KEYSET_LIMIT, ZohoConnector
    from sandbox.zoho import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN

    throttled = args.mode == "throttled"
    size = args.records or (40_000 if throttled else 100_000)
    concurrency, latency_s = 5, 0.5
    limits = ["--concurrency", str(concurrency), "--latency-ms", str(latency_s * 1000)] if throttled else []
    proc, url = _emulator_process("sandbox.zoho", ["--size", str(size), "--modules", "Deals", "--prerender",
                                                   *limits], "/crm/v8/Deals", {})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(f"sqlite:///{os.path.join(tmp, 'bench.db')}")
            connector = ZohoConnector("zoho", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                      refresh_token=REFRESH_TOKEN, base_url=url, accounts_url=url,
                                      tenant=f"bench-{uuid.uuid4().hex[:6]}", concurrency=concurrency,
                                      streams=["deals"])
            start = time.perf_counter()
            [result] = sync(connector, store, streams=["deals"])
            elapsed = time.perf_counter() - start
            landed = store.count_raw("zoho", "Deals")
            requests = connector.requests_sent
            connector.close()
            print(f"zoho deals: status={result.status} records={result.records} landed={landed}/{size} "
                  f"pages={result.pages} requests={requests} elapsed_s={elapsed:.2f}")
            if result.status != "success" or landed != size:
                raise SystemExit(f"incomplete sync: {result.status} {result.message}")
            rate = landed / elapsed
            if throttled:
                calls_per_page = 1 + KEYSET_LIMIT // IDS_PER_CALL
                ceiling = concurrency / latency_s * KEYSET_LIMIT / calls_per_page
                return f"ceiling_ratio={rate / ceiling:.3f} http_429={connector.http_429}"
            return f"sync_records_per_s={rate:.0f} peak_rss_mb={peak_rss_mb():.1f}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_jiandaoyun(args: argparse.Namespace) -> str:
    """One Jiandaoyun form (opportunities) into SQLite: ``data/list`` pages of 100 by ``data_id``.

    Throttled, the emulator refuses more than 30 calls in a second (429, code 8303) and the connector
    paces itself with its governor: the limit-implied ceiling is 30 calls/s x 100 records. Unthrottled,
    no limit on either side; the emulator runs in its own process."""
    import json as _json

    from connectors.jiandaoyun import MAX_LIMIT, RATE_PER_S, FormConfig, JiandaoyunConnector
    from sandbox.jiandaoyun import API_KEY

    throttled = args.mode == "throttled"
    size = args.records or (30_000 if throttled else 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "jdy.json")
        limits = ["--rate-per-s", str(int(RATE_PER_S))] if throttled else []
        proc, url = _emulator_process("sandbox.jiandaoyun", ["--size", str(size), "--roles", "opportunities",
                                                             "--state", state, *limits],
                                      "/api/v5/app/entry/list", {"Authorization": f"Bearer {API_KEY}"})
        try:
            info = _json.loads(Path(state).read_text(encoding="utf-8"))
            name = info["labels"]["opportunities"]["name"]
            form = FormConfig("opportunities", info["roles"]["opportunities"], "deal", {"name": name})
            time.sleep(1.1)  # the readiness probe's second passes
            store = Store.open(f"sqlite:///{os.path.join(tmp, 'bench.db')}")
            connector = JiandaoyunConnector("jiandaoyun", api_key=API_KEY, app_id=info["app_id"], forms=[form],
                                            base_url=url, tenant=f"bench-{uuid.uuid4().hex[:6]}",
                                            rate_per_s=RATE_PER_S if throttled else 10**9)
            start = time.perf_counter()
            [result] = sync(connector, store, streams=["opportunities"])
            elapsed = time.perf_counter() - start
            landed = store.count_raw("jiandaoyun", "opportunities")
            requests = connector.http.requests_sent
            connector.close()
            print(f"jiandaoyun opportunities: status={result.status} records={result.records} landed={landed}/{size} "
                  f"pages={result.pages} requests={requests} http_429={connector.http_429} elapsed_s={elapsed:.2f}")
            if result.status != "success" or landed != size:
                raise SystemExit(f"incomplete sync: {result.status} {result.message}")
            rate = landed / elapsed
            if throttled:
                ceiling = RATE_PER_S * MAX_LIMIT
                return f"ceiling_ratio={rate / ceiling:.3f} records_per_s={rate:.0f} http_429={connector.http_429}"
            return f"sync_records_per_s={rate:.0f} peak_rss_mb={peak_rss_mb():.1f}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


RUNNERS: dict[str, Callable[[argparse.Namespace], str]] = {
    "hubspot": run_hubspot,
    "hubspot-incremental": run_hubspot_incremental,
    "salesforce": run_salesforce,
    "zoho": run_zoho,
    "jiandaoyun": run_jiandaoyun,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, choices=["salesforce", "hubspot", "zoho", "jiandaoyun"])
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--mode", choices=["unthrottled", "throttled", "incremental"], default="unthrottled")
    parser.add_argument("--prefetch", action=argparse.BooleanOptionalAction, default=True,
                        help="salesforce: fetch the next keyset page while the current one is committed")
    args = parser.parse_args()
    runner = RUNNERS.get(args.source if args.mode != "incremental" else f"{args.source}-incremental")
    if runner is None:
        parser.error(f"no {args.source} benchmark in this build")
    print(runner(args))


if __name__ == "__main__":
    main()

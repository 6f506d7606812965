"""End-to-end sync throughput: a source emulator -> connector -> raw landing in SQLite.

    python bench/sync.py --source salesforce --records 100000 --mode unthrottled
    python bench/sync.py --source salesforce --records 100000 --mode throttled   # 20 ms latency per call

The emulator runs in a child process (its data is held there), so the reported peak RSS is the
syncing process's own: it must not grow with ``--records`` (the engine holds one page at a time).
Last line: ``sync_records_per_s=<n> peak_rss_mb=<n>``.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SF_RECORDS_PER_ACCOUNT = Decimal("8.75")  # what sandbox.salesforce.Org.populate creates per account


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


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
    from canonical.store import Store
    from connectors.base import sync
    from connectors.salesforce import SalesforceConnector

    size = max(1, int(Decimal(args.records) / SF_RECORDS_PER_ACCOUNT))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=["salesforce", "hubspot"], required=True)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--mode", choices=["unthrottled", "throttled"], default="unthrottled")
    parser.add_argument("--prefetch", action=argparse.BooleanOptionalAction, default=True,
                        help="fetch the next keyset page while the current one is committed")
    args = parser.parse_args()
    runners = {"salesforce": run_salesforce}
    if args.source not in runners:
        raise SystemExit(f"bench/sync.py: no runner for --source {args.source} in this branch")
    print(runners[args.source](args))


if __name__ == "__main__":
    main()

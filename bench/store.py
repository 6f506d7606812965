"""Raw-landing throughput: upsert N records, then upsert them again unchanged.

    python bench/store.py --rows 100000 --db sqlite
    python bench/store.py --rows 100000 --db postgresql   # LTC_BENCH_PG_URL or the local server

Last line: ``store_upsert_rows_per_s=<n> unchanged_rows_per_s=<n>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch_db import scratch_database

from canonical.store import RawRecord, Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def records(n: int) -> list[RawRecord]:
    """Salesforce-Opportunity-shaped payloads of about 600 bytes each."""
    out = []
    for i in range(n):
        sid = f"006{i:015d}"
        out.append(
            RawRecord(
                "Opportunity",
                sid,
                {
                    "attributes": {"type": "Opportunity", "url": f"/services/data/v59.0/sobjects/Opportunity/{sid}"},
                    "Id": sid,
                    "AccountId": f"001{i % 5000:015d}",
                    "Name": f"Opportunity {i} for Account {i % 5000}",
                    "StageName": ("Prospecting", "Closed Won", "Closed Lost")[i % 3],
                    "Amount": Decimal(i % 100000) + Decimal("0.50"),
                    "CurrencyIsoCode": "USD",
                    "CloseDate": "2026-06-30",
                    "OwnerId": f"005{i % 40:015d}",
                    "IsDeleted": False,
                    "SystemModstamp": (T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                },
                source_updated_at=T0 + timedelta(seconds=i),
            )
        )
    return out


def run(store: Store, rows: list[RawRecord], page: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(rows), page):
        store.commit_page("bench", "Opportunity", rows[i : i + page], {"offset": i + page})
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--page", type=int, default=2000, help="records per commit_page (one transaction)")
    args = ap.parse_args()

    with scratch_database(args.db) as url:
        store = Store.open(url)
        rows = records(args.rows)
        first = run(store, rows, args.page)
        second = run(store, rows, args.page)
        assert store.count_raw("bench") == args.rows
        store.close()
    print(f"db={args.db} rows={args.rows} page={args.page} first_pass_s={first:.2f} unchanged_pass_s={second:.2f}")
    print(f"store_upsert_rows_per_s={args.rows / first:.0f} unchanged_rows_per_s={args.rows / second:.0f}")


if __name__ == "__main__":
    main()

"""Bank-statement import throughput: write a camt.053 file of N entries, import it, import it again.

    python bench/bank_import.py --entries 20000

Last line: ``camt053_parse_entries_per_s=<n> import_entries_per_s=<n> reimport_entries_per_s=<n> file_mb=<x>``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from canonical.store import Store
from connectors.camt053 import parse_camt053
from connectors.statements import import_file
from sandbox.camt053 import Entry, Statement, Tx, render


def build(n: int) -> bytes:
    day = date(2026, 11, 1)
    entries = []
    for i in range(n):
        amount = Decimal(100 + i % 977) + Decimal(i % 100) / 100
        details = [Tx(end_to_end_id=f"E2E-{i}", debtor_name=f"Customer {i % 500}",
                      debtor_iban="DE02120300000000202051", remittance=f"Invoice INV-2026-{i:06d}")]
        entries.append(Entry(amount, "CRDT" if i % 7 else "DBIT", day + timedelta(days=i % 28), f"ASR-{i:08d}",
                             details=details))
    per = 1000  # daily-sized statements
    stmts = [Statement(f"S-{k}", "DE89370400440532013000", "EUR", Decimal("0"), day, entries[k : k + per])
             for k in range(0, n, per)]
    return render(stmts, message_id="BENCH", created_at=datetime(2026, 12, 1, tzinfo=UTC))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=20000)
    args = parser.parse_args()
    data = build(args.entries)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.xml"
        path.write_bytes(data)
        t = time.perf_counter()
        parse_camt053(data, path.name)
        parse_s = time.perf_counter() - t
        store = Store.open(f"sqlite:///{tmp}/bench.db")
        t = time.perf_counter()
        first = import_file(store, path)
        import_s = time.perf_counter() - t
        t = time.perf_counter()
        second = import_file(store, path)
        reimport_s = time.perf_counter() - t
        assert sum(s.new for s in first.statements) == args.entries
        assert sum(s.unchanged for s in second.statements) == args.entries
        store.close()
    n = args.entries
    print(f"entries={n} parse={parse_s:.2f}s import={import_s:.2f}s reimport={reimport_s:.2f}s")
    print(f"camt053_parse_entries_per_s={n / parse_s:.0f} import_entries_per_s={n / import_s:.0f} "
          f"reimport_entries_per_s={n / reimport_s:.0f} file_mb={len(data) / 1e6:.1f}")


if __name__ == "__main__":
    main()

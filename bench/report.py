"""The finance report at a size: time and memory of ``ltc report`` on a reconciled store, and its workbook's rows.

    python bench/report.py [--chains 100000] [--store sqlite|postgresql]

Generates a world (sandbox.scenario), loads it into a fresh store and reconciles it (neither timed), then runs
``ltc report`` in a child process, as a user does: its wall clock and the peak resident set of its largest process
(the workbook's forked writers share the report's pages with it). Prints the rows of the workbook's largest sheet,
against Excel's 1,048,576.

Last line: ``report_s=<s> peak_rss_mb=<n> kb_per_chain=<k> largest_sheet_rows=<n>`` (``kb_per_chain``: the peak over
a bare ``ltc`` process's, per chain). Measured in session 44: 20k chains 387 MB, 100k 1,161 MB (about 9.7 KB a
chain: ~10 GB at 1M), the finding that the report's rows should become frames. Session 45, with the chain table and
records as Polars frames built 20,000 chains at a time, in pairs against the code before: 100k chains 680-684 MB
(5.7 KB a chain) against 1,071-1,072 MB, 20.9-22.6 s against 21.4-24.1 s; ``ltc report`` at 1M chains (timed
alone): 3.3 GB and 153.5 s against 9.5 GB and 161.2 s, the CSV files identical. Session 46, with the chain table,
chains.csv, the chains sheet, the records' links and the months made by Polars (``ltc report`` alone, in pairs against
the code before, slow phase): 100k chains 22.2/21.7 s and 578/582 MB against 29.1/27.6 s and 688/690 MB; 1M chains
123.2 s and 3,192 MB against 227.4 s and 3,295 MB; every file the same, byte for byte (but the workbook's creation
time and the page's).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch_db import scratch_database  # noqa: E402

from canonical.store import Store  # noqa: E402
from ltc.app.config import Config  # noqa: E402
from reconcile.engine import run_reconciliation  # noqa: E402
from sandbox.scenario import generate  # noqa: E402

LTC = [sys.executable, "-c", "from ltc.cli import main; main()"]


def _child(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``ltc <args>`` in a child; its wall clock and the peak resident set (MB) of it or of the largest of the
    processes it waited for (``wait4``: not this process's other children, such as the reconciliation's helpers)."""
    t = time.perf_counter()
    proc = subprocess.Popen([*LTC, *args], env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"ltc {' '.join(args)} exited {proc.returncode}")
    return time.perf_counter() - t, usage.ru_maxrss / 1024


def _largest_sheet(xlsx: Path) -> int:
    """The rows of the workbook's largest sheet (counted in its XML, streamed)."""
    best = 0
    with zipfile.ZipFile(xlsx) as z:
        for name in z.namelist():
            if not name.startswith("xl/worksheets/sheet"):
                continue
            rows = 0
            with z.open(name) as f:
                while chunk := f.read(1 << 24):
                    rows += chunk.count(b"<row ")
            best = max(best, rows)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")

    ap.add_argument("--setup", help=argparse.SUPPRESS)  # internal: load and reconcile into this store URL
    args = ap.parse_args()
    if args.setup:  # in a child of its own: this process stays small, as a fork of it starts as large as it is
        world = generate(args.chains, seed=args.seed)
        store = Store.open(args.setup)
        world.load(store)
        run_reconciliation(store, Config(), world.as_of or date.today())
        store.close()
        return
    with scratch_database(args.store) as url, tempfile.TemporaryDirectory(prefix="ltc-bench-report-") as tmp:
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--chains", str(args.chains), "--seed", str(args.seed), "--setup",
                        url], check=True)
        print(f"store {args.store}: {args.chains} chains loaded and reconciled in {time.perf_counter() - t:.1f} s "
              "(not timed)", flush=True)
        env = {**{k: v for k, v in os.environ.items() if k != "LTC_CONFIG"}, "LTC_DATABASE_URL": url}
        _, bare_mb = _child(["--version"], env)  # a bare `ltc` process: imports only
        out = Path(tmp) / "reports"
        seconds, peak_mb = _child(["report", "--out", str(out)], env)
        rows = _largest_sheet(out / "report.xlsx")
        sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
        print("files: " + ", ".join(f"{name} {size / 1e6:,.1f} MB" for name, size in sizes.items()))
        print(f"largest sheet: {rows:,} rows (Excel holds 1,048,576 a sheet)")
        per_chain = (peak_mb - bare_mb) * 1024 / args.chains
        print(f"report_s={seconds:.2f} peak_rss_mb={peak_mb:.0f} kb_per_chain={per_chain:.1f} largest_sheet_rows={rows}")


if __name__ == "__main__":
    main()

"""World replay end to end: the path a user's export takes, at a size.

    python bench/world.py [--chains 5000] [--erp tryton|odoo] [--crm salesforce|zoho|jiandaoyun] [--db sqlite|postgresql]

Generates a world (sandbox.scenario), writes it as vendor files (sandbox.world_writer), then
replays it exactly as ``ltc demo --world`` does: read + validate every file, serve it from the
emulators, sync every source over HTTP, import the camt.053 statements, load FX rates, map,
resolve identities, reconcile and write the reports. Checks the exceptions found against the
generator's ground truth.

Last line: ``world_replay_s=<s> records=<n> records_per_s=<n> precision=<p> recall=<r>``
(``records`` = raw records landed; the write phase and the replay's stages, with its CPU seconds
and the load average, are printed on earlier lines).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scratch_db import scratch_database  # noqa: E402

from canonical.store import Store  # noqa: E402
from canonical.tables import raw_record  # noqa: E402
from ltc.app.demo import replay_world  # noqa: E402
from reconcile.tables import recon_exception  # noqa: E402
from sandbox.scenario import generate  # noqa: E402
from sandbox.world_writer import as_jiandaoyun, as_zoho, write_world  # noqa: E402


def _cpu() -> float:
    """CPU seconds (user + system) of this process and of its children that ended."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _peak_mb() -> float:
    """The peak resident set of this process or of its largest child that ended (Linux: kB)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return max(me.ru_maxrss, kids.ru_maxrss) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--erp", choices=["tryton", "odoo"], default="tryton")
    ap.add_argument("--crm", choices=["salesforce", "zoho", "jiandaoyun"], default="salesforce")
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    args = ap.parse_args()

    t0 = time.perf_counter()
    world = generate(args.chains, seed=args.seed, erp=args.erp)
    if args.crm == "zoho":
        world = as_zoho(world)
    elif args.crm == "jiandaoyun":
        world = as_jiandaoyun(world)
    truth = set(world.truth["fingerprint"].to_list())
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.db) as url:
        path = write_world(world, Path(tmp) / "world", erp=args.erp, crm=args.crm)
        files = sum(1 for p in path.rglob("*") if p.is_file())
        print(f"generate_and_write_s={time.perf_counter() - t0:.2f} files={files}")
        store = Store.open(url)
        start, cpu0 = time.perf_counter(), _cpu()
        out = replay_world(store, path, Path(tmp) / "reports", echo=lambda _line: None)
        secs, cpu = time.perf_counter() - start, _cpu() - cpu0
        stages = out["result"].stages
        print(f"read_world_s={secs - sum(s.seconds for s in stages):.2f} "
              + " ".join(f"{s.name}_s={s.seconds:.2f}" for s in stages if s.name != "notify")
              + f" replay_cpu_s={cpu:.2f} (this process and its forked children) load={os.getloadavg()[0]:.2f} "
              f"peak_rss_mb={_peak_mb():.0f} (the largest of this process and its children)")
        with store.engine.connect() as conn:
            records = int(conn.execute(sa.select(sa.func.count()).select_from(raw_record)).scalar_one())
            found = {r[0] for r in conn.execute(sa.select(recon_exception.c.fingerprint))}
        store.close()
    hit = len(found & truth)
    precision = hit / len(found) if found else 1.0
    recall = hit / len(truth) if truth else 1.0
    print(f"world_replay_s={secs:.2f} records={records} records_per_s={records / secs:.0f} "
          f"precision={precision:.4f} recall={recall:.4f}")


if __name__ == "__main__":
    main()

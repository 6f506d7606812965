"""Fault suite: the pipeline under crashes, a flaky network, a database restart and concurrency.

    python bench/faults.py --trials 20 [--db sqlite|postgresql] [--chains 30] [--seed 1]

Generates a world (sandbox.scenario) and serves it from the emulators (their own process), builds
a reference store with no fault at all (sync → bank import → map → identity → reconcile), then runs
``--trials`` trials, cycling through the scenarios:

* ``kill-sync``, ``kill-import``, ``kill-map``, ``kill-reconcile``: the stage runs in a worker
  process that gets SIGKILL at a random point (1-3 times), then runs to completion; the stages
  after it run normally.
* ``flaky-http``: every source behind a proxy (sandbox.flaky) that answers 20 % of the requests
  with 429, 503, connection resets, stalls, bodies cut mid-stream, truncated JSON or an HTML page.
* ``concurrent``: two syncs of every source at once, two bank imports, two mappings, two
  reconciliations at once.
* ``pg-restart`` (PostgreSQL only): the local cluster is restarted (``pg_ctlcluster``) while a sync
  runs.

Each worker runs exactly what the CLI command runs (``ltc sync``, ``ltc import-statement``, the
mapping, ``ltc identity``, ``ltc reconcile``), in a process forked from this one. After a trial the
store is compared with the reference:

* ``lost``: raw records, canonical rows, links or allocations of the reference that are missing;
* ``duplicated``: links, allocations or open quarantine entries present more often than in the
  reference;
* ``stale``: raw records or canonical rows present in another version than the reference's;
* ``mismatched``: anything else that differs (exceptions and their status, KPIs, extra rows),
  and runs or streams left ``running``, cursors left mid-run.

Last line: ``trials=<n> lost=<n> duplicated=<n> stale=<n> mismatched=<n>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCENARIOS = ("kill-sync", "kill-import", "kill-map", "kill-reconcile", "flaky-http", "concurrent", "pg-restart")
PG_ADMIN = os.environ.get("LTC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
STAGES = ("sync", "import", "map", "identity", "reconcile")


# --- the stages, as the CLI runs them (in a forked worker) ---------------------------------------------

def _stage(name: str, config: str, url: str, as_of: str) -> None:
    os.environ["LTC_CONFIG"] = config
    os.environ["LTC_DATABASE_URL"] = url
    from canonical.identity import run_identity
    from connectors.base import sync
    from connectors.statements import run_import
    from ltc.app import runtime
    from ltc.app.config import load_config
    from mappings.engine import run_mapping
    from reconcile.engine import run_reconciliation

    cfg = load_config(config)
    store = runtime.open_store(config)
    if name == "sync":
        for source in runtime.source_names(cfg):
            connector = runtime.build_connector(cfg, source)
            try:
                for result in sync(connector, store):
                    if result.status != "success":
                        raise SystemExit(f"{source}.{result.stream}: {result.status}: {result.message}")
            finally:
                connector.close()
    elif name == "import":
        summary = run_import(store, folder=cfg.sources["bank"].options["folder"], source="bank")
        if not summary.ok:
            raise SystemExit(f"import: {summary.counts}")
    elif name == "map":
        run_mapping(store, config=cfg)
    elif name == "identity":
        run_identity(store, config=cfg)
    elif name == "reconcile":
        run_reconciliation(store, cfg, date.fromisoformat(as_of))
    store.close()


def _worker(name: str, config: str, url: str, as_of: str, go: Any = None) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="  %(message)s")
    logging.getLogger("connectors.http").setLevel(logging.ERROR)  # the retries are the point: not their lines
    try:
        if go is not None:  # start together with the other worker: imports done, then the stage at once
            import importlib

            for module in ("canonical.identity", "connectors.base", "connectors.statements", "ltc.app.runtime",
                           "mappings.engine", "reconcile.engine"):
                importlib.import_module(module)
            go.wait(120)
        _stage(name, config, url, as_of)
    except SystemExit as exc:
        print(f"  worker {name}: {exc}", file=sys.stderr, flush=True)
        os._exit(1)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


_FORK = multiprocessing.get_context("fork")


def start(name: str, config: str, url: str, as_of: str, go: Any = None) -> Any:
    proc = _FORK.Process(target=_worker, args=(name, config, url, as_of, go), daemon=True)
    proc.start()
    return proc


def run_stage(name: str, config: str, url: str, as_of: str, *, kill_after: float | None = None) -> bool | None:
    """Run a stage in a worker; True done, False failed, None killed (SIGKILL after ``kill_after`` s)."""
    proc = start(name, config, url, as_of)
    proc.join(kill_after)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        return None
    return proc.exitcode == 0


# --- stores ------------------------------------------------------------------------------------------

@dataclass
class Stores:
    backend: str
    tmp: Path
    made: list[str] = field(default_factory=list)

    def admin(self) -> sa.Engine:
        return sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", pool_pre_ping=True)

    def new(self, template: str | None = None) -> str:
        """An empty store, or a copy of ``template`` (a store URL made by this object)."""
        name = f"f{uuid.uuid4().hex[:10]}"
        if self.backend == "sqlite":
            path = self.tmp / f"{name}.db"
            if template is not None:
                src = template.removeprefix("sqlite:///")
                for suffix in ("", "-wal", "-shm"):
                    if Path(src + suffix).exists():
                        shutil.copy(src + suffix, str(path) + suffix)
            return f"sqlite:///{path}"
        admin = self.admin()
        try:
            for _ in range(20):
                try:
                    with admin.connect() as conn:
                        clause = f' TEMPLATE "{sa.engine.make_url(template).database}"' if template else ""
                        conn.execute(sa.text(f'CREATE DATABASE "ltc_faults_{name}"{clause}'))
                    break
                except sa.exc.OperationalError:  # the template still has a closing session
                    time.sleep(0.5)
            else:
                raise RuntimeError("cannot create a PostgreSQL database for the trial")
        finally:
            admin.dispose()
        self.made.append(f"ltc_faults_{name}")
        return sa.engine.make_url(PG_ADMIN).set(database=f"ltc_faults_{name}").render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if self.backend != "postgresql" or not self.made:
            return
        admin = self.admin()
        with admin.connect() as conn:
            for name in self.made:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                             {"n": name})
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


# --- snapshots and comparison ------------------------------------------------------------------------

def _digest(values: Any) -> str:
    return hashlib.blake2b(json.dumps(values, default=str, sort_keys=True).encode(), digest_size=12).hexdigest()


_SKIP = {"raw_id", "deleted_at", "id", "run_id", "last_run_id", "first_seen_at", "last_seen_at", "resolved_at"}


def snapshot(url: str) -> dict[str, Any]:
    """What a trial is judged on, read with plain SQL (no Polars in this process: it forks)."""
    from canonical import tables
    from reconcile.tables import kpi_snapshot, recon_allocation, recon_exception, recon_link

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        rr = tables.raw_record.c
        out["raw"] = {(s, o, i): (h, d) for s, o, i, h, d in conn.execute(
            sa.select(rr.system, rr.object, rr.source_id, rr.content_hash, rr.deleted))}
        canonical: dict[tuple[str, str], str] = {}
        for entity, table in tables.entity_tables.items():
            cols = [c for c in table.c if c.name not in _SKIP]
            for row in conn.execute(sa.select(table.c.id, table.c.deleted_at, *cols)):
                canonical[(entity, row[0])] = _digest([row[1] is not None, *row[2:]])
        out["canonical"] = canonical
        for name, table in (("links", recon_link), ("allocations", recon_allocation)):
            cols = [c for c in table.c if c.name not in _SKIP]
            out[name] = Counter(_digest(list(r)) for r in conn.execute(sa.select(*cols)))
        # KPI snapshots are kept per run (history): the latest successful run's are compared
        latest = conn.execute(sa.text("SELECT id FROM run WHERE kind = 'reconcile' AND status = 'success' "
                                      "ORDER BY started_at DESC LIMIT 1")).scalar()
        cols = [c for c in kpi_snapshot.c if c.name not in _SKIP]
        out["kpis"] = Counter(_digest(list(r)) for r in conn.execute(
            sa.select(*cols).where(kpi_snapshot.c.run_id == latest)))
        ex = recon_exception.c
        out["exceptions"] = {r[0]: _digest(list(r[1:])) for r in conn.execute(
            sa.select(ex.fingerprint, ex.code, ex.status, ex.severity, ex.amount_at_risk, ex.subject_ids))}
        q = tables.quarantine.c
        out["quarantine_open"] = Counter(r[0] for r in conn.execute(
            sa.select(q.fingerprint).where(q.resolved_at.is_(None))))
        out["running"] = int(conn.execute(sa.text("SELECT count(*) FROM run WHERE status = 'running'")).scalar_one())
        out["streams"] = [(r[0], r[1], r[2]) for r in conn.execute(sa.text(
            "SELECT connector, stream, status FROM stream_state"))]
        cursors = conn.execute(sa.select(tables.stream_state.c.cursor)).scalars().all()
        out["mid_run"] = sum(1 for c in cursors if isinstance(c, dict) and c.get("run"))
    engine.dispose()
    return out


@dataclass
class Verdict:
    lost: int = 0
    duplicated: int = 0
    stale: int = 0
    mismatched: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: Verdict) -> None:
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.stale += other.stale
        self.mismatched += other.mismatched


def compare(ref: dict[str, Any], got: dict[str, Any]) -> Verdict:
    v = Verdict()
    for key in ("raw", "canonical"):
        a, b = ref[key], got[key]
        lost = [k for k in a if k not in b]
        stale = [k for k in a if k in b and a[k] != b[k]]
        extra = [k for k in b if k not in a]
        v.lost += len(lost)
        v.stale += len(stale)
        v.mismatched += len(extra)
        for what, ks in (("lost", lost), ("stale", stale), ("extra", extra)):
            if ks:
                v.notes.append(f"{key} {what}: {ks[:3]}")
    for key in ("links", "allocations"):
        a, b = ref[key], got[key]
        lost = sum((a - b).values())
        dup = sum((b - a).values())
        v.lost += lost
        v.duplicated += dup
        if lost or dup:
            v.notes.append(f"{key}: {lost} missing, {dup} extra")
    if ref["kpis"] != got["kpis"]:
        v.mismatched += 1
        v.notes.append("kpis differ")
    ex_diff = {k for k in ref["exceptions"].keys() | got["exceptions"].keys()
               if ref["exceptions"].get(k) != got["exceptions"].get(k)}
    if ex_diff:
        v.mismatched += len(ex_diff)
        v.notes.append(f"exceptions differ: {len(ex_diff)}")
    dup_q = sum(n - 1 for n in got["quarantine_open"].values() if n > 1)
    v.duplicated += dup_q
    if set(got["quarantine_open"]) != set(ref["quarantine_open"]):
        v.mismatched += len(set(got["quarantine_open"]) ^ set(ref["quarantine_open"]))
        v.notes.append("open quarantine differs")
    left = got["running"] + got["mid_run"] + sum(1 for s in got["streams"] if s[2] in ("running", "failed"))
    if left:
        v.mismatched += left
        v.notes.append(f"left running/failed/mid-run: runs={got['running']} cursors={got['mid_run']} "
                       f"streams={[s for s in got['streams'] if s[2] in ('running', 'failed')][:3]}")
    return v


# --- the world, its emulators and the configurations -------------------------------------------------

@dataclass
class World:
    path: Path
    as_of: str
    emulators: dict[str, dict[str, Any]]
    process: subprocess.Popen[bytes]


def _write_world(chains: int, seed: int, target: str) -> None:
    from sandbox.scenario import generate
    from sandbox.world_writer import write_world

    write_world(generate(chains, seed=seed, erp="tryton"), Path(target))
    os._exit(0)


@contextmanager
def served_world(tmp: Path, chains: int, seed: int) -> Iterator[World]:
    from sandbox.world import read_world

    # generated in a worker: Polars must not start its thread pool in this process, which forks
    path = tmp / "world"
    proc = _FORK.Process(target=_write_world, args=(chains, seed, str(path)))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError("the world could not be generated")
    as_of = read_world(path).as_of
    state = tmp / "emulators.json"
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.run", "--world", str(path), "--state", str(state)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not state.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"emulators did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.2)
        yield World(path, (as_of or date.today()).isoformat(), json.loads(state.read_text())["emulators"], proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def write_config(world: World, path: Path, urls: dict[str, tuple[str, str | None]] | None = None) -> str:
    """ltc.yaml for the world's emulators (or for proxies in front of them: kind -> (url, ca_file))."""
    from sandbox.run import WORLD_ACCESS

    sources: dict[str, Any] = {}
    for kind, info in world.emulators.items():
        access = WORLD_ACCESS[kind]
        url, ca = (urls or {}).get(kind, (info["url"], info.get("ca_file")))
        options = dict(access["options"])
        if ca:
            options["ca_file"] = ca
        # small pages: many checkpoints for a kill to fall between
        sources[kind] = {"kind": kind, "base_url": url, "options": options, "page_size": 25,
                         "credentials": {f: {"env": f"LTC_FAULTS_{kind.upper()}_{f.upper()}"}
                                         for f in access["credentials"]}}
        for f, value in access["credentials"].items():
            os.environ[f"LTC_FAULTS_{kind.upper()}_{f.upper()}"] = value
    sources["bank"] = {"kind": "camt053", "options": {"folder": str(world.path / "bank")}}
    path.write_text(yaml.safe_dump({"sources": sources}))
    return str(path)


# --- scenarios ---------------------------------------------------------------------------------------

@dataclass
class Bench:
    world: World
    stores: Stores
    config: str
    timing: dict[str, float]
    templates: dict[str, str]
    reference: dict[str, Any]
    rng: random.Random
    tmp: Path

    def stage(self, name: str, url: str, *, kills: int = 0) -> int:
        """Run a stage to completion after ``kills`` SIGKILLs at random points; returns kills done."""
        done = 0
        for _ in range(kills):
            outcome = run_stage(name, self.config, url, self.world.as_of,
                                kill_after=self.rng.uniform(0.2, 0.9) * self.timing[name])
            if outcome is not None:
                break  # it finished before the kill: nothing left to interrupt
            done += 1
        if not run_stage(name, self.config, url, self.world.as_of):
            raise RuntimeError(f"stage {name} failed after {done} kill(s)")
        return done

    def rest(self, url: str, after: str) -> None:
        for name in STAGES[STAGES.index(after) + 1:]:
            self.stage(name, url)

    def kill(self, name: str) -> Callable[[], tuple[str, str]]:
        def trial() -> tuple[str, str]:
            before = STAGES[STAGES.index(name) - 1] if name != "sync" else None
            url = self.stores.new(self.templates[before] if before else None)
            kills = self.stage(name, url, kills=self.rng.randint(1, 3))
            self.rest(url, name)
            return url, f"kills={kills}"
        return trial

    def flaky(self) -> tuple[str, str]:
        from sandbox.flaky import FaultMix, FlakyProxy

        proxies = {}
        try:
            for kind, info in self.world.emulators.items():
                proxies[kind] = FlakyProxy(info["url"], upstream_ca=info.get("ca_file"),
                                           tls=info["url"].startswith("https"),
                                           mix=FaultMix(rate=0.2, seed=self.rng.randrange(10**6))).start()
            config = write_config(self.world, self.tmp / f"flaky-{uuid.uuid4().hex[:6]}.yaml",
                                  {k: (p.url, p.ca_file) for k, p in proxies.items()})
            url = self.stores.new()
            ok = run_stage("sync", config, url, self.world.as_of)
            faults = sum(sum(v for k, v in p.stats.items() if k not in ("requests", "forwarded"))
                         for p in proxies.values())
            requests = sum(p.stats["requests"] for p in proxies.values())
        finally:
            for p in proxies.values():
                p.stop()
        if not ok:
            raise RuntimeError("sync through the flaky proxies failed")
        self.rest(url, "sync")
        return url, f"requests={requests} faults={faults}"

    def concurrent(self) -> tuple[str, str]:
        url = self.stores.new()
        for name in STAGES:
            go = _FORK.Event()
            procs = [start(name, self.config, url, self.world.as_of, go) for _ in range(2)]
            time.sleep(0.5)
            go.set()
            for p in procs:
                p.join()
            if any(p.exitcode != 0 for p in procs):
                raise RuntimeError(f"concurrent {name} failed")
        return url, f"pairs={len(STAGES)}"

    def pg_restart(self) -> tuple[str, str]:
        url = self.stores.new()
        proc = start("sync", self.config, url, self.world.as_of)
        time.sleep(self.rng.uniform(0.3, 0.9) * self.timing["sync"])
        restarted = restart_postgresql()
        proc.join()
        reruns = 0
        if proc.exitcode != 0:
            reruns = 1
            self.stage("sync", url)
        self.rest(url, "sync")
        return url, f"restarted={restarted} reruns={reruns}"


def restart_postgresql() -> bool:
    """Restart the local cluster (bench only: never in the pytest suite, other tests use it)."""
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        return False
    res = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart"],
                         capture_output=True, text=True, timeout=120)
    return res.returncode == 0


def build(world: World, stores: Stores, tmp: Path, rng: random.Random, out: Callable[[str], None]) -> Bench:
    """The reference run (no faults), timing each stage and keeping the store after each one."""
    config = write_config(world, tmp / "ltc.yaml")
    url = stores.new()
    timing: dict[str, float] = {}
    templates: dict[str, str] = {}
    for name in STAGES:
        t0 = time.perf_counter()
        if not run_stage(name, config, url, world.as_of):
            raise RuntimeError(f"reference stage {name} failed")
        timing[name] = max(0.3, time.perf_counter() - t0)
        templates[name] = stores.new(url)
    reference = snapshot(url)
    counts = Counter(k[0] for k in reference["raw"])
    out(f"reference: {len(reference['raw'])} raw records ({dict(counts)}), {len(reference['canonical'])} canonical "
        f"rows, {sum(reference['links'].values())} links, {len(reference['exceptions'])} exceptions; stage seconds "
        + " ".join(f"{k}={v:.1f}" for k, v in timing.items()))
    control = snapshot(templates["reconcile"])
    if compare(reference, control).notes:
        raise RuntimeError("the reference store does not compare equal to its own copy")
    return Bench(world, stores, config, timing, templates, reference, rng, tmp)


def run(trials: int, backend: str, *, chains: int = 30, seed: int = 1, scenarios: tuple[str, ...] = SCENARIOS,
        out: Callable[[str], None] = print) -> Verdict:
    if backend == "sqlite":
        scenarios = tuple(s for s in scenarios if s != "pg-restart")
    rng = random.Random(seed)
    total = Verdict()
    with tempfile.TemporaryDirectory(prefix="ltc-faults-") as tmp_name:
        tmp = Path(tmp_name)
        stores = Stores(backend, tmp)
        try:
            with served_world(tmp, chains, seed) as world:
                bench = build(world, stores, tmp, rng, out)
                plan: dict[str, Callable[[], tuple[str, str]]] = {
                    "kill-sync": bench.kill("sync"), "kill-import": bench.kill("import"),
                    "kill-map": bench.kill("map"), "kill-reconcile": bench.kill("reconcile"),
                    "flaky-http": bench.flaky, "concurrent": bench.concurrent, "pg-restart": bench.pg_restart,
                }
                for i in range(trials):
                    scenario = scenarios[i % len(scenarios)]
                    t0 = time.perf_counter()
                    url, detail = plan[scenario]()
                    verdict = compare(bench.reference, snapshot(url))
                    total.add(verdict)
                    out(f"trial={i + 1} scenario={scenario} {detail} lost={verdict.lost} "
                        f"duplicated={verdict.duplicated} stale={verdict.stale} mismatched={verdict.mismatched} "
                        f"seconds={time.perf_counter() - t0:.1f}" + (f"  {'; '.join(verdict.notes)}" if verdict.notes else ""))
        finally:
            stores.drop_all()
    out(f"trials={trials} lost={total.lost} duplicated={total.duplicated} stale={total.stale} "
        f"mismatched={total.mismatched}")
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--chains", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="only these scenarios (repeatable)")
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with suppress(BrokenPipeError):
        run(args.trials, args.db, chains=args.chains, seed=args.seed,
            scenarios=tuple(args.scenario) if args.scenario else SCENARIOS, out=lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()

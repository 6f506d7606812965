"""Accuracy of the reconciliation on labelled worlds, scored strictly (issue 11).

    python bench/accuracy.py [--chains 3000] [--seed N | --seeds 1,2,3,4,5]
                             [--generator scenarios|ours] [--breaks planted|none] [--cli] [--keep DIR]

Generates a world (``scenarios``: the independent generator in sandbox/scenarios, whose conventions
vary by seed; ``ours``: sandbox.scenario + sandbox.world_writer), replays it as ``ltc demo --world``
does (``ltc.app.demo.replay_world`` into a scratch SQLite store; ``--cli`` runs the ``ltc demo``
command itself in a scratch directory), reads the open exceptions with ``ltc exceptions list --json
--status open`` and scores them against the world's truth:

- an exception is correct only if a planted break of the same code shares a record with it
  (records compared by system + source id);
- a planted break is found if an exception of its code shares one of its records.

Prints per-code found/planted and reported/correct, false positives by code with example
fingerprints and records, and last ``precision=<p> recall=<r>`` (with ``--seeds``: one line per seed,
a summary table, then the pooled ``precision=<p> recall=<r>``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

Rec = tuple[str, str]  # (system, source id)


@dataclass
class Planted:
    code: str
    records: frozenset[Rec]
    note: str = ""
    tolerated: tuple[str, ...] = ()


@dataclass
class Reported:
    code: str
    records: frozenset[Rec]
    fingerprint: str = ""
    detail: list[dict[str, Any]] = field(default_factory=list)
    labels: tuple[str, ...] = ()  # what the generator says its records are (diagnostics)


@dataclass
class Score:
    planted: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)
    reported: Counter[str] = field(default_factory=Counter)
    correct: Counter[str] = field(default_factory=Counter)
    false_pos: dict[str, list[Reported]] = field(default_factory=lambda: defaultdict(list))
    consequential: Counter[str] = field(default_factory=Counter)  # false positives a planted break explains
    missed: dict[str, list[Planted]] = field(default_factory=lambda: defaultdict(list))

    @property
    def precision(self) -> float:
        n = sum(self.reported.values())
        return sum(self.correct.values()) / n if n else 1.0

    @property
    def recall(self) -> float:
        n = sum(self.planted.values())
        return sum(self.found.values()) / n if n else 1.0

    def add(self, other: Score) -> None:
        for name in ("planted", "found", "reported", "correct", "consequential"):
            getattr(self, name).update(getattr(other, name))
        for k, v in other.false_pos.items():
            self.false_pos[k].extend(v)
        for code, misses in other.missed.items():
            self.missed[code].extend(misses)


def score(truth: Iterable[Planted], exceptions: Iterable[Reported]) -> Score:
    """Strict scoring: same code and at least one shared (system, source id)."""
    truth = list(truth)
    s = Score()
    by_code_rec: dict[tuple[str, Rec], list[int]] = defaultdict(list)
    tolerated: set[tuple[str, Rec]] = set()
    for i, p in enumerate(truth):
        s.planted[p.code] += 1
        for r in p.records:
            by_code_rec[(p.code, r)].append(i)
            tolerated.update((c, r) for c in p.tolerated)
    hit: set[int] = set()
    for e in exceptions:
        s.reported[e.code] += 1
        matched = {i for r in e.records for i in by_code_rec.get((e.code, r), ())}
        if matched:
            s.correct[e.code] += 1
            hit |= matched
        else:
            s.false_pos[e.code].append(e)
            if any((e.code, r) in tolerated for r in e.records):
                s.consequential[e.code] += 1
    for i, p in enumerate(truth):
        if i in hit:
            s.found[p.code] += 1
        else:
            s.missed[p.code].append(p)
    return s


# -- worlds ------------------------------------------------------------------------------------------------
World = tuple[list[Planted], str, dict[str, str]]  # truth, description, record labels (diagnostics)


def scenarios_world(directory: Path, chains: int, seed: int, breaks: bool, crm: str | None = None) -> World:
    from sandbox.scenarios import make_world

    truth = make_world(directory, chains=chains, seed=seed, breaks=breaks, crm=crm)
    c = truth["conventions"]
    desc = (f"crm={c['crm']} erp={c['erp']} stripe_share={c['stripe_share']} stripe_keys="
            f"{c['stripe_deal_key']}/{c['stripe_order_key']}@{c['stripe_order_place']} tax_field={c['crm_tax_field']} "
            f"crm_order_field={c['crm_order_field']} erp_deal_place={c['erp_deal_place']} "
            f"remittance={','.join(c['remittance'])} fx_share={c['fx_share']} fee_share={c['fee_share']} "
            f"cash={c.get('cash', 'bank')}")
    planted = [Planted(b["code"], frozenset((r["system"], str(r["id"])) for r in b["records"]), b["note"],
                       tuple(b["tolerated"])) for b in truth["breaks"]]
    return planted, desc, truth.get("labels", {})


def ours_world(directory: Path, chains: int, seed: int, breaks: bool, crm: str | None = None) -> World:
    from sandbox.scenario import generate
    from sandbox.world_writer import write_world

    erp = "tryton" if seed % 2 else "odoo"
    if not breaks:
        raise SystemExit("--breaks none: sandbox.scenario always plants at least one break per code; "
                         "use --generator scenarios")
    world = generate(chains, seed=seed, erp=erp)
    if crm == "zoho":
        from sandbox.world_writer import as_zoho

        world = as_zoho(world)
    elif crm == "jiandaoyun":
        from sandbox.world_writer import as_jiandaoyun

        world = as_jiandaoyun(world)
    elif crm not in (None, "salesforce"):
        raise SystemExit(f"--crm {crm}: sandbox.scenario writes salesforce, zoho or jiandaoyun")
    write_world(world, directory, erp=erp, crm=crm or "salesforce")
    planted = []
    for code, keys in zip(world.truth["code"].to_list(), world.truth["keys"].to_list(), strict=True):
        recs = frozenset((k.split(":", 2)[0], k.split(":", 2)[2]) for k in keys if k.count(":") >= 2)
        planted.append(Planted(code, recs, ",".join(keys)))
    return planted, f"sandbox.scenario crm={crm or 'salesforce'} erp={erp}", {}


# -- replay ------------------------------------------------------------------------------------------------
def _ltc() -> list[str]:
    exe = Path(sys.executable).with_name("ltc")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from ltc.cli import main; main()"]


def replay(world: Path, work: Path, use_cli: bool) -> tuple[list[Reported], float, str]:
    """Replay the world into a scratch store; return the open exceptions as `ltc exceptions list --json`."""
    url = f"sqlite:///{work / 'ltc.db'}"
    env = {**os.environ, "LTC_DATABASE_URL": url}
    start = time.perf_counter()
    note = ""
    if use_cli:
        run = subprocess.run([*_ltc(), "demo", "--world", str(world), "--out", str(work / "reports")],
                             cwd=work, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            note = f"ltc demo exit {run.returncode}: {(run.stderr or run.stdout).strip().splitlines()[-1:]}"
    else:
        from canonical.store import Store
        from ltc.app.demo import replay_world

        store = Store.open(url)
        try:
            replay_world(store, world, work / "reports", echo=lambda _line: None)
        except Exception as exc:  # the run may refuse the world or fail loudly: report it, still score
            note = f"replay raised {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        finally:
            store.close()
    secs = time.perf_counter() - start
    run = subprocess.run([*_ltc(), "exceptions", "list", "--json", "--status", "open"], cwd=work, env=env,
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"ltc exceptions list failed: {run.stderr.strip()[-500:]}")
    rows = json.loads(run.stdout or "[]")
    out = []
    for r in rows:
        recs = frozenset((str(d.get("system")), str(d.get("id"))) for d in r.get("records", []))
        out.append(Reported(r["code"], recs, r.get("fingerprint", ""), r.get("records", [])))
    return out, secs, note


def run_one(args: argparse.Namespace, seed: int) -> tuple[Score, str, bool]:
    with tempfile.TemporaryDirectory(prefix="ltc-accuracy-") as tmp:
        base = Path(args.keep) / f"seed{seed}" if args.keep else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        world = base / "world"
        t0 = time.perf_counter()
        make = scenarios_world if args.generator == "scenarios" else ours_world
        truth, desc, labels = make(world, args.chains, seed, args.breaks == "planted", args.crm)
        gen_s = time.perf_counter() - t0
        exceptions, secs, note = replay(world, base, args.cli)
    print(f"seed {seed}: {desc}")
    print(f"seed {seed}: generate_s={gen_s:.1f} replay_s={secs:.1f} planted={len(truth)} reported={len(exceptions)}"
          + (f"  [{note}]" if note else ""))
    for e in exceptions:
        e.labels = tuple(sorted({labels[f"{a}/{b}"] for a, b in e.records if f"{a}/{b}" in labels}))
    return score(truth, exceptions), note, bool(labels)


def causes(items: list[Reported]) -> Counter[str]:
    """False positives grouped by what the generator says their records are."""
    return Counter(" + ".join(e.labels) or "(unlabelled records)" for e in items)


def report(s: Score, examples: int = 2, labels: bool = False) -> None:
    codes = sorted(set(s.planted) | set(s.reported))
    print(f"{'code':<22} {'found/planted':>14} {'correct/reported':>17} {'false_pos':>10}")
    for c in codes:
        print(f"{c:<22} {s.found[c]:>6}/{s.planted[c]:<7} {s.correct[c]:>8}/{s.reported[c]:<8} "
              f"{len(s.false_pos.get(c, [])):>10}")
    fps = sorted(s.false_pos.items(), key=lambda kv: -len(kv[1]))
    if fps:
        print("false positives by code:")
    for c, items in fps:
        extra = f" ({s.consequential[c]} on records of a planted break of another code)" if s.consequential[c] else ""
        print(f"  {c}: {len(items)}{extra}")
        for e in items[:examples]:
            recs = ", ".join(f"{d.get('system')}/{d.get('object')}/{d.get('id')}" for d in e.detail[:4])
            print(f"    {e.fingerprint[:12]} {recs}")
        if labels:
            for label, n in causes(items).most_common(4):
                print(f"      {n:>6} x {label}")
    misses = sorted(s.missed.items(), key=lambda kv: -len(kv[1]))
    if misses:
        print("missed planted breaks by code:")
    for c, planted in misses:
        print(f"  {c}: {len(planted)}  e.g. " + "; ".join(
            f"{p.note} [{', '.join(f'{a}/{b}' for a, b in sorted(p.records))}]" for p in planted[:examples]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", help="comma-separated seeds: one run each, then a summary table")
    ap.add_argument("--generator", choices=["scenarios", "ours"], default="scenarios")
    ap.add_argument("--breaks", choices=["planted", "none"], default="planted")
    ap.add_argument("--crm", choices=["salesforce", "hubspot", "zoho", "jiandaoyun"], default=None,
                    help="the CRM instead of the generator's own (scenarios: the seed's draw; ours: salesforce)")
    ap.add_argument("--cli", action="store_true", help="replay with the `ltc demo --world` command")
    ap.add_argument("--keep", help="keep worlds, truth and stores under this directory")
    args = ap.parse_args()
    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    total = Score()
    rows = []
    for seed in seeds:
        s, note, labels = run_one(args, seed)
        report(s, labels=labels)
        if len(seeds) > 1:
            print(f"seed {seed}: precision={s.precision:.4f} recall={s.recall:.4f}\n")
        rows.append((seed, s, note))
        total.add(s)
    if len(seeds) > 1:
        print(f"{'seed':>5} {'planted':>8} {'reported':>9} {'correct':>8} {'found':>6} {'precision':>10} {'recall':>7}")
        for seed, s, note in rows:
            print(f"{seed:>5} {sum(s.planted.values()):>8} {sum(s.reported.values()):>9} {sum(s.correct.values()):>8} "
                  f"{sum(s.found.values()):>6} {s.precision:>10.4f} {s.recall:>7.4f}" + ("  (" + note + ")" if note else ""))
        print("pooled over seeds:")
        report(total, labels=args.generator == "scenarios")
    print(f"precision={total.precision:.4f} recall={total.recall:.4f}")


if __name__ == "__main__":
    main()

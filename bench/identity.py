"""Identity resolution quality on a hand-labelled set of company-name pairs.

    python bench/identity.py [--scale 100000]

Each pair of ``bench/data/company_pairs.psv`` is resolved as its own tiny universe through the full
pipeline (blocking, scoring, clustering; payer pairs through the payer path). A pair counts as
predicted "same" only when it is linked automatically (review candidates count as not linked).
Prints the misses, then the figures; with ``--scale N`` also the time to resolve N synthetic accounts.

Last line: ``precision=<p> recall=<r>``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from canonical.identity import Party, resolve
from mappings.coerce import normalize_tax_id

DATA = Path(__file__).resolve().parent / "data" / "company_pairs.psv"


def load() -> list[tuple[int, str, Party, Party]]:
    pairs = []
    for n, line in enumerate(DATA.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        f = line.split("|")
        if len(f) != 10:
            raise SystemExit(f"{DATA}:{n}: expected 10 fields, got {len(f)}")
        label, kind = int(f[0]), f[1]

        def party(pid: str, name: str, country: str, tax: str, domain: str, entity: str = "account") -> Party:
            return Party(id=pid, name=name, entity=entity, country=country or None,
                         tax_id=normalize_tax_id(tax) if tax else None, domain=domain or None)

        a = party(f"x:account:a{n}", *f[2:6], entity="payment" if kind == "payer" else "account")
        b = party(f"x:account:b{n}", *f[6:10])
        pairs.append((label, kind, a, b))
    return pairs


def linked(kind: str, a: Party, b: Party) -> bool:
    if kind == "payer":
        result = resolve([b], [a])
        return any(lk.left == a.id for lk in result.payer_links)
    result = resolve([b, a])
    return result.cluster_of[a.id] == result.cluster_of[b.id]


def scale(n: int) -> tuple[float, float]:
    rng = random.Random(7)
    words = ["acme", "globex", "initech", "umbrella", "stark", "wayne", "wonka", "tyrell", "cyberdyne", "soylent",
             "northwind", "contoso", "fabrikam", "litware", "proseware", "tailspin", "wingtip", "lucerne"]
    extra = ["trading", "systems", "foods", "logistics", "labs", "capital", "media", "energy", "bank", "works"]
    suffixes = ["Inc", "LLC", "GmbH", "Ltd", "SA", "BV", "KK", "AG", ""]
    accounts = []
    for i in range(n):
        name = f"{rng.choice(words).title()} {rng.choice(extra).title()} {i // 3} {rng.choice(suffixes)}"
        accounts.append(Party(id=f"s{i % 4}:account:{i}", name=name, country=rng.choice(["US", "DE", "FR", None]),
                              domain=f"d{i // 3}.example" if i % 2 else None))
    start, cpu = time.perf_counter(), time.process_time()
    resolve(accounts)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=0, help="also time resolving N synthetic accounts")
    args = ap.parse_args()
    pairs = load()
    tp = fp = fn = tn = 0
    by_kind: dict[str, list[int]] = {}
    for label, kind, a, b in pairs:
        pred = linked(kind, a, b)
        stats = by_kind.setdefault(f"{'pos' if label else 'neg'}:{kind}", [0, 0])
        stats[0] += 1
        stats[1] += int(pred == bool(label))
        if pred and label:
            tp += 1
        elif pred:
            fp += 1
            print(f"false link : {a.name!r} ({a.country}) ~ {b.name!r} ({b.country}) [{kind}]")
        elif label:
            fn += 1
            print(f"missed link: {a.name!r} ~ {b.name!r} [{kind}]")
        else:
            tn += 1
    print("per kind (correct/total): " + ", ".join(f"{k}={v[1]}/{v[0]}" for k, v in sorted(by_kind.items())))
    if args.scale:
        wall, cpu = scale(args.scale)
        print(f"resolve_accounts={args.scale} wall_seconds={wall:.1f} cpu_seconds={cpu:.1f}")
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    print(f"pairs={len(pairs)} positives={tp + fn} negatives={fp + tn} tp={tp} fp={fp} fn={fn} tn={tn}")
    print(f"precision={precision:.4f} recall={recall:.4f}")


if __name__ == "__main__":
    main()

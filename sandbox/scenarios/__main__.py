"""python -m sandbox.scenarios DIR --chains N --seed S [--breaks none] [--crm jiandaoyun] [--truth FILE]"""

from __future__ import annotations

import argparse
from pathlib import Path

from sandbox.scenarios import make_world, write_truth


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sandbox.scenarios", description=__doc__)
    ap.add_argument("directory", type=Path)
    ap.add_argument("--chains", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--breaks", choices=["planted", "none"], default="planted")
    ap.add_argument("--truth", type=Path, help="where to write truth.json (default: next to DIR)")
    ap.add_argument("--crm", choices=["salesforce", "hubspot", "jiandaoyun"], default=None,
                    help="the CRM instead of the one the seed draws")
    args = ap.parse_args(argv)
    truth = make_world(args.directory, chains=args.chains, seed=args.seed, breaks=args.breaks == "planted",
                       crm=args.crm)
    target = args.truth or args.directory.with_name(args.directory.name + ".truth.json")
    write_truth(truth, target)
    print(f"world {args.directory}: {len(truth['breaks'])} planted break(s); truth {target}")


if __name__ == "__main__":
    main()

"""How soon `ltc run` says something, and how often, when its output is not a terminal.

Generates a world, serves it with `ltc sandbox start --world W --write-config ltc.yaml`, runs
`ltc run --config ltc.yaml` with stderr on a pipe, and times each progress line from the process
start (the load of the machine counts: the figures are wall-clock).

    python bench/cli_progress.py --chains 2000

Last line: ``first_line_s=<x> first_sync_line_s=<x> longest_silence_s=<x> lines=<n> total_s=<x> exit=<n>``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LTC = [sys.executable, "-c", "from ltc.cli import main; main()"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--chains", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    from ltc.app.demo import generate_world

    with tempfile.TemporaryDirectory(prefix="ltc-bench-progress-") as tmp:
        root = Path(tmp)
        world = generate_world(root / "world", chains=args.chains, seed=args.seed)
        as_of = next((line.split(":", 1)[1].strip() for line in (world / "world.yaml").read_text().splitlines()
                      if line.startswith("as_of:")), None)
        subprocess.run([*LTC, "sandbox", "start", "--world", str(world), "--write-config", "ltc.yaml"], cwd=root,
                       check=True, capture_output=True)
        try:
            cmd = [*LTC, "run", "--config", "ltc.yaml", *(["--as-of", as_of] if as_of else [])]
            env = {"LTC_DATABASE_URL": f"sqlite:///{root / 'bench.db'}", "PATH": "/usr/bin:/bin"}
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            stamps: list[tuple[float, str]] = []
            assert proc.stderr is not None
            for line in proc.stderr:
                stamps.append((time.monotonic() - t0, line.rstrip()))
            code = proc.wait()
            total = time.monotonic() - t0
        finally:
            subprocess.run([*LTC, "sandbox", "stop"], cwd=root, capture_output=True)
    for at, line in stamps:
        print(f"{at:7.2f}s  {line}")
    times = [at for at, _ in stamps]
    first_sync = next((at for at, line in stamps if line.startswith("sync ")), float("nan"))
    gaps = [b - a for a, b in zip([0.0, *times], [*times, total], strict=True)]
    print(f"first_line_s={times[0] if times else float('nan'):.2f} first_sync_line_s={first_sync:.2f} "
          f"longest_silence_s={max(gaps):.2f} lines={len(stamps)} total_s={total:.2f} exit={code}")


if __name__ == "__main__":
    main()

"""Serve the registered emulators until stopped: ``python -m sandbox.run --state .ltc/sandbox.json``.

Used by ``ltc sandbox start`` (which runs this in the background) and by the demo. The state file
names each emulator's URL and CA file, and this process's pid, so ``ltc sandbox stop`` can end it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

from sandbox.registry import EMULATORS
from sandbox.server import RunningServer, serve

TLS_KINDS = {"salesforce"}  # simple-salesforce only speaks https


def start(kinds: list[str] | None = None, *, seed: int = 7, size: int = 200,
          options: dict[str, dict[str, Any]] | None = None) -> dict[str, RunningServer]:
    """Start the named emulators (default: all registered) on free loopback ports."""
    chosen = kinds or sorted(EMULATORS)
    unknown = [k for k in chosen if k not in EMULATORS]
    if unknown:
        raise ValueError(f"no emulator for {', '.join(unknown)}; available: {', '.join(sorted(EMULATORS)) or 'none'}")
    servers: dict[str, RunningServer] = {}
    try:
        for kind in chosen:
            app = EMULATORS[kind](seed=seed, size=size, **(options or {}).get(kind, {}))
            servers[kind] = serve(app, tls=kind in TLS_KINDS)
    except Exception:
        for srv in servers.values():
            srv.stop()
        raise
    return servers


def describe(servers: dict[str, RunningServer]) -> dict[str, Any]:
    return {"pid": os.getpid(),
            "emulators": {k: {"url": s.url, "ca_file": s.ca_file} for k, s in servers.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--state", required=True)
    ap.add_argument("--kind", action="append")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--size", type=int, default=200)
    args = ap.parse_args()
    servers = start(args.kind, seed=args.seed, size=args.size)
    state = Path(args.state)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps(describe(servers), indent=2))
    tmp.replace(state)  # appears whole: the CLI waits for it
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    for srv in servers.values():
        srv.stop()
    state.unlink(missing_ok=True)


if __name__ == "__main__":
    main()

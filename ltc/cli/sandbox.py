"""``ltc sandbox start|stop|status``: the local emulators, in a background process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from canonical.errors import ConfigError, LtcError

app = typer.Typer(help="Local emulators of the vendor APIs (for demos, tests and trying mappings).",
                  no_args_is_help=True)
console = Console()
STATE = Path(".ltc/sandbox.json")


def _read_state() -> dict[str, Any] | None:
    if not STATE.exists():
        return None
    state = json.loads(STATE.read_text())
    try:
        os.kill(int(state["pid"]), 0)
    except (ProcessLookupError, PermissionError):
        STATE.unlink(missing_ok=True)  # a stale file of a process that is gone
        return None
    return state


@app.command("start")
def start(
    kind: list[str] = typer.Option(None, "--kind", "-k", help="Emulators to start (default: all)."),
    seed: int = typer.Option(7, help="Seed of the generated data."),
    size: int = typer.Option(200, help="Records per object."),
    world: str | None = typer.Option(None, "--world", help="Serve this world directory (docs/world.md) "
                                     "instead of generated data: one emulator per system it holds."),
) -> None:
    """Start the emulators on free 127.0.0.1 ports and print their URLs."""
    if world is not None:
        from sandbox.world import read_world

        if kind:
            raise ConfigError("--kind and --world do not go together: a world serves the systems it holds")
        read_world(world)  # a bad world fails here, in one line, before anything starts
    if _read_state() is not None:
        raise ConfigError(f"the sandbox is already running (see {STATE}); `ltc sandbox stop` first")
    STATE.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "sandbox.run", "--state", str(STATE), "--seed", str(seed), "--size", str(size)]
    if world is not None:
        cmd += ["--world", str(Path(world).resolve())]
    for k in kind or []:
        cmd += ["--kind", k]
    log = open(STATE.with_suffix(".log"), "w")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not STATE.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = STATE.with_suffix(".log").read_text().strip().splitlines()[-1:] or ["(no output)"]
            proc.kill()
            raise LtcError(f"the sandbox did not start: {tail[0]}")
        time.sleep(0.1)
    status()


@app.command("status")
def status() -> None:
    """Print the running emulators."""
    state = _read_state()
    if state is None:
        console.print("sandbox: not running")
        return
    world = state.get("world")
    if world:
        console.print(f"world {world['name']} ({world['path']})", highlight=False)
    for k, e in state["emulators"].items():
        console.print(f"{k:<12} {e['url']}" + (f"  (CA: {e['ca_file']})" if e.get("ca_file") else ""), highlight=False)
    if world and world.get("bank_folder"):
        console.print(f"{'bank':<12} {world['bank_folder']}  (import: `ltc import-statement --folder DIR`)", highlight=False)
    console.print(f"pid {state['pid']}; stop with `ltc sandbox stop`")


@app.command("stop")
def stop() -> None:
    """Stop the emulators."""
    state = _read_state()
    if state is None:
        console.print("sandbox: not running")
        return
    os.kill(int(state["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + 20
    while STATE.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    console.print("sandbox stopped")

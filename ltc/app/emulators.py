"""The local emulators in a background process (``python -m sandbox.run``), found again through a state file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from canonical.errors import ConfigError, LtcError

STATE = Path(".ltc/sandbox.json")


def read_state() -> dict[str, Any] | None:
    """What the running sandbox wrote (pid, emulators, world), or None when none runs."""
    if not STATE.exists():
        return None
    state = json.loads(STATE.read_text())
    try:
        os.kill(int(state["pid"]), 0)
    except (ProcessLookupError, PermissionError):
        STATE.unlink(missing_ok=True)  # a stale file of a process that is gone
        return None
    return state


def start(kinds: list[str], seed: int, size: int, world: str | None = None) -> None:
    """Start the emulators (``kinds``, default all; or the systems of ``world``) and wait until they serve."""
    if world is not None:
        from sandbox.world import read_world

        if kinds:
            raise ConfigError("--kind and --world do not go together: a world serves the systems it holds")
        read_world(world)  # a bad world fails here, in one line, before anything starts
    if read_state() is not None:
        raise ConfigError(f"the sandbox is already running (see {STATE}); `ltc sandbox stop` first")
    STATE.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "sandbox.run", "--state", str(STATE), "--seed", str(seed), "--size", str(size)]
    if world is not None:
        cmd += ["--world", str(Path(world).resolve())]
    for k in kinds:
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


def stop() -> bool:
    """Stop the running sandbox (waiting up to 20 s for it to remove its state); False if none ran."""
    state = read_state()
    if state is None:
        return False
    os.kill(int(state["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + 20
    while STATE.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return True

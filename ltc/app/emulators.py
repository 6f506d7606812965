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


def sandbox_config(state: dict[str, Any], fx_key: bool = True) -> dict[str, Any]:
    """An ltc.yaml (as data) pointing at the running sandbox of a world: every API source at its
    emulator (URL, CA file, the emulator's throwaway credentials written as ``value:``), the world's
    bank folder as a ``camt053`` source, its FX rates file, its ERP (``dry_run``: a world is a
    replay) and reporting currency."""
    from sandbox.run import WORLD_ACCESS

    info = state.get("world")
    if not info:
        raise ConfigError("--write-config needs --world: only a world's sandbox has one configuration to write")
    meta = _world_yaml(info["path"])
    sources: dict[str, Any] = {}
    for kind, emu in state["emulators"].items():
        access = WORLD_ACCESS[kind]
        options = dict(access["options"])
        if kind == "jiandaoyun":  # the app and its forms: the world's jiandaoyun/app.yaml
            import yaml

            from sandbox.world import jiandaoyun_options

            app = yaml.safe_load((Path(info["path"]) / "jiandaoyun" / "app.yaml").read_text(encoding="utf-8"))
            options.update(jiandaoyun_options(app))
        if emu.get("ca_file"):
            options["ca_file"] = str(Path(emu["ca_file"]).resolve())
        sources[kind] = {"kind": kind, "base_url": emu["url"],
                         "credentials": {k: {"value": v} for k, v in access["credentials"].items()},
                         "options": options}
    if info.get("bank_folder"):
        sources["bank"] = {"kind": "camt053", "options": {"folder": str(Path(info["bank_folder"]).resolve())}}
    cfg: dict[str, Any] = {"reporting_currency": str(meta.get("reporting_currency") or "USD"), "sources": sources}
    erp = meta.get("erp")
    if erp and erp != "none" and erp in sources:
        cfg["erp"] = {"source": erp, "dry_run": True}
    fx_file = Path(info["path"]) / "fx_rates.csv"
    if fx_key and fx_file.is_file():
        cfg["fx"] = {"files": [str(fx_file.resolve())]}
    return cfg


def write_config(path: str | Path, state: dict[str, Any] | None = None) -> Path:
    """Write :func:`sandbox_config` of the running sandbox to ``path``; check that it loads."""
    from ltc.app.config import Config, load_config

    state = state if state is not None else read_state()
    if state is None:
        raise ConfigError("the sandbox is not running: `ltc sandbox start --world DIR --write-config ltc.yaml`")
    data = sandbox_config(state, fx_key="fx" in Config.model_fields)
    world = state["world"]
    target = Path(path)
    header = [
        f"# ltc.yaml for the sandbox of world {world['name']} ({world['path']}), written by",
        "# `ltc sandbox start --write-config`. The credentials below are the local emulators' throwaway",
        "# ones (accepted only for sources on 127.0.0.1); the URLs change each time the sandbox starts.",
    ]
    as_of = _world_as_of(world["path"])
    if as_of:
        header.append(f"# The world's as-of is {as_of}: `ltc run --config {target.name} --as-of {as_of}` reconciles "
                      "as `ltc demo --world` does.")
    import yaml

    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(header) + "\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
                      encoding="utf-8")
    load_config(target)  # what was written loads as it is
    return target


def _world_yaml(path: str) -> dict[str, Any]:
    """The world's world.yaml (name, systems, erp, reporting_currency, as_of); checked at start."""
    import yaml

    data = yaml.safe_load((Path(path) / "world.yaml").read_text(encoding="utf-8")) or {}
    return data if isinstance(data, dict) else {}


def _world_as_of(path: str) -> str | None:
    as_of = _world_yaml(path).get("as_of")
    return str(as_of) if as_of else None


"""Serve the registered emulators until stopped: ``python -m sandbox.run --state .ltc/sandbox.json``
(generated data), or a world directory with ``--world DIR`` (docs/world.md; :func:`start_world`).

Used by ``ltc sandbox start`` (which runs this in the background) and by the demo. The state file
names each emulator's URL and CA file, and this process's pid, so ``ltc sandbox stop`` can end it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from canonical.errors import LtcError
from sandbox.registry import EMULATORS
from sandbox.server import RunningServer, Served, serve
from sandbox.world import WorldDir, read_world

TLS_KINDS = {"salesforce"}  # simple-salesforce only speaks https

# What each emulator accepts when it serves a world (sandbox values, not secrets): the app's
# keyword arguments, and the credentials and options a source pointing at it needs. Also used by
# ``ltc.app.demo.world_sources`` and printed by ``ltc sandbox status``.
WORLD_ACCESS: dict[str, dict[str, Any]] = {
    "salesforce": {"app": {}, "credentials": {"client_id": "ltc-emulator-client",
                                              "client_secret": "ltc-emulator-secret"}, "options": {}},
    "hubspot": {"app": {"token": "pat-na1-ltc-demo"}, "credentials": {"token": "pat-na1-ltc-demo"}, "options": {}},
    "stripe": {"app": {"api_key": "sk_test_ltc_demo"}, "credentials": {"api_key": "sk_test_ltc_demo"},
               "options": {}},
    "tryton": {"app": {"database": "ltc", "login": "admin", "password": "ltc-world"},
               "credentials": {"login": "admin", "password": "ltc-world"}, "options": {"database": "ltc"}},
    "odoo": {"app": {"database": "ltc", "login": "admin", "api_key": "ltc-world-odoo-key"},
             "credentials": {"api_key": "ltc-world-odoo-key"}, "options": {"database": "ltc", "login": "admin"}},
    # the emulator is its own accounts server: accounts_url is set to its URL (see ltc.app.demo)
    "zoho": {"app": {"client_id": "1000.LTCWORLDCLIENT", "client_secret": "ltc-world-zoho-secret",
                     "refresh_token": "1000.ltc-world-refresh"},
             "credentials": {"client_id": "1000.LTCWORLDCLIENT", "client_secret": "ltc-world-zoho-secret",
                             "refresh_token": "1000.ltc-world-refresh"}, "options": {"accounts_url": "$url"}},
    # options (app_id, forms) come from the world's jiandaoyun/app.yaml (see ltc.app.demo.world_sources)
    "jiandaoyun": {"app": {"api_key": "ltc-world-jdy-api-key", "rate_per_s": 30},
                   "credentials": {"api_key": "ltc-world-jdy-api-key"}, "options": {}},
}


def world_app(kind: str, records: dict[str, list[dict[str, Any]]], **options: Any) -> Any:
    """The ASGI app of emulator ``kind`` seeded from a world's records (object -> records)."""
    import importlib

    factories = {"salesforce": "build_app", "hubspot": "create_app", "stripe": "create_app",
                 "tryton": "create_app", "odoo": "create_app", "zoho": "create_app", "jiandaoyun": "create_app"}
    if kind not in factories:
        raise ValueError(f"no world emulator for {kind}")
    module = importlib.import_module(f"sandbox.{kind}")
    return getattr(module, factories[kind])(world=records, **options)


def start_world(world: WorldDir) -> dict[str, RunningServer]:
    """One emulator per API system of ``world`` (every system but ``bank``), each on a free loopback
    port, accepting the credentials of :data:`WORLD_ACCESS`. The world is validated already
    (:func:`sandbox.world.read_world`), so nothing is served from a half-valid world."""
    return _serve_built(_build_world_apps(world))


def _build_world_apps(world: WorldDir) -> dict[str, Any]:
    """The ASGI app of each API system of ``world``, seeded (their indexes built)."""
    from sandbox.world import jiandaoyun_app

    def records(kind: str) -> Any:
        return jiandaoyun_app(world) if kind == "jiandaoyun" else world.records.get(kind, {})

    return {kind: world_app(kind, records(kind), **WORLD_ACCESS[kind]["app"]) for kind in world.api_systems}


def _serve_built(apps: dict[str, Any]) -> dict[str, RunningServer]:
    """Serve each built app on a free loopback port; if one fails, the ones started are stopped."""
    servers: dict[str, RunningServer] = {}
    try:
        for kind, app in apps.items():
            servers[kind] = serve(app, tls=kind in TLS_KINDS)
    except Exception:
        for srv in servers.values():
            srv.stop()
        raise
    return servers


@dataclass
class ForkedServer:
    """An emulator served by the process :func:`start_world_process` forked (stopping one stops them all)."""

    url: str
    port: int
    ca_file: str | None
    _process: Any  # multiprocessing's Process
    _conn: Any  # the pipe to it: closing it (or sending anything) stops the process's emulators

    def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError, ValueError):  # stopped already (closed pipe)
                self._conn.send("stop")
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout=5)
        self._conn.close()


_STARTUP_S = 120.0  # building the emulators' indexes of a large world takes a while


def start_world_process(world: WorldDir, ready: Callable[[], None] | None = None, *,
                        hand_over: bool = False) -> dict[str, Served]:
    """:func:`start_world` in a forked child process: the emulators' work (encoding pages, the
    vendors' paging and query logic, HTTP) then runs beside the connectors, on another core, not
    taking turns with them for this process's GIL. What they serve is the same: the child inherits
    the world as read. Where forking is not available (:func:`canonical.forking.forks`), the emulators run in this
    process.

    ``ready()`` (e.g. :meth:`sandbox.world.WorldChecks.finish`) runs here while the child builds the
    emulators' indexes; the child serves only once it returned. If it raises, the child is stopped
    and its exception raised: nothing was served. With ``hand_over`` (a caller that needs the records no
    more once ``ready()`` returned), this process then drops its copy of the world's records
    (:meth:`~sandbox.world.WorldDir.drop_records`) while the child finishes its indexes: the child has
    them, and this process's later work (and the processes it forks) run without them."""
    from canonical.forking import forks, start_child

    if not forks():
        if ready is not None:
            ready()
        return dict(start_world(world))
    process, mine = start_child(_serve_forked, world, name="ltc-world-emulators", duplex=True)
    try:
        if ready is not None:
            ready()
        with contextlib.suppress(OSError):  # the child ended already (its error is in the pipe)
            mine.send("serve")
        if hand_over:
            world.drop_records()
        if not mine.poll(_STARTUP_S):
            raise RuntimeError(f"the world's emulators did not start within {_STARTUP_S:.0f} s")
        started = mine.recv()
    except BaseException:
        process.kill()
        process.join(timeout=5)
        mine.close()
        raise
    if isinstance(started, str):  # the child's error
        process.join(timeout=10)
        mine.close()
        raise RuntimeError(f"the world's emulators did not start: {started}")
    return {kind: ForkedServer(url, port, ca, process, mine) for kind, (url, port, ca) in started.items()}


def _serve_forked(world: WorldDir, conn: Any) -> None:
    """The forked child: build the emulators, serve them once the parent says so, until it says
    stop or goes away."""
    try:
        apps = _build_world_apps(world)
    except BaseException as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    try:
        if conn.recv() != "serve":
            return
    except (EOFError, OSError):  # the parent went away (or the world failed its checks)
        return
    try:
        servers = _serve_built(apps)
    except BaseException as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    try:
        conn.send({kind: (srv.url, srv.port, srv.ca_file) for kind, srv in servers.items()})
        conn.recv()
    except (EOFError, OSError):  # the parent went away
        pass
    finally:
        for srv in servers.values():
            srv.stop()


def _serve_all(apps: dict[str, Callable[[], Any]]) -> dict[str, RunningServer]:
    """Build and serve each app on a free loopback port; if one fails, the ones started are stopped."""
    servers: dict[str, RunningServer] = {}
    try:
        for kind, build in apps.items():
            servers[kind] = serve(build(), tls=kind in TLS_KINDS)
    except Exception:
        for srv in servers.values():
            srv.stop()
        raise
    return servers


def start(kinds: list[str] | None = None, *, seed: int = 7, size: int = 200,
          options: dict[str, dict[str, Any]] | None = None) -> dict[str, RunningServer]:
    """Start the named emulators (default: all registered) on free loopback ports."""
    chosen = kinds or sorted(EMULATORS)
    unknown = [k for k in chosen if k not in EMULATORS]
    if unknown:
        raise ValueError(f"no emulator for {', '.join(unknown)}; available: {', '.join(sorted(EMULATORS)) or 'none'}")
    return _serve_all({kind: partial(EMULATORS[kind], seed=seed, size=size, **(options or {}).get(kind, {}))
                       for kind in chosen})


def describe(servers: dict[str, RunningServer], world: WorldDir | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"pid": os.getpid(),
                           "emulators": {k: {"url": s.url, "ca_file": s.ca_file} for k, s in servers.items()}}
    if world is not None:
        out["world"] = {"path": str(world.path), "name": world.name, "systems": world.systems,
                        "bank_folder": str(world.bank_folder) if world.bank_folder else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--state", required=True)
    ap.add_argument("--kind", action="append")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--world", help="serve this world directory (docs/world.md) instead of generated data")
    args = ap.parse_args()
    world = None
    if args.world:
        try:
            world = read_world(args.world)
        except LtcError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(exc.exit_code)
        servers = start_world(world)
    else:
        servers = start(args.kind, seed=args.seed, size=args.size)
    state = Path(args.state)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps(describe(servers, world), indent=2))
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

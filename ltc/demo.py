"""``ltc demo``: the main job on the embedded default — local emulators as sources, SQLite as store.

Starts every registered emulator on a free loopback port (with the credentials each one accepts),
points an in-memory configuration at them, then runs exactly what the ``ltc-pipeline`` flow runs:
sync every source, map, resolve identities, reconcile. Nothing outside 127.0.0.1 is contacted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from ltc.config import Config, SecretRef, SourceConfig
from sandbox.run import start
from sandbox.server import RunningServer
from sandbox.world import WorldDir

# What each emulator accepts, and how its source is configured. Sandbox values, not secrets.
DEMO_SOURCES: dict[str, dict[str, Any]] = {
    "hubspot": {
        "app": {"token": "pat-na1-ltc-demo"},
        "credentials": {"token": "pat-na1-ltc-demo"},
        "options": {},
    },
    "salesforce": {
        "app": {},  # the emulator's own sandbox client (sandbox.salesforce.Credentials)
        "credentials": {"client_id": "ltc-emulator-client", "client_secret": "ltc-emulator-secret"},
        "options": {},
    },
    "stripe": {
        "app": {"api_key": "sk_test_ltc_demo"},
        "credentials": {"api_key": "sk_test_ltc_demo"},
        "options": {},
    },
}


@contextmanager
def demo_sources(seed: int = 7, size: int = 50) -> Iterator[tuple[Config, dict[str, RunningServer]]]:
    """Start the emulators and yield a configuration whose sources point at them."""
    kinds = sorted(DEMO_SOURCES)
    servers = start(kinds, seed=seed, size=size, options={k: DEMO_SOURCES[k]["app"] for k in kinds})
    saved = dict(os.environ)
    try:
        sources: dict[str, SourceConfig] = {}
        for kind, srv in servers.items():
            spec = DEMO_SOURCES[kind]
            creds: dict[str, SecretRef] = {}
            for field, value in spec["credentials"].items():
                var = f"LTC_DEMO_{kind.upper()}_{field.upper()}"
                os.environ[var] = value
                creds[field] = SecretRef(env=var)
            options = dict(spec["options"])
            if srv.ca_file:
                options["ca_file"] = srv.ca_file
            sources[kind] = SourceConfig(kind=kind, base_url=srv.url, credentials=creds,  # type: ignore[arg-type]
                                         options=options)
        yield Config(sources=sources), servers
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for srv in servers.values():
            srv.stop()


@contextmanager
def world_sources(world: WorldDir) -> Iterator[tuple[Config, dict[str, RunningServer]]]:
    """Serve ``world`` (read and validated by :func:`sandbox.world.read_world`) and yield a
    configuration whose sources point at its emulators, one source per system named after it.

    Credentials reach the connectors through ``LTC_WORLD_<SYSTEM>_<FIELD>`` environment variables
    (restored on exit). With ``bank`` in the world, a ``camt053`` source ``bank`` names the world's
    bank folder (``options.folder``); like every statement source it is not synced by the
    connectors: import it with :func:`connectors.statements.import_folder` (or ``run_import``).
    The world's ERP is ``erp.source`` in dry-run mode: a world is a replay, its ERP emulator
    answers reads only. ``reporting_currency`` is the world's.
    """
    from ltc.config import ErpConfig
    from sandbox.run import WORLD_ACCESS, start_world

    servers = start_world(world)
    saved = dict(os.environ)
    try:
        sources: dict[str, SourceConfig] = {}
        for kind, srv in servers.items():
            spec = WORLD_ACCESS[kind]
            creds: dict[str, SecretRef] = {}
            for field, value in spec["credentials"].items():
                var = f"LTC_WORLD_{kind.upper()}_{field.upper()}"
                os.environ[var] = value
                creds[field] = SecretRef(env=var)
            options = dict(spec["options"])
            if srv.ca_file:
                options["ca_file"] = srv.ca_file
            sources[kind] = SourceConfig(kind=kind, base_url=srv.url, credentials=creds,  # type: ignore[arg-type]
                                         options=options)
        if world.bank_folder is not None:
            sources["bank"] = SourceConfig(kind="camt053", options={"folder": str(world.bank_folder)})
        erp = ErpConfig(source=world.erp, dry_run=True) if world.erp else None
        yield Config(sources=sources, reporting_currency=world.reporting_currency, erp=erp), servers
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for srv in servers.values():
            srv.stop()


def today() -> Any:
    return datetime.now(UTC).date()

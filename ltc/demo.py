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

# What each emulator accepts, and how its source is configured. Sandbox values, not secrets.
DEMO_SOURCES: dict[str, dict[str, Any]] = {
    "hubspot": {
        "app": {"token": "pat-na1-ltc-demo"},
        "credentials": {"token": "pat-na1-ltc-demo"},
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


def today() -> Any:
    return datetime.now(UTC).date()

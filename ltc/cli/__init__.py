"""``ltc``: the command line, a thin shell over the application layer (:mod:`ltc.app`).

One module per command group; :mod:`ltc.cli.commands` assembles them into one typer app (not named
``main``: a submodule of that name would replace the entry function below as an attribute of this package). The console
entry point is ``ltc.cli:main``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

LONG_COMMANDS = ("sync", "run", "demo")  # they show progress: their first line comes before the imports


def announce(argv: list[str]) -> bool:
    """``ltc sync: starting`` on stderr at once for a long command (loading the connectors, Polars and
    SQLAlchemy takes a moment on a busy machine); nothing with ``--help`` or progress ``off``."""
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] not in LONG_COMMANDS or {"--help", "-h"} & set(argv):
        return False
    chosen = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--progress"), None)
    chosen = chosen or next((a.split("=", 1)[1] for a in argv if a.startswith("--progress=")), None)
    if (chosen or os.environ.get("LTC_PROGRESS", "")).strip().lower() == "off":
        return False
    sys.stderr.write(f"ltc {words[0]}: starting\n")
    sys.stderr.flush()
    return True


def main() -> None:
    """Console entry point (see :func:`ltc.cli.commands.main`)."""
    # a command that needs Prefect and finds no PREFECT_API_URL starts a temporary Prefect server in this process
    # (a `{secret: …}` credential, `ltc serve`): its usage analytics then fail on every start where the machine has
    # no way out ("ERROR | prefect.server.services.telemetry - Failed to send telemetry"), and send where it has.
    # Off unless the operator says otherwise.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    announce(sys.argv[1:])
    from ltc.cli.commands import main as run

    run()


def __getattr__(name: str) -> Any:
    if name == "app":
        from ltc.cli.commands import app

        return app
    raise AttributeError(f"module 'ltc.cli' has no attribute {name!r}")


__all__ = ["app", "main"]

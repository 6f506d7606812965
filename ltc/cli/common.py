"""What the command modules share: the consoles, the ``--config`` option, opening the store."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console

from canonical.store import Store
from ltc.app import runtime
from ltc.app.config import load_config

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="Path of ltc.yaml (default: $LTC_CONFIG or ./ltc.yaml).")


def store_url(config_path: str | None = None) -> str:
    return runtime.store_url(load_config(config_path))


def open_store(config_path: str | None = None, *, auto_create: bool = True) -> Store:
    return runtime.open_store(config_path, auto_create=auto_create)


def fmt(value: Any, width: int = 40) -> str:
    """A table cell: ``-`` for nothing, instants to the second, long text cut with an ellipsis."""
    if value is None:
        return "-"
    text = value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"

"""What the command modules share: the consoles, the ``--config`` option, opening the store."""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

import typer
from rich.console import Console

from canonical.errors import InputError
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


#: the days an ``--as-of`` may name: from the first day a spreadsheet shows (the report's workbook) to the end of
#: 2999; a day out there is a typo (0001-01-01 made the reconciliation's date arithmetic overflow)
AS_OF_RANGE = (date(1900, 1, 1), date(2999, 12, 31))


def day_option(value: str, option: str, within: tuple[date, date] | None = AS_OF_RANGE) -> date:
    """The day ``value`` names (YYYY-MM-DD) for ``option``; :class:`InputError` (one line, exit 2) for another text
    or a day outside ``within``."""
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None
    if within is not None and not within[0] <= day <= within[1]:
        raise InputError(f"{option} {value!r} is out of range: give a day from {within[0].isoformat()} to "
                         f"{within[1].isoformat()}")
    return day


def fmt(value: Any, width: int = 40) -> str:
    """A table cell: ``-`` for nothing, instants to the second, long text cut with an ellipsis."""
    if value is None:
        return "-"
    text = value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"

"""``ltc remap`` and ``ltc identity``: rebuild canonical rows from raw landing, resolve identities."""

from __future__ import annotations

import typer
from rich.table import Table

from ltc.app.config import load_config
from ltc.cli.common import ConfigOpt, console, open_store

SourceOpt = typer.Option(None, "--source", "-s", help="Only this source (its name in ltc.yaml).")


def remap(source: str | None = SourceOpt, config: str | None = ConfigOpt) -> None:
    """Rebuild canonical rows from the raw landing (after a mapping change); fetches nothing."""
    from ltc.app.pipeline import remap as remap_sources

    cfg = load_config(config)
    marked, counts = remap_sources(open_store(config), cfg, source)
    table = Table(title=f"Remapped {marked} raw record(s)")
    for col in ("source", "records", "mapped", "quarantined", "tombstoned", "ignored", "canonical rows"):
        table.add_column(col)
    for name, c in sorted(counts.items()):
        if "waiting" in c:
            console.print(f"{name}: {c['waiting']} raw record(s) wait, no mapping for kind {name!r}; "
                          f"set sources.{name}.kind in ltc.yaml, then `ltc remap --source {name}`")
            continue
        rows = ", ".join(f"{k}={v}" for k, v in sorted(c.items())
                         if k not in ("records", "mapped", "quarantined", "tombstoned", "ignored"))
        table.add_row(name, *(str(c.get(k, 0)) for k in ("records", "mapped", "quarantined", "tombstoned", "ignored")),
                      rows or "-")
    console.print(table)


def identity(config: str | None = ConfigOpt) -> None:
    """Resolve which accounts (and bank payers) are the same customer; writes cross_ref."""
    from canonical.identity import run_identity

    cfg = load_config(config)
    counts = run_identity(open_store(config), config=cfg)
    console.print("Identity: " + ", ".join(f"{k}={v}" for k, v in counts.items()))

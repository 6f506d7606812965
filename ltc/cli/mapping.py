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
    marked, counts = remap_sources(open_store(config, auto_create=False), cfg, source)
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
    counts = run_identity(open_store(config, auto_create=False), config=cfg)
    console.print("Identity: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


mappings_app = typer.Typer(help="Mapping tools: find identifier fields no mapping reads.", no_args_is_help=True)


@mappings_app.command("suggest")
def suggest(
    source: str | None = SourceOpt,
    write: str | None = typer.Option(None, "--write", help="Accept the suggestion: merge it into this override "
                                     "file (needs --source; name the file in sources.<name>.mapping)."),
    config: str | None = ConfigOpt,
) -> None:
    """Profile the landed raw records; propose mapping lines for unmapped identifier fields (tax ids that
    pass their check digits, values equal to another system's deal ids, order or invoice numbers)."""
    from canonical.errors import ConfigError
    from ltc.app.discovery import accept
    from ltc.app.discovery import suggest as find
    from mappings.discover import override_text

    cfg = load_config(config)
    src = cfg.sources.get(source) if source is not None else None
    if source is not None and src is not None and src.kind == "jiandaoyun":
        # the forms configuration, proposed from the app itself; once forms are configured and synced,
        # the identifier fields found in the landed records follow as for every source
        from ltc.app.discovery import suggest_jiandaoyun

        configured = bool(src.options.get("forms"))
        if write is None:
            console.print(suggest_jiandaoyun(source, src), highlight=False, markup=False, soft_wrap=True)
            if not configured:
                return
            console.print("# --- identifier fields found in the landed records ---", highlight=False)
        elif not configured:
            raise ConfigError(f"--write merges identifier fields into a mapping override: configure "
                              f"sources.{source}.options.forms first (paste the proposal printed without --write)")
    store = open_store(config, auto_create=False)
    if write is not None:
        if source is None:
            raise ConfigError("--write needs --source: an override file belongs to one source")
        written = accept(store, cfg, source, write)
        console.print(f"{write}: {len(written)} field(s) added"
                      + "".join(f"\n  {f.object}.{f.target} <- {f.path} ({f.reason()})" for f in written),
                      highlight=False)
        if written and cfg.sources.get(source) is not None and cfg.sources[source].mapping != write:
            console.print(f"name it in ltc.yaml: sources.{source}.mapping: {write}; then `ltc remap --source {source}`",
                          highlight=False)
        return
    findings = find(store, cfg, source)
    if not findings:
        console.print("no unmapped identifier fields found" + (f" in {source}" if source else ""))
        return
    table = Table(title="Unmapped identifier fields")
    for col in ("source", "object", "field", "looks like", "matches", "confidence", "proposed"):
        table.add_column(col, overflow="fold")
    for f in findings:
        table.add_row(f.system, f.object, f.path, f.kind, f"{f.matches}/{f.values}", f.confidence, f.target)
    console.print(table)
    for system in sorted({f.system for f in findings}):
        console.print(f"\n# --- override for source {system} (sources.{system}.mapping) ---", highlight=False)
        console.print(override_text(findings, system), highlight=False, markup=False, soft_wrap=True)

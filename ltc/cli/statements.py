"""``ltc import-statement``: land camt.053 / MT940 bank statement files (one file, or a folder pass).

Prints one line per statement (entries, new, changed, unchanged) and one per rejected statement
(on stderr). Exit codes: 0 all statements imported; 1 some statement rejected (the others are
imported); 2 a file that cannot be read at all (one-line ``file:line`` error), or a ``--source``
that is not a bank source (:func:`bank_source`; the name becomes the raw system of the rows).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from canonical.errors import ConfigError, InputError
from canonical.store import Store
from connectors.statements import DEFAULT_SOURCE, FileResult, check_source_name, run_import
from ltc.app import runtime
from ltc.app.config import Config, load_config

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def bank_source(cfg: Config, source: str) -> None:
    """ConfigError unless ``source`` is a bank source: a ``kind: camt053`` source of ltc.yaml, or the default
    ``bank`` (unless ltc.yaml gives that name another kind). The mapping stage knows these as bank statements;
    rows landed under another name would go among another system's records, or be mapped by nothing."""
    kinds = {DEFAULT_SOURCE: "camt053", **{name: src.kind for name, src in cfg.sources.items()}}
    kind = kinds.get(source)
    if kind == "camt053":
        return
    banks = sorted(name for name, k in kinds.items() if k == "camt053")
    hint = (f"bank sources: {', '.join(banks)}" if banks
            else "add a `kind: camt053` source to ltc.yaml and give its name with --source")
    if kind is None:
        raise ConfigError(f"import-statement: source {source!r} is not in ltc.yaml: not a bank statement (camt053) "
                          f"source; {hint}")
    raise ConfigError(f"import-statement: source {source!r} is a {kind} source in ltc.yaml, not a bank statement "
                      f"(camt053) source; {hint}")


def _print(result: FileResult) -> None:
    name = result.path.name
    if result.skipped:
        console.print(f"{name}: already imported (same content), skipped")
        return
    if result.error:
        err_console.print(f"error: {result.error}", markup=False)
        return
    for s in result.statements:
        if s.error:
            err_console.print(f"rejected: {s.error}", markup=False)
        else:
            console.print(
                f"{name}: statement {s.statement_id} ({s.format}, account {s.account or '-'}): {s.entries} entries, "
                f"{s.new} new, {s.changed} changed, {s.unchanged} unchanged",
                markup=False,
            )


def import_statement(
    file: Path | None = typer.Argument(None, help="camt.053 (XML) or MT940 file to import."),
    source: str = typer.Option(DEFAULT_SOURCE, "--source", "-s", help="Source instance name (raw system)."),
    folder: Path | None = typer.Option(
        None, "--folder", help="Import every not-yet-imported file of this folder (one pass; idempotent)."
    ),
    config: str | None = typer.Option(None, "--config", "-c", help="Path of ltc.yaml."),
) -> None:
    """Import bank statements (camt.053 any version, MT940); re-importing changes nothing."""
    if (file is None) == (folder is None):
        raise InputError("import-statement: give either a FILE or --folder DIR (one of them)")
    check_source_name(source)
    cfg = load_config(config)
    bank_source(cfg, source)
    summary = run_import(Store.open(runtime.store_url(cfg)), file=file, folder=folder, source=source)
    for r in summary.results:
        _print(r)
    counts = summary.counts
    if folder:
        console.print(
            f"{folder}: {counts['files']} file(s), {counts['skipped']} already imported, "
            f"{counts['bad_files']} unreadable; {counts['statements']} statement(s), {counts['rejected']} rejected; "
            f"{counts['entries']} entries, {counts['new']} new, {counts['changed']} changed, "
            f"{counts['unchanged']} unchanged",
            markup=False,
        )
    if counts["bad_files"]:
        raise typer.Exit(2)
    if counts["rejected"]:
        raise typer.Exit(1)

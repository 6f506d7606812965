"""``ltc demo``: the main job on a generated world (or ``--world DIR``) served by the local emulators."""

from __future__ import annotations

import typer

from canonical.errors import ConfigError
from ltc.app import runtime
from ltc.cli.common import ConfigOpt, console, err_console
from ltc.cli.progress import ProgressOpt, reporter
from ltc.cli.sync import echo_line, print_result, render_status


def demo(
    world: str | None = typer.Option(None, "--world", help="Replay this world directory (docs/world.md); "
                                     "default: generate one into .ltc/world/ and replay it."),
    seed: int = typer.Option(7, help="Seed of the generated world."),
    chains: int = typer.Option(300, help="Closed-won deal chains of the generated world."),
    erp: str = typer.Option("tryton", help="ERP of the generated world: tryton or odoo."),
    crm: str = typer.Option("salesforce", help="CRM of the generated world: salesforce, zoho or jiandaoyun."),
    out: str | None = typer.Option(None, "--out", help="Where the reports go (default: .ltc/reports/)."),
    config: str | None = ConfigOpt,
    progress: str = ProgressOpt,
) -> None:
    """The main job on a world: emulators serve it, then sync, map, identity, reconcile and the reports."""
    from ltc.app.demo import DEFAULT_REPORTS, DEFAULT_WORLD, generate_world, replay_world

    store = runtime.open_store(config)
    if world is None:
        if erp not in ("tryton", "odoo"):
            raise ConfigError(f"--erp {erp!r}: the generated world's ERP is tryton or odoo")
        if crm not in ("salesforce", "zoho", "jiandaoyun"):
            raise ConfigError(f"--crm {crm!r}: the generated world's CRM is salesforce, zoho or jiandaoyun")
        world = str(generate_world(DEFAULT_WORLD, chains=chains, seed=seed, erp=erp, crm=crm))
        console.print(f"generated world: {world} ({chains} chains, seed {seed}, CRM {crm}, ERP {erp})")
    with reporter(err_console, progress) as on_progress:
        summary = replay_world(store, world, out or DEFAULT_REPORTS, echo=echo_line(on_progress),
                               on_progress=on_progress)
    render_status(store)
    result = summary["result"]
    print_result(result)
    console.print("reports: " + ", ".join(str(p) for p in summary["reports"]), highlight=False)
    if result.exit_code:
        raise typer.Exit(result.exit_code)

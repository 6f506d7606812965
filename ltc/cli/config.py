"""``ltc config check``: validate ltc.yaml and everything it refers to."""

from __future__ import annotations

import typer

from ltc.cli.common import ConfigOpt, console, err_console

app = typer.Typer(help="Configuration file (ltc.yaml).", no_args_is_help=True)


@app.command("check")
def config_check(config: str | None = ConfigOpt) -> None:
    """Validate ltc.yaml and what it refers to (credential variables and Secret blocks, mapping files,
    bank folders, notification targets); list every problem, one per line (exit 2 if any)."""
    from ltc.app.config_check import check_config

    result = check_config(config)
    if result.problems:
        for line in result.problems:
            err_console.print(line, highlight=False, markup=False, soft_wrap=True)
        err_console.print(f"{len(result.problems)} problem(s) in {result.path or 'ltc.yaml'}", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(2)
    cfg = result.config
    assert cfg is not None
    console.print(
        f"configuration OK: {len(cfg.sources)} source(s)"
        + (f" ({', '.join(f'{n}={s.kind}' for n, s in cfg.sources.items())})" if cfg.sources else "")
        + f", reporting currency {cfg.reporting_currency}"
        + (f", ERP {cfg.erp.source}" if cfg.erp else "")
        + (f", {len(cfg.notifications.targets)} notification target(s)" if cfg.notifications.targets else "")
        + f"; {result.credentials} credential reference(s) resolve, {result.mappings} mapping(s) compile",
        highlight=False,
    )

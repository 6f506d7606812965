"""``ltc config check``: validate ltc.yaml."""

from __future__ import annotations

import typer

from canonical.errors import ConfigError
from ltc.app.config import load_config
from ltc.app.notify import check_targets
from ltc.cli.common import ConfigOpt, console

app = typer.Typer(help="Configuration file (ltc.yaml).", no_args_is_help=True)


@app.command("check")
def config_check(config: str | None = ConfigOpt) -> None:
    """Validate ltc.yaml and say exactly what is wrong and where."""
    cfg = load_config(config)
    problems = check_targets(cfg)
    if problems:
        raise ConfigError("; ".join(problems))
    console.print(
        f"configuration OK: {len(cfg.sources)} source(s)"
        + (f" ({', '.join(f'{n}={s.kind}' for n, s in cfg.sources.items())})" if cfg.sources else "")
        + f", reporting currency {cfg.reporting_currency}"
        + (f", ERP {cfg.erp.source}" if cfg.erp else "")
        + (f", {len(cfg.notifications.targets)} notification target(s)" if cfg.notifications.targets else "")
    )

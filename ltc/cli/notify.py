"""``ltc notify test``: send a test message to every notification target of ltc.yaml."""

from __future__ import annotations

import typer

from canonical.errors import ConfigError
from ltc.app.config import load_config
from ltc.app.notify import send_test
from ltc.cli.common import ConfigOpt, console, err_console

app = typer.Typer(help="Notifications (Slack, Feishu, WeCom, Teams, e-mail, webhooks).", no_args_is_help=True)


@app.command("test")
def notify_test(config: str | None = ConfigOpt) -> None:
    """Send a test message to every target of `notifications.targets`, whatever its routing."""
    result = send_test(load_config(config))
    for d in result.deliveries:
        if d.ok:
            console.print(f"sent: {d.target}", highlight=False)
        else:
            err_console.print(f"FAILED: {d.target}: {d.error}", highlight=False, markup=False, soft_wrap=True)
    if result.failures:
        raise ConfigError(f"{len(result.failures)} of {len(result.deliveries)} notification target(s) "
                          "did not accept the test message")

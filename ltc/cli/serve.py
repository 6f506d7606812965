"""``ltc serve``: the deployments of prefect.yaml on their schedules, in this process."""

from __future__ import annotations

import typer

from ltc.cli.common import ConfigOpt


def serve(config: str | None = ConfigOpt,
          ui: bool = typer.Option(False, "--ui", help="Also serve the work queue (ltc ui) in this process.")) -> None:
    """Run the deployments of prefect.yaml on their schedules in this process (Prefect serve())."""
    from flows.serve import serve_all
    from ltc.cli.ui import server

    queue = server(config) if ui else None
    if queue is not None:
        queue.listen()  # an address it cannot have: one line now, not a thread's log line beside the schedules
    serve_all(config, ui=queue)

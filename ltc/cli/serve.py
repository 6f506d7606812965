"""``ltc serve``: the deployments of prefect.yaml on their schedules, in this process."""

from __future__ import annotations

from ltc.cli.common import ConfigOpt


def serve(config: str | None = ConfigOpt) -> None:
    """Run the deployments of prefect.yaml on their schedules in this process (Prefect serve())."""
    from flows.serve import serve_all

    serve_all(config)

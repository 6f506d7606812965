"""Run the deployments of ``prefect.yaml`` locally with ``serve()`` (no work pool or worker needed).

The schedules are read from ``prefect.yaml`` so that ``ltc serve`` and ``prefect deploy --all`` run
the same flows on the same schedules. Schedules need a Prefect server (`prefect server start`):
the temporary server of a bare ``serve()`` does not schedule.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

ROOT = Path(__file__).resolve().parent.parent


def deployments(prefect_file: Path = ROOT / "prefect.yaml", config_path: str | None = None) -> list[Any]:
    spec = yaml.safe_load(prefect_file.read_text())
    out = []
    for dep in spec["deployments"]:
        module_path, func = dep["entrypoint"].split(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        flow_obj = getattr(module, func)
        schedules: list[Any] = []
        for s in dep.get("schedules") or []:
            if "cron" in s:
                sched: Any = CronSchedule(cron=s["cron"], timezone=s.get("timezone", "UTC"))
            elif "interval" in s:
                sched = IntervalSchedule(interval=s["interval"])
            else:
                continue
            # `active: false` declares an opt-in schedule (push-crm): registered, not running until activated
            # the slug is the schedule's identity: with it, serving after `prefect deploy --all` (or again)
            # updates the deployed schedules instead of clashing with them
            schedules.append(DeploymentScheduleCreate(schedule=sched, active=bool(s.get("active", True)),
                                                      slug=s.get("slug")))
        limit = dep.get("concurrency_limit")
        if isinstance(limit, dict):  # {limit: 1, collision_strategy: CANCEL_NEW}, as `prefect deploy` reads it
            limit = ConcurrencyLimitConfig(limit=limit["limit"],
                                           collision_strategy=limit.get("collision_strategy", "ENQUEUE"))
        params = dict(dep.get("parameters") or {})
        if "config_path" in params and config_path:
            params["config_path"] = config_path
        out.append(flow_obj.to_deployment(name=dep["name"], description=dep.get("description"),
                                          parameters=params, schedules=schedules or None, concurrency_limit=limit,
                                          tags=list(dep.get("tags") or [])))
    return out


def serve_all(config_path: str | None = None, ui: Any | None = None) -> None:
    """Serve the deployments; with ``ui`` (a uvicorn server, ``ltc serve --ui``) the work queue runs
    in a thread beside them and stops with them."""
    thread = None
    if ui is not None:
        import threading

        thread = threading.Thread(target=ui.run, name="ltc-ui", daemon=True)
        thread.start()
    try:
        serve(*deployments(config_path=config_path), pause_on_shutdown=False)
    finally:
        if ui is not None and thread is not None:
            ui.should_exit = True
            thread.join(timeout=10)

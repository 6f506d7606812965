"""What ``ltc status`` shows, as data: the open exceptions by code (the streams are ``Store.stream_states``)
and each stream's freshness against its source's schedule.

A source's schedule is ``sources.<name>.schedule`` of ltc.yaml (an interval such as ``1h`` or a
five-field cron line, UTC), else the most frequent active schedule of the prefect.yaml deployment
that syncs it: a ``sync-source`` deployment for that source, else ``sync-all`` or ``pipeline``
(which sync every source). prefect.yaml is looked for next to ltc.yaml, in ``$LTC_HOME``, then in
the working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
import yaml

from canonical.store import Store
from ltc.app.config import Config, cron_line, parse_duration
from reconcile.tables import recon_exception as ex

SYNC_ENTRYPOINTS = {"flows/sync.py:sync_all", "flows/pipeline.py:pipeline"}  # they sync every source
SOURCE_ENTRYPOINT = "flows/sync.py:sync_source"


def open_exceptions(store: Store) -> dict[str, int]:
    """Exception code -> how many are not resolved, in code order."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(ex.c.code, sa.func.count()).where(ex.c.status != "resolved")
                            .group_by(ex.c.code).order_by(ex.c.code))
        return {code: int(n) for code, n in rows}


@dataclass(frozen=True)
class Schedule:
    """How often a source is synced: an interval, or a cron line in a time zone; ``origin`` says where
    it was configured (``ltc.yaml`` or ``prefect.yaml deployment pipeline``)."""

    origin: str
    interval: timedelta | None = None
    cron: str | None = None
    timezone: str = "UTC"

    def due_after(self, when: datetime) -> datetime:
        """The first scheduled run after ``when``."""
        if self.interval is not None:
            return when + self.interval
        from cronsim import CronSim

        assert self.cron is not None
        local = when.astimezone(_zone(self.timezone))
        return next(CronSim(self.cron, local)).astimezone(UTC)

    def period(self, at: datetime) -> timedelta:
        """The time between two runs around ``at`` (for a cron line: its next two fire times)."""
        if self.interval is not None:
            return self.interval
        first = self.due_after(at)
        return self.due_after(first) - first

    def describe(self) -> str:
        what = f"every {human(self.interval)}" if self.interval is not None else f"cron {self.cron!r} {self.timezone}"
        return f"{what} ({self.origin})"


def _zone(name: str) -> Any:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def human(delta: timedelta) -> str:
    """``2h``, ``35m``, ``3d 4h``, ``40s``: a duration at a glance."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def parse_schedule(text: Any, origin: str, timezone: str = "UTC") -> Schedule:
    """``1h`` / ``30m`` / seconds as a number -> an interval; ``"0 * * * *"`` -> a cron line.
    Raises ValueError saying what is expected."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError(f"schedule interval must be positive, got {text!r}")
        return Schedule(origin, interval=timedelta(seconds=float(text)))
    value = str(text).strip()
    if cron_line(value):
        return Schedule(origin, cron=value, timezone=timezone)
    interval = parse_duration(value)
    if interval is None:
        raise ValueError(f"schedule {value!r}: give an interval such as 1h or 15m, or a cron line such as '0 * * * *'")
    return Schedule(origin, interval=interval)


def find_prefect_yaml(config_path: str | Path | None) -> Path | None:
    """prefect.yaml next to ltc.yaml, in ``$LTC_HOME``, or in the working directory."""
    candidates = []
    explicit = config_path or os.environ.get("LTC_CONFIG")
    if explicit:
        candidates.append(Path(explicit).resolve().parent / "prefect.yaml")
    if os.environ.get("LTC_HOME"):
        candidates.append(Path(os.environ["LTC_HOME"]) / "prefect.yaml")
    candidates.append(Path("prefect.yaml"))
    return next((p for p in candidates if p.is_file()), None)


def _deployment_schedules(dep: dict[str, Any]) -> list[Schedule]:
    out = []
    for sch in dep.get("schedules") or []:
        if not isinstance(sch, dict) or sch.get("active") is False:
            continue
        origin = f"prefect.yaml deployment {dep.get('name')}"
        try:
            if sch.get("cron"):
                out.append(parse_schedule(str(sch["cron"]), origin, str(sch.get("timezone") or "UTC")))
            elif sch.get("interval"):
                out.append(parse_schedule(sch["interval"], origin))
        except ValueError:
            continue  # an rrule or a broken line: prefect deploy says so; status shows no schedule
    return out


def source_schedules(cfg: Config, config_path: str | Path | None = None) -> dict[str, Schedule]:
    """Source name -> its schedule (ltc.yaml first, else prefect.yaml); sources with none are absent."""
    found: dict[str, Schedule] = {}
    for name, src in cfg.sources.items():
        if src.schedule is not None:
            found[name] = parse_schedule(src.schedule, f"ltc.yaml sources.{name}.schedule")
    path = find_prefect_yaml(config_path)
    if path is None:
        return found
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return found
    now = datetime.now(UTC)
    per_source: dict[str, list[Schedule]] = {}
    everyone: list[Schedule] = []
    for dep in doc.get("deployments") or []:
        if not isinstance(dep, dict):
            continue
        params = dep.get("parameters") or {}
        entry = str(dep.get("entrypoint") or "")
        schedules = _deployment_schedules(dep)
        if entry == SOURCE_ENTRYPOINT and params.get("source"):
            per_source.setdefault(str(params["source"]), []).extend(schedules)
        elif entry in SYNC_ENTRYPOINTS and params.get("sync", True) is not False:
            everyone.extend(schedules)
    for name, src in cfg.sources.items():
        if name in found or src.kind == "camt053":
            continue
        options = per_source.get(name) or everyone
        if options:
            found[name] = min(options, key=lambda s: s.period(now))
    return found


def freshness(schedule: Schedule | None, last_success: datetime | None, now: datetime | None = None) -> str:
    """``fresh``, ``late by 2h`` (the run after the last success was due that long ago, beyond a
    grace of half a period, at most 30 minutes), ``never synced`` or ``no schedule``."""
    if last_success is None:
        return "never synced"
    if schedule is None:
        return "no schedule"
    now = now or datetime.now(UTC)
    if last_success.tzinfo is None:
        last_success = last_success.replace(tzinfo=UTC)
    due = schedule.due_after(last_success)
    grace = min(schedule.period(last_success) / 2, timedelta(minutes=30))
    if now <= due + grace:
        return "fresh"
    return f"late by {human(now - due)}"

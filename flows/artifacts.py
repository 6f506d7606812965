"""What a run shows in the Prefect UI: a readable summary, the KPI table, a link to the report, progress.

* :func:`pipeline_summary`: the markdown summary of a pipeline run (as-of, status, each source, what each
  stage did, the report) — key ``ltc-pipeline``;
* :func:`kpi_table`: the run's KPIs — key ``ltc-kpis``;
* :func:`report_link`: a link artifact to the finance report — key ``ltc-report``;
* :class:`Progress`: a progress artifact updated while a long sync or reconcile runs (at most every
  ``every`` seconds, so a sync of thousands of pages does not become thousands of API calls).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from ltc.app.notify import kpi_labels


def artifact_key(text: str) -> str:
    """Prefect keys are lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "ltc"


class Progress:
    """A progress artifact (0-100 %) with a line saying where the work is."""

    def __init__(self, key: str, description: str, every: float = 2.0) -> None:
        self.every = every
        self.last = 0.0
        self.percent = 0.0
        self.id: UUID | None = None
        try:
            self.id = create_progress_artifact(0.0, key=artifact_key(key), description=description)
        except Exception:  # the UI being unreachable never stops the work
            self.id = None

    def update(self, percent: float, note: str | None = None, *, force: bool = False) -> None:
        self.percent = max(0.0, min(100.0, percent))
        now = time.monotonic()
        if self.id is None or (not force and now - self.last < self.every):
            return
        self.last = now
        with contextlib.suppress(Exception):
            update_progress_artifact(self.id, self.percent, description=note)

    def done(self, note: str) -> None:
        self.update(100.0, note, force=True)


def progress_mapper(progress: Progress, stage: str = "reconcile") -> Callable[..., list[Any]]:
    """A reconcile *mapper* (see :func:`reconcile.stream.sequential`) that reports each bucket done."""

    def run(fn: Callable[[int], Any], buckets: Sequence[int]) -> list[Any]:
        out = []
        n = len(buckets) or 1
        for i, k in enumerate(buckets):
            out.append(fn(k))
            progress.update(100.0 * (i + 1) / n, f"{stage}: bucket {i + 1} of {n} done", force=i + 1 == n)
        return out

    return run


def report_link(path_or_url: str | None, description: str = "The finance report of this run") -> None:
    if not path_or_url:
        return
    link = path_or_url if re.match(r"^[a-z]+://", path_or_url) else Path(path_or_url).resolve().as_uri()
    create_link_artifact(link, link_text="Finance report", key="ltc-report", description=description)


def kpi_table(rows: Iterable[Mapping[str, Any]], as_of: Any = None) -> None:
    table = [{"KPI": label, "value": value} for label, value in kpi_labels(rows).items()]
    create_table_artifact(table or [{"KPI": "(no KPI computed)", "value": ""}], key="ltc-kpis",
                          description=f"KPIs as of {as_of}" if as_of else "KPIs of this run")


def _cell(v: Any) -> str:
    return str(v if v is not None else "").replace("|", "\\|").replace("\n", " ")


def pipeline_summary(*, as_of: Any, status: str, sources: Mapping[str, Mapping[str, Any]],
                     stages: Mapping[str, Mapping[str, Any]], report: str | None,
                     notified: Sequence[str] = ()) -> str:
    """The markdown summary a person reads: what ran, on which data, what came out, where the report is."""
    badge = {"complete": "✅ complete", "partial": "⚠️ partial data", "failed": "❌ failed"}.get(status, status)
    lines = [f"# ltc-hub pipeline — as of {as_of}", "", f"**Status:** {badge}", ""]
    if sources:
        lines += ["## Sources", "", "| source | status | detail |", "| --- | --- | --- |"]
        for name, s in sources.items():
            lines.append(f"| {_cell(name)} | {_cell(s.get('status'))} | {_cell(s.get('message'))}"
                         + (f" — fix: {_cell(s['hint'])}" if s.get("hint") else "") + " |")
        lines.append("")
    lines += ["## Stages", ""]
    for stage, facts in stages.items():
        parts = []
        for k, v in facts.items():
            if isinstance(v, Mapping):
                v = ", ".join(f"{kk} {vv}" for kk, vv in v.items() if not isinstance(vv, Mapping | list)) or "none"
            elif isinstance(v, list):
                continue
            parts.append(f"{k.replace('_', ' ')}: {v}")
        lines.append(f"- **{stage}** — " + ("; ".join(parts) if parts else "done"))
    lines.append("")
    if report:
        link = report if re.match(r"^[a-z]+://", report) else Path(report).resolve().as_uri()
        lines += ["## Report", "", f"[{Path(report).name or report}]({link})", ""]
    if notified:
        lines += ["## Notifications", ""] + [f"- {n}" for n in notified] + [""]
    return "\n".join(lines)


def summary_artifact(markdown: str) -> None:
    create_markdown_artifact(markdown, key="ltc-pipeline", description="What the pipeline run did")

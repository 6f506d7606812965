"""Progress of long commands: rich bars on a terminal, plain periodic lines otherwise, or JSON lines.

The application layer emits :mod:`ltc.app.progress` events through a plain callback; this module
draws them. On a terminal: one line per stage (spinner, elapsed time) and per stream (records,
pages, rate). Not on a terminal (a log file, CI, a container's output): one line when a stage or a
stream starts, then one every ``every`` seconds while it runs, and one when it ends, e.g.
``sync salesforce.Opportunity: 12,000 records, 6 pages, 2,100 rec/s``. Lines go to stderr, so the
command's own output (tables, summaries) stays clean on stdout. ``json``: the same lines at the same moments as one
JSON object each (``ts``, ``event`` ``stage`` or ``stream``, and the counts), for a log collector (Loki, Elastic,
Datadog) to index without parsing text.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from canonical.errors import ConfigError
from ltc.app.progress import OnProgress, ProgressEvent, StageProgress, StreamProgress

Mode = Literal["auto", "bar", "plain", "json", "off"]
EVERY_S = 5.0  # plain mode: seconds between two lines of a running stage or stream


def stream_line(ev: StreamProgress) -> str:
    """``sync salesforce.Opportunity: 12,000 records, 6 pages, 2,100 rec/s`` (+ the outcome when it ended)."""
    line = (f"sync {ev.source}.{ev.stream}: {ev.records:,} record{'s' if ev.records != 1 else ''}, "
            f"{ev.pages:,} page{'s' if ev.pages != 1 else ''}, "
            f"{ev.rate:,.0f} rec/s")
    if ev.done:
        line += f"; {ev.status} in {ev.elapsed:,.1f} s"
        if ev.quarantined:
            line += f", {ev.quarantined:,} quarantined"
        if ev.message and ev.status != "success":
            line += f": {ev.message}"
    return line


def stage_line(stage: str, state: str, elapsed: float, detail: str | None) -> str:
    """``map: started``, ``reconcile: running, 25 s``, ``map: done in 0.3 s (5240 mapped, 0 quarantined)``."""
    if state == "start":
        return f"{stage}: started"
    if state == "running":
        return f"{stage}: running, {elapsed:,.0f} s"
    return f"{stage}: {state} in {elapsed:,.1f} s" + (f" ({detail})" if detail else "")


class Text:
    """Plain mode's lines."""

    stream = staticmethod(stream_line)
    stage = staticmethod(stage_line)


class Json:
    """JSON mode's lines: one object each, UTC time stamped."""

    @staticmethod
    def _line(fields: dict[str, Any]) -> str:
        return json.dumps({"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), **fields}, ensure_ascii=False)

    @classmethod
    def stream(cls, ev: StreamProgress) -> str:
        return cls._line({"event": "stream", "source": ev.source, "stream": ev.stream, "status": ev.status,
                          "records": ev.records, "pages": ev.pages, "written": ev.written,
                          "quarantined": ev.quarantined, "rate": round(ev.rate, 1), "elapsed": round(ev.elapsed, 3),
                          **({"message": ev.message} if ev.message else {})})

    @classmethod
    def stage(cls, stage: str, state: str, elapsed: float, detail: str | None) -> str:
        return cls._line({"event": "stage", "stage": stage, "state": state, "elapsed": round(elapsed, 3),
                          **({"detail": detail} if detail else {})})


class PlainProgress:
    """Periodic plain lines (no cursor movement, no colour): for logs and pipes (``lines``: :class:`Text`, or
    :class:`Json`)."""

    def __init__(self, echo: Callable[[str], Any], every: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic, lines: type[Text] | type[Json] = Text):
        self.lines = lines
        self.echo = echo
        self.every = every
        self.clock = clock
        self.last: dict[str, float] = {}  # running stream -> when its last line was printed
        self.running: dict[str, StreamProgress] = {}  # running stream -> its latest counts
        self.stages: dict[str, float] = {}  # running stage -> when it started
        self.spoke: float | None = None  # when the last line was printed
        self.lock = threading.Lock()

    def __call__(self, ev: ProgressEvent) -> None:
        now = self.clock()
        with self.lock:
            if isinstance(ev, StageProgress):
                if ev.state == "start":
                    self.stages[ev.stage] = now
                else:
                    self.stages.pop(ev.stage, None)
                self._say(self.lines.stage(ev.stage, ev.state, ev.elapsed, ev.detail), now)
                return
            key = f"{ev.source}.{ev.stream}"
            if ev.done:
                self.running.pop(key, None)
                self.last.pop(key, None)
                self._say(self.lines.stream(ev), now)
            elif key not in self.last:  # its first line comes after `every` seconds, or when it ends
                self.running[key] = ev
                self.last[key] = now
            else:
                self.running[key] = ev
                if now - self.last[key] >= self.every:
                    self.last[key] = now
                    self._say(self.lines.stream(ev), now)

    def _say(self, line: str, now: float) -> None:
        self.spoke = now
        self.echo(line)

    def heartbeat(self) -> None:
        """When nothing was said for ``every`` seconds: the latest counts of each running stream
        (a slow page), else a line per running stage (a long reconcile)."""
        now = self.clock()
        with self.lock:
            for key, ev in self.running.items():
                if now - self.last.get(key, now) >= self.every:
                    self.last[key] = now
                    self._say(self.lines.stream(ev), now)
            if self.spoke is not None and now - self.spoke < self.every:
                return
            for stage, started in self.stages.items():
                self._say(self.lines.stage(stage, "running", now - started, None), now)


class BarProgress:
    """Rich progress bars: a spinner line per stage, a line per stream with records, pages and rate."""

    def __init__(self, console: Console):
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description}"),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def _task(self, key: str, description: str) -> TaskID:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=None, counts="")
        return self.tasks[key]

    def __call__(self, ev: ProgressEvent) -> None:
        if isinstance(ev, StageProgress):
            task = self._task(f"stage:{ev.stage}", f"[bold]{ev.stage}[/]")
            if ev.state == "start":
                self.progress.reset(task, total=None, counts="")
            else:
                counts = ev.detail or ""
                if ev.state == "failed":
                    counts = f"[red]failed[/]: {counts}"
                self.progress.update(task, total=1, completed=1, counts=counts)
                self.progress.stop_task(task)
            return
        task = self._task(f"stream:{ev.source}.{ev.stream}", f"  {ev.source}.{ev.stream}")
        counts = f"{ev.records:,} records · {ev.pages:,} pages · {ev.rate:,.0f} rec/s"
        if ev.done:
            colour = "green" if ev.status == "success" else "yellow" if ev.status in ("paused", "incomplete") else "red"
            counts += f" · [{colour}]{ev.status}[/]"
            self.progress.update(task, total=1, completed=1, counts=counts)
            self.progress.stop_task(task)
        else:
            self.progress.update(task, counts=counts)


def resolve_mode(mode: str, console: Console) -> Mode:
    """``auto``: bars on a terminal, plain lines otherwise; ``LTC_PROGRESS`` overrides ``auto``."""
    mode = mode.strip().lower()
    if mode not in ("auto", "bar", "plain", "json", "off"):
        raise ConfigError(f"--progress {mode!r}: choose auto, bar, plain, json or off")
    if mode == "auto":
        env = os.environ.get("LTC_PROGRESS", "").strip().lower()
        if env in ("bar", "plain", "json", "off"):
            return env  # type: ignore[return-value]
        return "bar" if console.is_terminal else "plain"
    return mode  # type: ignore[return-value]


@contextmanager
def reporter(console: Console, mode: str = "auto", every: float = EVERY_S) -> Iterator[OnProgress | None]:
    """The progress callback for a command, drawn on ``console`` (stderr) while the block runs."""
    chosen = resolve_mode(mode, console)
    if chosen == "off":
        yield None
        return
    if chosen == "bar":
        bars = BarProgress(console)
        with bars.progress:
            yield bars
        return
    plain = PlainProgress(lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True), every,
                          lines=Json if chosen == "json" else Text)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(min(1.0, every)):
            plain.heartbeat()

    thread = threading.Thread(target=beat, name="ltc-progress", daemon=True)
    thread.start()
    try:
        yield plain
    finally:
        stop.set()
        thread.join(timeout=2)


ProgressOpt: Any = typer.Option("auto", "--progress", help="Progress display: auto (bars on a terminal, periodic "
                                "lines otherwise), bar, plain, json (the lines as JSON objects, for a log collector) "
                                "or off; LTC_PROGRESS sets what auto means.")

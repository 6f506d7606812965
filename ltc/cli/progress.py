"""Progress of long commands: rich bars on a terminal, plain periodic lines otherwise.

The application layer emits :mod:`ltc.app.progress` events through a plain callback; this module
draws them. On a terminal: one line per stage (spinner, elapsed time) and per stream (records,
pages, rate). Not on a terminal (a log file, CI, a container's output): one line when a stage or a
stream starts, then one every ``every`` seconds while it runs, and one when it ends, e.g.
``sync salesforce.Opportunity: 12,000 records, 6 pages, 2,100 rec/s``. Lines go to stderr, so the
command's own output (tables, summaries) stays clean on stdout.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from canonical.errors import ConfigError
from ltc.app.progress import OnProgress, ProgressEvent, StageProgress, StreamProgress

Mode = Literal["auto", "bar", "plain", "off"]
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


class PlainProgress:
    """Periodic plain lines (no cursor movement, no colour): for logs and pipes."""

    def __init__(self, echo: Callable[[str], Any], every: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
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
                    self._say(f"{ev.stage}: started", now)
                else:
                    self.stages.pop(ev.stage, None)
                    tail = f" ({ev.detail})" if ev.detail else ""
                    self._say(f"{ev.stage}: {ev.state} in {ev.elapsed:,.1f} s{tail}", now)
                return
            key = f"{ev.source}.{ev.stream}"
            if ev.done:
                self.running.pop(key, None)
                self.last.pop(key, None)
                self._say(stream_line(ev), now)
            elif key not in self.last:  # its first line comes after `every` seconds, or when it ends
                self.running[key] = ev
                self.last[key] = now
            else:
                self.running[key] = ev
                if now - self.last[key] >= self.every:
                    self.last[key] = now
                    self._say(stream_line(ev), now)

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
                    self._say(stream_line(ev), now)
            if self.spoke is not None and now - self.spoke < self.every:
                return
            for stage, started in self.stages.items():
                self._say(f"{stage}: running, {now - started:,.0f} s", now)


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
    if mode not in ("auto", "bar", "plain", "off"):
        raise ConfigError(f"--progress {mode!r}: choose auto, bar, plain or off")
    if mode == "auto":
        env = os.environ.get("LTC_PROGRESS", "").strip().lower()
        if env in ("bar", "plain", "off"):
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
    plain = PlainProgress(lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True), every)
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
                                "lines otherwise), bar, plain or off; LTC_PROGRESS sets what auto means.")

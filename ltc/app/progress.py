"""Progress of long work as plain events: what a stage or a stream has done so far.

The application layer emits them through a plain callback (``on_progress``); the command line
draws them (rich progress bars on a terminal, periodic lines otherwise), a Prefect flow may turn
them into a progress artifact. Nothing here knows how they are shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from canonical.errors import error_text
from connectors.base import StreamResult


@dataclass(frozen=True)
class StreamProgress:
    """One stream of one source: records and pages so far (``status`` ``running`` until it ends)."""

    source: str
    stream: str
    status: str
    records: int
    pages: int
    written: int
    quarantined: int
    elapsed: float  # seconds since the stream started
    message: str | None = None

    @property
    def done(self) -> bool:
        return self.status != "running"

    @property
    def rate(self) -> float:
        """Records per second so far (0 before the first page)."""
        return self.records / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True)
class StageProgress:
    """A stage of the job (``sync <source>``, ``map``, ``identity``, ``reconcile``, ``report``...)."""

    stage: str
    state: Literal["start", "done", "failed"]
    elapsed: float = 0.0
    detail: str | None = None


ProgressEvent = StreamProgress | StageProgress
OnProgress = Callable[[ProgressEvent], None]


class StreamTimer:
    """Turns the sync engine's ``on_page`` results into :class:`StreamProgress` events."""

    def __init__(self, on_progress: OnProgress, clock: Callable[[], float] = time.monotonic):
        self.on_progress = on_progress
        self.clock = clock
        self.started: dict[tuple[str, str], float] = {}

    def __call__(self, result: StreamResult) -> None:
        key = (result.connector, result.stream)
        now = self.clock()
        start = self.started.setdefault(key, now)
        self.on_progress(StreamProgress(result.connector, result.stream, result.status, result.records,
                                        result.pages, result.written, result.quarantined, now - start,
                                        result.message))
        if result.status != "running":
            self.started.pop(key, None)


@contextmanager
def stage(name: str, on_progress: OnProgress | None, clock: Callable[[], float] = time.monotonic
          ) -> Iterator[Callable[[str], None]]:
    """Emit ``start`` and then ``done`` (or ``failed``) around a stage; yields a setter of the
    ``done`` event's detail (e.g. ``"300 chains, 15 exceptions"``)."""
    detail: list[str] = []
    t0 = clock()
    if on_progress is not None:
        on_progress(StageProgress(name, "start"))
    try:
        yield detail.append
    except BaseException as exc:
        if on_progress is not None:
            on_progress(StageProgress(name, "failed", clock() - t0, error_text(exc, typed=False)[:300] or type(exc).__name__))
        raise
    if on_progress is not None:
        on_progress(StageProgress(name, "done", clock() - t0, detail[-1] if detail else None))

"""Process-wide interpreter settings changed for a block of work, counted across threads.

- :func:`no_gc`: the cyclic garbage collector off for work that makes many small, acyclic objects. A
  collection during it finds nothing to free but re-scans every object made so far, again and again
  (a third of a mapping batch's read time).
- :func:`short_switch_interval`: the GIL handed between threads more often, for a writer thread whose
  statements run without the GIL and must take it back after each one from a thread running Python.
- :func:`no_huge_pages`: the process's new memory in small pages, not transparent huge pages, for a short run whose
  memory is nearly all new (Linux; elsewhere nothing changes).

Blocks that overlap in several threads change a setting when the first begins and put it back as it was
when the last ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class _Setting:
    """One interpreter setting: read by ``get``, written by ``put``, held while any block runs."""

    def __init__(self, get: Callable[[], Any], put: Callable[[Any], object]) -> None:
        self._get, self._put = get, put
        self._lock = threading.Lock()
        self._blocks = 0
        self._before: Any = None

    @contextmanager
    def held(self, value: Callable[[Any], Any]) -> Iterator[None]:
        """The block with the setting at ``value(setting before)``; as it was after the last block ends."""
        with self._lock:
            if self._blocks == 0:
                self._before = self._get()
                self._put(value(self._before))
            self._blocks += 1
        try:
            yield
        finally:
            with self._lock:
                self._blocks -= 1
                if self._blocks == 0:
                    self._put(self._before)


_gc = _Setting(gc.isenabled, lambda on: gc.enable() if on else gc.disable())
_switch = _Setting(sys.getswitchinterval, sys.setswitchinterval)


def no_gc() -> Any:
    """Run the block with the cyclic collector off (reference counting still frees everything acyclic)."""
    return _gc.held(lambda _before: False)


def short_switch_interval(seconds: float) -> Any:
    """Run the block with the GIL switch interval at most ``seconds``."""
    return _switch.held(lambda before: min(seconds, before))


# Linux's prctl options for a process's transparent huge pages (linux/prctl.h)
_PR_SET_THP_DISABLE, _PR_GET_THP_DISABLE = 41, 42


@functools.cache
def libc() -> Any:
    """The C library (ctypes), or None where there is none to load. Looked up once: ``find_library`` runs
    ``ldconfig``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _prctl() -> Any:
    """libc's ``prctl``, or None (not Linux, no libc)."""
    fn = getattr(libc(), "prctl", None)
    if fn is not None:
        fn.restype = ctypes.c_int
    return fn


def _huge_pages_off() -> bool | None:
    """Whether transparent huge pages are off for this process (None: not known here, not changed)."""
    fn = _prctl()
    if fn is None:
        return None
    got = fn(_PR_GET_THP_DISABLE, 0, 0, 0, 0)
    return None if got < 0 else bool(got)


def _put_huge_pages_off(off: bool | None) -> None:
    fn = _prctl()
    if fn is not None and off is not None:
        fn(_PR_SET_THP_DISABLE, int(off), 0, 0, 0)


_thp = _Setting(_huge_pages_off, _put_huge_pages_off)


def no_huge_pages() -> Any:
    """Run the block with this process's new memory in small pages. Polars' allocator asks for transparent huge pages
    (``canonical.ALLOCATOR``), which pay off where memory is freed and used again (the buckets of a large
    reconciliation: 300k chains in 5 buckets and 1M in 15 ran faster with them), but a run whose memory is nearly all
    new pays the kernel to zero whole 2 MB pages for it: a quarter of the CPU of ``ltc reconcile`` at 100k chains
    (one bucket) went to that (perf), and without them it took a fifth less time (five alternating pairs:
    median 5.82 -> 4.66 s). Pages
    already mapped stay as they are; processes started in the block inherit the setting (Linux's
    ``PR_SET_THP_DISABLE``)."""
    return _thp.held(lambda _before: True)


def allow_huge_pages() -> None:
    """This process's memory in huge pages again where its allocator asks (a long-lived helper process started
    inside a :func:`no_huge_pages` block inherited it off)."""
    _put_huge_pages_off(False)

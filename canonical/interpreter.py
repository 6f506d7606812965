"""Process-wide interpreter settings changed for a block of work, counted across threads.

- :func:`no_gc`: the cyclic garbage collector off for work that makes many small, acyclic objects. A
  collection during it finds nothing to free but re-scans every object made so far, again and again
  (a third of a mapping batch's read time).
- :func:`short_switch_interval`: the GIL handed between threads more often, for a writer thread whose
  statements run without the GIL and must take it back after each one from a thread running Python.

Blocks that overlap in several threads change a setting when the first begins and put it back as it was
when the last ends.
"""

from __future__ import annotations

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

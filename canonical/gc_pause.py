"""The cyclic garbage collector paused for a block of work that makes many small, acyclic objects.

A collection during such a block finds nothing to free but re-scans every object the block has made
so far, again and again (a third of a mapping batch's read time). The pause is counted, so blocks that
overlap in several threads turn the collector back on only when the last of them ends, and only if it
was on before the first.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_state = {"blocks": 0, "was_enabled": False}


@contextmanager
def no_gc() -> Iterator[None]:
    """Run the block with the cyclic collector off (reference counting still frees everything acyclic)."""
    with _lock:
        if _state["blocks"] == 0:
            _state["was_enabled"] = gc.isenabled()
            gc.disable()
        _state["blocks"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["blocks"] -= 1
            if _state["blocks"] == 0 and _state["was_enabled"]:
                gc.enable()

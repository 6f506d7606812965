"""Forked children for CPU work beside this process's own (the GIL keeps threads on one core).

Linux only (where ``fork`` is the default start method and a child inherits this process's
objects as they are: nothing is pickled on the way in); elsewhere callers run the work here.
"""

from __future__ import annotations

import gc
import multiprocessing
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def forks() -> bool:
    """Whether work can run in forked children here (Linux, where fork is the default and safe)."""
    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


def fork_context() -> Any:
    return multiprocessing.get_context("fork")


@contextmanager
def frozen() -> Iterator[None]:
    """Fork inside this: the objects that exist now are left out of the children's garbage
    collections (``gc.freeze``), which would otherwise touch, and so copy, every inherited page."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()

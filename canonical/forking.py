"""Forked children for CPU work beside this process's own (the GIL keeps threads on one core).

Linux only (where ``fork`` is the default start method and a child inherits this process's
objects as they are: nothing is pickled on the way in); elsewhere callers run the work here.
"""

from __future__ import annotations

import gc
import multiprocessing
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def forks() -> bool:
    """Whether work can run in forked children here (Linux, where fork is the default and safe)."""
    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


def fork_lock() -> Any:
    """A re-entrant lock shared by this process and the children it forks after making it."""
    return multiprocessing.get_context("fork").RLock()


def start_child(target: Callable[..., Any], *args: Any, name: str, duplex: bool = False) -> tuple[Any, Any]:
    """``target(*args, conn)`` in a forked daemon child; returns ``(process, conn)``: the process and this side of
    the pipe to it (one way, child to parent, unless ``duplex``). The child is forked inside :func:`frozen`, and
    this process closes the child's end of the pipe, so a child that dies is seen as EOF here."""
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe(duplex=duplex)
    process = ctx.Process(target=target, args=(*args, theirs), daemon=True, name=name)
    with frozen():
        process.start()
    theirs.close()
    return process, mine


@contextmanager
def frozen() -> Iterator[None]:
    """Fork inside this: the objects that exist now are left out of the children's garbage
    collections (``gc.freeze``), which would otherwise touch, and so copy, every inherited page."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()

"""Forked children for CPU work beside this process's own (the GIL keeps threads on one core).

Linux only (where ``fork`` is the default start method and a child inherits this process's
objects as they are: nothing is pickled on the way in); elsewhere callers run the work here.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import sys
import traceback
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
    this process closes the child's end of the pipe, so a child that dies is seen as EOF here. The child ends
    through :func:`_run` (exit code 0, or 1 with the traceback on stderr), never through the exit handlers it
    inherited: those belong to this process."""
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe(duplex=duplex)
    process = ctx.Process(target=_run, args=(target, (*args, theirs)), daemon=True, name=name)
    with frozen():
        process.start()
    theirs.close()
    return process, mine


def _run(target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A forked child's whole life: ``target(*args)``, then ``os._exit``. multiprocessing's own exit path would
    otherwise run what the child inherited: finalizers and threading's exit callbacks that other libraries
    registered in the parent (after a Prefect run, its thread pools'), which fail in a child and turn one whose
    work is done into exit code 1 with no message, or close what the parent still uses. Everything a child
    hands back goes through its pipe before ``target`` returns."""
    code = 0
    try:
        target(*args)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed or replaced stream: nothing left to flush
                stream.flush()
        os._exit(code)


@contextmanager
def frozen() -> Iterator[None]:
    """Fork inside this: the objects that exist now are left out of the children's garbage
    collections (``gc.freeze``), which would otherwise touch, and so copy, every inherited page."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()

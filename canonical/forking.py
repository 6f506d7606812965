"""Forked children for CPU work beside this process's own (the GIL keeps threads on one core).

Linux only (where ``fork`` is the default start method and a child inherits this process's
objects as they are: nothing is pickled on the way in); elsewhere callers run the work here.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import pickle
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def forks() -> bool:
    """Whether work can run in forked children here (Linux, where fork is the default and safe)."""
    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_forked_child() -> bool:
    """Whether this process is a child forked by :mod:`multiprocessing` (:func:`start_child`, :class:`Pending`):
    its work runs here, not in children of its own (a daemonic child may not have any)."""
    return multiprocessing.parent_process() is not None


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


_frozen_lock = threading.Lock()
_frozen_blocks = 0


@contextmanager
def frozen() -> Iterator[None]:
    """Fork inside this: the objects that exist now are left out of the children's garbage
    collections (``gc.freeze``), which would otherwise touch, and so copy, every inherited page.

    Also for a long block of work beside a large, long-lived heap (a world read for its replay):
    this process's own collections then skip that heap instead of scanning it again and again.
    Blocks nest: the objects are put back under the collector (``gc.unfreeze``) when the outermost ends."""
    global _frozen_blocks
    with _frozen_lock:
        gc.freeze()
        _frozen_blocks += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_blocks -= 1
            if _frozen_blocks == 0:
                gc.unfreeze()


class Pending(Generic[T]):
    """A call running in a forked child (or, where forking is not available or not asked for, to be
    run here when its result is asked for). The child inherits what the call needs (nothing is pickled on
    the way in) and sends back its value or its exception."""

    def __init__(self, call: Callable[[], T], *, fork: bool = True, name: str = "ltc-forked") -> None:
        self._call: Callable[[], T] | None = call
        self._name = name
        self._process: Any = None
        self._conn: Any = None
        self._answered = False
        self.exitcode: int | None = None
        """The child's exit code once it has been released (None: not forked, or not yet)."""
        if fork and forks():
            self._process, self._conn = start_child(_answer, call, name=name)
            self._call = None

    @property
    def forked(self) -> bool:
        """Whether the call runs in a forked child (else here, when its result is asked for)."""
        return self._call is None

    def result(self) -> T:
        """The call's value; its exception is raised here."""
        if self._call is not None:
            return self._call()
        if self._process is None:
            raise RuntimeError(f"the forked call ({self._name}) was cancelled")
        try:
            ok, value = self._conn.recv()
        except EOFError:
            ok, value = False, RuntimeError(f"a forked call ({self._name}) ended without an answer "
                                            f"(exit code {self._process.exitcode})")
        self._answered = True
        self.cancel()
        if not ok:
            raise value
        return value

    def cancel(self) -> None:
        """Stop the child if it has not answered, and release it."""
        if self._process is None:
            return
        if not self._answered:
            self._process.kill()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        self._conn.close()
        self.exitcode = self._process.exitcode
        self._process = None


def results(pending: Sequence[Pending[T]]) -> list[T]:
    """The results in order; the first exception (in order) is raised and the later calls are stopped."""
    try:
        return [p.result() for p in pending]
    finally:
        for p in pending:
            p.cancel()


def in_children(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Each call in its own forked child, all at once; their results in order. An exception raised
    by a call is raised here (the first in ``calls`` order), as if the calls had run one after the
    other in this process. Without fork, they run here in order."""
    return results([Pending(call, fork=len(calls) > 1) for call in calls])


def _answer(call: Callable[[], Any], conn: Any) -> None:
    try:
        outcome: tuple[bool, Any] = (True, call())
    except BaseException as exc:
        outcome = (False, exc)
    try:
        conn.send(outcome)
    except Exception as exc:  # an answer that cannot be pickled: its text then
        conn.send((False, _as_text(outcome[1], exc)))
    conn.close()


def _as_text(value: Any, why: BaseException) -> RuntimeError:
    return RuntimeError(f"{type(value).__name__}: {value} ({why})")


def sendable(exc: BaseException) -> BaseException:
    """``exc``, or its text in a RuntimeError if it cannot be pickled: for an exception sent back from a
    child inside a result (a result that cannot be pickled as a whole fails the whole call)."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception as why:
        return _as_text(exc, why)
    return exc

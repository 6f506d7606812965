"""Work of the sandbox side (serving a world, checking it) run in forked processes, on the other core.

A replay's process is busy with the connectors and the stages; the world's emulators and its
readability check are independent of them and need nothing back but a few values, so on Linux they
run in children forked from it (which inherit the world as read: nothing is pickled on the way in).
Elsewhere (no safe ``fork``) everything runs in this process, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from canonical.forking import forks, start_child

T = TypeVar("T")


class Pending(Generic[T]):
    """A call running in a forked child (or, where forking is not available or not asked for, to be
    run here when its result is asked for)."""

    def __init__(self, call: Callable[[], T], *, fork: bool = True) -> None:
        self._call: Callable[[], T] | None = call
        self._process: Any = None
        self._conn: Any = None
        self._answered = False
        if fork and forks():
            self._process, self._conn = start_child(_child, call, name="ltc-sandbox")
            self._call = None

    def result(self) -> T:
        """The call's value; its exception is raised here."""
        if self._call is not None:
            return self._call()
        if self._process is None:
            raise RuntimeError("the forked call was cancelled")
        try:
            ok, value = self._conn.recv()
        except EOFError:
            ok, value = False, RuntimeError(f"a forked sandbox call ended without an answer "
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


def _child(call: Callable[[], Any], conn: Any) -> None:
    try:
        outcome: tuple[bool, Any] = (True, call())
    except BaseException as exc:
        outcome = (False, exc)
    try:
        conn.send(outcome)
    except Exception as exc:  # an answer that cannot be pickled: its text then
        conn.send((False, RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]} ({exc})")))
    conn.close()

"""canonical.forking: a forked child's exit is its own work's, not that of exit handlers it inherited."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from canonical.forking import forks, start_child

pytestmark = pytest.mark.skipif(not forks(), reason="no fork here: callers run the work in this process")


def _answer(value: int, conn: Any) -> None:
    conn.send(value * 2)
    conn.close()


def _fail(conn: Any) -> None:
    conn.close()
    raise ValueError("the child's own error")


def test_a_child_exits_0_though_the_parent_registered_a_thread_exit_callback_that_fails_in_children() -> None:
    # what a Prefect run leaves in the parent: threading's exit callbacks (its thread pools'), which
    # multiprocessing's own exit path runs in the child and which fail there (seen: exit code 1, no traceback)
    armed = [True]

    def at_thread_exit() -> None:
        if armed[0]:
            raise RuntimeError("a parent's thread pool cannot be shut down from a child")

    threading._register_atexit(at_thread_exit)  # type: ignore[attr-defined]
    try:
        process, conn = start_child(_answer, 4, name="ltc-test-child")
        assert conn.recv() == 8
        process.join(30)
        assert process.exitcode == 0
    finally:
        armed[0] = False  # this process's own exit runs it too: harmless from now on


def test_a_child_whose_work_fails_exits_1_and_says_why(capfd: pytest.CaptureFixture[str]) -> None:
    process, conn = start_child(_fail, name="ltc-test-child")
    with pytest.raises(EOFError):
        conn.recv()
    process.join(30)
    assert process.exitcode == 1
    assert "the child's own error" in capfd.readouterr().err


def test_frozen_blocks_nest_the_heap_stays_frozen_until_the_outermost_ends() -> None:
    import gc

    from canonical.forking import frozen

    kept = [{"n": n} for n in range(1000)]
    with frozen():
        outer = gc.get_freeze_count()
        assert outer >= len(kept)
        with frozen():  # a fork inside the block (start_child) freezes and ends its own block
            pass
        # still frozen: the inner block did not unfreeze (which empties the permanent generation); not ">= outer": a
        # thread an earlier test left running may free a few frozen objects meanwhile (seen: 9 of 698,961)
        assert gc.get_freeze_count() >= len(kept)
    assert gc.get_freeze_count() == 0

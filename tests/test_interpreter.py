"""canonical.interpreter: a setting is changed inside the block and back as it was after the last block ends."""

from __future__ import annotations

import gc
import threading

from canonical.interpreter import no_gc


def test_overlapping_blocks_in_two_threads_turn_the_collector_on_only_when_the_last_ends() -> None:
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with no_gc():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    with no_gc():
        thread.start()
        inside.wait(10)
    assert not gc.isenabled()  # this block ended first: the other thread's block still runs
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with no_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_error_in_the_block_turns_the_collector_back_on() -> None:
    try:
        with no_gc():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()

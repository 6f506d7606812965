"""canonical.interpreter: a setting is changed inside the block and back as it was after the last block ends."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from canonical.interpreter import _huge_pages_off, no_gc, no_huge_pages


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


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_THP_DISABLE is Linux's")

_ASK = "from canonical.interpreter import _huge_pages_off, allow_huge_pages; "


def _child(code: str) -> str:
    return subprocess.run([sys.executable, "-c", _ASK + code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent.parent).stdout.strip()


@linux_only
def test_no_huge_pages_turns_them_off_for_the_block_and_back_as_they_were() -> None:
    before = _huge_pages_off()
    assert before is not None  # Linux answers
    with no_huge_pages():
        assert _huge_pages_off() is True
        with no_huge_pages():
            assert _huge_pages_off() is True
        assert _huge_pages_off() is True  # the outer block still runs
        # a process started in the block inherits the setting; a helper that serves runs of every size takes
        # its allocator's again (canonical.columnar's helper loop)
        assert _child("print(_huge_pages_off())") == "True"
        assert _child("allow_huge_pages(); print(_huge_pages_off())") == "False"
    assert _huge_pages_off() is before


@linux_only
def test_an_error_in_the_block_puts_huge_pages_back_as_they_were() -> None:
    before = _huge_pages_off()
    with pytest.raises(ValueError, match="boom"), no_huge_pages():
        raise ValueError("boom")
    assert _huge_pages_off() is before

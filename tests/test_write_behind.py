"""canonical.columnar.WriteBehind: writes run beside the caller, at most ``slots`` at once, every one waited for."""

from __future__ import annotations

import threading
import time

import pytest

from canonical.columnar import WriteBehind


class _Writes:
    """Writes that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.done: list[int] = []
        self.release = threading.Event()

    def write(self, n: int, fail: bool = False) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.release.wait(10)
            if fail:
                raise OSError(f"write {n} failed")
        finally:
            with self.lock:
                self.running -= 1
                self.done.append(n)


def test_two_slots_run_two_writes_beside_the_caller_and_the_third_waits_for_the_oldest() -> None:
    w = _Writes()
    with WriteBehind("t", slots=2) as behind:
        behind.submit(w.write, 1)
        behind.submit(w.write, 2)  # returns at once: a slot was free
        third = threading.Thread(target=behind.submit, args=(w.write, 3))
        third.start()
        time.sleep(0.2)
        assert third.is_alive() and w.done == []  # all slots taken: the third waits
        w.release.set()
        third.join(10)
    assert sorted(w.done) == [1, 2, 3] and w.most == 2  # the block's end waited for every write


def test_one_slot_keeps_writes_in_order_one_at_a_time() -> None:
    w = _Writes()
    w.release.set()
    with WriteBehind("t") as behind:
        for n in range(5):
            behind.submit(w.write, n)
    assert w.done == [0, 1, 2, 3, 4] and w.most == 1


def test_a_failed_write_is_raised_once_the_others_have_ended() -> None:
    w = _Writes()
    w.release.set()
    with pytest.raises(OSError, match="write 1 failed"), WriteBehind("t", slots=2) as behind:
        behind.submit(w.write, 1, True)
        behind.submit(w.write, 2)
    assert sorted(w.done) == [1, 2] and w.running == 0

"""Run a call in a thread with a deadline: a paging loop fails the test instead of hanging it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def within(fn: Callable[[], Any], seconds: float = 5.0) -> Any:
    """``fn()``'s value or the exception it raised (returned, not raised); fails if it runs past ``seconds``."""
    out: list[Any] = []

    def go() -> None:
        try:
            out.append(fn())
        except Exception as exc:
            out.append(exc)

    worker = threading.Thread(target=go, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"the call did not end within {seconds} s: a paging loop"
    return out[0]

"""The one read-ahead of paged connectors (connectors.base.PageAhead): a prefetched page is used
when its key is asked for; any other key drops it (waited for, its error dropped) and fetches here."""

from __future__ import annotations

import threading

import pytest

from connectors.base import PageAhead
from connectors.errors import ConnectorError


def test_the_prefetched_page_is_given_for_its_key() -> None:
    pages: PageAhead[str] = PageAhead("t")
    calls: list[str] = []

    def fetch(name: str) -> str:
        calls.append(name)
        return name

    assert pages.take("s", 1, lambda: fetch("first")) == "first"
    pages.ahead("s", 2, lambda: fetch("second"))
    assert pages.take("s", 2, lambda: fetch("again")) == "second"
    assert calls == ["first", "second"]  # the page at key 2 was read once, ahead
    pages.close()


def test_another_key_waits_for_the_dropped_fetch_then_fetches_here() -> None:
    pages: PageAhead[str] = PageAhead("t")
    release = threading.Event()
    order: list[str] = []

    def slow() -> str:
        release.wait(5)
        order.append("dropped")
        raise ConnectorError("the dropped page's error is not the engine's")

    def here() -> str:
        order.append("here")
        return "mine"

    pages.ahead("s", "next", slow)
    threading.Timer(0.05, release.set).start()
    assert pages.take("s", "other", here) == "mine"
    assert order == ["dropped", "here"]  # one call at a time: the dropped fetch ended first
    pages.close()


def test_the_error_of_the_page_asked_for_is_raised() -> None:
    pages: PageAhead[str] = PageAhead("t")

    def failing() -> str:
        raise ConnectorError("503 after the retries")

    pages.ahead("s", "next", failing)
    with pytest.raises(ConnectorError, match="503"):
        pages.take("s", "next", lambda: "unused")
    pages.close()

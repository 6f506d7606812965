"""The Stripe emulator's forward paging (kept order, bisected cursor) lists what filtering and sorting
every object does, page after page, also after objects are added or removed."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.stripe import _COMMON, FILTERS, StripeApiError, StripeEmulator


def _everything(emu: StripeEmulator, resource: str, q: dict[str, Any]) -> list[str]:
    rows = sorted(emu.store[resource].values(), key=lambda o: (o["created"], emu.seq[o["id"]]), reverse=True)
    return [r["id"] for r in rows if emu._matches(r, q)]


def _paged(emu: StripeEmulator, resource: str, q: dict[str, Any], limit: int) -> list[str]:
    out: list[str] = []
    after = None
    while True:
        page = emu.list(resource, {**q, "limit": str(limit), **({"starting_after": after} if after else {})})
        out += [r["id"] for r in page["data"]]
        if not page["has_more"]:
            return out
        after = page["data"][-1]["id"]


@pytest.mark.parametrize("q", [{}, {"customer": None}, {"created": {"gte": "0"}}, {"status": "paid"}])
def test_forward_pages_equal_the_whole_list(q: dict[str, Any]) -> None:
    emu = StripeEmulator(seed=4, size=60, clock=lambda: 1_780_000_000.0)
    for resource in ("charges", "customers", "invoices", "balance_transactions"):
        query = dict(q)
        if not set(query) <= _COMMON | FILTERS[resource]:
            continue
        if "customer" in query:
            some = next(iter(emu.store[resource].values()), {}).get("customer")
            if some is None:
                continue
            query["customer"] = some
        want = _everything(emu, resource, query)
        for limit in (1, 7, 100):
            assert _paged(emu, resource, query, limit) == want, (resource, query, limit)
    cus = next(iter(emu.store["customers"]))
    emu.delete("customers", cus)  # the kept order follows a removal
    assert _paged(emu, "customers", {}, 5) == _everything(emu, "customers", {})
    with pytest.raises(StripeApiError):
        emu.list("charges", {"created": {"since": "1"}})


def test_created_windows_page_like_the_whole_list() -> None:
    """A page of a ``created`` window (bisected to it) lists what filtering every object does, at the
    window's edges too: bounds on an object's own ``created``, one second off, exact ``created=``."""
    emu = StripeEmulator(seed=5, size=60, clock=lambda: 1_780_000_000.0)
    for resource in ("charges", "customers", "balance_transactions"):
        stamps = sorted({o["created"] for o in emu.store[resource].values()})
        picks = [stamps[0] - 1, stamps[0], stamps[len(stamps) // 3], stamps[len(stamps) // 2] + 1, stamps[-1],
                 stamps[-1] + 1]
        queries: list[dict[str, Any]] = [{"created": str(stamps[len(stamps) // 2])}]
        queries += [{"created": {lo_op: str(lo), hi_op: str(hi)}} for lo in picks for hi in picks
                    for lo_op in ("gt", "gte") for hi_op in ("lt", "lte")]
        queries += [{"created": {op: str(at)}} for at in picks for op in ("gt", "gte", "lt", "lte")]
        for query in queries:
            want = _everything(emu, resource, query)
            for limit in (1, 3, 100):
                assert _paged(emu, resource, query, limit) == want, (resource, query, limit)

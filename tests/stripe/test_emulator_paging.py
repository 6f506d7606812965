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

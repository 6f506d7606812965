"""The Tryton emulator's compiled domain (TrytonWorld.predicate) answers as its row-by-row interpreter does."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from sandbox.tryton import TrytonFault, TrytonWorld


def _world() -> TrytonWorld:
    rng = random.Random(5)
    parties = [{"id": i, "name": f"P{i}", "write_date": {"__class__": "datetime", "year": 2026, "month": 1, "day": 1},
                "create_date": None} for i in range(1, 6)]
    invoices = [{"id": i, "type": rng.choice(["out", "in", None]), "party": rng.randrange(1, 8),
                 "number": rng.choice([f"INV-{i}", None]), "total_amount": {"__class__": "Decimal",
                                                                             "decimal": str(rng.randrange(100))},
                 "write_date": {"__class__": "datetime", "year": 2026, "month": 1, "day": 1, "hour": rng.randrange(5)},
                 "create_date": None} for i in range(1, 120)]
    return TrytonWorld({"party.party": parties, "account.invoice": invoices})


DOMAINS: list[Any] = [
    [], [["type", "=", "out"]], [["type", "=", None]], [["type", "!=", None]], [["type", "in", ["out", "in"]]],
    [["type", "not in", ["out"]]], [["number", "like", "INV-1%"]], [["number", "not ilike", "inv-2%"]],
    [["total_amount", ">=", Decimal("50")], ["type", "=", "in"]],
    ["OR", ["type", "=", "in"], ["total_amount", "<", Decimal("10")]],
    ["AND", ["type", "=", "out"], ["OR", ["party.name", "=", "P3"], ["id", ">", 100]]],
    [["write_date", ">", datetime(2026, 1, 1, 2, tzinfo=UTC)]], [["party.name", "ilike", "p%"]],
    [["id", "<=", 40], [["type", "=", "out"]]], [["write_date", ">", None]], [["nope", "<", None]],
    [["write_date", "<", date(2026, 1, 2)]], [["number", ">=", 5]], [["number", "<", "INV-5"]],
    "not a domain", [["type", "=", "out"], "bad clause"], [["nope", "=", 1]], ["OR", ["type", "=", "x"], ["nope", "=", 1]],
]


def _interpreted(world: TrytonWorld, domain: Any) -> Any:
    try:
        return [r["id"] for r in world.rows["account.invoice"] if world.matches("account.invoice", r, domain)]
    except TrytonFault as fault:
        return ("fault", fault.payload)


@pytest.mark.parametrize("domain", DOMAINS)
def test_predicate_equals_the_interpreter(domain: Any) -> None:
    world = _world()
    match = world.predicate("account.invoice", domain)
    try:
        got: Any = [r["id"] for r in world.rows["account.invoice"] if match(r)]
    except TrytonFault as fault:
        got = ("fault", fault.payload)
    assert got == _interpreted(world, domain)


def test_an_id_listing_comes_from_the_index_and_equals_a_full_scan() -> None:
    """``search_read([..., ["id", ">", last]], order=[["id", "ASC"]], limit=n)`` (the connector's id
    listing) is served from the id index: the same pages as filtering and sorting the whole model."""
    world = _world()
    order = [["id", "ASC"]]
    for domain in ([["id", ">", 0]], [["type", "=", "out"], ["id", ">", 37]], [["id", ">=", 50], ["id", ">", 20]],
                   [["type", "!=", None], ["id", ">", 200]]):
        full = sorted((r for r in world.rows["account.invoice"] if world.matches("account.invoice", r, domain)),
                      key=lambda r: r["id"])
        assert world._found("account.invoice", domain, {}, order) == full
        assert world._keyset_start("account.invoice", domain, order) is not None
        for limit in (1, 7, 1000):
            assert world._found("account.invoice", domain, {}, order, limit) == full[:limit]
    assert world._keyset_start("account.invoice", [["type", "=", "out"]], order) is None  # no bound: a scan


def test_like_patterns_are_compiled_once_and_match_as_sql_like() -> None:
    from sandbox import tryton

    tryton._like_regex.cache_clear()
    cases = [("stock.shipment.out,%", "stock.shipment.out,12", False, True),
             ("stock.shipment.out,%", "stock_shipment_out,12", False, False),  # "." is no wildcard
             ("INV-_", "INV-7", False, True), ("INV-_", "INV-17", False, False),
             ("inv-%", "INV-1", True, True), ("inv-%", "INV-1", False, False),
             ("a%b", "a\nb", False, True), ("(x)%", "(x) y", False, True), ("%", 5, False, False)]
    for _ in range(3):
        assert [tryton._like(p, v, ci) for p, v, ci, _want in cases] == [want for *_c, want in cases]
    info = tryton._like_regex.cache_info()
    assert info.misses == len({(p, ci) for p, v, ci, _w in cases if isinstance(v, str)}) and info.hits > info.misses


@pytest.mark.parametrize("fields", [None, [], ["name", "write_date"], ["party.name", "party.code", "number", "nope"],
                                    ["number", "number"], "number", ["number", 3], [["number"]]])
def test_a_page_is_rendered_as_row_by_row(fields: Any) -> None:
    rows = [{"id": 1, "number": "A", "party.": {"name": "P"}, "name": "n", "write_date": None},
            {"id": 2, "number": None}]
    try:
        expected: Any = [TrytonWorld._render(r, fields) for r in rows]
    except TypeError as exc:  # what a malformed field list answers, per row, as before
        expected = type(exc)
    try:
        render = TrytonWorld._renderer(fields)
        got: Any = [render(r) for r in rows]
    except TypeError as exc:
        got = type(exc)
    assert got == expected
    assert got is TypeError or [list(g) for g in got] == [list(e) for e in expected]  # the same key order

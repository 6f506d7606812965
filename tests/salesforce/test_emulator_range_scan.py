"""The emulator's keyset queries scan its (SystemModstamp, Id) index between the WHERE's bounds:
what they answer is what the predicate over every row answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sandbox.salesforce import Org
from sandbox.soql import parse, sf_datetime, upper_bound

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _stamp(k: int) -> str:
    return sf_datetime(T0 + timedelta(hours=k % 7))  # few distinct stamps, many rows each


def _org() -> Org:
    org = Org(seed=3, size=30)
    for k in range(60):
        org.insert("Opportunity", {"Name": f"o{k}", "StageName": "Prospecting",
                                   "CloseDate": "2026-04-01", "Amount": k}, at=T0 + timedelta(hours=k % 7))
    return org


def _every_row(org: Org, low: str | None, high: str | None, high_inclusive: bool) -> list[str]:
    idx = org.index("Opportunity")
    return [rid for stamp, rid in idx if not org.rows["Opportunity"][rid]["IsDeleted"]
            and (low is None or stamp > low) and (high is None or (stamp <= high if high_inclusive else stamp < high))]


@pytest.mark.parametrize(("low", "high", "inclusive"), [
    (None, 3, False), (None, 3, True), (1, 4, False), (1, 2, True), (5, None, False), (0, 6, True),
])
def test_a_bounded_keyset_query_answers_every_row_the_predicate_takes(low: int | None, high: int | None,
                                                                      inclusive: bool) -> None:
    org = _org()
    lo = _stamp(low) if low is not None else None
    hi = _stamp(high) if high is not None else None
    where = []
    if lo is not None:
        where.append(f"SystemModstamp > {lo}")
    if hi is not None:
        where.append(f"(SystemModstamp {'<=' if inclusive else '<'} {hi} OR (SystemModstamp = {hi} AND Id <= 'zzz'))")
    soql = "SELECT Id FROM Opportunity" + (" WHERE " + " AND ".join(where) if where else "") + \
        " ORDER BY SystemModstamp ASC, Id ASC"
    _, ids = org.run_query(soql, include_deleted=False)
    assert ids == _every_row(org, lo, hi, high_inclusive=True) and ids  # every Id sorts before 'zzz'


def test_upper_bound_of_a_where() -> None:
    t, u = _stamp(1), _stamp(2)
    where = parse(f"SELECT Id FROM Opportunity WHERE SystemModstamp >= {t} AND "
                  f"(SystemModstamp < {u} OR (SystemModstamp = {u} AND Id <= '006'))").where
    assert upper_bound(where, "SystemModstamp") == u
    assert upper_bound(parse(f"SELECT Id FROM Opportunity WHERE SystemModstamp < {u} OR Name = 'x'").where,
                       "SystemModstamp") is None
    assert upper_bound(parse("SELECT Id FROM Opportunity WHERE SystemModstamp < 2026-03-02").where,
                       "SystemModstamp") is None  # a date literal: left to the predicate

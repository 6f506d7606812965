"""The same connector against simple-mockforce, a third-party SOQL-interpreting mock of Salesforce.

simple-mockforce (0.8) patches ``requests`` through ``responses`` for ``*.salesforce.com`` URLs and
answers ``query``/``queryAll`` (one page, ``done: true``) with its own SOQL interpreter (WHERE with
AND/OR and parentheses, ORDER BY, LIMIT) plus sObject CRUD. It has no ``describe``, no ``COUNT()``, no
OAuth for our flows and no ``Sforce-Limit-Info``; it stores datetimes as the strings it is given and
compares them as strings. So the connector runs in direct-token mode with an explicit field list and
completeness off, and the rows carry SystemModstamps in one fixed-width UTC format, which string order
sorts correctly. What this proves independently of our emulator: the keyset SOQL the connector writes
(``>=`` window, ``>`` / ``=`` + ``Id >`` continuation, ORDER BY, LIMIT) selects the right rows in
another interpreter, queryAll returns deleted rows as tombstones, and paging terminates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from simple_mockforce import mock_salesforce
from simple_mockforce.virtual import virtual_salesforce

from canonical.store import Store
from connectors.base import sync
from connectors.governor import RateGovernor
from connectors.http import RetryPolicy
from connectors.salesforce import SalesforceConnector

FIELDS = ["Id", "IsDeleted", "SystemModstamp", "Name", "Amount", "Region__c"]
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def _stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _put(rid: str, at: datetime, **values: Any) -> None:
    rows = virtual_salesforce.data["Opportunity"]
    rows[:] = [r for r in rows if r["Id"] != rid]
    rows.append({"Id": rid, "IsDeleted": False, "SystemModstamp": _stamp(at), "Name": f"Deal {rid}",
                 "Amount": 100.5, "Region__c": "EMEA", **values})


def _connector(page_size: int) -> SalesforceConnector:
    return SalesforceConnector(
        "sf", base_url="https://mock.salesforce.com", credentials={"access_token": "mock-token"},
        options={"objects": ["Opportunity"], "fields": {"Opportunity": FIELDS}, "completeness": False},
        page_size=page_size, lookback=timedelta(minutes=10),
        governor=RateGovernor("mockforce", 1000, 1.0), policy=RetryPolicy(max_attempts=2, sleep=lambda s: None),
    )


@mock_salesforce
def test_keyset_sync_against_simple_mockforce(sqlite_store: Store) -> None:
    # 25 rows, 10 of them sharing one SystemModstamp: the keyset must page through the tie by Id
    for n in range(15):
        _put(f"006MF{n:013d}", T0 + timedelta(seconds=n))
    for n in range(15, 25):
        _put(f"006MF{n:013d}", T0 + timedelta(hours=1))
    conn = _connector(page_size=4)
    first = sync(conn, sqlite_store)[0]
    assert first.status == "success" and first.written == 25 and first.pages >= 7
    assert sqlite_store.count_raw("sf", "Opportunity") == 25
    payload = sqlite_store.get_raw("sf", "Opportunity", "006MF0000000000003")["payload"]  # type: ignore[index]
    assert Decimal(str(payload["Amount"])) == Decimal("100.5") and payload["Region__c"] == "EMEA"

    # an update, a late-visible row stamped before the high-water mark, a delete
    _put("006MF0000000000001", T0 + timedelta(hours=2), Name="renamed")
    _put("006MF0000000000099", T0 + timedelta(hours=2) - timedelta(minutes=5), Name="late")
    _put("006MF0000000000002", T0 + timedelta(hours=2), IsDeleted=True)
    second = sync(conn, sqlite_store)[0]
    assert second.status == "success"
    assert second.written == 3 and second.deleted == 1
    assert sqlite_store.get_raw("sf", "Opportunity", "006MF0000000000001")["payload"]["Name"] == "renamed"  # type: ignore[index]
    assert sqlite_store.get_raw("sf", "Opportunity", "006MF0000000000099") is not None
    assert sqlite_store.get_raw("sf", "Opportunity", "006MF0000000000002")["deleted"] is True  # type: ignore[index]
    assert sync(conn, sqlite_store)[0].written == 0

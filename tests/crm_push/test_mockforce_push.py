"""push-crm against simple-mockforce (0.8), a third-party Salesforce mock driven through simple-salesforce.

simple-mockforce answers ``PATCH /sobjects/<Obj>/<Id>`` (204, 404 ``NOT_FOUND`` for an unknown id)
but has no sObject Collections and no ``describe``. So the target runs with ``options.write_api:
record`` (one PATCH per record) and ``options.fields`` (the fields taken as existing): what this
proves independently of our emulator is that the requests simple-salesforce sends for our updates
are the REST API's, that the values land typed (numbers as numbers, dates as ISO text, empty as
null), that an unknown record is a per-record failure and that an unchanged re-run sends nothing. The
collection path is shown to fail cleanly per record there (the gap is the mock's).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import responses
from simple_mockforce import mock_salesforce
from simple_mockforce.virtual import virtual_salesforce

from canonical.store import Store
from connectors import crm_fields
from connectors.crm_fields import FinanceStatus, StatusRecord
from connectors.crm_push import SalesforceTarget, push
from connectors.governor import RateGovernor
from connectors.http import RetryPolicy
from connectors.salesforce import SalesforceConnector

FIELDS = crm_fields.names("salesforce", None)
OPP_FIELDS = ["Id", "Name", "Amount", *(name for _, name in FIELDS["deal"])]


def _connector() -> SalesforceConnector:
    return SalesforceConnector(
        "sf", base_url="https://mock.salesforce.com", credentials={"access_token": "mock-token"},
        options={"objects": ["Opportunity"], "fields": {"Opportunity": OPP_FIELDS}, "completeness": False},
        lookback=timedelta(minutes=10), governor=RateGovernor("mockforce", 1000, 1.0),
        policy=RetryPolicy(max_attempts=2, sleep=lambda s: None))


def _status(*sids: str, status: str = "partly paid") -> FinanceStatus:
    records = [StatusRecord("deal", f"sf:deal:{sid}", "sf", "Opportunity", sid, "EUR", {
        "erp_orders": "SO7", "invoiced": Decimal("1200.00"), "paid": Decimal("200.00"), "open_balance": Decimal("1000.00"),
        "currency": "EUR", "last_payment_date": date(2026, 4, 2), "days_overdue": 9, "status": status,
        "exception_codes": None, "exception_link": None}) for sid in sids]
    return FinanceStatus(as_of=date(2026, 4, 30), records=records)


@mock_salesforce
def test_record_updates_through_simple_salesforce_against_simple_mockforce(sqlite_store: Store) -> None:
    for n in range(3):
        virtual_salesforce.data["Opportunity"].append({"Id": f"006MF{n:013d}", "IsDeleted": False, "Name": f"Deal {n}", "Amount": 1200.0})
    target = SalesforceTarget(_connector(), api="record")
    sids = [f"006MF{n:013d}" for n in range(3)] + ["006MFNOTTHERE0000"]
    report = push(sqlite_store, target, _status(*sids), {"deal": FIELDS["deal"]})
    assert report.counts["Opportunity"].written == 3
    [failure] = report.failures
    assert failure.record_id == "006MFNOTTHERE0000" and failure.code == "NOT_FOUND"
    row = next(r for r in virtual_salesforce.data["Opportunity"] if r["Id"] == "006MF0000000000001")
    assert row["LTC_Open_Balance__c"] == 1000.0 and row["LTC_Last_Payment_Date__c"] == "2026-04-02"
    assert row["LTC_Status__c"] == "partly paid" and row["LTC_Exception_Codes__c"] is None
    assert row["Name"] == "Deal 1" and row["Amount"] == 1200.0  # not ours: untouched
    patches = [c for c in responses.calls if c.request.method == "PATCH"]
    assert len(patches) == 4 and patches[0].request.url.endswith("/sobjects/Opportunity/006MF0000000000000")

    del sids[-1]
    again = push(sqlite_store, target, _status(*sids), {"deal": FIELDS["deal"]})
    assert again.requests == 0 and again.counts["Opportunity"].unchanged == 3
    changed = push(sqlite_store, target, _status(*sids[:1], status="paid"), {"deal": FIELDS["deal"]})
    assert changed.counts["Opportunity"].written == 1
    assert [c.request.body for c in responses.calls if c.request.method == "PATCH"][-1] == b'{"LTC_Status__c": "paid"}'
    target.close()


@mock_salesforce
def test_the_collection_path_fails_cleanly_where_a_server_has_no_sobject_collections(sqlite_store: Store) -> None:
    virtual_salesforce.data["Opportunity"].append({"Id": "006MF0000000000000", "IsDeleted": False, "Name": "Deal"})
    target = SalesforceTarget(_connector(), api="composite")
    report = push(sqlite_store, target, _status("006MF0000000000000"), {"deal": FIELDS["deal"]})
    [failure] = report.failures
    assert "composite/sobjects" in failure.message and report.counts["Opportunity"].written == 0
    target.close()

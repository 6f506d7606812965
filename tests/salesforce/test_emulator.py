"""The emulator speaks the vendor's wire format: paging, batch sizes, error bodies, limit header, SOQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from sandbox.salesforce import Org
from sandbox.server import RunningServer
from sandbox.soql import SoqlError, parse


def _get(srv: RunningServer, org: Org, path: str, token: str | None = None, **kw: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {token or org.creds.static_token}", **kw.pop("headers", {})}  # type: ignore[dict-item]
    return requests.get(srv.url + path, headers=headers, verify=srv.ca_file, timeout=10, **kw)  # type: ignore[arg-type]


def test_query_pages_with_next_records_url_and_batch_size(emulator: RunningServer, org: Org) -> None:
    for n in range(450):
        org.insert("Lead", {"LastName": f"L{n}"})
    total = len(org.rows["Lead"])
    first = _get(emulator, org, "/services/data/v59.0/query/", params={"q": "SELECT Id FROM Lead"},
                 headers={"Sforce-Query-Options": "batchSize=200"})
    body = first.json()
    assert first.status_code == 200 and body["totalSize"] == total and body["done"] is False
    assert len(body["records"]) == 200 and body["records"][0]["attributes"]["type"] == "Lead"
    assert first.headers["Sforce-Limit-Info"].startswith("api-usage=")
    seen = [r["Id"] for r in body["records"]]
    while not body["done"]:
        body = _get(emulator, org, body["nextRecordsUrl"]).json()
        seen += [r["Id"] for r in body["records"]]
    assert len(seen) == len(set(seen)) == total
    default = _get(emulator, org, "/services/data/v59.0/query", params={"q": "SELECT Id FROM Lead"}).json()
    assert len(default["records"]) == min(2000, total)


def test_query_hides_deleted_rows_and_query_all_shows_them(emulator: RunningServer, org: Org) -> None:
    rid = next(iter(org.rows["Account"]))
    org.delete("Account", rid)
    q = {"q": f"SELECT Id, IsDeleted FROM Account WHERE Id = '{rid}'"}
    assert _get(emulator, org, "/services/data/v59.0/query", params=q).json()["totalSize"] == 0
    rows = _get(emulator, org, "/services/data/v59.0/queryAll/", params=q).json()["records"]
    assert rows[0]["IsDeleted"] is True


def test_vendor_error_bodies(emulator: RunningServer, org: Org) -> None:
    bad = _get(emulator, org, "/services/data/v59.0/query", params={"q": "SELECT Id FROM Account WHERE"})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "MALFORMED_QUERY"
    quoted = _get(emulator, org, "/services/data/v59.0/query",
                  params={"q": "SELECT Id FROM Account WHERE SystemModstamp > '2026-01-01T00:00:00Z'"})
    assert quoted.status_code == 400 and quoted.json()[0]["errorCode"] == "INVALID_FIELD"
    expired = _get(emulator, org, "/services/data/v59.0/limits", token="nope")
    assert expired.status_code == 401 and expired.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    org.api_used = org.daily_limit
    over = _get(emulator, org, "/services/data/v59.0/limits")
    assert over.status_code == 403 and over.json() == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert over.headers["Sforce-Limit-Info"] == f"api-usage={org.daily_limit + 1}/{org.daily_limit}"


def test_describe_lists_custom_fields(emulator: RunningServer, org: Org) -> None:
    body = _get(emulator, org, "/services/data/v59.0/sobjects/Opportunity/describe").json()
    custom = {f["name"] for f in body["fields"] if f["custom"]}
    assert {"Region__c", "ERP_Order_Ref__c"} <= custom
    amount = next(f for f in body["fields"] if f["name"] == "Amount")
    assert (amount["type"], amount["scale"]) == ("currency", 2)


def test_datetime_literals_in_all_documented_forms() -> None:
    for lit in ("2026-01-01T10:00:00Z", "2026-01-01T12:00:00+02:00", "2026-01-01T10:00:00.000+0000"):
        q = parse(f"SELECT Id FROM Account WHERE SystemModstamp >= {lit}")
        assert q.where.value.text == "2026-01-01T10:00:00.000+0000"
    q = parse("SELECT Id FROM Account WHERE Name = 'O\\'Brien \\\\ x' AND Amount > 1.50 LIMIT 3")
    assert q.where.items[0].value == "O'Brien \\ x" and q.where.items[1].value == Decimal("1.50") and q.limit == 3
    with pytest.raises(SoqlError):
        parse("SELECT Id FROM Account WHERE Name = 'bad \\q escape'")


def test_seeded_data_is_deterministic_and_linked() -> None:
    a, b = Org(seed=5, size=8), Org(seed=5, size=8)
    assert a.rows == b.rows
    accounts = set(a.rows["Account"])
    opps = a.rows["Opportunity"]
    assert all(o["AccountId"] in accounts for o in opps.values())
    assert all(li["OpportunityId"] in opps for li in a.rows["OpportunityLineItem"].values())
    for opp_id, opp in opps.items():
        lines = [li for li in a.rows["OpportunityLineItem"].values() if li["OpportunityId"] == opp_id]
        assert opp["Amount"] == sum(li["TotalPrice"] for li in lines)

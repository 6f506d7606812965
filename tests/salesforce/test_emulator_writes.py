"""The emulator's writes in the vendor's shapes: sObject Collections update (limits, per-record SaveResults,
allOrNone), the single-record PATCH, describe after a field is created, the stamps an update bumps."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import requests

from sandbox.salesforce import Org, ValidationRule
from sandbox.server import RunningServer

COLLECTION = "/services/data/v59.0/composite/sobjects"


def _send(srv: RunningServer, org: Org, method: str, path: str, body: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {org.creds.static_token}", "Content-Type": "application/json"}
    return requests.request(method, srv.url + path, data=json.dumps(body), headers=headers, verify=srv.ca_file,
                            timeout=10)


def _opps(org: Org, n: int) -> list[str]:
    return sorted(org.rows["Opportunity"])[:n]


def test_collection_update_returns_one_save_result_per_record_in_order(emulator: RunningServer, org: Org) -> None:
    org.create_field("Opportunity", "LTC_Status__c", "string", length=40)
    org.create_field("Opportunity", "LTC_Paid_Amount__c", "currency")
    a, b, c, d = _opps(org, 4)
    stamp = org.rows["Opportunity"][a]["SystemModstamp"]
    org.validation_rules.append(ValidationRule("Opportunity", lambda r: r["Id"] == b, "Closed quarter: no edits",
                                               ("LTC_Status__c",)))
    org.locked.add(c)
    res = _send(emulator, org, "PATCH", COLLECTION, {"allOrNone": False, "records": [
        {"attributes": {"type": "Opportunity"}, "id": rid, "LTC_Status__c": "paid", "LTC_Paid_Amount__c": 10.5}
        for rid in (a, b, c, d)] + [{"attributes": {"type": "Opportunity"}, "id": "006XXXXXXXXXXXXAAA",
                                     "LTC_Status__c": "x"}]})
    assert res.status_code == 200
    body = res.json()
    assert body[0] == {"id": a, "success": True, "errors": []} and body[3]["success"] is True
    assert body[1] == {"success": False, "errors": [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                                     "message": "Closed quarter: no edits",
                                                     "fields": ["LTC_Status__c"]}]}
    assert body[2]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW" and c in body[2]["errors"][0]["message"]
    assert body[4]["errors"][0]["statusCode"] == "INVALID_CROSS_REFERENCE_KEY"
    row = org.rows["Opportunity"][a]
    assert row["LTC_Status__c"] == "paid" and row["LTC_Paid_Amount__c"] == Decimal("10.5")
    assert row["SystemModstamp"] >= stamp and row["LastModifiedDate"] == row["SystemModstamp"]
    assert org.rows["Opportunity"][b]["LTC_Status__c"] is None


def test_all_or_none_rolls_every_record_back(emulator: RunningServer, org: Org) -> None:
    org.create_field("Opportunity", "LTC_Status__c", "string", length=5)
    a, b = _opps(org, 2)
    res = _send(emulator, org, "PATCH", COLLECTION, {"allOrNone": True, "records": [
        {"attributes": {"type": "Opportunity"}, "id": a, "LTC_Status__c": "ok"},
        {"attributes": {"type": "Opportunity"}, "id": b, "LTC_Status__c": "far too long"}]})
    body = res.json()
    assert body[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert body[1]["errors"][0]["statusCode"] == "STRING_TOO_LONG" and body[1]["errors"][0]["fields"] == ["LTC_Status__c"]
    assert org.rows["Opportunity"][a]["LTC_Status__c"] is None


def test_collection_limits_and_whole_request_errors(emulator: RunningServer, org: Org) -> None:
    rid = _opps(org, 1)[0]
    too_many = _send(emulator, org, "PATCH", COLLECTION, {"records": [
        {"attributes": {"type": "Opportunity"}, "id": rid, "Name": "x"}] * 201})
    assert too_many.status_code == 400 and too_many.json() == [{
        "message": "record limit reached. cannot submit more than 200 records into this call",
        "errorCode": "EXCEEDED_ID_LIMIT"}]
    unknown = _send(emulator, org, "PATCH", COLLECTION, {"records": [
        {"attributes": {"type": "Opportunity"}, "id": rid, "No_Such__c": 1}]})
    assert unknown.status_code == 400 and unknown.json()[0]["errorCode"] == "INVALID_FIELD"
    wrong_type = _send(emulator, org, "PATCH", COLLECTION, {"records": [
        {"attributes": {"type": "Opportunity"}, "id": rid, "Amount": "a lot"}]})
    assert wrong_type.status_code == 400 and wrong_type.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    untyped = _send(emulator, org, "PATCH", COLLECTION, {"records": [{"id": rid, "Name": "x"}]})
    assert untyped.status_code == 400 and untyped.json()[0]["errorCode"] == "INVALID_TYPE"


def test_field_level_security_and_describe_after_a_field_is_created(emulator: RunningServer, org: Org) -> None:
    headers = {"Authorization": f"Bearer {org.creds.static_token}"}
    describe = emulator.url + "/services/data/v59.0/sobjects/Account/describe"
    names = {f["name"] for f in requests.get(describe, headers=headers, verify=emulator.ca_file, timeout=10)
             .json()["fields"]}
    assert "LTC_Open_Balance__c" not in names
    org.create_field("Account", "LTC_Open_Balance__c", "currency", editable=False)
    fields = {f["name"]: f for f in requests.get(describe, headers=headers, verify=emulator.ca_file, timeout=10)
              .json()["fields"]}
    ours = fields["LTC_Open_Balance__c"]
    assert ours["custom"] is True and ours["type"] == "currency" and ours["updateable"] is False
    acct = sorted(org.rows["Account"])[0]
    res = _send(emulator, org, "PATCH", COLLECTION, {"records": [
        {"attributes": {"type": "Account"}, "id": acct, "LTC_Open_Balance__c": 1}]})
    err = res.json()[0]["errors"][0]
    assert err["statusCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE" and err["fields"] == ["LTC_Open_Balance__c"]


def test_single_record_patch(emulator: RunningServer, org: Org) -> None:
    rid = _opps(org, 1)[0]
    ok = _send(emulator, org, "PATCH", f"/services/data/v59.0/sobjects/Opportunity/{rid}", {"Name": "Renamed"})
    assert ok.status_code == 204 and org.rows["Opportunity"][rid]["Name"] == "Renamed"
    org.locked.add(rid)
    locked = _send(emulator, org, "PATCH", f"/services/data/v59.0/sobjects/Opportunity/{rid}", {"Name": "Again"})
    assert locked.status_code == 400 and locked.json()[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    missing = _send(emulator, org, "PATCH", "/services/data/v59.0/sobjects/Opportunity/006NOPE", {"Name": "x"})
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"


def test_bulk_ingest_update_job(emulator: RunningServer, org: Org) -> None:
    org.create_field("Opportunity", "LTC_Status__c", "string", length=40)
    org.create_field("Opportunity", "LTC_Paid_Amount__c", "currency")
    a, b, c = _opps(org, 3)
    org.rows["Opportunity"][c]["LTC_Status__c"] = "old"
    org.locked.add(b)
    base = "/services/data/v59.0/jobs/ingest"
    job = _send(emulator, org, "POST", base, {"object": "Opportunity", "operation": "update", "contentType": "CSV",
                                              "lineEnding": "LF"}).json()
    assert job["state"] == "Open" and job["contentUrl"].endswith(f"/jobs/ingest/{job['id']}/batches")
    headers = {"Authorization": f"Bearer {org.creds.static_token}", "Content-Type": "text/csv"}
    data = f"Id,LTC_Status__c,LTC_Paid_Amount__c\n{a},paid,10.50\n{b},paid,1\n{c},#N/A,\n"
    up = requests.put(emulator.url + f"{base}/{job['id']}/batches", data=data, headers=headers,
                      verify=emulator.ca_file, timeout=10)
    assert up.status_code == 201
    closed = _send(emulator, org, "PATCH", f"{base}/{job['id']}", {"state": "UploadComplete"}).json()
    assert closed["state"] == "UploadComplete"
    get = {"Authorization": f"Bearer {org.creds.static_token}"}
    info = requests.get(emulator.url + f"{base}/{job['id']}", headers=get, verify=emulator.ca_file, timeout=10).json()
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("JobComplete", 3, 1)
    failed = requests.get(emulator.url + f"{base}/{job['id']}/failedResults/", headers=get, verify=emulator.ca_file,
                          timeout=10).text.splitlines()
    assert failed[0] == "sf__Id,sf__Error,Id,LTC_Status__c,LTC_Paid_Amount__c"
    assert failed[1].startswith(f"{b},UNABLE_TO_LOCK_ROW:unable to obtain exclusive access") and len(failed) == 2
    assert org.rows["Opportunity"][a]["LTC_Paid_Amount__c"] == Decimal("10.50")
    assert org.rows["Opportunity"][c]["LTC_Status__c"] is None  # #N/A: null
    assert org.rows["Opportunity"][c]["LTC_Paid_Amount__c"] is None  # empty: left alone (it was empty)
    bad = _send(emulator, org, "POST", base, {"object": "Opportunity", "operation": "update"}).json()
    requests.put(emulator.url + f"{base}/{bad['id']}/batches", data=f"Id,Nope__c\n{a},1\n", headers=headers,
                 verify=emulator.ca_file, timeout=10)
    _send(emulator, org, "PATCH", f"{base}/{bad['id']}", {"state": "UploadComplete"})
    info = requests.get(emulator.url + f"{base}/{bad['id']}", headers=get, verify=emulator.ca_file, timeout=10).json()
    assert info["state"] == "Failed" and "Field name not found : Nope__c" in info["errorMessage"]

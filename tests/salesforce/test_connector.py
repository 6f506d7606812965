"""The Salesforce connector against the TLS emulator: auth flows, keyset incremental, late rows,
tombstones, quota pause/resume, session expiry, SOQL escaping, wide objects, Bulk 2.0, exact numbers."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from canonical.store import Store
from connectors.base import sync
from connectors.errors import AuthenticationError, ConnectorError, QuotaPaused
from connectors.salesforce import build_soql, soql_literal
from sandbox.salesforce import Org
from tests.salesforce.conftest import Make


def _ids(store: Store, obj: str) -> int:
    return store.count_raw("sf", obj)


@pytest.mark.parametrize("mode", ["client_credentials", "password", "jwt", "direct"])
def test_every_auth_flow_pulls_the_org(make: Make, org: Org, sqlite_store: Store, mode: str) -> None:
    conn = make(mode, objects=["Account", "Opportunity"])
    results = sync(conn, sqlite_store)
    assert [r.status for r in results] == ["success", "success"]
    assert _ids(sqlite_store, "Account") == len(org.rows["Account"])
    assert _ids(sqlite_store, "Opportunity") == len(org.rows["Opportunity"])
    assert conn.logins == 1
    assert all(r.source_count == r.store_count for r in results)


def test_wrong_secret_is_an_authentication_error_without_the_secret(make: Make, org: Org, sqlite_store: Store) -> None:
    conn = make(creds={"client_id": org.creds.client_id, "client_secret": "not-the-secret-xyz"})
    with pytest.raises(AuthenticationError) as err:
        sync(conn, sqlite_store, streams=["Account"])
    assert "invalid_grant" in str(err.value) and "not-the-secret-xyz" not in str(err.value)


def test_full_then_incremental_reads_only_the_window(make: Make, org: Org, sqlite_store: Store) -> None:
    conn = make(objects=["Account"])
    first = sync(conn, sqlite_store)[0]
    assert first.written == len(org.rows["Account"]) and first.status == "success"
    acc = next(iter(org.rows["Account"]))
    org.update("Account", acc, {"Name": "Renamed GmbH"})
    new = org.insert("Account", {"Name": "New Ltd"})
    org.requests.clear()
    second = sync(conn, sqlite_store)[0]
    assert second.written == 2 and second.records < len(org.rows["Account"])  # from hw - lookback, not zero
    assert sqlite_store.get_raw("sf", "Account", acc)["payload"]["Name"] == "Renamed GmbH"  # type: ignore[index]
    assert sqlite_store.get_raw("sf", "Account", new) is not None
    soql = [r for r in org.requests if "queryAll" in r and "COUNT" not in r]
    assert soql and all("SystemModstamp+%3E%3D+" in r for r in soql)


def test_a_row_committed_late_with_an_older_stamp_is_captured(make: Make, org: Org, sqlite_store: Store) -> None:
    conn = make(objects=["Opportunity"])
    org.insert("Opportunity", {"Name": "recent"})  # the high-water mark is now
    sync(conn, sqlite_store)
    # written 3 minutes ago, visible only now (long transaction): older than the high-water mark
    late = org.insert("Opportunity", {"Name": "late", "Amount": Decimal("10.10")},
                      at=org.now() - timedelta(minutes=3), visible=False)
    assert sync(conn, sqlite_store)[0].written == 0
    org.publish("Opportunity", late)
    again = sync(conn, sqlite_store)[0]
    assert again.written == 1
    assert sqlite_store.get_raw("sf", "Opportunity", late)["payload"]["Name"] == "late"  # type: ignore[index]


def test_deleted_rows_become_tombstones(make: Make, org: Org, sqlite_store: Store) -> None:
    conn = make(objects=["Contact"])
    sync(conn, sqlite_store)
    victim = next(iter(org.rows["Contact"]))
    org.delete("Contact", victim)
    result = sync(conn, sqlite_store)[0]
    assert result.deleted == 1 and result.status == "success"
    row = sqlite_store.get_raw("sf", "Contact", victim)
    assert row is not None and row["deleted"] is True and row["payload"]["IsDeleted"] is True
    assert result.source_count == result.store_count  # the COUNT() excludes the deleted row too


def test_same_stamp_burst_larger_than_a_page_is_fully_captured(make: Make, org: Org, sqlite_store: Store) -> None:
    conn = make(objects=["Lead"], page_size=40)
    sync(conn, sqlite_store)
    at = org.now()
    burst = [org.insert("Lead", {"LastName": f"Burst {i}", "Company": "Bulk Co"}, at=at) for i in range(130)]
    result = sync(conn, sqlite_store)[0]
    assert result.pages >= 4 and result.written == 130
    assert all(sqlite_store.get_raw("sf", "Lead", i) is not None for i in burst)
    assert sync(conn, sqlite_store)[0].written == 0


def test_quota_guard_pauses_with_state_saved_and_the_next_run_resumes(make: Make, org: Org,
                                                                      sqlite_store: Store) -> None:
    org.daily_limit, org.api_used = 100, 72
    conn = make(objects=["Contact", "Opportunity"], page_size=3)
    first = sync(conn, sqlite_store)
    assert first[0].status == "paused" and "daily API allocation" in (first[0].message or "")
    assert org.api_used <= 82  # stopped at 80 % (plus the request that reported it)
    got = _ids(sqlite_store, "Contact")
    assert 0 < got < len(org.rows["Contact"])
    org.api_used = 0  # a new day
    org.requests.clear()
    second = sync(conn, sqlite_store)
    assert [r.status for r in second] == ["success", "success"]
    assert _ids(sqlite_store, "Contact") == len(org.rows["Contact"])
    assert second[0].written == len(org.rows["Contact"]) - got  # resumed, nothing re-landed
    assert not any("SystemModstamp" not in r for r in org.requests if "Contact" in r and "COUNT" not in r)


def test_request_limit_exceeded_pauses_the_run(make: Make, org: Org, sqlite_store: Store) -> None:
    org.daily_limit, org.api_used = 10, 10  # exhausted: the org answers 403 REQUEST_LIMIT_EXCEEDED
    conn = make(objects=["Account"], pause_at="1.5")
    result = sync(conn, sqlite_store)[0]
    assert result.status == "paused" and "REQUEST_LIMIT_EXCEEDED" in (result.message or "")
    with pytest.raises(QuotaPaused):
        conn.query_all("SELECT Id FROM Account")


def test_expired_session_logs_in_again_once(make: Make, org: Org, sqlite_store: Store) -> None:
    conn = make(objects=["Account"])
    sync(conn, sqlite_store)
    org.faults.expire_session_once = True
    org.update("Account", next(iter(org.rows["Account"])), {"Name": "after expiry"})
    assert sync(conn, sqlite_store)[0].written == 1
    assert conn.logins == 2


def test_a_session_that_stays_invalid_is_an_authentication_error(make: Make, org: Org, sqlite_store: Store) -> None:
    conn = make(objects=["Account"])
    org.faults.expire_session_always = True
    with pytest.raises(AuthenticationError, match="again after a fresh login"):
        sync(conn, sqlite_store)
    assert conn.logins == 2


def test_direct_token_mode_cannot_log_in_again(make: Make, org: Org, sqlite_store: Store) -> None:
    conn = make("direct", objects=["Account"])
    org.faults.expire_session_once = True
    with pytest.raises(AuthenticationError, match="INVALID_SESSION_ID"):
        sync(conn, sqlite_store)


def test_soql_values_are_escaped(make: Make, org: Org) -> None:
    assert soql_literal("O'Brien \\ \"x\"\n") == "'O\\'Brien \\\\ \\\"x\\\"\\n'"
    nasty = "O'Brien\\' OR Name != '"
    rid = org.insert("Account", {"Name": nasty})
    conn = make()
    rows = conn.query_all(build_soql("Account", ["Id", "Name"], [f"Name = {soql_literal(nasty)}"], order=False))
    assert [r["Id"] for r in rows] == [rid]  # one exact match, no injection


def test_random_5xx_are_retried(make: Make, org: Org, sqlite_store: Store) -> None:
    org.faults.error_rate = 0.3
    conn = make(objects=["Contact"], page_size=10)
    result = sync(conn, sqlite_store)[0]
    assert result.status == "success" and _ids(sqlite_store, "Contact") == len(org.rows["Contact"])
    assert any(r.startswith("GET") for r in org.requests)


def test_malformed_query_is_a_clear_connector_error(make: Make) -> None:
    conn = make()
    with pytest.raises(ConnectorError, match="INVALID_FIELD: No such column 'Nope__c'"):
        conn.query_all("SELECT Id, Nope__c FROM Account")


def test_custom_fields_and_exact_numbers_in_the_raw_payload(make: Make, org: Org, sqlite_store: Store) -> None:
    opp = org.insert("Opportunity", {"Name": "exact", "Amount": Decimal("1234567.89"), "Region__c": "EMEA"})
    sync(make(objects=["Opportunity", "Account"]), sqlite_store)
    payload = sqlite_store.get_raw("sf", "Opportunity", opp)["payload"]  # type: ignore[index]
    assert payload["Region__c"] == "EMEA" and "ERP_Order_Ref__c" in payload
    assert Decimal(str(payload["Amount"])) == Decimal("1234567.89")
    account = sqlite_store.get_raw("sf", "Account", next(iter(org.rows["Account"])))["payload"]  # type: ignore[index]
    assert {"Region__c", "Customer_Tier__c", "ERP_Customer_Id__c"} <= set(account)
    assert "BillingAddress" not in account  # compound field skipped, its parts are plain fields


def test_query_numbers_are_decimals(make: Make, org: Org) -> None:
    rid = org.insert("Opportunity", {"Name": "d", "Amount": Decimal("0.10")})
    rows = make().query_all(f"SELECT Id, Amount FROM Opportunity WHERE Id = {soql_literal(rid)}")
    assert isinstance(rows[0]["Amount"], Decimal) and rows[0]["Amount"] == Decimal("0.1")


def test_wide_object_fields_are_chunked_under_the_url_limit(sqlite_store: Store) -> None:
    from sandbox.salesforce import build_app
    from sandbox.server import serve
    from tests.salesforce.conftest import credentials, stop

    org = Org(seed=3, size=30, wide_fields=700)
    srv = serve(build_app(org), tls=True)
    try:
        from connectors.governor import RateGovernor
        from connectors.http import RetryPolicy
        from connectors.salesforce import SalesforceConnector

        conn = SalesforceConnector("sf", base_url=srv.url, credentials=credentials(org, "client_credentials"),
                                   options={"ca_file": srv.ca_file, "objects": ["Account"]}, page_size=12,
                                   governor=RateGovernor("t", 1000, 1.0),
                                   policy=RetryPolicy(max_attempts=2, sleep=lambda s: None))
        assert conn.url_length(build_soql("Account", list(conn.field_types("Account")))) > 16_384
        result = sync(conn, sqlite_store)[0]
        assert result.status == "success" and result.written == 30
        payload = sqlite_store.get_raw("sf", "Account", next(iter(org.rows["Account"])))["payload"]  # type: ignore[index]
        assert "Wide_Attribute_0000__c" in payload and "Wide_Attribute_0699__c" in payload and "Name" in payload
        queries = [r for r in org.requests if "queryAll" in r and "COUNT" not in r]
        # two chunk queries a page, but one for the (empty) future probe that ends the run
        assert len(queries) >= 2 * (result.pages - 1) + 1 and max(len(q) for q in queries) < 16_384
        assert sync(conn, sqlite_store)[0].written == 0
        conn.close()
    finally:
        stop(srv)


def test_bulk_api_2_serves_a_large_initial_load(make: Make, org: Org, sqlite_store: Store) -> None:
    conn = make(objects=["Contact"], page_size=7, bulk_threshold=10, bulk_poll_s=0.01)
    org.faults.bulk_polls_before_complete = 2
    result = sync(conn, sqlite_store)[0]
    assert result.status == "success" and result.written == len(org.rows["Contact"])
    jobs = [r for r in org.requests if "/jobs/query" in r]
    assert any(r.startswith("POST") for r in jobs) and sum("/results" in r for r in jobs) >= 3
    # no REST page query: the one REST read is the future probe (SystemModstamp >= run start + margin)
    assert not any("queryAll" in r and "COUNT" not in r and "SELECT+Id" in r and "SystemModstamp+%3E%3D" not in r
                   for r in org.requests)
    # the REST re-read of the lookback window lands nothing new: both paths produce identical payloads
    again = sync(conn, sqlite_store)[0]
    assert again.records > 0 and again.written == 0


def test_bulk_load_interrupted_resumes_the_same_job(make: Make, org: Org, sqlite_store: Store) -> None:
    from connectors.base import sync_stream

    conn = make(objects=["Contact"], page_size=5, bulk_threshold=10, bulk_poll_s=0.01)
    run = sqlite_store.begin_run("sync", "sf")
    partial = sync_stream(conn, conn.stream("Contact"), sqlite_store, run_id=run, max_pages=2)
    assert partial.status == "paused" and partial.records == 10
    fresh = make(objects=["Contact"], page_size=5, bulk_threshold=10)  # a new process: only the saved state
    org.requests.clear()
    done = sync(fresh, sqlite_store)[0]
    assert done.status == "success" and _ids(sqlite_store, "Contact") == len(org.rows["Contact"])
    assert done.written == len(org.rows["Contact"]) - 10  # went on from the saved locator, nothing re-read
    assert not any(r.startswith("POST") for r in org.requests) and any("/results" in r for r in org.requests)
    # after the bulk load the next run is incremental over REST
    org.requests.clear()
    org.update("Contact", next(iter(org.rows["Contact"])), {"Title": "CFO"})
    assert sync(fresh, sqlite_store)[0].written == 1
    assert not any("/jobs/" in r for r in org.requests)


def test_expired_bulk_job_is_started_again(make: Make, org: Org, sqlite_store: Store) -> None:
    from connectors.base import sync_stream

    conn = make(objects=["Contact"], page_size=5, bulk_threshold=10, bulk_poll_s=0.01)
    run = sqlite_store.begin_run("sync", "sf")
    sync_stream(conn, conn.stream("Contact"), sqlite_store, run_id=run, max_pages=1)
    org.jobs.clear()  # Salesforce deletes finished jobs after 7 days
    done = sync(make(objects=["Contact"], page_size=5, bulk_threshold=10, bulk_poll_s=0.01), sqlite_store)[0]
    assert done.status == "success" and _ids(sqlite_store, "Contact") == len(org.rows["Contact"])


def test_stalled_requests_time_out_and_are_retried(make: Make, org: Org, sqlite_store: Store) -> None:
    org.faults.timeout_rate, org.faults.stall_s = 0.25, 2.0
    conn = make(objects=["Account"], page_size=4, timeout_s=0.5)
    result = sync(conn, sqlite_store)[0]
    assert result.status == "success" and _ids(sqlite_store, "Account") == len(org.rows["Account"])


def test_prefetch_reads_each_page_once(make: Make, org: Org, sqlite_store: Store) -> None:
    pages = []
    for prefetch in (False, True):
        org.requests.clear()
        conn = make(objects=["Contact"], page_size=5, prefetch=prefetch)
        result = sync(conn, sqlite_store, full_refresh=True)[0]
        pages.append(sum("queryAll" in r and "COUNT" not in r for r in org.requests))
        assert result.records == len(org.rows["Contact"])
    # the pages, then the future probe (records stamped ahead of our clock)
    assert pages[0] == pages[1] == len(org.rows["Contact"]) // 5 + 2


def test_late_commit_fault_rows_surface_after_their_stamp_and_are_captured(make: Make, org: Org,
                                                                            sqlite_store: Store) -> None:
    import time

    conn = make(objects=["Account"])
    sync(conn, sqlite_store)
    org.faults.late_commit_s = 1.0
    rid = org.insert("Account", {"Name": "slow transaction"})
    assert sync(conn, sqlite_store)[0].written == 0  # not visible yet
    org.faults.late_commit_s = 0.0
    # (stamped now, not later: a stamp past the run's start waits for the next run)
    newer = org.insert("Account", {"Name": "after"}, at=org.now())
    assert sync(conn, sqlite_store)[0].written == 1  # the newer row moves the high-water mark past `rid`
    assert sqlite_store.get_raw("sf", "Account", newer) is not None
    time.sleep(1.1)
    assert sync(conn, sqlite_store)[0].written == 1  # the lookback re-read finds the late row
    assert sqlite_store.get_raw("sf", "Account", rid) is not None

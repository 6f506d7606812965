"""push-crm against the Salesforce emulator serving a reconciled world: what lands on each Opportunity
and Account, how many requests it takes, failures, quota, and the sync that follows."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from canonical import tables
from canonical.errors import ConfigError
from canonical.tables import crm_push_state, raw_pending
from connectors.base import sync
from connectors.crm_push import CrmPushReport, SalesforceTarget
from ltc.app import runtime
from ltc.app.push_crm import push_source
from mappings.engine import run_mapping
from reconcile import lifecycle
from reconcile.engine import run_reconciliation
from reconcile.tables import recon_exception, recon_link
from reports.finance import build_report
from sandbox.salesforce import ValidationRule
from tests.crm_push.conftest import UI, SfEnv

Env = Callable[..., SfEnv]
OURS = ("LTC_", "SystemModstamp", "LastModifiedDate")
COLLECTION = "PATCH /services/data/v59.0/composite/sobjects"


def business(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith(OURS)}


def chains_by_deal(env: SfEnv) -> dict[str, dict[str, Any]]:
    return {c["deal"]: c for c in build_report(env.store).chains if c["deal"]}


def test_every_reconciled_deal_shows_what_the_finance_report_shows(sf_env: Env) -> None:
    env = sf_env()
    before = {rid: business(r) for rid, r in env.org.rows["Opportunity"].items()}
    report = push_source(env.store, env.cfg, "salesforce")
    chains = chains_by_deal(env)
    opps = env.org.rows["Opportunity"]
    assert report.counts["Opportunity"].written == len(chains) > 50 and not report.failures
    for sid, chain in chains.items():
        row = opps[sid]
        assert row["LTC_Invoiced_Amount__c"] == chain["invoiced"], sid
        assert row["LTC_Paid_Amount__c"] == chain["paid"] and row["LTC_Open_Balance__c"] == chain["open"]
        assert row["LTC_Currency__c"] == chain["currency"] and row["LTC_Status__c"] == chain["status"]
        assert row["LTC_ERP_Orders__c"] == (", ".join(chain["orders"].split()) or None)
        codes = chain["exceptions"].split()
        assert row["LTC_Exception_Codes__c"] == (", ".join(codes) or None)
        assert (row["LTC_Exception_Link__c"] or "").startswith(f"{UI}/x/") == bool(codes)
    # nothing but our own fields (and the stamps the update bumps) changed on any opportunity
    assert {rid: business(r) for rid, r in opps.items()} == before
    statuses = {c["status"] for c in chains.values()}
    assert {"paid", "exception"} <= statuses


def test_days_overdue_and_last_payment_of_a_planted_overdue_invoice(sf_env: Env) -> None:
    env = sf_env()
    push_source(env.store, env.cfg, "salesforce")
    inv = tables.table_for("invoice")
    with env.store.engine.connect() as conn:
        overdue = conn.execute(sa.select(recon_exception.c.chain_id).where(
            recon_exception.c.code == "INVOICE_OVERDUE")).scalars().first()
        assert overdue is not None
        dues = conn.execute(sa.select(inv.c.due_date).select_from(
            recon_link.join(inv, inv.c.id == recon_link.c.to_id)).where(
            recon_link.c.chain_id == overdue, recon_link.c.to_entity == "invoice")).scalars().all()
    as_of = build_report(env.store).as_of
    assert as_of is not None
    row = env.org.rows["Opportunity"][overdue.split(":", 2)[2]]
    assert row["LTC_Days_Overdue__c"] == max((as_of - d).days for d in dues if d and d < as_of) > 0
    paid = [r for r in env.org.rows["Opportunity"].values() if r.get("LTC_Status__c") == "paid"]
    assert paid and all(date.fromisoformat(r["LTC_Last_Payment_Date__c"]) <= as_of for r in paid)
    assert all(r["LTC_Days_Overdue__c"] == 0 and r["LTC_Open_Balance__c"] == 0 for r in paid)


def test_accounts_get_the_roll_up_of_their_chains(sf_env: Env) -> None:
    env = sf_env()
    push_source(env.store, env.cfg, "salesforce")
    deal = tables.table_for("deal")
    with env.store.engine.connect() as conn:
        account_of = dict(conn.execute(sa.select(deal.c.source_id, deal.c.account_id)).all())
    members: dict[str, list[dict[str, Any]]] = defaultdict(list)
    report = build_report(env.store)
    for sid, chain in chains_by_deal(env).items():
        members[account_of[sid].split(":", 2)[2]].append(chain)
    accounts = env.org.rows["Account"]
    for acct, chains in members.items():
        row = accounts[acct]
        assert row["LTC_Won_Deals__c"] == sum(1 for c in chains if c["stage"] == "closed_won")
        assert row["LTC_Deals_With_Exceptions__c"] == sum(1 for c in chains if c["exceptions"])
        currencies = {c["currency"] for c in chains}
        if len(currencies) == 1:
            assert row["LTC_Currency__c"] == currencies.pop()
            assert row["LTC_Open_Balance__c"] == sum((c["open"] for c in chains), Decimal(0))
        else:  # converted into the reporting currency
            assert row["LTC_Currency__c"] == env.cfg.reporting_currency
        assert (row["LTC_Status__c"] == "exception") == any(c["exceptions"] for c in chains)
        fingerprints = {x["fingerprint"] for x in report.exceptions if x["chain_id"] in {c["chain_id"] for c in chains}}
        link = row["LTC_Exception_Link__c"]
        assert (link is not None) == bool(fingerprints)
        assert link is None or link.removeprefix(f"{UI}/x/") in fingerprints


def test_writes_are_collections_of_200_and_an_unchanged_rerun_sends_no_request(sf_env: Env) -> None:
    env = sf_env()
    first = push_source(env.store, env.cfg, "salesforce")
    records = sum(c.written for c in first.counts.values())
    patches = [r for r in env.org.requests if r.startswith(COLLECTION)]
    assert len(patches) == math.ceil(records / 200)
    assert first.requests == len(patches) + 1 + 2  # the login, a describe per object
    seen = len(env.org.requests)
    again = push_source(env.store, env.cfg, "salesforce")
    assert again.requests == 0 and len(env.org.requests) == seen
    assert sum(c.unchanged for c in again.counts.values()) == records


def push_in_batches_of(env: SfEnv, size: int) -> CrmPushReport:
    from connectors import registry

    target = SalesforceTarget(registry.build("salesforce", env.cfg.sources["salesforce"]), batch_size=size)
    try:
        return push_source(env.store, env.cfg, "salesforce", target=target)
    finally:
        target.close()


def test_a_small_batch_size_splits_the_writes(sf_env: Env) -> None:
    env = sf_env()
    report = push_in_batches_of(env, 7)
    records = sum(c.written for c in report.counts.values())
    assert len([r for r in env.org.requests if r.startswith(COLLECTION)]) == math.ceil(records / 7)


def test_refused_records_carry_the_crm_message_never_stop_the_rest_and_are_retried(sf_env: Env) -> None:
    env = sf_env()
    opps = sorted(chains_by_deal(env))
    ruled, locked = opps[3], opps[9]
    env.org.validation_rules.append(ValidationRule(
        "Opportunity", lambda r: r["Id"] == ruled, "Finance fields cannot change in a closed quarter",
        ("LTC_Status__c",)))
    env.org.locked.add(locked)
    report = push_source(env.store, env.cfg, "salesforce")
    failed = {f.record_id: f for f in report.failures}
    assert set(failed) == {ruled, locked}
    assert failed[ruled].code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert "Finance fields cannot change in a closed quarter" in failed[ruled].message
    assert failed[locked].code == "UNABLE_TO_LOCK_ROW" and locked in failed[locked].message
    assert report.counts["Opportunity"].written == len(opps) - 2 and report.status == "partial"
    assert env.org.rows["Opportunity"][ruled]["LTC_Status__c"] is None

    env.org.validation_rules.clear()
    env.org.locked.clear()
    seen = len(env.org.requests)
    again = push_source(env.store, env.cfg, "salesforce")
    assert not again.failures and again.counts["Opportunity"].written == 2
    assert [r for r in env.org.requests[seen:] if r.startswith("PATCH")] == [COLLECTION]
    assert env.org.rows["Opportunity"][ruled]["LTC_Status__c"] == chains_by_deal(env)[ruled]["status"]


def test_field_level_security_refusals_are_per_record(sf_env: Env) -> None:
    # a server without describe: the fields listed in options.fields are taken as they are
    env = sf_env(fields=True)
    opp_fields = sorted(env.org.types["Opportunity"])
    env.org.create_field("Opportunity", "LTC_Paid_Amount__c", "currency", editable=False)
    env.cfg.sources["salesforce"].options["fields"] = {"Opportunity": opp_fields,
                                                      "Account": sorted(env.org.types["Account"])}
    report = push_source(env.store, env.cfg, "salesforce")
    assert report.counts["Opportunity"].failed == report.counts["Opportunity"].considered > 0
    assert report.counts["Account"].written == report.counts["Account"].considered > 0
    f = report.failures[0]
    assert f.code == "INVALID_FIELD_FOR_INSERT_UPDATE" and "LTC_Paid_Amount__c" in f.message


def test_describe_refuses_a_read_only_field_up_front(sf_env: Env) -> None:
    env = sf_env()
    env.org.create_field("Opportunity", "LTC_Paid_Amount__c", "currency", editable=False)
    with pytest.raises(ConfigError, match=r"cannot edit Opportunity\.LTC_Paid_Amount__c \(field-level security\)"):
        push_source(env.store, env.cfg, "salesforce")
    assert not [r for r in env.org.requests if r.startswith("PATCH")]


def test_missing_fields_are_named_in_one_line_with_how_to_create_them(sf_env: Env) -> None:
    env = sf_env(fields=False)
    with pytest.raises(ConfigError) as err:
        push_source(env.store, env.cfg, "salesforce")
    message = str(err.value)
    assert "\n" not in message
    assert "Opportunity.LTC_Invoiced_Amount__c (Currency(16, 2))" in message
    assert "Account.LTC_Won_Deals__c (Number(9, 0))" in message and "Setup > Object Manager" in message
    assert not [r for r in env.org.requests if r.startswith("PATCH")]
    dry = push_source(env.store, env.cfg, "salesforce", dry_run=True)  # a preview still works
    assert dry.counts["Opportunity"].to_write > 0 and "lacks the field(s)" in dry.warnings[0]


def test_dry_run_shows_amounts_per_currency_and_writes_nothing(sf_env: Env) -> None:
    env = sf_env()
    report = push_source(env.store, env.cfg, "salesforce", dry_run=True)
    assert not [r for r in env.org.requests if r.startswith("PATCH")]
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for chain in chains_by_deal(env).values():
        expected[chain["currency"]] += chain["open"]
    totals = report.totals()
    assert {ccy: sums["open_balance"] for (obj, ccy), sums in totals.items() if obj == "Opportunity"} == expected
    assert len(expected) > 1  # the world has several currencies
    with env.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(crm_push_state)).scalar() == 0


def test_a_quota_pause_leaves_the_rest_for_the_next_run(sf_env: Env) -> None:
    env = sf_env()
    env.org.daily_limit = env.org.api_used + 5  # describe x2, then three writes at most
    report = push_in_batches_of(env, 10)
    total = sum(c.considered for c in report.counts.values())
    written = sum(c.written for c in report.counts.values())
    assert report.paused and "paused" in report.paused and 0 < written < total
    env.org.daily_limit = 1_000_000
    from connectors.governor import reset_governors

    reset_governors()  # the next run: a fresh reading of the allocation
    again = push_source(env.store, env.cfg, "salesforce")
    assert sum(c.written for c in again.counts.values()) == total - written and not again.paused


def test_a_person_s_later_changes_are_never_overwritten(sf_env: Env) -> None:
    env = sf_env()
    push_source(env.store, env.cfg, "salesforce")
    chains = chains_by_deal(env)
    sid = next(s for s, c in chains.items() if c["exceptions"])
    env.org.update("Opportunity", sid, {"Name": "Renamed by sales", "Amount": Decimal("1.23")})
    # finance resolves the deal's exceptions in the work queue: its status changes
    with env.store.engine.begin() as conn:
        fps = conn.execute(sa.select(recon_exception.c.fingerprint).where(
            recon_exception.c.chain_id == f"salesforce:deal:{sid}")).scalars().all()
    for fp in fps:
        lifecycle.transition(env.store, fp, "resolved", "fixed in the ERP", "finance@example.com")
    report = push_source(env.store, env.cfg, "salesforce")
    assert report.counts["Opportunity"].written == 1
    row = env.org.rows["Opportunity"][sid]
    assert (row["Name"], row["Amount"]) == ("Renamed by sales", Decimal("1.23"))
    assert row["LTC_Exception_Codes__c"] is None and row["LTC_Exception_Link__c"] is None


def test_after_push_crm_the_sync_re_maps_nothing_and_no_exception_changes(sf_env: Env) -> None:
    env = sf_env()
    deal = tables.table_for("deal")
    with env.store.engine.connect() as conn:
        stamps = dict(conn.execute(sa.select(deal.c.id, deal.c.source_updated_at)).all())
        exceptions = set(conn.execute(sa.select(recon_exception.c.fingerprint, recon_exception.c.status)))
    push_source(env.store, env.cfg, "salesforce")
    connector = runtime.build_connector(env.cfg, "salesforce")
    try:
        results = {r.stream: r for r in sync(connector, env.store, streams=["Opportunity", "Account"])}
    finally:
        connector.close()
    assert results["Opportunity"].records > 50 and results["Opportunity"].written == 0
    assert results["Account"].written == 0
    with env.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(raw_pending)).scalar() == 0
    sid = next(iter(chains_by_deal(env)))
    raw = env.store.get_raw("salesforce", "Opportunity", sid)
    assert raw is not None and raw["payload"]["LTC_Status__c"] == env.org.rows["Opportunity"][sid]["LTC_Status__c"]
    assert raw["source_updated_at"] > stamps[f"salesforce:deal:{sid}"]  # refreshed: no completeness gap
    assert results["Opportunity"].message is None
    assert sum(run_mapping(env.store, config=env.cfg).get("salesforce", {}).values()) == 0
    result = run_reconciliation(env.store, env.cfg, env.world.as_of)
    assert result.lifecycle["new"] == result.lifecycle["reopened"] == result.lifecycle["auto_resolved"] == 0
    with env.store.engine.connect() as conn:
        assert dict(conn.execute(sa.select(deal.c.id, deal.c.source_updated_at)).all()) == stamps
        assert set(conn.execute(sa.select(recon_exception.c.fingerprint, recon_exception.c.status))) == exceptions

    # a person's business change after our write is still a change: landed and re-mapped
    env.org.update("Opportunity", sid, {"Amount": Decimal("777.00")})
    connector = runtime.build_connector(env.cfg, "salesforce")
    try:
        again = {r.stream: r for r in sync(connector, env.store, streams=["Opportunity"])}
    finally:
        connector.close()
    assert again["Opportunity"].written == 1
    assert run_mapping(env.store, config=env.cfg)["salesforce"]["mapped"] == 1


def test_past_the_threshold_an_object_goes_as_one_bulk_ingest_job(sf_env: Env) -> None:
    env = sf_env(bulk_write_threshold=20)  # 60 opportunities: a job; 15 accounts: one collection
    opps = sorted(chains_by_deal(env))
    env.org.locked.add(opps[5])
    env.org.validation_rules.append(ValidationRule(
        "Opportunity", lambda r: r["Id"] == opps[7], "Finance fields cannot change in a closed quarter"))
    report = push_source(env.store, env.cfg, "salesforce")
    jobs = [r for r in env.org.requests if r.startswith("POST /services/data/v59.0/jobs/ingest")]
    assert len(jobs) == 1 and len([r for r in env.org.requests if r.startswith(COLLECTION)]) == 1
    failed = {f.record_id: f for f in report.failures}
    assert set(failed) == {opps[5], opps[7]}
    assert failed[opps[5]].code == "UNABLE_TO_LOCK_ROW"
    assert failed[opps[7]].code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert "closed quarter" in failed[opps[7]].message
    # create, upload, close, poll, failed results + login, 2 describes, the accounts' collection
    assert report.requests == 5 + 3 + 1
    chains = chains_by_deal(env)
    for sid in opps[:5]:
        row = env.org.rows["Opportunity"][sid]
        assert row["LTC_Open_Balance__c"] == chains[sid]["open"] and row["LTC_Status__c"] == chains[sid]["status"]
    env.org.locked.clear()
    env.org.validation_rules.clear()
    again = push_source(env.store, env.cfg, "salesforce")
    assert again.counts["Opportunity"].written == 2 and not again.failures  # 2 <= threshold: a collection

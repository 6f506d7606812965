"""run_mapping against the store (SQLite and PostgreSQL): bulk upserts, lineage, tombstones, quarantine."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mapping_fixtures import fixture_records, land

from canonical import tables
from canonical.store import RawRecord, Store
from ltc.app.config import Config, SourceConfig
from mappings.engine import mark_pending, run_mapping


def rows(store: Store, entity: str) -> dict[str, dict[str, Any]]:
    table = tables.table_for(entity)
    with store.engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(sa.select(table))}


def pending(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(tables.raw_pending)
        ).scalar_one())


def open_quarantine(store: Store) -> list[dict[str, Any]]:
    return [q for q in store.quarantined() if q["resolved_at"] is None]


def test_run_mapping_end_to_end(store: Store) -> None:
    land(store, "stripe")
    land(store, "salesforce")
    counts = run_mapping(store)
    assert counts["stripe"]["records"] == 8 and counts["stripe"]["quarantined"] == 1
    assert counts["stripe"]["invoice_line"] == 3
    assert counts["salesforce"]["quarantined"] == 2
    assert pending(store) == 0
    inv = rows(store, "invoice")["stripe:invoice:in_0001"]
    assert inv["total"] == Decimal("12500.50") and inv["currency"] == "USD"
    deal = rows(store, "deal")["salesforce:deal:006000000000001AAA"]
    assert deal["account_id"] == "salesforce:account:001000000000001AAA" and deal["stage"] == "closed_won"
    # types survive the driver-level upsert on both backends
    assert deal["close_date"] == date(2026, 3, 31) and deal["amount"] == Decimal("12500.50")
    assert deal["created_at"] == datetime(2026, 2, 15, 12, 0, tzinfo=UTC)
    assert deal["attributes"]["type"] == "New Business" and deal["deleted_at"] is None
    q = open_quarantine(store)
    assert {(x["system"], x["object"], x["field"]) for x in q} == {
        ("stripe", "charge", "amount"), ("salesforce", "Account", "name"), ("salesforce", "Opportunity", "stage")}
    assert all(x["stage"] == "map" and x["payload"] for x in q)
    # lineage: the invoice lines came from the invoice's raw row
    raw_id = store.get_raw("stripe", "invoice", "in_0001")["id"]  # type: ignore[index]
    with store.engine.connect() as conn:
        linked = {r.canonical_id for r in conn.execute(
            sa.select(tables.lineage.c.canonical_id).where(tables.lineage.c.raw_id == raw_id))}
    assert linked == {"stripe:invoice:in_0001", "stripe:invoice_line:il_0001", "stripe:invoice_line:il_0002"}
    # nothing pending: a second run maps nothing and changes nothing
    assert run_mapping(store) == {}


def test_tombstone_and_resurrection(store: Store) -> None:
    land(store, "stripe")
    run_mapping(store, "stripe")
    inv = next(r for r in fixture_records("stripe") if r.source_id == "in_0001")
    store.commit_page("stripe", "all", [RawRecord("invoice", "in_0001", inv.payload, deleted=True)], None)
    counts = run_mapping(store, "stripe")
    assert counts["stripe"]["tombstoned"] == 3  # the invoice and both lines
    assert rows(store, "invoice")["stripe:invoice:in_0001"]["deleted_at"] is not None
    assert rows(store, "invoice_line")["stripe:invoice_line:il_0002"]["deleted_at"] is not None
    assert rows(store, "invoice")["stripe:invoice:in_0002"]["deleted_at"] is None
    # the record comes back: mapped again, alive
    store.commit_page("stripe", "all", [inv], None)
    run_mapping(store, "stripe")
    assert rows(store, "invoice")["stripe:invoice:in_0001"]["deleted_at"] is None


def test_a_line_removed_from_an_invoice_is_tombstoned(store: Store) -> None:
    land(store, "stripe")
    run_mapping(store, "stripe")
    inv = next(r for r in fixture_records("stripe") if r.source_id == "in_0001")
    payload = copy.deepcopy(dict(inv.payload))
    payload["lines"]["data"] = payload["lines"]["data"][:1]
    store.commit_page("stripe", "all", [RawRecord("invoice", "in_0001", payload)], None)
    run_mapping(store, "stripe")
    lines = rows(store, "invoice_line")
    assert lines["stripe:invoice_line:il_0001"]["deleted_at"] is None
    assert lines["stripe:invoice_line:il_0002"]["deleted_at"] is not None


def test_fixed_record_resolves_its_quarantine_entry(store: Store) -> None:
    land(store, "salesforce")
    run_mapping(store, "salesforce")
    assert len(open_quarantine(store)) == 2
    bad = next(r for r in fixture_records("salesforce") if r.source_id == "001000000000003AAA")
    fixed = dict(bad.payload, Name="Now Named Ltd")
    store.commit_page("salesforce", "all", [RawRecord("Account", bad.source_id, fixed)], None)
    run_mapping(store, "salesforce")
    left = open_quarantine(store)
    assert [(q["object"], q["source_id"]) for q in left] == [("Opportunity", "006000000000003AAA")]
    assert rows(store, "account")["salesforce:account:001000000000003AAA"]["name"] == "Now Named Ltd"
    # re-mapping the same failure does not pile up duplicate open entries
    mark_pending(store, "salesforce")
    run_mapping(store, "salesforce")
    assert len(open_quarantine(store)) == 1


def test_a_version_landed_during_mapping_stays_pending(store: Store) -> None:
    from mappings import engine

    land(store, "camt053")
    real = engine.map_records
    newer = RawRecord("camt053.entry", "STMT-2026-04-10/E1/0",
                      {**fixture_records("camt053")[0].payload, "amount": "2600.00"})

    def racing(mset: Any, records: Any) -> Any:
        out = real(mset, records)
        store.commit_page("camt053", "all", [newer], None)  # the connector lands a new version meanwhile
        return out

    engine.map_records = racing  # type: ignore[assignment]
    try:
        run_mapping(store, "camt053", batch_size=100)
    finally:
        engine.map_records = real  # type: ignore[assignment]
    assert pending(store) == 1
    run_mapping(store, "camt053")
    assert rows(store, "payment")["camt053:payment:STMT-2026-04-10/E1/0"]["amount"] == Decimal("2600.00")


def test_kind_comes_from_config_and_override_adds_a_custom_field(store: Store, tmp_path: Path) -> None:
    override = tmp_path / "crm-extra.yaml"
    override.write_text(
        "objects:\n"
        "  Opportunity:\n"
        "    fields:\n"
        "      attributes.region: Region__c\n"
        "      stage:\n"
        "        from: StageName\n"
        "        map: {Closed Won: closed_won, Negotiation/Review: negotiation, Verbal Yes: negotiation}\n",
        encoding="utf-8",
    )
    land(store, "crm", fixture_records("salesforce"))
    config = Config(sources={"crm": SourceConfig(kind="salesforce", mapping=str(override))})
    counts = run_mapping(store, config=config)
    assert counts["crm"]["quarantined"] == 1  # only the nameless account now
    deals = rows(store, "deal")
    assert deals["crm:deal:006000000000001AAA"]["attributes"] == {
        "region": "AMER", "probability": "100", "type": "New Business", "lead_source": "Web"}
    assert deals["crm:deal:006000000000003AAA"]["stage"] == "negotiation"
    assert deals["crm:deal:006000000000001AAA"]["account_id"] == "crm:account:001000000000001AAA"


def test_unknown_system_without_mapping_is_an_error_naming_it(store: Store) -> None:
    from mappings.spec import MappingError

    land(store, "mystery", [RawRecord("Thing", "1", {"a": 1})])
    with pytest.raises(MappingError, match="mystery"):
        run_mapping(store, "mystery")


def test_objects_without_a_mapping_are_ignored_not_left_pending(store: Store) -> None:
    land(store, "stripe", [RawRecord("event", "evt_1", {"id": "evt_1", "type": "invoice.paid"})])
    counts = run_mapping(store)
    assert counts["stripe"]["ignored"] == 1 and pending(store) == 0


def test_a_deleted_stub_tombstones_instead_of_quarantining(store: Store) -> None:
    land(store, "stripe")
    run_mapping(store, "stripe")
    stub = {"id": "cus_Acme0001", "object": "customer", "deleted": True}
    store.commit_page("stripe", "all", [RawRecord("customer", "cus_Acme0001", stub)], None)
    counts = run_mapping(store, "stripe")
    assert counts["stripe"]["quarantined"] == 0 and counts["stripe"]["tombstoned"] == 1
    acc = rows(store, "account")["stripe:account:cus_Acme0001"]
    assert acc["deleted_at"] is not None and acc["name"] == "Acme Corporation"


def test_an_association_only_change_remaps_its_deal(store: Store) -> None:
    deal = {"id": "9001", "properties": {"dealname": "Renewal", "dealstage": "closedwon", "pipeline": "default",
                                         "amount": "100.00", "closedate": "2026-09-14T00:00:00Z"},
            "createdAt": "2026-09-01T00:00:00Z", "updatedAt": "2026-09-14T00:00:00Z", "archived": False}

    def sweep(company: str) -> RawRecord:
        return RawRecord("associations.deals", "9001", {"id": "9001", "companies": [
            {"id": "5009", "types": [341]}, {"id": company, "types": [5, 341]}], "contacts": [], "line_items": []})

    store.commit_page("hubspot", "deals", [RawRecord("deals", "9001", deal)], None)
    store.commit_page("hubspot", "deal_associations", [sweep("5001")], None)
    run_mapping(store, "hubspot")
    assert rows(store, "deal")["hubspot:deal:9001"]["account_id"] == "hubspot:account:5001"  # primary beats 5009
    assert pending(store) == 0

    store.commit_page("hubspot", "deal_associations", [sweep("5002")], None)  # the deal itself did not change
    counts = run_mapping(store, "hubspot")
    assert counts["hubspot"]["deal"] == 1
    assert rows(store, "deal")["hubspot:deal:9001"]["account_id"] == "hubspot:account:5002"
    assert pending(store) == 0


def test_a_balance_transaction_landed_after_its_charge_gives_the_charge_its_fee(store: Store) -> None:
    charge = {"id": "ch_1", "object": "charge", "amount": 10000, "currency": "eur", "created": 1790000000,
              "status": "succeeded", "balance_transaction": "txn_1", "customer": "cus_1", "amount_refunded": 0}
    store.commit_page("stripe", "charges", [RawRecord("charge", "ch_1", charge)], None)
    run_mapping(store, "stripe")
    assert rows(store, "payment")["stripe:payment:ch_1"]["fee"] is None  # not synced yet

    txn = {"id": "txn_1", "object": "balance_transaction", "amount": 10000, "currency": "eur", "fee": 320,
           "net": 9680, "source": "ch_1", "created": 1790000000, "status": "available", "type": "charge"}
    store.commit_page("stripe", "balance_transactions", [RawRecord("balance_transaction", "txn_1", txn)], None)
    run_mapping(store, "stripe")
    assert rows(store, "payment")["stripe:payment:ch_1"]["fee"] == Decimal("3.20")
    assert pending(store) == 0

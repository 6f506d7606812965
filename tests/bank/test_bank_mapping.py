"""Imported statements (camt.053 and MT940) map to canonical payments with no configuration at all."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from canonical.store import Store
from canonical.tables import table_for
from connectors.statements import import_file
from mappings.engine import run_mapping

FIXTURES = Path(__file__).parent / "fixtures"


def _payments(store: Store) -> dict[str, dict[str, object]]:
    with store.engine.connect() as conn:
        t = table_for("payment")
        rows = conn.execute(sa.select(t).where(t.c.source_system == "bank")).mappings().all()
    return {r["source_id"]: dict(r) for r in rows}


def test_camt053_entries_imported_under_the_default_source_become_payments(store: Store) -> None:
    import_file(store, FIXTURES / "camt053_v02_nov.xml")
    counts = run_mapping(store, config=None)  # no ltc.yaml: `bank` is known to be a statement source
    assert counts["bank"]["mapped"] == 6 and counts["bank"]["quarantined"] == 0
    pays = _payments(store)
    # ASR-1004 is pending (PDNG): not money yet, so no payment; the two debits are refunds
    assert set(pays) == {"ASR-1001", "ASR-1002#1", "ASR-1002#2", "ASR-1002#3", "ASR-1003"}
    assert {k for k, x in pays.items() if x["kind"] == "refund"} == {"ASR-1002#3", "ASR-1003"}
    p = pays["ASR-1002#2"]
    assert p["amount"] == Decimal("70.50") and p["currency"] == "EUR" and p["payer_name"] == "Gamma SARL"
    assert p["kind"] == "payment" and p["attributes"]["bank_transaction_code"]
    assert all(x["source_object"] == "camt053.entry" for x in pays.values())


def test_mt940_entries_use_the_same_mapping(store: Store) -> None:
    import_file(store, FIXTURES / "mt940_nov.sta")
    counts = run_mapping(store, config=None)
    pays = _payments(store)
    assert counts["bank"]["mapped"] == len(pays) > 0 and counts["bank"]["quarantined"] == 0
    assert {x["source_object"] for x in pays.values()} == {"mt940.entry"}
    assert all(isinstance(x["amount"], Decimal) and x["amount"] > 0 for x in pays.values())


def test_a_source_without_a_mapping_waits_and_does_not_stop_the_others(store: Store) -> None:
    import_file(store, FIXTURES / "camt053_v02_nov.xml", source="mybank")  # a name that is no kind
    import_file(store, FIXTURES / "camt053_v04_single.xml")
    counts = run_mapping(store, config=None)
    assert counts["mybank"] == {"waiting": 7}  # 6 entries + 1 statement stay pending, nothing lost
    assert counts["bank"]["mapped"] > 0

"""Imported statements (camt.053 and MT940) map to canonical payments with no configuration at all."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from canonical import tables as ct
from canonical.store import Store
from canonical.tables import table_for
from connectors.statements import import_file
from ltc.app.config import Config, SourceConfig
from mappings.engine import run_mapping
from sandbox.camt053 import Entry, Statement, Tx, render

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


def test_imported_statement_entries_map_to_payments(tmp_path: Path) -> None:
    entries = [
        Entry(Decimal("120.50"), "CRDT", date(2026, 10, 3), "ASR-1",
              details=[Tx(end_to_end_id="E2E-1", debtor_name="ACME GMBH", debtor_iban="DE02120300000000202051",
                          creditor_reference="RF18539007547034")]),
        Entry(Decimal("80.00"), "CRDT", date(2026, 10, 4), "ASR-2",
              details=[Tx(debtor_name="Initech Ltd", remittance="Payment INV-2026-0042 thanks")]),
        Entry(Decimal("15.00"), "DBIT", date(2026, 10, 5), "ASR-3",
              details=[Tx(creditor_name="Refund Customer", remittance="refund")]),
        Entry(Decimal("9.99"), "CRDT", date(2026, 10, 6), "ASR-4", status="PDNG",
              details=[Tx(debtor_name="Pending Payer")]),
    ]
    stmt = Statement("STMT-9", "DE89370400440532013000", "EUR", Decimal("0.00"), date(2026, 10, 1), entries)
    path = tmp_path / "s.xml"
    path.write_bytes(render([stmt], message_id="MSG-9"))
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    import_file(store, path, source="bank")
    counts = run_mapping(store, config=Config(sources={"bank": SourceConfig(kind="camt053")}))
    assert counts["bank"]["quarantined"] == 0 and counts["bank"]["payment"] == 3  # the pending entry is no money yet
    pay = ct.table_for("payment")
    with store.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(pay))}
    assert set(rows) == {"bank:payment:ASR-1", "bank:payment:ASR-2", "bank:payment:ASR-3"}
    p1, p2, p3 = rows["bank:payment:ASR-1"], rows["bank:payment:ASR-2"], rows["bank:payment:ASR-3"]
    assert (p1.kind, Decimal(p1.amount), p1.currency, p1.payment_date) == ("payment", Decimal("120.50"), "EUR",
                                                                          date(2026, 10, 3))
    assert p1.payer_name == "ACME GMBH" and p1.invoice_ref == "RF18539007547034" and p1.reference == "E2E-1"
    assert p1.source_object == "camt053.entry" and p1.settlement_ref == "ASR-1"
    assert p2.invoice_ref == "INV-2026-0042" and p2.remittance == "Payment INV-2026-0042 thanks"
    assert p3.kind == "refund" and p3.payer_name == "Refund Customer" and Decimal(p3.amount) == Decimal("15.00")

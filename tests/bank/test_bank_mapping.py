"""What `ltc import-statement` lands (object camt053.entry) maps to canonical payments."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from canonical import tables as ct
from canonical.store import Store
from connectors.statements import import_file
from ltc.config import Config, SourceConfig
from mappings.engine import run_mapping
from sandbox.camt053 import Entry, Statement, Tx, render


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

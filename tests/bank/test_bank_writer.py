"""sandbox.camt053 writer → connectors.camt053 parser round trip."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.camt053 import parse_camt053
from sandbox.camt053 import NAMESPACE, Entry, Statement, Tx, render

CREATED = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


def _statement(**overrides: object) -> Statement:
    base = Statement(
        id="STMT-W-1", account_iban="DE89370400440532013000", currency="EUR",
        opening_balance=Decimal("1000.00"), opening_date=date(2026, 11, 1),
        entries=[
            Entry(Decimal("1190.00"), "CRDT", date(2026, 11, 1), "W-1", entry_reference="1",
                  details=[Tx(end_to_end_id="E2E-1", debtor_name="ACME GmbH", debtor_iban="DE02120300000000202051",
                              remittance=["Invoice INV-2026-0042", "customer 10077"], additional_info="SEPA")]),
            Entry(Decimal("100.50"), "CRDT", date(2026, 11, 1), "W-2", value_date=date(2026, 11, 2), details=[
                Tx(amount=Decimal("40.00"), creditor_reference="RF18539007547034", debtor_name="Beta Ltd"),
                Tx(amount=Decimal("60.50"), remittance="INV-2026-0043", referred_documents=["INV-2026-0043"]),
            ]),
            Entry(Decimal("60.00"), "DBIT", date(2026, 11, 1), "W-3", bank_tx_code="FEES",
                  additional_info="Account fee"),
            Entry(Decimal("5.00"), "CRDT", date(2026, 11, 1), "W-4", status="PDNG"),
        ],
    )
    for key, value in overrides.items():
        setattr(base, key, value)
    return base


def test_round_trip_keeps_every_field() -> None:
    xml = render([_statement()], message_id="MSG-W", created_at=CREATED)
    assert xml.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert NAMESPACE.encode() in xml
    [stmt] = parse_camt053(xml, "w.xml")
    assert stmt.error is None
    got = dict(stmt.entries)
    assert list(got) == ["W-1", "W-2#1", "W-2#2", "W-3", "W-4"]
    e1 = got["W-1"]
    assert (e1["amount"], e1["credit_debit"], e1["end_to_end_id"], e1["debtor_name"], e1["debtor_iban"]) == (
        Decimal("1190.00"), "CRDT", "E2E-1", "ACME GmbH", "DE02120300000000202051")
    assert e1["remittance_unstructured"] == "Invoice INV-2026-0042 customer 10077"
    assert e1["additional_info"] == "SEPA" and e1["bank_tx_code"] == "PMNT-RCDT-ESCT"
    assert got["W-2#1"]["creditor_reference"] == "RF18539007547034"
    assert got["W-2#2"]["referred_documents"] == ["INV-2026-0043"]
    assert got["W-2#2"]["value_date"] == "2026-11-02" and got["W-2#2"]["amount"] == Decimal("60.50")
    assert got["W-3"]["bank_tx_code"] == "FEES" and got["W-3"]["additional_info"] == "Account fee"
    assert got["W-4"]["status"] == "PDNG"
    closing = next(b for b in stmt.payload["balances"] if b["type"] == "CLBD")
    assert closing["amount"] == Decimal("2230.50")  # pending entry not booked


def test_explicit_wrong_closing_balance_fails_the_gate() -> None:
    xml = render([_statement(closing_balance=Decimal("2200.50"))], message_id="MSG-W", created_at=CREATED)
    [stmt] = parse_camt053(xml, "w.xml")
    assert stmt.error is not None and stmt.error.endswith("(difference 30.00 EUR)")


def test_long_remittance_is_wrapped_at_140_and_joined_back() -> None:
    text = "Payment for invoices " + ", ".join(f"INV-2026-{n:04d}" for n in range(20))
    assert len(text) > 140
    s = _statement(entries=[Entry(Decimal("1"), "CRDT", date(2026, 11, 1), "L-1", details=[Tx(remittance=text)])])
    [stmt] = parse_camt053(render([s], message_id="M", created_at=CREATED), "w.xml")
    assert stmt.entries[0][1]["remittance_unstructured"] == text


def test_writer_refuses_what_the_schema_forbids() -> None:
    with pytest.raises(ValueError, match="AcctSvcrRef must be 1 to 35 characters"):
        render([_statement(entries=[Entry(Decimal("1"), "CRDT", date(2026, 11, 1), "X" * 36)])], message_id="M")
    with pytest.raises(ValueError, match="batch entry needs an amount"):
        render([_statement(entries=[Entry(Decimal("1"), "CRDT", date(2026, 11, 1), "B", details=[Tx(), Tx()])])],
               message_id="M")
    with pytest.raises(ValueError, match="credit_debit must be CRDT or DBIT"):
        render([_statement(entries=[Entry(Decimal("1"), "C", date(2026, 11, 1), "B")])], message_id="M")


def test_non_iban_account_is_written_as_other_id() -> None:
    xml = render([_statement(account_iban="US-ACC-000123", currency="USD", entries=[])], message_id="M")
    assert b"<Othr>" in xml
    [stmt] = parse_camt053(xml, "w.xml")
    assert stmt.payload["account_iban"] == "US-ACC-000123" and stmt.error is None


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2)
txs = st.lists(amounts, min_size=1, max_size=4)
entries = st.lists(st.tuples(st.sampled_from(["CRDT", "DBIT"]), txs, st.integers(0, 5)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(opening=st.decimals(min_value=Decimal("-5000"), max_value=Decimal("5000"), places=2),
       currency=st.sampled_from(["EUR", "JPY", "KWD", "USD"]), spec=entries)
def test_any_written_statement_parses_back_and_balances(opening: Decimal, currency: str, spec: list) -> None:
    day = date(2026, 11, 1)
    quantum = {"JPY": Decimal(1), "KWD": Decimal("0.001")}.get(currency, Decimal("0.01"))
    written = []
    for i, (cdi, parts, offset) in enumerate(spec):
        parts = [p.quantize(quantum) or quantum for p in parts]
        details = [Tx(amount=p, end_to_end_id=f"E-{i}-{j}") for j, p in enumerate(parts)] if len(parts) > 1 else []
        written.append(Entry(sum(parts, Decimal(0)), cdi, day + timedelta(days=offset), f"R-{i}", details=details))
    s = Statement("S", "DE89370400440532013000", currency, opening.quantize(quantum), day, written)
    [stmt] = parse_camt053(render([s], message_id="M", created_at=CREATED), "p.xml")
    assert stmt.error is None
    parsed_total = sum((e["signed_amount"] for _, e in stmt.entries), Decimal(0))
    assert parsed_total == s.computed_closing() - s.opening_balance
    assert len(stmt.entries) == sum(max(len(e.details), 1) for e in written)
    assert {e["currency"] for _, e in stmt.entries} <= {currency}

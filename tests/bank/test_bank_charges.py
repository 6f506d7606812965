"""Bank charges on camt.053 credits: ``AmtDtls/InstdAmt`` (before charges) and ``Chrgs/Rcrd`` (with
``ChrgInclInd``) give the gross amount and the fee of the canonical payment (gross = booked + fee)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from canonical import tables as ct
from canonical.store import Store
from connectors.camt053 import parse_camt053
from connectors.statements import import_file
from ltc.app.config import Config, SourceConfig
from mappings.engine import run_mapping
from sandbox.camt053 import Entry, Statement, Tx, render

D = Decimal


def _payloads(entries: list[Entry]) -> dict[str, dict]:
    stmt = Statement("STMT-C", "DE89370400440532013000", "EUR", D("0.00"), date(2026, 10, 1), entries)
    (parsed,) = parse_camt053(render([stmt], message_id="MSG-C"), "charges.xml")
    assert parsed.error is None
    return dict(parsed.entries)


def _credit(ref: str, amount: str, **tx: object) -> Entry:
    return Entry(D(amount), "CRDT", date(2026, 10, 2), ref, details=[Tx(debtor_name="ACME GmbH", **tx)])  # type: ignore[arg-type]


def test_included_charge_record_gives_the_gross_before_charges() -> None:
    got = _payloads([_credit("A", "992.50", instructed=(D("1000.00"), "EUR"), charges=D("7.50"))])["A"]
    assert got["amount"] == D("992.50")  # booked: what reached the account
    assert (got["charges"], got["gross_amount"]) == (D("7.50"), D("1000.00"))
    assert (got["instructed_amount"], got["instructed_currency"]) == (D("1000.00"), "EUR")


def test_charge_record_without_instructed_amount_is_enough() -> None:
    got = _payloads([_credit("A", "988.00", charges=D("12.00"))])["A"]
    assert (got["charges"], got["gross_amount"]) == (D("12.00"), D("1000.00"))


def test_charges_booked_separately_do_not_change_the_amount() -> None:
    # ChrgInclInd false: the charge is an entry of its own, the credit is the full amount
    got = _payloads([_credit("A", "1000.00", charges=D("12.00"), charges_included=False)])["A"]
    assert got["charges"] is None and got["gross_amount"] == D("1000.00")


def test_unflagged_charge_counts_only_when_the_instructed_amount_confirms_it() -> None:
    got = _payloads([
        _credit("A", "985.00", instructed=(D("1000.00"), "EUR"), charges=D("15.00"), charges_included=None),
        _credit("B", "985.00", charges=D("15.00"), charges_included=None),
    ])
    assert (got["A"]["charges"], got["A"]["gross_amount"]) == (D("15.00"), D("1000.00"))
    assert got["B"]["charges"] is None and got["B"]["gross_amount"] == D("985.00")


def test_instructed_amount_alone_in_the_booked_currency_is_gross_before_charges() -> None:
    got = _payloads([_credit("A", "975.00", instructed=(D("1000.00"), "EUR"))])["A"]
    assert (got["charges"], got["gross_amount"]) == (D("25.00"), D("1000.00"))


def test_foreign_instructed_amount_keeps_the_booked_currency_and_its_charges() -> None:
    # USD instructed, EUR credited net of EUR 7.50: the gross stays in EUR (the engine converts it)
    got = _payloads([_credit("A", "918.24", instructed=(D("1000.00"), "USD"), charges=D("7.50"))])["A"]
    assert got["currency"] == "EUR" and got["instructed_currency"] == "USD"
    assert (got["charges"], got["gross_amount"]) == (D("7.50"), D("925.74"))


def test_plain_credit_has_no_charges() -> None:
    got = _payloads([_credit("A", "1000.00")])["A"]
    assert got["charges"] is None and got["gross_amount"] == D("1000.00") and got["instructed_amount"] is None


def test_batch_details_carry_their_own_charges() -> None:
    entry = Entry(D("1980.00"), "CRDT", date(2026, 10, 2), "B", details=[
        Tx(amount=D("992.50"), debtor_name="ACME GmbH", instructed=(D("1000.00"), "EUR"), charges=D("7.50")),
        Tx(amount=D("987.50"), debtor_name="Initech Ltd", charges=D("12.50"))])
    got = _payloads([entry])
    assert [got[k]["gross_amount"] for k in ("B#1", "B#2")] == [D("1000.00"), D("1000.00")]
    assert [got[k]["charges"] for k in ("B#1", "B#2")] == [D("7.50"), D("12.50")]


def test_v02_charges_without_records_are_read() -> None:
    # camt.053.001.02 has no Rcrd level and no ChrgInclInd: Chrgs/Amt, counted when InstdAmt confirms it
    xml = render([Statement("S", "DE89370400440532013000", "EUR", D("0.00"), date(2026, 10, 1), [
        _credit("A", "990.00", instructed=(D("1000.00"), "EUR"), charges=D("10.00"), charges_included=None)])],
        message_id="M").decode()
    xml = xml.replace("camt.053.001.08", "camt.053.001.02").replace("<Rcrd>", "").replace("</Rcrd>", "")
    (parsed,) = parse_camt053(xml.encode(), "v02.xml")
    assert parsed.error is None
    got = dict(parsed.entries)["A"]
    assert (got["charges"], got["gross_amount"]) == (D("10.00"), D("1000.00"))


def test_charged_credit_maps_to_a_gross_payment_with_the_fee(tmp_path: Path) -> None:
    stmt = Statement("STMT-C", "DE89370400440532013000", "EUR", D("0.00"), date(2026, 10, 1), [
        _credit("ASR-1", "992.50", instructed=(D("1000.00"), "EUR"), charges=D("7.50"), remittance="INV-1"),
        _credit("ASR-2", "500.00", remittance="INV-2")])
    path = tmp_path / "s.xml"
    path.write_bytes(render([stmt], message_id="MSG-C"))
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    import_file(store, path, source="bank")
    counts = run_mapping(store, config=Config(sources={"bank": SourceConfig(kind="camt053")}))
    assert counts["bank"]["quarantined"] == 0
    pay = ct.table_for("payment")
    with store.engine.connect() as conn:
        rows = {r.source_id: r for r in conn.execute(sa.select(pay))}
    charged, plain = rows["ASR-1"], rows["ASR-2"]
    assert (D(charged.amount), D(charged.fee)) == (D("1000.00"), D("7.50"))
    assert D(str(charged.attributes["booked_amount"])) == D("992.50")
    assert (D(plain.amount), plain.fee) == (D("500.00"), None)

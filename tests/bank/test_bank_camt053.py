"""camt.053 parsing: versions, batches, remittance, the balance gate, and bad files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from canonical.errors import InputError
from connectors.camt053 import parse_camt053
from connectors.statements import ParsedStatement, detect_format

FIXTURES = Path(__file__).parent / "fixtures"
REQUIRED_KEYS = {
    "statement_id", "account_iban", "currency", "amount", "credit_debit", "booking_date", "value_date",
    "status", "end_to_end_id", "account_servicer_ref", "debtor_name", "debtor_iban", "creditor_name",
    "remittance_unstructured", "creditor_reference", "bank_tx_code", "additional_info",
}


def parse(name: str) -> list[ParsedStatement]:
    return parse_camt053((FIXTURES / name).read_bytes(), name)


def entries(stmt: ParsedStatement) -> dict[str, dict]:
    return dict(stmt.entries)


def test_v02_statement_entries_batch_and_remittance() -> None:
    good, _ = parse("camt053_v02_nov.xml")
    assert good.error is None and good.statement_id == "STMT-2026-11-01"
    assert good.source_id == "DE89370400440532013000:STMT-2026-11-01"
    got = entries(good)
    assert list(got) == ["ASR-1001", "ASR-1002#1", "ASR-1002#2", "ASR-1002#3", "ASR-1003", "ASR-1004"]
    for payload in got.values():
        assert payload.keys() >= REQUIRED_KEYS
        assert isinstance(payload["amount"], Decimal) and payload["amount"] >= 0
    single = got["ASR-1001"]
    assert single["amount"] == Decimal("1190.00") and single["credit_debit"] == "CRDT"
    assert single["currency"] == "EUR" and single["account_iban"] == "DE89370400440532013000"
    assert (single["booking_date"], single["value_date"]) == ("2026-11-01", "2026-11-01")
    assert single["end_to_end_id"] == "E2E-ACME-7781"
    assert single["debtor_name"] == "ACME GmbH" and single["debtor_iban"] == "DE02120300000000202051"
    assert single["creditor_name"] == "Example Software AG"
    assert single["remittance_unstructured"] == "Invoice INV-2026-0042 customer 10077"
    assert single["bank_tx_code"] == "PMNT-RCDT-ESCT"
    assert single["additional_info"] == "SEPA Credit Transfer"
    # Batch: one record per TxDtls, amounts of the details, the entry amount kept alongside.
    b1, b2, b3 = got["ASR-1002#1"], got["ASR-1002#2"], got["ASR-1002#3"]
    assert [b["amount"] for b in (b1, b2, b3)] == [Decimal("40.00"), Decimal("70.50"), Decimal("10.00")]
    assert [b["credit_debit"] for b in (b1, b2, b3)] == ["CRDT", "CRDT", "DBIT"]
    assert {b["entry_amount"] for b in (b1, b2, b3)} == {Decimal("100.50")}
    assert [(b["batch_index"], b["batch_size"]) for b in (b1, b2, b3)] == [(1, 3), (2, 3), (3, 3)]
    assert b1["creditor_reference"] == "RF18539007547034" and b1["remittance_unstructured"] is None
    assert b1["end_to_end_id"] is None  # NOTPROVIDED
    assert b2["remittance_unstructured"] == "INV-2026-0043" and b2["creditor_reference"] is None
    fee = got["ASR-1003"]
    assert fee["credit_debit"] == "DBIT" and fee["signed_amount"] == Decimal("-60.00")
    assert fee["bank_tx_code"] == "FEES" and fee["additional_info"] == "Account maintenance fee November"
    assert got["ASR-1004"]["status"] == "PDNG"  # landed, but not in the booked balance (gate passed)
    assert [b["type"] for b in good.payload["balances"]] == ["OPBD", "CLBD", "CLAV"]


def test_failing_statement_is_rejected_whole_with_the_difference() -> None:
    _, bad = parse("camt053_v02_nov.xml")
    assert bad.entries == []
    assert bad.error == (
        "statement STMT-2026-11-02 in camt053_v02_nov.xml: opening 2230.50 EUR + entries 250.00 EUR = "
        "2480.50 EUR but closing balance says 2430.50 EUR (difference 50.00 EUR)"
    )


def test_v08_two_currencies_debit_balance_no_servicer_ref() -> None:
    usd, chf = parse("camt053_v08_multi.xml")
    assert usd.error is None and chf.error is None
    [(usd_id, usd_entry)] = usd.entries
    assert usd_id.startswith("h:")  # no AcctSvcrRef: stable hash
    assert usd_entry["currency"] == "USD" and usd_entry["amount"] == Decimal("5000.25")
    assert usd_entry["booking_date"] == "2026-11-04"  # from BookgDt/DtTm
    assert usd_entry["debtor_name"] == "Delta Corp" and usd_entry["debtor_iban"] == "998877"  # Pty/Nm, Othr/Id
    assert usd_entry["creditor_reference"] == "RF71INVUS0007"
    assert usd_entry["referred_documents"] == ["INV-US-0007"]
    assert usd_entry["status"] == "BOOK"  # Sts/Cd
    assert usd.payload["account_iban"] == "US-ACC-000123"
    assert usd.payload["balances"][0] == {"type": "PRCD", "currency": "USD", "amount": Decimal("-50.00"),
                                          "date": "2026-11-03"}
    [(_, chf_entry)] = chf.entries
    assert chf_entry["reversal"] is True and chf_entry["credit_debit"] == "DBIT"
    assert chf_entry["creditor_name"] == "Epsilon AG" and chf_entry["creditor_iban"] == "CH5604835012345678009"
    assert chf.payload["currency"] == "CHF"  # from the balances when Acct/Ccy is absent
    again = parse("camt053_v08_multi.xml")
    assert [s.entries[0][0] for s in again] == [usd_id, chf.entries[0][0]]  # stable across parses


def test_v04_namespace() -> None:
    [stmt] = parse("camt053_v04_single.xml")
    assert stmt.error is None
    assert dict(stmt.entries)["GB-REF-1"]["amount"] == Decimal("12.34")


def test_malformed_xml_names_file_and_line() -> None:
    with pytest.raises(InputError) as err:
        parse("malformed.xml")
    assert str(err.value) == "malformed.xml:7: not well-formed XML (column 6): mismatched tag"


def _doc(stmt_body: str, ns: str = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08") -> bytes:
    return (f'<Document xmlns="{ns}"><BkToCstmrStmt><GrpHdr><MsgId>M</MsgId></GrpHdr>'
            f"<Stmt>{stmt_body}</Stmt></BkToCstmrStmt></Document>").encode()


def _bal(code: str, amount: str, cdi: str = "CRDT", ccy: str = "EUR") -> str:
    return (f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy=\"{ccy}\">{amount}</Amt>"
            f"<CdtDbtInd>{cdi}</CdtDbtInd><Dt><Dt>2026-11-01</Dt></Dt></Bal>")


def _ntry(amount: str, cdi: str = "CRDT", ref: str | None = "R1", details: str = "", ccy: str = "EUR") -> str:
    ref_el = f"<AcctSvcrRef>{ref}</AcctSvcrRef>" if ref else ""
    return (f"<Ntry><Amt Ccy=\"{ccy}\">{amount}</Amt><CdtDbtInd>{cdi}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
            f"<BookgDt><Dt>2026-11-01</Dt></BookgDt>{ref_el}{details}</Ntry>")


HEAD = "<Id>S1</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>"


def test_debit_balances_and_gate_in_signed_arithmetic() -> None:
    body = HEAD + _bal("OPBD", "100.00", "DBIT") + _bal("CLBD", "20.00", "DBIT") + _ntry("80.00")
    [stmt] = parse_camt053(_doc(body), "x.xml")
    assert stmt.error is None
    body = HEAD + _bal("OPBD", "100.00", "DBIT") + _bal("CLBD", "20.00", "CRDT") + _ntry("80.00")
    [stmt] = parse_camt053(_doc(body), "x.xml")
    assert stmt.error == ("statement S1 in x.xml: opening -100.00 EUR + entries 80.00 EUR = -20.00 EUR but "
                          "closing balance says 20.00 EUR (difference -40.00 EUR)")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (HEAD + _bal("CLBD", "0"), "no opening booked balance (OPBD/PRCD or :60F:) in EUR"),
        (HEAD + _bal("OPBD", "0"), "no closing booked balance (CLBD or :62F:) in EUR"),
        (HEAD + _bal("OPBD", "0") + _bal("CLBD", "0") + _ntry("1", ccy="USD"),
         "no opening booked balance (OPBD/PRCD or :60F:) in USD"),
        (HEAD + _bal("OPBD", "0") + _bal("CLBD", "1") + _ntry("1,00"),
         "entry 1 (R1): amount '1,00' is not a decimal number"),
        (HEAD + _bal("OPBD", "0") + _bal("CLBD", "1") + _ntry("1", ccy="EURO"), "entry 1 (R1): unknown currency 'EURO'"),
        (HEAD + _bal("OPBD", "0") + _bal("CLBD", "1") + _ntry("1", cdi="CR"),
         "entry 1 (R1): CdtDbtInd must be CRDT or DBIT, got 'CR'"),
        (HEAD + _bal("OPBD", "0") + _bal("CLBD", "3") + _ntry(
            "3", details="<NtryDtls><TxDtls><Amt Ccy=\"EUR\">1</Amt></TxDtls><TxDtls><Amt Ccy=\"EUR\">1</Amt>"
            "</TxDtls></NtryDtls>"), "entry 1 (R1): batch details sum to 2 EUR but the entry books 3 EUR"),
        (HEAD + _bal("OPBD", "0") + _bal("CLBD", "2") + _ntry(
            "2", details="<NtryDtls><TxDtls><Amt Ccy=\"EUR\">1</Amt></TxDtls><TxDtls/></NtryDtls>"),
         "entry 1 (R1): batch detail 2 of 2 has no amount"),
    ],
)
def test_unreadable_statement_parts_reject_the_statement(body: str, message: str) -> None:
    [stmt] = parse_camt053(_doc(body), "x.xml")
    assert stmt.error == f"statement S1 in x.xml: {message}"
    assert stmt.entries == []


def test_repeated_reference_in_one_statement_keeps_both_entries() -> None:
    body = HEAD + _bal("OPBD", "0") + _bal("CLBD", "3") + _ntry("1", ref="DUP") + _ntry("2", ref="DUP")
    [stmt] = parse_camt053(_doc(body), "x.xml")
    assert [sid for sid, _ in stmt.entries] == ["DUP", "DUP~2"]


def test_ustrd_hard_wrap_at_140_is_joined_without_space() -> None:
    first = "A" * 132 + "INV-2026"  # exactly 140 characters, the invoice number split by the bank
    tx = f"<NtryDtls><TxDtls><RmtInf><Ustrd>{first}</Ustrd><Ustrd>-0099 thanks</Ustrd></RmtInf></TxDtls></NtryDtls>"
    body = HEAD + _bal("OPBD", "0") + _bal("CLBD", "1") + _ntry("1", details=tx)
    [stmt] = parse_camt053(_doc(body), "x.xml")
    assert stmt.entries[0][1]["remittance_unstructured"] == "A" * 132 + "INV-2026-0099 thanks"


def test_entity_declarations_are_refused() -> None:
    evil = (b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x "boom">]>'
            b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>&x;</BkToCstmrStmt></Document>')
    with pytest.raises(InputError, match=r"^evil.xml: refused unsafe XML"):
        parse_camt053(evil, "evil.xml")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrNtfctn/></Document>',
         "n.xml: not a camt.053 document (root <Document>, namespace 'urn:iso:std:iso:20022:tech:xsd:camt.054.001.08'); "
         "expected Document/BkToCstmrStmt"),
        (b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.052.001.08"><BkToCstmrStmt/></Document>',
         "n.xml: namespace 'urn:iso:std:iso:20022:tech:xsd:camt.052.001.08' is not camt.053 "
         "(urn:iso:std:iso:20022:tech:xsd:camt.053.001.NN)"),
        (b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt/></Document>',
         "n.xml: camt.053 document has no statement (BkToCstmrStmt/Stmt)"),
    ],
)
def test_not_a_camt053_statement_is_one_line(data: bytes, message: str) -> None:
    with pytest.raises(InputError) as err:
        parse_camt053(data, "n.xml")
    assert str(err.value) == message


def test_format_detection() -> None:
    assert detect_format(b"\xef\xbb\xbf  <?xml ?>", "a") == "camt053"
    assert detect_format((FIXTURES / "mt940_nov.sta").read_bytes(), "b") == "mt940"
    with pytest.raises(InputError, match=r"^c.csv: neither a camt.053 XML document nor an MT940"):
        detect_format(b"date,amount\n2026-01-01,1\n", "c.csv")


@pytest.mark.parametrize("version", ["001.03", "001.06", "001.10", "001.11", "001.13"])
def test_later_and_earlier_namespaces_read_the_same(version: str) -> None:
    data = (FIXTURES / "camt053_v08_multi.xml").read_bytes().replace(b"camt.053.001.08", f"camt.053.{version}".encode())
    assert b"camt.053.001.08" not in data
    statements = parse_camt053(data, "v.xml")
    reference = parse("camt053_v08_multi.xml")
    assert [(s.statement_id, s.error, s.entries) for s in statements] == [
        (s.statement_id, s.error, s.entries) for s in reference
    ]


def test_multi_currency_account_gates_each_currency() -> None:
    body = (HEAD + _bal("OPBD", "10.00") + _bal("OPBD", "5.00", ccy="USD") + _bal("CLBD", "12.00")
            + _bal("CLBD", "1.00", "DBIT", ccy="USD") + _ntry("2.00", ref="E1") + _ntry("6.00", "DBIT", ref="U1", ccy="USD"))
    [stmt] = parse_camt053(_doc(body), "x.xml")
    assert stmt.error is None
    assert {sid: (e["currency"], e["signed_amount"]) for sid, e in stmt.entries} == {
        "E1": ("EUR", Decimal("2.00")), "U1": ("USD", Decimal("-6.00"))}
    body = body.replace('<Amt Ccy="USD">1.00</Amt>', '<Amt Ccy="USD">1.50</Amt>')
    [stmt] = parse_camt053(_doc(body), "x.xml")
    assert stmt.error == ("statement S1 in x.xml: opening 5.00 USD + entries -6.00 USD = -1.00 USD but closing "
                          "balance says -1.50 USD (difference 0.50 USD)")


BOUND = "is beyond the sane bound of 1,000,000,000,000,000 for this currency (a corrupt or unit-mixed value?)"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # 40 significant digits in an entry: the "does not balance" message once raised decimal.InvalidOperation
        (HEAD + _bal("OPBD", "0") + _bal("CLBD", "1") + _ntry("99999999999999999999999999999999999999.99"),
         f"entry 1 (R1): amount 99999999999999999999999999999999999999.99 EUR {BOUND}"),
        (HEAD + _bal("OPBD", "1e400") + _bal("CLBD", "1"), f"balance 1 (OPBD): amount 1E+400 EUR {BOUND}"),
        (HEAD + _bal("OPBD", "0") + _bal("CLBD", "1") + _ntry("1e-400"),
         "entry 1 (R1): amount 1E-400 EUR has more than 12 decimal places (a corrupt value?)"),
        (HEAD + _bal("OPBD", "0") + _bal("CLBD", "1") + _ntry(
            "1", details="<NtryDtls><TxDtls><AmtDtls><InstdAmt><Amt Ccy=\"EUR\">1e999999</Amt></InstdAmt></AmtDtls>"
            "</TxDtls></NtryDtls>"), f"entry 1 (R1) instructed amount: amount 1E+999999 EUR {BOUND}"),
    ],
)
def test_absurd_amounts_reject_the_statement_with_one_line(body: str, message: str) -> None:
    [stmt] = parse_camt053(_doc(body), "x.xml")
    assert stmt.error == f"statement S1 in x.xml: {message}"
    assert stmt.entries == []


def test_balance_gate_sums_are_exact_at_the_sane_bound() -> None:
    # 18 digits and 12 decimal places: the default context (28 digits) rounded the sum to the closing balance
    body = (HEAD + _bal("OPBD", "100000000000000000", ccy="VND") + _bal("CLBD", "100000000000000000", ccy="VND")
            + _ntry("0.000000000001", ccy="VND"))
    [stmt] = parse_camt053(_doc(body), "x.xml")
    assert stmt.error == ("statement S1 in x.xml: opening 100000000000000000 VND + entries 0.000000000001 VND = "
                          "100000000000000000.000000000001 VND but closing balance says 100000000000000000 VND "
                          "(difference 0.000000000001 VND)")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (HEAD + _bal("OPBD", "0") + _bal("CLBD", "1") + _ntry("1", ref="R" * 256),
         f"entry 1: reference {'R' * 80!r}: longer than 255 characters"),
        (HEAD.replace("DE89370400440532013000", "DE" + "9" * 300) + _bal("OPBD", "0") + _bal("CLBD", "0"),
         f"statement id {('DE' + '9' * 300)[:80]!r}: longer than 255 characters"),
    ],
)
def test_an_id_that_cannot_be_a_key_rejects_the_statement(body: str, message: str) -> None:
    [stmt] = parse_camt053(_doc(body), "x.xml")
    assert stmt.error == f"statement S1 in x.xml: {message}"
    assert stmt.entries == []

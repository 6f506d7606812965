"""MT940 through the mt-940 package, mapped into the camt.053 entry shape, with the same gate."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from canonical.errors import InputError
from connectors.mt940 import parse_mt940

FIXTURES = Path(__file__).parent / "fixtures"


def test_fixture_maps_to_the_entry_shape_and_gates_each_statement() -> None:
    good, bad = parse_mt940((FIXTURES / "mt940_nov.sta").read_bytes(), "mt940_nov.sta")
    assert good.error is None and good.statement_id == "STARTUMS/00042"
    assert good.source_id == "DE89370400440532013000:STARTUMS/00042:2026-11-01"
    (credit_id, credit), (fee_id, fee) = good.entries
    assert credit_id == "BREF-0001"
    assert credit["amount"] == Decimal("1190.00") and credit["currency"] == "EUR"
    assert credit["credit_debit"] == "CRDT" and credit["status"] == "BOOK"
    assert credit["end_to_end_id"] == "E2E-ACME-7781"
    assert credit["remittance_unstructured"] == "Invoice INV-2026-0042"
    assert credit["debtor_name"] == "ACME GmbH" and credit["debtor_iban"] == "DE02120300000000202051"
    assert credit["creditor_name"] is None
    assert (credit["booking_date"], credit["value_date"]) == ("2026-11-01", "2026-11-01")
    assert credit["bank_tx_code"] == "NTRF" and credit["account_servicer_ref"] == "BREF-0001"
    assert credit["entry_reference"] is None  # NONREF
    assert fee_id.startswith("h:")  # no bank reference: a stable content hash
    assert fee["credit_debit"] == "DBIT" and fee["signed_amount"] == Decimal("-60.00")
    assert fee["remittance_unstructured"] == "Account maintenance fee"
    assert bad.entries == []
    assert bad.error == (
        "statement STARTUMS/00043 in mt940_nov.sta: opening 2130.00 EUR + entries 100.00 EUR = 2230.00 EUR "
        "but closing balance says 2200.00 EUR (difference 30.00 EUR)"
    )
    again = parse_mt940((FIXTURES / "mt940_nov.sta").read_bytes(), "mt940_nov.sta")
    assert [sid for sid, _ in again[0].entries] == [credit_id, fee_id]


def _stmt(lines: str, opening: str = "C261101EUR100,00", closing: str = "C261101EUR100,00") -> bytes:
    return (f":20:REF\n:25:NL91ABNA0417164300\n:28C:7/1\n:60F:{opening}\n{lines}:62F:{closing}\n").encode()


@pytest.mark.parametrize(
    ("mark", "cdi", "reversal", "closing"),
    [("C", "CRDT", False, "C261101EUR110,00"), ("D", "DBIT", False, "C261101EUR90,00"),
     ("RC", "DBIT", True, "C261101EUR90,00"), ("RD", "CRDT", True, "C261101EUR110,00")],
)
def test_debit_credit_and_reversal_marks(mark: str, cdi: str, reversal: bool, closing: str) -> None:
    [stmt] = parse_mt940(_stmt(f":61:2611011101{mark}10,00NTRFNONREF//B1\n:86:x\n", closing=closing), "m.sta")
    assert stmt.error is None, stmt.error
    [(_, entry)] = stmt.entries
    assert (entry["credit_debit"], entry["reversal"], entry["amount"]) == (cdi, reversal, Decimal("10.00"))


def test_debit_opening_balance_and_missing_closing() -> None:
    [stmt] = parse_mt940(_stmt(":61:2611011101C150,00NTRFNONREF\n", opening="D261101EUR100,00",
                               closing="C261101EUR50,00"), "m.sta")
    assert stmt.error is None
    [stmt] = parse_mt940(b":20:REF\n:25:X\n:60F:C261101EUR1,00\n", "m.sta")
    assert stmt.error == "statement REF in m.sta: no :62F: balance"


def test_identical_lines_without_bank_reference_get_distinct_stable_ids() -> None:
    line = ":61:2611011101C5,00NMSCNONREF\n:86:Coffee\n"
    [stmt] = parse_mt940(_stmt(line * 2, closing="C261101EUR110,00"), "m.sta")
    first, second = (sid for sid, _ in stmt.entries)
    assert second == f"{first}~2"


def test_file_without_statement_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"^x.sta: no MT940 statement"):
        parse_mt940(b"hello\n", "x.sta")


def test_unreadable_block_is_rejected_with_its_file_line_and_the_others_import() -> None:
    data = (b":20:R1\n:25:X\n:60F:C261101EUR1,00\n:61:garbage\n:62F:C261101EUR1,00\n-\n"
            b":20:R2\n:25:X\n:28C:5/1\n:60F:C261101EUR1,00\n:61:2611011101D1,00NMSCNONREF//B9\n:62F:C261101EUR0,00\n")
    broken, good = parse_mt940(data, "b.sta")
    assert broken.error == "statement R1 in b.sta: line 4: cannot read field :61: (Statement) from 'garbage'"
    assert broken.entries == []
    assert good.error is None and [sid for sid, _ in good.entries] == ["B9"]


def test_swift_envelope_and_intermediate_balances() -> None:
    data = (b"{1:F01BANKDEFFAXXX0000000000}{2:I940BANKDEFFXXXXN}{4:\r\n:20:STMT\r\n:25:DE89370400440532013000\r\n"
            b":28C:12/2\r\n:60M:C261101EUR100,00\r\n:61:2611011101D10,50NTRFREF123//B77\r\nSEPA transfer\r\n"
            b":86:Payment to supplier\r\nsecond line\r\n:62M:C261101EUR89,50\r\n:64:C261101EUR89,50\r\n-}")
    [stmt] = parse_mt940(data, "w.sta")
    assert stmt.error is None and stmt.statement_id == "STMT/12"
    [(sid, entry)] = stmt.entries
    assert sid == "B77" and entry["entry_reference"] == "REF123"
    assert (entry["amount"], entry["credit_debit"]) == (Decimal("10.50"), "DBIT")
    assert entry["remittance_unstructured"] == "Payment to supplier second line"
    assert entry["additional_info"] == "SEPA transfer"


@pytest.mark.parametrize(
    ("lines", "opening", "message"),
    [
        # mt-940 reads 15 characters of a :61: amount (the rest became the reference) and 16 of a balance's
        (":61:2611011101C12345678901234567,89NTRFNONREF//B1\n", "C261101EUR100,00",
         "line 5 (:61:): amount '12345678901234567,89' is longer than an MT940 amount (15 characters with the "
         "decimal comma); it cannot be read"),
        ("", "C261101EUR12345678901234567,00",
         "line 4 (:60F:): amount '12345678901234567,00' is longer than an MT940 amount (16 characters with the "
         "decimal comma); it cannot be read"),
    ],
)
def test_too_long_amount_is_named_as_written_not_cut_short(lines: str, opening: str, message: str) -> None:
    [stmt] = parse_mt940(_stmt(lines, opening=opening), "m.sta")
    assert stmt.error == f"statement REF/7 in m.sta: {message}"
    assert stmt.entries == []


def test_amount_beyond_the_sane_bound_and_unstorable_reference_reject_the_statement() -> None:
    [stmt] = parse_mt940(_stmt("", opening="C261101EUR9999999999999999", closing="C261101EUR9999999999999999"),
                         "m.sta")
    assert stmt.error == ("statement REF/7 in m.sta: balance final_opening_balance: amount 9999999999999999 EUR is "
                          "beyond the sane bound of 1,000,000,000,000,000 for this currency (a corrupt or unit-mixed "
                          "value?)")
    [stmt] = parse_mt940(_stmt(":61:2611011101C10,00NTRFNONREF//B\x001\n", closing="C261101EUR110,00"), "m.sta")
    assert stmt.error == "statement REF/7 in m.sta: entry 1: reference 'B\\x001': contains U+0000"
    [stmt] = parse_mt940(_stmt(":61:2611011101C10,00NTRFNONREF//B1\n:61:2611011101C0,0000000000001NTRF\n",
                               closing="C261101EUR110,00"), "m.sta")
    assert stmt.error == ("statement REF/7 in m.sta: line 6 (:61:): amount 1E-13 EUR has more than 12 decimal places "
                          "(a corrupt value?)")  # the line of the file

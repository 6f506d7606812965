"""A small camt.053.001.08 writer: statements with balances and entries → XML bytes.

Used by the scenario generator and world replay to produce the bank statements a bank would
send; :mod:`connectors.camt053` reads them back (round-trip tested). Elements are written in
the schema's sequence order (BankToCustomerStatementV08). The closing balance is computed from
the opening balance and the booked entries unless given (give a wrong one to produce a
statement that fails the import's balance gate).

>>> stmt = Statement("STMT-1", "DE89370400440532013000", "EUR", Decimal("100.00"), date(2026, 11, 1),
...                  [Entry(Decimal("25.00"), "CRDT", date(2026, 11, 1), "REF-1",
...                         details=[Tx(end_to_end_id="E2E-1", remittance="INV-1001")])])
>>> xml = render([stmt], message_id="MSG-1")
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from xml.etree import ElementTree as ET

from canonical.money import MINOR_UNITS, normalize_currency

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[a-zA-Z0-9]{1,30}")


@dataclass(slots=True)
class Tx:
    """One transaction detail (``TxDtls``) of an entry."""

    amount: Decimal | None = None  # required when the entry has several details (a batch)
    end_to_end_id: str | None = None
    instruction_id: str | None = None
    transaction_id: str | None = None
    mandate_id: str | None = None
    debtor_name: str | None = None
    debtor_iban: str | None = None
    creditor_name: str | None = None
    creditor_iban: str | None = None
    remittance: str | Sequence[str] | None = None  # Ustrd line(s); a long text is wrapped at 140
    creditor_reference: str | None = None  # Strd/CdtrRefInf/Ref with type SCOR
    referred_documents: Sequence[str] = ()  # Strd/RfrdDocInf/Nb (invoice numbers)
    additional_info: str | None = None
    # AmtDtls/InstdAmt: (amount, currency) the payer instructed, before the charges (and before FX)
    instructed: tuple[Decimal, str] | None = None
    # Chrgs/Rcrd: the bank charges the booked amount is net of (ChrgInclInd as given; None: not written)
    charges: Decimal | None = None
    charges_included: bool | None = True


@dataclass(slots=True)
class Entry:
    """One booked (or pending) entry (``Ntry``); ``amount`` is positive, the sign is ``credit_debit``."""

    amount: Decimal
    credit_debit: str  # CRDT | DBIT
    booking_date: date
    account_servicer_ref: str | None = None
    value_date: date | None = None  # defaults to the booking date
    status: str = "BOOK"
    reversal: bool = False
    entry_reference: str | None = None
    bank_tx_code: str = "PMNT-RCDT-ESCT"  # Domain-Family-SubFamily
    additional_info: str | None = None
    details: list[Tx] = field(default_factory=list)


@dataclass(slots=True)
class Statement:
    id: str
    account_iban: str
    currency: str
    opening_balance: Decimal  # signed
    opening_date: date
    entries: list[Entry] = field(default_factory=list)
    closing_date: date | None = None  # defaults to the last booking date (or the opening date)
    closing_balance: Decimal | None = None  # signed; None = opening + booked entries
    electronic_seq_nb: int | None = None
    created_at: datetime | None = None
    owner_name: str | None = None

    def computed_closing(self) -> Decimal:
        total = self.opening_balance
        for e in self.entries:
            if e.status == "BOOK":
                total += e.amount if e.credit_debit == "CRDT" else -e.amount
        return total


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _amt(parent: ET.Element, tag: str, amount: Decimal, currency: str) -> None:
    exp = Decimal(1).scaleb(-MINOR_UNITS[currency])
    q = amount.quantize(exp)
    _sub(parent, tag, str(q if q == amount else amount), Ccy=currency)


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ustrd_lines(text: str | Sequence[str] | None) -> list[str]:
    if text is None:
        return []
    if isinstance(text, str):
        return [text[i : i + 140] for i in range(0, len(text), 140)]
    lines = [line for line in text if line]
    for line in lines:
        _check(line, 140, "Ustrd")
    return lines


def _check(value: str, limit: int, what: str) -> str:
    """The schema's MaxNNText limits: refuse rather than write an invalid document."""
    if not value or len(value) > limit:
        raise ValueError(f"{what} must be 1 to {limit} characters, got {value!r}")
    return value


def _account(parent: ET.Element, account: str) -> None:
    ident = _sub(parent, "Id")
    if _IBAN.fullmatch(account):
        _sub(ident, "IBAN", account)
    else:
        _sub(_sub(ident, "Othr"), "Id", _check(account, 34, "account id"))


def _balance(stmt_el: ET.Element, code: str, amount: Decimal, currency: str, day: date) -> None:
    bal = _sub(stmt_el, "Bal")
    _sub(_sub(_sub(bal, "Tp"), "CdOrPrtry"), "Cd", code)
    _amt(bal, "Amt", abs(amount), currency)
    _sub(bal, "CdtDbtInd", "DBIT" if amount < 0 else "CRDT")
    _sub(_sub(bal, "Dt"), "Dt", day.isoformat())


def _tx(parent: ET.Element, tx: Tx, currency: str, cdi: str, batch: bool) -> None:
    el = _sub(parent, "TxDtls")
    refs = [("InstrId", tx.instruction_id), ("EndToEndId", tx.end_to_end_id or "NOTPROVIDED"),
            ("TxId", tx.transaction_id), ("MndtId", tx.mandate_id)]
    r = _sub(el, "Refs")
    for tag, value in refs:
        if value is not None:
            _sub(r, tag, _check(value, 35, tag))
    if tx.amount is not None:
        _amt(el, "Amt", tx.amount, currency)
        _sub(el, "CdtDbtInd", cdi)
    elif batch:
        raise ValueError("every detail of a batch entry needs an amount")
    if tx.amount is not None or tx.instructed is not None:
        dtls = _sub(el, "AmtDtls")
        if tx.instructed is not None:
            _amt(_sub(dtls, "InstdAmt"), "Amt", tx.instructed[0], normalize_currency(tx.instructed[1]))
        if tx.amount is not None:
            _amt(_sub(dtls, "TxAmt"), "Amt", tx.amount, currency)
    if tx.charges is not None:
        rec = _sub(_sub(el, "Chrgs"), "Rcrd")
        _amt(rec, "Amt", tx.charges, currency)
        _sub(rec, "CdtDbtInd", "DBIT")
        if tx.charges_included is not None:
            _sub(rec, "ChrgInclInd", "true" if tx.charges_included else "false")
    if any((tx.debtor_name, tx.debtor_iban, tx.creditor_name, tx.creditor_iban)):
        p = _sub(el, "RltdPties")
        for role, name, iban in (("Dbtr", tx.debtor_name, tx.debtor_iban), ("Cdtr", tx.creditor_name, tx.creditor_iban)):
            if name:
                _sub(_sub(_sub(p, role), "Pty"), "Nm", _check(name, 140, f"{role} name"))
            if iban:
                _account(_sub(p, f"{role}Acct"), iban)
    lines = _ustrd_lines(tx.remittance)
    if lines or tx.creditor_reference or tx.referred_documents:
        rmt = _sub(el, "RmtInf")
        for line in lines:
            _sub(rmt, "Ustrd", line)
        if tx.creditor_reference or tx.referred_documents:
            strd = _sub(rmt, "Strd")
            for nb in tx.referred_documents:
                doc = _sub(strd, "RfrdDocInf")
                _sub(_sub(_sub(doc, "Tp"), "CdOrPrtry"), "Cd", "CINV")
                _sub(doc, "Nb", _check(nb, 35, "referred document number"))
            if tx.creditor_reference:
                cref = _sub(strd, "CdtrRefInf")
                _sub(_sub(_sub(cref, "Tp"), "CdOrPrtry"), "Cd", "SCOR")
                _sub(cref, "Ref", _check(tx.creditor_reference, 35, "creditor reference"))
    if tx.additional_info:
        _sub(el, "AddtlTxInf", _check(tx.additional_info, 500, "AddtlTxInf"))


def _entry(stmt_el: ET.Element, e: Entry, currency: str) -> None:
    if e.credit_debit not in ("CRDT", "DBIT"):
        raise ValueError(f"credit_debit must be CRDT or DBIT, got {e.credit_debit!r}")
    if e.amount < 0:
        raise ValueError("entry amounts are positive; the sign is credit_debit")
    el = _sub(stmt_el, "Ntry")
    if e.entry_reference:
        _sub(el, "NtryRef", _check(e.entry_reference, 35, "NtryRef"))
    _amt(el, "Amt", e.amount, currency)
    _sub(el, "CdtDbtInd", e.credit_debit)
    if e.reversal:
        _sub(el, "RvslInd", "true")
    _sub(_sub(el, "Sts"), "Cd", e.status)
    _sub(_sub(el, "BookgDt"), "Dt", e.booking_date.isoformat())
    _sub(_sub(el, "ValDt"), "Dt", (e.value_date or e.booking_date).isoformat())
    if e.account_servicer_ref:
        _sub(el, "AcctSvcrRef", _check(e.account_servicer_ref, 35, "AcctSvcrRef"))
    code = _sub(el, "BkTxCd")
    parts = e.bank_tx_code.split("-")
    if len(parts) == 3:
        domn = _sub(code, "Domn")
        _sub(domn, "Cd", parts[0])
        fmly = _sub(domn, "Fmly")
        _sub(fmly, "Cd", parts[1])
        _sub(fmly, "SubFmlyCd", parts[2])
    else:
        prtry = _sub(code, "Prtry")
        _sub(prtry, "Cd", e.bank_tx_code)
    if e.details:
        dtls = _sub(el, "NtryDtls")
        batch = len(e.details) > 1
        if batch:
            b = _sub(dtls, "Btch")
            _sub(b, "NbOfTxs", str(len(e.details)))
            _amt(b, "TtlAmt", e.amount, currency)
            _sub(b, "CdtDbtInd", e.credit_debit)
        for tx in e.details:
            _tx(dtls, tx, currency, e.credit_debit, batch)
    if e.additional_info:
        _sub(el, "AddtlNtryInf", _check(e.additional_info, 500, "AddtlNtryInf"))


def _statement(doc: ET.Element, s: Statement, created: datetime) -> None:
    currency = normalize_currency(s.currency)
    el = _sub(doc, "Stmt")
    _sub(el, "Id", _check(s.id, 35, "statement Id"))
    if s.electronic_seq_nb is not None:
        _sub(el, "ElctrncSeqNb", str(s.electronic_seq_nb))
    _sub(el, "CreDtTm", _ts(s.created_at or created))
    last = max([e.booking_date for e in s.entries], default=s.opening_date)
    closing_date = s.closing_date or last
    frto = _sub(el, "FrToDt")
    _sub(frto, "FrDtTm", f"{s.opening_date.isoformat()}T00:00:00Z")
    _sub(frto, "ToDtTm", f"{closing_date.isoformat()}T23:59:59Z")
    acct = _sub(el, "Acct")
    _account(acct, s.account_iban)
    _sub(acct, "Ccy", currency)
    if s.owner_name:
        _sub(_sub(acct, "Ownr"), "Nm", s.owner_name)
    closing = s.computed_closing() if s.closing_balance is None else s.closing_balance
    _balance(el, "OPBD", s.opening_balance, currency, s.opening_date)
    _balance(el, "CLBD", closing, currency, closing_date)
    booked = [e for e in s.entries if e.status == "BOOK"]
    credits = [e.amount for e in booked if e.credit_debit == "CRDT"]
    debits = [e.amount for e in booked if e.credit_debit == "DBIT"]
    summary = _sub(el, "TxsSummry")
    net = sum(credits, Decimal(0)) - sum(debits, Decimal(0))
    total = _sub(summary, "TtlNtries")
    _sub(total, "NbOfNtries", str(len(booked)))
    _sub(total, "Sum", str(sum(credits, Decimal(0)) + sum(debits, Decimal(0))))
    ttl_net = _sub(total, "TtlNetNtry")
    _sub(ttl_net, "Amt", str(abs(net)))
    _sub(ttl_net, "CdtDbtInd", "DBIT" if net < 0 else "CRDT")
    for tag, items in (("TtlCdtNtries", credits), ("TtlDbtNtries", debits)):
        part = _sub(summary, tag)
        _sub(part, "NbOfNtries", str(len(items)))
        _sub(part, "Sum", str(sum(items, Decimal(0))))
    for e in s.entries:
        _entry(el, e, currency)


def render(statements: Sequence[Statement], *, message_id: str, created_at: datetime | None = None) -> bytes:
    """A camt.053.001.08 document (UTF-8 bytes with XML declaration) holding ``statements``."""
    created = created_at or datetime.now(UTC)
    root = ET.Element("Document", {"xmlns": NAMESPACE})
    doc = _sub(root, "BkToCstmrStmt")
    hdr = _sub(doc, "GrpHdr")
    _sub(hdr, "MsgId", _check(message_id, 35, "MsgId"))
    _sub(hdr, "CreDtTm", _ts(created))
    for s in statements:
        _statement(doc, s, created)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)

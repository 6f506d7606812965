"""ISO 20022 camt.053 (BankToCustomerStatement) → raw statement and entry records.

Any ``urn:iso:std:iso:20022:tech:xsd:camt.053.001.NN`` version is read (fixtures in .02, .04
and .08; the .03 to .13 namespaces are tested too): the element names this module uses are
stable across versions, and the few that moved are
read in both places (``Sts`` code vs ``Sts/Cd``, ``Dbtr/Nm`` vs ``Dbtr/Pty/Nm``,
``AmtDtls/TxAmt/Amt`` vs ``TxDtls/Amt``). XML is parsed with defusedxml (no entity expansion,
no external references). A file that is not well-formed XML, or not a camt.053 document, raises
:class:`~canonical.errors.InputError` with ``file:line``. A statement with an unreadable part or
whose balances do not add up is rejected whole (see :mod:`connectors.statements`); so is one
with a batch entry whose ``TxDtls`` amounts are missing or do not sum to the entry's amount
(splitting it anyway would invent cash).

Raw records (system = the source instance name, default ``bank``):

* object ``camt053.statement``, source id ``<account>:<Stmt/Id>``, one per statement;
* object ``camt053.entry``, one per ``Ntry``; a batch-booked entry with several ``TxDtls``
  gives one record per transaction detail. Source id: ``AcctSvcrRef`` of the entry, with
  ``#<n>`` (1-based ``TxDtls`` index) for batch details. Without an ``AcctSvcrRef``: ``h:`` + a
  hash of account, currency, dates, direction, amount, ``NtryRef`` and the transaction's
  references and remittance. A reference repeated inside one statement gets ``~2``, ``~3``…

Entry payload (a plain dict; ``mappings/camt053.yaml`` maps these keys, MT940 uses the same):

================================  ===========================================================
key                               value
================================  ===========================================================
``format``                        ``"camt053"`` (``"mt940"`` for MT940)
``statement_id``                  ``Stmt/Id``
``account_iban``                  ``Acct/Id/IBAN`` (else ``Acct/Id/Othr/Id``)
``currency``                      ISO 4217 code of the amount
``amount``                        Decimal, positive: the transaction detail's amount for a
                                  batch detail, else the entry's ``Amt``
``credit_debit``                  ``"CRDT"`` (money in) or ``"DBIT"`` (money out)
``signed_amount``                 Decimal, ``amount`` with the sign of ``credit_debit``
``booking_date`` / ``value_date``  ISO date strings (``YYYY-MM-DD``) or None
``status``                        ``BOOK``, ``PDNG``, ``INFO`` (only ``BOOK``, or no ``Sts``,
                                  counts in the balance gate; the others land all the same)
``reversal``                      bool, ``RvslInd``
``entry_reference``               ``NtryRef``
``account_servicer_ref``          ``AcctSvcrRef`` of the entry
``entry_amount``                  Decimal, the booked entry's ``Amt`` (= ``amount`` unless batch)
``batch_index`` / ``batch_size``  1-based detail index and number of details (1 / 1 if none)
``end_to_end_id``                 ``Refs/EndToEndId``; ``NOTPROVIDED`` becomes None
``transaction_id``                ``Refs/TxId``; ``instruction_id``: ``Refs/InstrId``;
                                  ``mandate_id``: ``Refs/MndtId``
``debtor_name`` / ``debtor_iban``  ``RltdPties/Dbtr`` (``Nm`` or ``Pty/Nm``), ``DbtrAcct``
``creditor_name`` /               ``RltdPties/Cdtr``, ``CdtrAcct``
``creditor_iban``
``remittance_unstructured``       the ``Ustrd`` lines joined by a space (a line of exactly 140
                                  characters is a bank's hard wrap and is joined without one)
``creditor_reference``            the first ``Strd/CdtrRefInf/Ref`` (e.g. an RF reference)
``referred_documents``            list of ``Strd/RfrdDocInf/Nb`` (invoice numbers)
``bank_tx_code``                  ``Domn-Fmly-SubFmly`` codes (e.g. ``PMNT-RCDT-ESCT``), else
                                  ``Prtry/Cd``
``additional_info``               ``AddtlTxInf``, else ``AddtlNtryInf``
``instructed_amount`` /           ``AmtDtls/InstdAmt/Amt`` (of the ``TxDtls``, else of a single
``instructed_currency``           transaction's ``Ntry``): the amount the payer instructed, before
                                  charges, in the currency ordered (may differ: FX)
``charges``                       Decimal or None: the bank charges ``amount`` is net of, in its
                                  currency (``Chrgs`` records with ``ChrgInclInd`` true; unflagged
                                  ones when the instructed amount confirms them; else a same-currency
                                  instructed amount minus the booked amount)
``gross_amount``                  Decimal: the amount before charges (credit: ``amount`` +
                                  ``charges``; debit: ``amount`` - ``charges``); = ``amount`` if none
================================  ===========================================================

Statement payload: ``format``, ``statement_id``, ``message_id``, ``account_iban``, ``currency``,
``created_at``, ``from_datetime``, ``to_datetime``, ``electronic_seq_nb``, ``balances`` (list of
``{type, currency, amount (signed Decimal), date}``), ``entry_count``.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.etree.ElementTree import Element

from canonical.errors import InputError
from canonical.money import UnknownCurrency, normalize_currency
from connectors.bank_statement import (
    ParsedStatement,
    StatementError,
    balance_gate,
    check_amount,
    exact_sums,
    fallback_id,
)
from connectors.safe_xml import parse_untrusted

NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:camt.053."
_OPENING = ("OPBD", "PRCD")  # opening booked; previous closing booked where OPBD is absent
_CLOSING = "CLBD"
_USTRD_WRAP = 140


# --- small XML helpers (namespaces are stripped once after parsing) ----------------------------

def _text(el: Element | None, path: str | None = None) -> str | None:
    node = el if path is None or el is None else el.find(path)
    if node is None or node.text is None:
        return None
    value = node.text.strip()
    return value or None


def _first(el: Element | None, *paths: str) -> str | None:
    for path in paths:
        value = _text(el, path)
        if value is not None:
            return value
    return None


def _date(el: Element | None) -> str | None:
    """``Dt`` or ``DtTm`` child of a date choice, as an ISO date string."""
    value = _first(el, "Dt", "DtTm")
    if value is None:
        return None
    day = value[:10]
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
        raise StatementError(f"date {value!r} is not an ISO date")
    return day


def _amount(el: Element | None, what: str) -> tuple[Decimal, str]:
    if el is None or el.text is None:
        raise StatementError(f"{what}: no amount")
    try:
        value = Decimal(el.text.strip())
    except InvalidOperation:
        raise StatementError(f"{what}: amount {el.text.strip()!r} is not a decimal number") from None
    if not value.is_finite() or value < 0:
        raise StatementError(f"{what}: amount {el.text.strip()!r} must be a non-negative number")
    try:
        currency = normalize_currency(el.get("Ccy") or "")
    except UnknownCurrency:
        raise StatementError(f"{what}: unknown currency {el.get('Ccy')!r}") from None
    return check_amount(value, currency, what), currency


def _cdi(el: Element, what: str) -> str:
    value = _text(el, "CdtDbtInd")
    if value not in ("CRDT", "DBIT"):
        raise StatementError(f"{what}: CdtDbtInd must be CRDT or DBIT, got {value!r}")
    return value


def _signed(amount: Decimal, cdi: str) -> Decimal:
    return amount if cdi == "CRDT" else -amount


def _account(el: Element | None) -> str | None:
    return _first(el, "Id/IBAN", "Id/Othr/Id")


def _party(el: Element | None) -> str | None:
    return _first(el, "Pty/Nm", "Nm") if el is not None else None


def _join_ustrd(lines: list[str]) -> str | None:
    out = ""
    for i, line in enumerate(lines):
        if i and len(lines[i - 1]) != _USTRD_WRAP:
            out += " "
        out += line if len(line) == _USTRD_WRAP else line.strip()
    return out.strip() or None


def _parse_xml(data: bytes, name: str) -> Element:
    root = parse_untrusted(data, name)
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.startswith("{"):
            el.tag = el.tag.split("}", 1)[1]
    if root.tag != "Document" or root.find("BkToCstmrStmt") is None:
        raise InputError(
            f"{name}: not a camt.053 document (root <{root.tag}>, namespace {namespace or 'none'!r}); "
            "expected Document/BkToCstmrStmt"
        )
    if namespace and not namespace.startswith(NAMESPACE_PREFIX):
        raise InputError(f"{name}: namespace {namespace!r} is not camt.053 ({NAMESPACE_PREFIX}001.NN)")
    return root


# --- statements and entries ---------------------------------------------------------------------

def _balances(stmt: Element) -> list[dict[str, Any]]:
    out = []
    for i, bal in enumerate(stmt.findall("Bal"), 1):
        kind = _first(bal, "Tp/CdOrPrtry/Cd", "Tp/CdOrPrtry/Prtry") or "?"
        amount, currency = _amount(bal.find("Amt"), f"balance {i} ({kind})")
        out.append({
            "type": kind,
            "currency": currency,
            "amount": _signed(amount, _cdi(bal, f"balance {i} ({kind})")),
            "date": _date(bal.find("Dt")),
        })
    return out


def _tx_amount(tx: Element, entry_cdi: str, what: str) -> tuple[Decimal, str, str] | None:
    el = tx.find("AmtDtls/TxAmt/Amt")
    if el is None:
        el = tx.find("Amt")
    if el is None:
        return None
    amount, currency = _amount(el, what)
    return amount, currency, _text(tx, "CdtDbtInd") or entry_cdi


def _charges(holder: Element, currency: str, what: str) -> tuple[Decimal, Decimal]:
    """The charge records under ``holder`` (``Chrgs/Rcrd`` from .03 on, repeated ``Chrgs`` with their own
    ``Amt`` in .02) in the booked currency: (included, unflagged). ``included``: records whose
    ``ChrgInclInd`` is true, i.e. already taken out of (credit) / added to (debit) the booked amount;
    ``unflagged``: records without the indicator. A ``CRDT`` record (charges given back) counts negative;
    ``ChrgInclInd`` false (charges booked as an entry of their own) and other currencies do not count."""
    included = unflagged = Decimal(0)
    records = holder.findall("Chrgs/Rcrd") + [c for c in holder.findall("Chrgs") if c.find("Amt") is not None]
    for i, rec in enumerate(records, 1):
        amount, ccy = _amount(rec.find("Amt"), f"{what} charge record {i}")
        if ccy != currency:
            continue
        if _text(rec, "CdtDbtInd") == "CRDT":
            amount = -amount
        flag = (_text(rec, "ChrgInclInd") or "").lower()
        if flag == "true":
            included += amount
        elif flag == "":
            unflagged += amount
    return included, unflagged


def _gross(holders: list[Element], amount: Decimal, currency: str, cdi: str, what: str) -> dict[str, Any]:
    """The instructed amount and the bank charges of one transaction (``AmtDtls/InstdAmt``, ``Chrgs``;
    the first of ``holders`` that has them: the ``TxDtls``, then the ``Ntry`` of a single transaction).

    ``InstdAmt`` is the amount moved between debtor and creditor *before deduction of charges*. The
    charges the booked amount is net of are the included charge records; records without
    ``ChrgInclInd`` count when the instructed amount (same currency) confirms them; with no usable record,
    an instructed amount in the booked currency that differs from it by the charge direction gives them.
    ``gross_amount`` is the amount before charges: booked + charges on a credit, booked - charges on a
    debit (the bank added them to what was paid out)."""
    instd = next((el for h in holders if (el := h.find("AmtDtls/InstdAmt/Amt")) is not None), None)
    instructed, instructed_ccy = _amount(instd, f"{what} instructed amount") if instd is not None else (None, None)
    charges = Decimal(0)
    for h in holders:
        included, unflagged = _charges(h, currency, what)
        if not (included or unflagged):
            continue
        charges = included
        if unflagged and instructed_ccy == currency and instructed is not None:
            net = instructed - amount if cdi == "CRDT" else amount - instructed
            if net == included + unflagged:
                charges += unflagged
        break
    if not charges and instructed is not None and instructed_ccy == currency:
        charges = instructed - amount if cdi == "CRDT" else amount - instructed
    if charges <= 0 or (cdi == "DBIT" and charges >= amount):
        charges = Decimal(0)  # charges given back, or an instructed amount that is no gross: book as is
    gross = amount + charges if cdi == "CRDT" else amount - charges
    return {"instructed_amount": instructed, "instructed_currency": instructed_ccy,
            "charges": charges or None, "gross_amount": gross}


def _bank_tx_code(el: Element | None) -> str | None:
    if el is None:
        return None
    codes = [_text(el, p) for p in ("Domn/Cd", "Domn/Fmly/Cd", "Domn/Fmly/SubFmlyCd")]
    if codes[0]:
        return "-".join(c for c in codes if c)
    return _text(el, "Prtry/Cd")


def _tx_fields(tx: Element | None) -> dict[str, Any]:
    """The transaction-level keys of the entry shape (all None where there is no TxDtls)."""
    refs = tx.find("Refs") if tx is not None else None
    parties = tx.find("RltdPties") if tx is not None else None
    rmt = tx.find("RmtInf") if tx is not None else None
    e2e = _text(refs, "EndToEndId")
    ustrd = [u.text for u in rmt.findall("Ustrd") if u.text] if rmt is not None else []
    strd = rmt.findall("Strd") if rmt is not None else []
    cref = next((r for s in strd if (r := _text(s, "CdtrRefInf/Ref"))), None)
    docs = [n for s in strd for d in s.findall("RfrdDocInf") if (n := _text(d, "Nb"))]
    return {
        "end_to_end_id": None if e2e == "NOTPROVIDED" else e2e,
        "transaction_id": _text(refs, "TxId"),
        "instruction_id": _text(refs, "InstrId"),
        "mandate_id": _text(refs, "MndtId"),
        "debtor_name": _party(parties.find("Dbtr")) if parties is not None else None,
        "debtor_iban": _account(parties.find("DbtrAcct")) if parties is not None else None,
        "creditor_name": _party(parties.find("Cdtr")) if parties is not None else None,
        "creditor_iban": _account(parties.find("CdtrAcct")) if parties is not None else None,
        "remittance_unstructured": _join_ustrd(ustrd),
        "creditor_reference": cref,
        "referred_documents": docs,
        "additional_info": _text(tx, "AddtlTxInf") if tx is not None else None,
    }


def _status(ntry: Element) -> str | None:
    sts = ntry.find("Sts")
    if sts is None:
        return None
    return _first(sts, "Cd", "Prtry") or _text(sts)


def _entries(ntry: Element, n: int, base: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """One Ntry → [(source id, payload)]: one per TxDtls when several (batch), else one."""
    ref = _text(ntry, "AcctSvcrRef")
    what = f"entry {n}" + (f" ({ref})" if ref else "")
    amount, currency = _amount(ntry.find("Amt"), what)
    cdi = _cdi(ntry, what)
    details = [tx for d in ntry.findall("NtryDtls") for tx in d.findall("TxDtls")]
    common = {
        **base,
        "currency": currency,
        "booking_date": _date(ntry.find("BookgDt")),
        "value_date": _date(ntry.find("ValDt")),
        "status": _status(ntry),
        "reversal": (_text(ntry, "RvslInd") or "").lower() == "true",
        "entry_reference": _text(ntry, "NtryRef"),
        "account_servicer_ref": ref,
        "entry_amount": amount,
        "bank_tx_code": _bank_tx_code(ntry.find("BkTxCd")),
        "batch_size": max(len(details), 1),
    }
    entry_info = _text(ntry, "AddtlNtryInf")
    if len(details) <= 1:
        tx = details[0] if details else None
        fields = _tx_fields(tx)
        fields["additional_info"] = fields["additional_info"] or entry_info
        if tx is not None and common["bank_tx_code"] is None:
            common["bank_tx_code"] = _bank_tx_code(tx.find("BkTxCd"))
        fields.update(_gross([h for h in (tx, ntry) if h is not None], amount, currency, cdi, what))
        parts = [(amount, cdi, fields, 1)]
    else:
        parts = []
        total = Decimal(0)
        for i, tx in enumerate(details, 1):
            got = _tx_amount(tx, cdi, f"{what} detail {i}")
            if got is None:
                raise StatementError(f"{what}: batch detail {i} of {len(details)} has no amount")
            tx_amount, tx_currency, tx_cdi = got
            if tx_currency != currency:
                raise StatementError(f"{what}: batch detail {i} is in {tx_currency}, the entry in {currency}")
            total += _signed(tx_amount, tx_cdi)
            fields = _tx_fields(tx)
            fields["additional_info"] = fields["additional_info"] or entry_info
            # charges booked for the whole batch (Ntry/Chrgs) cannot be told apart per detail: not used
            fields.update(_gross([tx], tx_amount, currency, tx_cdi, f"{what} detail {i}"))
            parts.append((tx_amount, tx_cdi, fields, i))
        if total != _signed(amount, cdi):
            raise StatementError(
                f"{what}: batch details sum to {total} {currency} but the entry books {_signed(amount, cdi)} {currency}"
            )
    out = []
    for part_amount, part_cdi, fields, index in parts:
        payload = {
            **common,
            **fields,
            "amount": part_amount,
            "credit_debit": part_cdi,
            "signed_amount": _signed(part_amount, part_cdi),
            "batch_index": index,
        }
        if ref is not None:
            sid = ref if len(parts) == 1 else f"{ref}#{index}"
        else:
            sid = fallback_id([
                base["account_iban"], currency, payload["booking_date"], payload["value_date"], part_cdi,
                part_amount, payload["entry_reference"], payload["end_to_end_id"],
                payload["transaction_id"], payload["remittance_unstructured"], index,
            ])
        out.append((sid, payload))
    return out


def _statement(stmt: Element, message_id: str | None, name: str, n: int) -> ParsedStatement:
    stmt_id = _text(stmt, "Id") or f"#{n}"
    account = _account(stmt.find("Acct"))
    label = f"statement {stmt_id} in {name}"
    payload: dict[str, Any] = {
        "format": "camt053",
        "statement_id": stmt_id,
        "message_id": message_id,
        "account_iban": account,
        "currency": _text(stmt, "Acct/Ccy"),
        "created_at": _text(stmt, "CreDtTm"),
        "from_datetime": _text(stmt, "FrToDt/FrDtTm"),
        "to_datetime": _text(stmt, "FrToDt/ToDtTm"),
        "electronic_seq_nb": _text(stmt, "ElctrncSeqNb"),
        "entry_count": len(stmt.findall("Ntry")),
    }
    parsed = ParsedStatement("camt053", stmt_id, f"{account or '?'}:{stmt_id}", payload)
    try:
        if _text(stmt, "Id") is None:
            raise StatementError("statement has no Id")
        balances = _balances(stmt)
        payload["balances"] = balances
        payload["currency"] = payload["currency"] or (balances[0]["currency"] if balances else None)
        base = {"format": "camt053", "statement_id": stmt_id, "account_iban": account}
        entries: list[tuple[str, dict[str, Any]]] = []
        for i, ntry in enumerate(stmt.findall("Ntry"), 1):
            entries.extend(_entries(ntry, i, base))
        opening: dict[str, Decimal] = {}
        for code in reversed(_OPENING):  # OPBD wins over PRCD
            opening.update({b["currency"]: b["amount"] for b in balances if b["type"] == code})
        closing = {b["currency"]: b["amount"] for b in balances if b["type"] == _CLOSING}
        # Booked entries only (pending/info ones are not in the booked balance); batch details
        # sum to their entry's amount (checked above), so summing details is summing entries.
        balance_gate(label, opening, closing,
                     ((e["currency"], e["signed_amount"]) for _, e in entries if e["status"] in ("BOOK", None)))
    except StatementError as exc:
        return parsed.reject(label, exc)
    return parsed.accept(label, entries)


def parse_camt053(data: bytes, name: str) -> list[ParsedStatement]:
    """Every statement of a camt.053 file, each with its entries or its rejection reason."""
    root = _parse_xml(data, name)
    doc = root.find("BkToCstmrStmt")
    assert doc is not None  # checked by _parse_xml
    message_id = _text(doc, "GrpHdr/MsgId")
    stmts = doc.findall("Stmt")
    if not stmts:
        raise InputError(f"{name}: camt.053 document has no statement (BkToCstmrStmt/Stmt)")
    with exact_sums():  # batch sums, charges
        return [_statement(s, message_id, name, i) for i, s in enumerate(stmts, 1)]

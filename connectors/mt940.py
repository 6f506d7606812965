"""SWIFT MT940 statements → raw records in the camt.053 entry shape (parsed with ``mt-940``).

The ``mt-940`` package (WoLpH, 5.x) splits the file into statements on ``:20:`` and reads the
tags; German structured ``:86:`` details (``?20``… subfields, ``EREF+``/``SVWZ+`` keywords)
are read with its details post-processor. This module maps each statement to the same shape as
:mod:`connectors.camt053` (objects ``mt940.statement`` / ``mt940.entry``) and applies the same
balance gate: ``:60F:``/``:60M:`` opening + ``:61:`` lines = ``:62F:``/``:62M:`` closing.

Field mapping (entry keys as documented in :mod:`connectors.camt053`):

* ``statement_id``: ``:20:`` reference, with ``/<:28C: statement number>`` when present
  (``:20:`` alone is often a constant like ``STARTUMS``); ``account_iban``: ``:25:``.
* ``amount``/``currency``/``credit_debit``: ``:61:`` amount and mark. ``C`` and ``RD`` (reversal of
  a debit) are ``CRDT``; ``D`` and ``RC`` are ``DBIT``; ``reversal`` is true for ``RC``/``RD``.
* ``value_date``: ``:61:`` value date; ``booking_date``: its entry date (year guessed by the parser).
* ``account_servicer_ref``: the bank reference after ``//``; ``entry_reference``: the customer
  reference (None when ``NONREF``); ``bank_tx_code``: the transaction type (e.g. ``NTRF``).
* ``end_to_end_id``: ``EREF+`` of a structured ``:86:``; ``remittance_unstructured``: ``SVWZ+``
  purpose or else the whole ``:86:`` text; counterparty name/IBAN (``?32``/``?31``) go to
  debtor for a credit and creditor for a debit. ``status`` is always ``BOOK``.
* Source id: the bank reference; without one, ``h:`` + a hash of account, dates, mark, amount,
  currency, customer reference, type code and ``:86:`` text (so re-imports give the same id).
  Repeats inside one statement get ``~2``, ``~3``….
* A ``:20:`` block with a field mt-940 cannot read is rejected whole, its message naming the
  file line of that field; the other blocks still import.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from typing import Any

import mt940 as mt940lib
from mt940.processors import transaction_details_post_processor_with_space

from canonical.errors import InputError
from canonical.money import UnknownCurrency, normalize_currency
from connectors.bank_statement import (
    ParsedStatement,
    StatementError,
    balance_gate,
    check_amount,
    fallback_id,
)

_CREDIT_MARKS = {"C": ("CRDT", False), "RD": ("CRDT", True), "D": ("DBIT", False), "RC": ("DBIT", True)}


def _iso(value: Any) -> str | None:
    return value.isoformat()[:10] if value is not None else None


def _balance(data: dict[str, Any], keys: tuple[str, ...]) -> tuple[str, Decimal, str | None] | None:
    for key in keys:
        bal = data.get(key)
        if bal is not None:
            try:
                currency = normalize_currency(bal.amount.currency or "")
            except UnknownCurrency:
                raise StatementError(f"balance {key}: unknown currency {bal.amount.currency!r}") from None
            return currency, check_amount(Decimal(bal.amount.amount), currency, f"balance {key}"), _iso(bal.date)
    return None


# The amount of a balance (:60F:/:60M:/:62F:/:62M:, ``1!a6!n3!a15d``) and of a :61: line as written in the
# file, and the most characters mt-940 reads of each: it takes the first 16 (15) and leaves the rest, so a
# longer amount would come back cut short (and a :61:'s rest read as its reference).
_AMOUNT_TEXT = re.compile(
    r"^:(?:(?P<bal>6[02][FM]):[DC]\d{6}[^\n]{3}|(?P<line>61):\d{6}(?:[\d ]{4})?R?[DC][A-Z]?\n?)(?P<amount>[\d,]+)",
    re.MULTILINE | re.IGNORECASE,
)
_AMOUNT_MAX = {"bal": 16, "line": 15}  # so the entries' arithmetic (16 digits at most) is exact in any context


def _too_long_amount(block: str, first_line: int) -> None:
    """StatementError naming the file line and the amount as written if a balance or :61: amount is longer
    than mt-940 reads (instead of a balance gate that fails on its cut-short figures)."""
    for m in _AMOUNT_TEXT.finditer(block):
        kind = "bal" if m.group("bal") else "line"
        text = m.group("amount")
        if len(text) > _AMOUNT_MAX[kind]:
            line = first_line + block.count("\n", 0, m.start())
            raise StatementError(
                f"line {line} (:{m.group(kind)}:): amount {text!r} is longer than an MT940 amount "
                f"({_AMOUNT_MAX[kind]} characters with the decimal comma); it cannot be read"
            )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _entry(t: dict[str, Any], base: dict[str, Any], currency: str, where: str) -> tuple[str, dict[str, Any]]:
    """One :61: transaction (``where``: its file line, ``line 12 (:61:)``) in the entry shape."""
    mark = str(t.get("status") or "").upper()
    if mark not in _CREDIT_MARKS:
        raise StatementError(f"{where}: debit/credit mark {mark!r} is not C, D, RC or RD")
    cdi, reversal = _CREDIT_MARKS[mark]
    line_currency = t["amount"].currency or currency
    amount = check_amount(abs(Decimal(t["amount"].amount)), line_currency, where)
    bank_ref = _text(t.get("bank_reference"))
    customer_ref = _text(t.get("customer_reference"))
    details = _text(t.get("transaction_details"))
    purpose = _text(t.get("purpose"))
    counterparty = _text(t.get("applicant_name"))
    counter_iban = _text(t.get("applicant_iban") or t.get("gvc_applicant_iban"))
    payload: dict[str, Any] = {
        **base,
        "currency": line_currency,
        "amount": amount,
        "credit_debit": cdi,
        "signed_amount": amount if cdi == "CRDT" else -amount,
        "booking_date": _iso(t.get("entry_date") or t.get("guessed_entry_date") or t.get("date")),
        "value_date": _iso(t.get("date")),
        "status": "BOOK",
        "reversal": reversal,
        "entry_reference": None if customer_ref in (None, "NONREF") else customer_ref,
        "account_servicer_ref": bank_ref,
        "entry_amount": amount,
        "batch_index": 1,
        "batch_size": 1,
        "end_to_end_id": _text(t.get("end_to_end_reference")),
        "transaction_id": None,
        "instruction_id": None,
        "mandate_id": _text(t.get("additional_position_reference")),
        "debtor_name": counterparty if cdi == "CRDT" else None,
        "debtor_iban": counter_iban if cdi == "CRDT" else None,
        "creditor_name": counterparty if cdi == "DBIT" else None,
        "creditor_iban": counter_iban if cdi == "DBIT" else None,
        "remittance_unstructured": purpose or details,
        "creditor_reference": None,
        "referred_documents": [],
        "bank_tx_code": _text(t.get("id")),
        "additional_info": _text(t.get("extra_details")) or _text(t.get("posting_text")),
    }
    sid = bank_ref or fallback_id([
        base["account_iban"], payload["booking_date"], payload["value_date"], cdi, amount, line_currency,
        customer_ref, payload["bank_tx_code"], details or purpose,
    ])
    return sid, payload


def _statement(block: Any, text: str, first_line: int, name: str, n: int) -> ParsedStatement:
    """The statement mt-940 read from the :20: block ``text``, which starts at line ``first_line`` of the file."""
    data: dict[str, Any] = block.data
    ref = _text(data.get("transaction_reference")) or f"#{n}"
    number = _text(data.get("statement_number"))
    stmt_id = f"{ref}/{number}" if number else ref
    account = _text(data.get("account_identification"))
    label = f"statement {stmt_id} in {name}"
    try:
        _too_long_amount(text, first_line)
        opening = _balance(data, ("final_opening_balance", "intermediate_opening_balance"))
        closing = _balance(data, ("final_closing_balance", "intermediate_closing_balance"))
    except StatementError as exc:
        parsed = ParsedStatement("mt940", stmt_id, f"{account or '?'}:{stmt_id}:?",
                                 {"format": "mt940", "statement_id": stmt_id, "account_iban": account})
        return parsed.reject(label, exc)
    payload: dict[str, Any] = {
        "format": "mt940",
        "statement_id": stmt_id,
        "reference": ref,
        "statement_number": number,
        "sequence_number": _text(data.get("sequence_number")),
        "account_iban": account,
        "currency": opening[0] if opening else None,
        "balances": [
            {"type": kind, "currency": b[0], "amount": b[1], "date": b[2]}
            for kind, b in (("OPBD", opening), ("CLBD", closing)) if b is not None
        ],
        "entry_count": len(block),
    }
    source_id = f"{account or '?'}:{stmt_id}:{opening[2] if opening else '?'}"
    parsed = ParsedStatement("mt940", stmt_id, source_id, payload)
    try:
        if opening is None or closing is None:
            raise StatementError(f"{label}: no {':60F:' if opening is None else ':62F:'} balance")
        base = {"format": "mt940", "statement_id": stmt_id, "account_iban": account}
        lines = [first_line + i for i, line in enumerate(text.split("\n")) if line.startswith(":61:")]
        entries = [
            _entry(t.data, base, opening[0], f"line {lines[i - 1]} (:61:)" if i <= len(lines) else f"entry {i} (:61:)")
            for i, t in enumerate(block, 1)
        ]
        balance_gate(label, {opening[0]: opening[1]}, {closing[0]: closing[1]},
                     ((e["currency"], e["signed_amount"]) for _, e in entries))
    except StatementError as exc:
        return parsed.reject(label, exc)
    return parsed.accept(label, entries)


def _field(block: str, tag: str) -> str | None:
    m = re.search(rf"(?m)^:{tag}:(.*)$", block)
    return m.group(1).strip() or None if m else None


def _broken(block: str, name: str, first_line: int, exc: Exception, n: int) -> ParsedStatement:
    """A statement block mt-940 cannot read: rejected whole, naming the file line of the bad field."""
    ref = _field(block, "20") or f"#{n}"
    number = (_field(block, "28C") or "").split("/")[0] or None
    stmt_id = f"{ref}/{number}" if number else ref
    account = _field(block, "25")
    tag, value = (exc.args[1], exc.args[2]) if len(exc.args) == 3 else (None, "")
    tag_id = str(getattr(tag, "id", "?"))
    line = first_line - 1 + _line_of(block, f":{tag_id}:", str(value))
    parsed = ParsedStatement("mt940", stmt_id, f"{account or '?'}:{stmt_id}:?",
                             {"format": "mt940", "statement_id": stmt_id, "account_iban": account})
    detail = f"cannot read field :{tag_id}: ({getattr(tag, 'name', 'unknown')}) from {str(value)[:60]!r}" \
        if tag is not None else f"cannot parse: {exc}"
    return parsed.reject(f"statement {stmt_id} in {name}", StatementError(f"line {line}: {detail}"))


def parse_mt940(data: bytes, name: str) -> list[ParsedStatement]:
    """Every statement of an MT940 file, each with its entries or its rejection reason.

    Statements are the ``:20:`` blocks; each is parsed on its own, so a block with an unreadable
    field is rejected (with its file line) and the others still import.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # SWIFT's character set is a subset; banks often send Latin-1
    text = text.replace("\r\n", "\n")
    pieces = re.split(r"(?m)^(?=:20:)", text)
    if len(pieces) < 2:
        raise InputError(f"{name}: no MT940 statement (no :20: tag) found")
    mt_logger = logging.getLogger("mt940")
    level = mt_logger.level
    # mt-940 logs its regex attempts at ERROR level before raising; the raise is what we report.
    mt_logger.setLevel(logging.CRITICAL)
    out: list[ParsedStatement] = []
    line = pieces[0].count("\n") + 1
    try:
        for n, block in enumerate(pieces[1:], 1):
            try:
                parsed = mt940lib.parse(
                    block, processors={"post_transaction_details": [transaction_details_post_processor_with_space]},
                    options=mt940lib.Options(applicant_iban=True),
                )
                out.append(_statement(parsed, block, line, name, n))
            except (RuntimeError, ValueError, KeyError, AttributeError, TypeError, ArithmeticError) as exc:
                out.append(_broken(block, name, line, exc, n))
            line += block.count("\n")
    finally:
        mt_logger.setLevel(level)
    return out


def _line_of(text: str, tag: str, value: str) -> int:
    """The line where ``tag`` starts with ``value`` (the first line of the tag if none matches exactly)."""
    first = 0
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith(tag):
            if line[len(tag):].strip().startswith(value.strip()[:20]):
                return i
            first = first or i
    return first or 1

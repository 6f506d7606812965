"""What the bank statement parsers share: the statement shape, its rejection, the balance gate, ids.

A parser (:mod:`connectors.camt053`, :mod:`connectors.mt940`) turns one file into
:class:`ParsedStatement` objects; :mod:`connectors.statements` detects the format and lands them.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import Any

from canonical import db
from canonical.money import MINOR_UNITS, insane_amount
from connectors.base import unstorable_id

# Digits of a statement's arithmetic: every amount is below its sane bound (at most 10**18) with at most
# 12 decimal places (canonical.money.insane_amount), 30 digits, so the sums of any file's entries stay
# exact (the default context's 28 digits would round them).
_SUM_DIGITS = 64


class StatementError(ValueError):
    """A statement cannot be accepted (unreadable part, or failed balance gate); its message says why."""


@dataclass(slots=True)
class ParsedStatement:
    """One statement of a file: its raw payload, its entries, or why it is rejected."""

    format: str  # "camt053" | "mt940"
    statement_id: str
    source_id: str
    payload: dict[str, Any]
    entries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (source id, payload)
    error: str | None = None

    def reject(self, label: str, exc: StatementError) -> ParsedStatement:
        """Mark rejected: nothing of it will land. The reason is prefixed with ``label`` once."""
        msg = str(exc)
        # a U+0000 of the file (an MT940 :20:) cannot be stored in a text column on PostgreSQL
        self.error = (msg if msg.startswith(label) else f"{label}: {msg}").replace("\x00", "\ufffd")
        self.entries = []
        return self

    def accept(self, label: str, entries: list[tuple[str, dict[str, Any]]]) -> ParsedStatement:
        """Keep these entries, with source ids made unique within the statement; rejected (``label`` as
        for :meth:`reject`) if the statement's or an entry's id cannot be a key in the store (over 255
        characters, U+0000): it is not landed without an entry that the balance gate counted."""
        ids = unique_ids([sid for sid, _ in entries])
        problem = unstorable_id(self.source_id)
        if problem is not None:
            return self.reject(label, StatementError(f"statement id {self.source_id[:80]!r}: {problem}"))
        for n, sid in enumerate(ids, 1):
            problem = unstorable_id(sid)
            if problem is not None:
                return self.reject(label, StatementError(f"entry {n}: reference {sid[:80]!r}: {problem}"))
        self.entries = [(sid, e) for sid, (_, e) in zip(ids, entries, strict=True)]
        return self

    @property
    def entry_object(self) -> str:
        return f"{self.format}.entry"

    @property
    def statement_object(self) -> str:
        return f"{self.format}.statement"


def check_amount(value: Decimal, currency: str, what: str) -> Decimal:
    """``value`` if it is a sane amount in ``currency`` (:func:`canonical.money.insane_amount`), else a
    StatementError naming ``what``: an absurd amount rejects its statement instead of reaching the sums."""
    problem = insane_amount(value, currency)
    if problem is not None:
        raise StatementError(f"{what}: {problem}")
    return value


def exact_sums() -> AbstractContextManager[Context]:
    """The decimal context of a statement's arithmetic (balance gate, batch sums, charges): exact for
    sane amounts (:func:`check_amount`), where the default context's 28 digits would round a sum."""
    return localcontext(prec=_SUM_DIGITS)


def fmt_amount(value: Decimal, currency: str) -> str:
    """``1000.00 EUR``: the currency's minor units where that is exact, else every digit (no exponent)."""
    exp = Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2))
    try:
        with exact_sums():
            q = value.quantize(exp)
    except InvalidOperation:  # more digits than any sane amount has: shown as they are
        return f"{value} {currency}"
    return f"{q if q == value else format(value, 'f')} {currency}"


def balance_gate(
    label: str,
    opening: Mapping[str, Decimal],
    closing: Mapping[str, Decimal],
    entries: Iterable[tuple[str, Decimal]],
) -> None:
    """Check opening + sum(signed booked entries) = closing per currency; raise StatementError if not.

    ``label`` is how the message names the statement, e.g. ``statement S1 in nov.xml``. The amounts
    are sane ones (:func:`check_amount`), so the sums (:func:`exact_sums`) are exact.
    """
    with exact_sums():
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for currency, signed in entries:
            sums[currency] += signed
        for currency in sorted(set(opening) | set(closing) | set(sums)):
            if currency not in opening:
                raise StatementError(f"{label}: no opening booked balance (OPBD/PRCD or :60F:) in {currency}")
            if currency not in closing:
                raise StatementError(f"{label}: no closing booked balance (CLBD or :62F:) in {currency}")
            total = sums.get(currency, Decimal(0))
            expected = opening[currency] + total
            if expected != closing[currency]:
                f = fmt_amount
                raise StatementError(
                    f"{label}: opening {f(opening[currency], currency)} + entries {f(total, currency)} = "
                    f"{f(expected, currency)} but closing balance says {f(closing[currency], currency)} "
                    f"(difference {f(expected - closing[currency], currency)})"
                )


def fallback_id(parts: Iterable[Any]) -> str:
    """A stable source id for an entry without a bank reference: ``h:`` + hash of what identifies it."""
    return "h:" + hashlib.blake2b(db.dumps([str(p) if p is not None else None for p in parts]),
                                  digest_size=10).hexdigest()


def unique_ids(ids: list[str]) -> list[str]:
    """Keep ids unique within one statement: a repeated reference gets ``~2``, ``~3``… in file order.

    Some banks reuse a reference inside one statement; without this the later entry would
    overwrite the earlier one in the landing table while the balance gate still counted both.
    """
    seen: Counter[str] = Counter()
    out = []
    for sid in ids:
        seen[sid] += 1
        out.append(sid if seen[sid] == 1 else f"{sid}~{seen[sid]}")
    return out

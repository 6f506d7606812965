"""What a cell of a written file may hold: report writers never crash on data, and never run it.

* Spreadsheet formula injection (OWASP "CSV Injection"): a text cell that starts with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return is prefixed with a single quote, so Excel, LibreOffice and
  Google Sheets show it as text instead of evaluating it (an account named ``=HYPERLINK(...)``, an
  owner ``=cmd|' /C calc'!A0``). Numbers stay numbers: Decimal and int values are never prefixed, and
  a text that is a plain signed number (``-12.50``) is left as it is.
* Control characters: XML 1.0 (and so XLSX) cannot hold U+0000-U+001F except tab, newline and
  carriage return; HTML parsers replace NUL. They are replaced by U+FFFD (visible, not silently dropped).
* Amounts a spreadsheet cannot hold as a number (beyond an IEEE double, NaN, infinity) stay exact as text.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a formula may start with
# The same, as patterns for Polars' string expressions (a writer's fast path: a text of printable ASCII that starts no
# formula is one neutralise leaves as it is; tab and carriage return are not printable ASCII)
PRINTABLE_ASCII = r"^[ -~]*$"
STARTS_FORMULA = r"^[=+\-@\t\r]"
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
REPLACEMENT = "\ufffd"
# Excel's largest number is 9.99999999999999E+307; beyond a double's range a cell cannot hold it at all.
MAX_SPREADSHEET_NUMBER = Decimal("9.99999999999999E+307")


def clean_text(text: str) -> str:
    """The text with control characters (NUL...) replaced by U+FFFD; tabs and line breaks kept."""
    return _CONTROL.sub(REPLACEMENT, text)


def neutralise(text: str) -> str:
    """A text cell made safe for spreadsheets (OWASP CSV-injection guidance), control characters replaced."""
    text = clean_text(text)
    if text.startswith(FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def spreadsheet_number(value: Decimal) -> bool:
    """True if a spreadsheet can hold ``value`` as a number (finite, within a double's range)."""
    try:
        return value.is_finite() and abs(value) <= MAX_SPREADSHEET_NUMBER
    except InvalidOperation:
        return False


def plain_decimal(value: Decimal) -> str:
    """An exact decimal as plain text (``1.23E+29`` -> ``123000000000000000000000000000``), any size."""
    if not value.is_finite():
        return str(value)
    text = format(value, "f")
    return text


def csv_value(value: Any) -> str:
    """One CSV field: numbers exact, dates ISO, text neutralised."""
    if type(value) is str:  # most fields: printable text that cannot start a formula is written as it is
        return value if value.isprintable() and not value.startswith(FORMULA_START) else neutralise(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return plain_decimal(value)
    if isinstance(value, int):
        return str(value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return neutralise(str(value))

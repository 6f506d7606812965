"""The XLSX writer's fast path for plain text cells writes what its general path writes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from reports.xlsx import MAX_WIDTH, _Sheet
from reports.xlsx_stream import Workbook

TEXTS = ["", "plain", " lead", "trail ", "a&b<c>d", "=SUM(A1)", "-12.50", "+x", "@x", "\tx", "tab\tinside",
         "line\nbreak", "nul\x00x", "bell\x07", "del\x7f", "雪花 wide", "é accent", "x" * 80, "\u2028sep", "'quoted"]


def _rows(sheet: _Sheet) -> str:
    sheet.ws._flush()  # the rows held back
    data = sheet.ws._data
    data.seek(0)
    return data.read()


@pytest.mark.parametrize("text", TEXTS)
def test_fast_text_cells_match_the_general_path(tmp_path: Path, text: str) -> None:
    book = Workbook(tmp_path / "x.xlsx")
    fast = _Sheet(book, "fast", ["h1", "h2", "h3"])
    general = _Sheet(book, "general", ["h1", "h2", "h3"])
    fast.add([text, None, text])
    cells: list[str] = []
    widths = [general._cell(cells, f"{col}2", i, v, None, None, None)
              for i, (col, v) in enumerate(zip("ABC", [text, None, text], strict=True))]
    general.ws.row(cells)
    assert _rows(fast) == _rows(general)
    assert fast.widths == [max(w, h) for w, h in zip(widths, general.widths, strict=True)]
    assert max(fast.widths) <= max(MAX_WIDTH, 4)


CELLS: list[tuple[object, dict[str, object]]] = [
    (Decimal("1234.5"), {"money": "EUR"}), (Decimal("-0.001"), {"format": "#,##0.0"}), (Decimal("7"), {}),
    (Decimal("1E+16"), {"money": "JPY"}), (Decimal("1E+400"), {"money": "USD"}), (Decimal("NaN"), {}),
    (Decimal("12"), {"money": None}), (date(2026, 1, 2), {}), (None, {"link": "https://x.test/n"}),
    ("linked", {"link": "https://x.test/1"}), ("=linked", {"link": "https://x.test/2"}), ("text", {"link": ""}),
    (Decimal("5"), {"link": "https://x.test/3", "money": "EUR"}), (date(2026, 1, 2), {"link": "https://x.test/4"}),
]


@pytest.mark.parametrize(("value", "how"), CELLS)
def test_fast_cells_match_the_general_path(tmp_path: Path, value: object, how: dict[str, object]) -> None:
    book = Workbook(tmp_path / "x.xlsx")
    fast = _Sheet(book, "fast", ["h"])
    general = _Sheet(book, "general", ["h"])
    money = {0: how["money"]} if "money" in how else None
    formats = {0: how["format"]} if "format" in how else None
    links = {0: how["link"]} if "link" in how else None
    fast.add([value], money=money, links=links, formats=formats)  # type: ignore[arg-type]
    cells: list[str] = []
    width = general._cell(cells, "A2", 0, value, links[0] if links else None, money, formats)  # type: ignore[arg-type]
    general.ws.row(cells)
    assert _rows(fast) == _rows(general)
    assert fast.ws.links == general.ws.links
    assert fast.widths == [max(width, general.widths[0])]


def test_a_long_header_keeps_its_width(tmp_path: Path) -> None:
    header = "h" * 70
    sheet = _Sheet(Workbook(tmp_path / "x.xlsx"), "s", [header])
    sheet.add(["y" * 100])
    assert sheet.widths == [72]  # the header's own width, not the capped cell's


def test_other_cells_take_the_general_path(tmp_path: Path) -> None:
    sheet = _Sheet(Workbook(tmp_path / "x.xlsx"), "s", ["a", "b", "c", "d"])
    sheet.add([Decimal("1234.5"), date(2026, 1, 2), "linked", 7], money={0: "EUR"}, links={2: "https://x.test/1"})
    row = _rows(sheet).split('<row r="2">', 1)[1]
    assert '<c r="A2" s="2"><v>1234.5</v></c>' in row
    assert '<c r="B2" s="3"><v>46024</v></c>' in row
    assert 't="inlineStr"><is><t>linked</t></is></c>' in row and sheet.ws.links == [("C2", "https://x.test/1")]
    assert '<c r="D2"><v>7</v></c>' in row


def test_amount_styles_follow_each_rows_currency_and_format(tmp_path: Path) -> None:
    """An amount column's style is its row's currency (or number format), however the rows before it were styled;
    a column already at its widest is not measured again, and stays so."""
    book = Workbook(tmp_path / "x.xlsx")
    fast = _Sheet(book, "fast", ["amount", "text"])
    general = _Sheet(book, "general", ["amount", "text"])
    rows: list[tuple[Decimal, dict[int, str | None] | None, dict[int, str] | None]] = [
        (Decimal("1.5"), {0: "EUR"}, None), (Decimal("2"), {0: "JPY"}, None), (Decimal("3.25"), None, {0: "#,##0.0"}),
        (Decimal("4"), None, {0: "+#,##0;-#,##0;0"}), (Decimal("5.125"), {0: "KWD"}, None), (Decimal("6"), {0: "EUR"}, None),
        (Decimal("7"), {0: None}, None), (Decimal("8"), None, None)]
    expected_widths = [0, 0]
    for n, (amount, money, formats) in enumerate(rows):
        text = "w" * (30 * n)  # past MAX_WIDTH from the third row on
        fast.add([amount, text], money=money, formats=formats)
        cells: list[str] = []
        ws = [general._cell(cells, f"{col}{n + 2}", i, v, None, money, formats)
              for i, (col, v) in enumerate(zip("AB", [amount, text], strict=True))]
        general.ws.row(cells)
        general.row += 1
        expected_widths = [max(a, b) for a, b in zip(expected_widths, ws, strict=True)]
    assert _rows(fast) == _rows(general)
    assert fast.widths == [max(w, h) for w, h in zip(expected_widths, general.widths, strict=True)]
    assert fast.widths[1] == MAX_WIDTH

"""A small streaming XLSX (SpreadsheetML, ECMA-376) writer: the cells report.xlsx needs, row by row.

openpyxl keeps every cell as an object and serialises each through its descriptor machinery: a
20,000-chain report spent most of its time there. This writer turns a row into its XML text at
once, buffers one sheet's rows in a spooled file (a sheet's column widths precede its rows in the
file, and are known only once the rows are written) and copies it into the zip when the sheet is
finished. Only what the report uses: inline strings, numbers, booleans, dates and instants (serial
days, 1900 date system), number formats, a bold and a link font, right alignment, a frozen header
row, an autofilter, column widths and external hyperlinks.
"""

from __future__ import annotations

import functools
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO

from canonical.money import minor_units

_EPOCH = date(1899, 12, 30)  # serial day 0 of the 1900 date system (with Excel's leap-year bug baked in)

FONT_PLAIN, FONT_BOLD, FONT_LINK = 0, 1, 2
_ROWS_HELD = 500  # rows a sheet holds before it writes them to its spooled file


MAX_WIDTH = 60  # a column's width at most, in characters
DATE_FORMAT = "yyyy-mm-dd"


@functools.lru_cache(maxsize=1024)
def money_format(currency: str | None) -> str:
    """The number format of an amount in ``currency``: its decimals and its code (each currency's made once)."""
    try:
        places = minor_units(currency) if currency else 2
    except ValueError:
        places = 2
    number = "#,##0" + ("." + "0" * places if places else "")
    code = "".join(ch for ch in (currency or "") if ch.isalnum())[:3]
    return f"{number} [${code}]" if code else number


def display_width(text: str) -> int:
    """How many columns a text takes: two for a wide East Asian character, one for any other."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def column_letter(n: int) -> str:
    """1 -> A, 27 -> AA."""
    out = ""
    while n > 0:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(text: str) -> str:
    return _esc(text).replace('"', "&quot;")


def serial_day(value: date) -> str:
    """A date or (naive) datetime as the spreadsheet's serial day number."""
    if isinstance(value, datetime):
        days = (value.date() - _EPOCH).days
        secs = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
        return repr(days + secs / 86400) if secs else str(days)
    return str((value - _EPOCH).days)


class Styles:
    """The cell formats (``cellXfs``) used so far: one per (number format, font, right-aligned, top-aligned)."""

    def __init__(self) -> None:
        self.formats: dict[str, int] = {}
        self.xfs: dict[tuple[int, int, bool, bool], int] = {(0, FONT_PLAIN, False, False): 0}

    def xf(self, number_format: str | None = None, font: int = FONT_PLAIN, right: bool = False,
           top: bool = False) -> int:
        fmt = 0
        if number_format:
            fmt = self.formats.setdefault(number_format, 164 + len(self.formats))
        key = (fmt, font, right, top)
        found = self.xfs.get(key)
        if found is None:
            found = self.xfs[key] = len(self.xfs)
        return found

    def xml(self) -> str:
        fmts = "".join(f'<numFmt numFmtId="{i}" formatCode="{_attr(f)}"/>' for f, i in self.formats.items())
        xfs = []
        for (fmt, font, right, top), _i in sorted(self.xfs.items(), key=lambda kv: kv[1]):
            attrs = f'numFmtId="{fmt}" fontId="{font}" fillId="0" borderId="0" xfId="0"'
            if fmt:
                attrs += ' applyNumberFormat="1"'
            if font:
                attrs += ' applyFont="1"'
            if right or top:
                inner = ('<alignment horizontal="right"/>' if right else '<alignment vertical="top" wrapText="0"/>')
                xfs.append(f'<xf {attrs} applyAlignment="1">{inner}</xf>')
            else:
                xfs.append(f"<xf {attrs}/>")
        return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                + (f'<numFmts count="{len(self.formats)}">{fmts}</numFmts>' if self.formats else "")
                + '<fonts count="3"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
                '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
                '<font><u/><sz val="11"/><color rgb="FF0563C1"/><name val="Calibri"/><family val="2"/></font></fonts>'
                '<fills count="2"><fill><patternFill patternType="none"/></fill>'
                '<fill><patternFill patternType="gray125"/></fill></fills>'
                '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
                '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
                f'<cellXfs count="{len(xfs)}">{"".join(xfs)}</cellXfs>'
                '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
                "</styleSheet>")


class SheetWriter:
    """One worksheet: :meth:`row` appends a row of ready cells (see :meth:`cell`), :meth:`close` ends it."""

    def __init__(self, book: Workbook, index: int, title: str) -> None:
        self.book, self.index, self.title = book, index, title
        self.rows = 0
        self.max_col = 0
        self.widths: list[float] = []
        self.freeze_header = False
        self.autofilter: str | None = None
        self.links: list[tuple[str, str]] = []  # (cell ref, URL)
        self._data: IO[str] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by close()
            max_size=8 << 20, mode="w+", encoding="utf-8")
        self._rows: list[str] = []  # rows not yet written to _data (:meth:`_flush`)

    @staticmethod
    def cell(ref: str, value: object, style: int = 0) -> str:
        """The XML of one cell: None (styled or not), bool, int, Decimal/float, date/datetime, or text."""
        s = f' s="{style}"' if style else ""
        if value is None:
            return f'<c r="{ref}"{s}/>' if style else ""
        if isinstance(value, bool):
            return f'<c r="{ref}"{s} t="b"><v>{int(value)}</v></c>'
        if isinstance(value, int | Decimal | float):
            return f'<c r="{ref}"{s}><v>{value}</v></c>'
        if isinstance(value, date):
            return f'<c r="{ref}"{s}><v>{serial_day(value)}</v></c>'
        text = str(value)
        space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
        return f'<c r="{ref}"{s} t="inlineStr"><is><t{space}>{_esc(text)}</t></is></c>'

    def row(self, cells: list[str]) -> None:
        self.rows += 1
        self._rows.append(f'<row r="{self.rows}">{"".join(cells)}</row>')
        if len(self._rows) >= _ROWS_HELD:
            self._flush()

    def add_rows(self, xml: str, n: int) -> None:
        """``n`` rows' XML made elsewhere (:mod:`reports.xlsx_frames`), numbered from the row after the last."""
        self._flush()
        self.rows += n
        self._data.write(xml)

    def _flush(self) -> None:
        """The rows held written to the spooled file at once (a write per row cost a sixth of a large sheet's time)."""
        self._data.write("".join(self._rows))
        self._rows.clear()

    def close(self) -> None:
        """Write the sheet into its workbook's package (and its hyperlinks' part)."""
        zf = self.book.zip
        if zf is None:
            raise RuntimeError("a sheet of a workbook without a file: write_part() it instead")
        with zf.open(f"xl/worksheets/sheet{self.index}.xml", "w", force_zip64=True) as raw:
            rels = self.write_part(raw)
        if rels is not None:
            zf.writestr(f"xl/worksheets/_rels/sheet{self.index}.xml.rels", rels)

    def write_part(self, raw: IO[bytes]) -> str | None:
        """The sheet's XML part written to ``raw``; returns its relationships part (its hyperlinks), if any."""
        cols = "".join(f'<col min="{i}" max="{i}" width="{w}" customWidth="1"/>'
                       for i, w in enumerate(self.widths, start=1))
        pane = ('<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
                '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>') if self.freeze_header else ""
        selected = ' tabSelected="1"' if self.index == 1 else ""
        head = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
                'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
                f'<sheetViews><sheetView workbookViewId="0"{selected}>{pane}</sheetView></sheetViews>'
                '<sheetFormatPr defaultRowHeight="15"/>'
                + (f"<cols>{cols}</cols>" if cols else "") + "<sheetData>")
        tail = "</sheetData>"
        if self.autofilter:
            tail += f'<autoFilter ref="{self.autofilter}"/>'
        if self.links:
            tail += "<hyperlinks>" + "".join(f'<hyperlink ref="{ref}" r:id="rId{i}"/>'
                                             for i, (ref, _u) in enumerate(self.links, start=1)) + "</hyperlinks>"
        tail += ('<pageMargins left="0.75" right="0.75" top="1" bottom="1" header="0.5" footer="0.5"/>'
                 "</worksheet>")
        raw.write(head.encode())
        self._flush()
        self._data.seek(0)
        while chunk := self._data.read(1 << 20):
            raw.write(chunk.encode("utf-8"))
        raw.write(tail.encode())
        self._data.close()
        if not self.links:
            return None
        rels = "".join(f'<Relationship Id="rId{i}" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                       f'relationships/hyperlink" Target="{_attr(url)}" TargetMode="External"/>'
                       for i, (_r, url) in enumerate(self.links, start=1))
        return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns='
                f'"http://schemas.openxmlformats.org/package/2006/relationships">{rels}</Relationships>')


@dataclass(frozen=True)
class ReservedSheet:
    """A sheet the workbook lists whose part is written elsewhere and added by :func:`add_sheet_part`."""

    index: int
    title: str


def add_sheet_part(path: Path, index: int, part: Path, rels: str | None) -> None:
    """Put a sheet's XML part (written by :meth:`SheetWriter.write_part`) and its relationships into the
    package at ``path``, in the place :meth:`Workbook.reserve_sheet` kept for it."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(f"xl/worksheets/sheet{index}.xml", "w", force_zip64=True) as raw, part.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                raw.write(chunk)
        if rels is not None:
            zf.writestr(f"xl/worksheets/_rels/sheet{index}.xml.rels", rels)


class Workbook:
    """A workbook written to ``path`` as its sheets are finished; :meth:`close` writes the package parts."""

    def __init__(self, path: Path | None) -> None:
        """``path`` None: a book only to style and number sheets whose parts are written elsewhere."""
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) if path else None
        self.styles = Styles()
        self.sheets: list[SheetWriter | ReservedSheet] = []

    def add_sheet(self, title: str, index: int | None = None) -> SheetWriter:
        """The next sheet (``index``: its place in the workbook its part is written for)."""
        sheet = SheetWriter(self, index or len(self.sheets) + 1, title)
        self.sheets.append(sheet)
        return sheet

    def reserve_sheet(self, title: str) -> ReservedSheet:
        """The next sheet's place, for a part written elsewhere (:func:`add_sheet_part` once this book is closed)."""
        sheet = ReservedSheet(len(self.sheets) + 1, title)
        self.sheets.append(sheet)
        return sheet

    def close(self) -> None:
        n = len(self.sheets)
        z = self.zip
        if z is None:
            raise RuntimeError("a workbook without a file cannot be closed")
        decl = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
        sheet_ct = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
        z.writestr("[Content_Types].xml", decl + (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            + "".join(f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{sheet_ct}"/>'
                      for i in range(1, n + 1))
            + '<Override PartName="/docProps/core.xml" '
            'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
            '<Override PartName="/docProps/app.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.extended-properties+xml"/>'
            "</Types>"))
        z.writestr("_rels/.rels", decl + (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/>'
            '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/'
            'core-properties" Target="docProps/core.xml"/>'
            f'<Relationship Id="rId3" Type="{rel}/extended-properties" Target="docProps/app.xml"/>'
            "</Relationships>"))
        z.writestr("docProps/app.xml", decl + (
            '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
            "<Application>ltc-hub</Application></Properties>"))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        z.writestr("docProps/core.xml", decl + (
            '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><dc:creator>ltc-hub</dc:creator>'
            f'<dcterms:created xsi:type="dcterms:W3CDTF">{now}</dcterms:created></cp:coreProperties>'))
        sheets = "".join(f'<sheet name="{_attr(s.title)}" sheetId="{s.index}" r:id="rId{s.index}"/>'
                         for s in self.sheets)
        z.writestr("xl/workbook.xml", decl + (
            '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            f'xmlns:r="{rel}"><bookViews><workbookView activeTab="0"/></bookViews>'
            f"<sheets>{sheets}</sheets></workbook>"))
        z.writestr("xl/_rels/workbook.xml.rels", decl + (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            + "".join(f'<Relationship Id="rId{i}" Type="{rel}/worksheet" Target="worksheets/sheet{i}.xml"/>'
                      for i in range(1, n + 1))
            + f'<Relationship Id="rId{n + 1}" Type="{rel}/styles" Target="styles.xml"/></Relationships>'))
        z.writestr("xl/styles.xml", self.styles.xml())
        z.close()

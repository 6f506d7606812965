"""``report.xlsx``: the report as a workbook finance can filter, sum and click through.

Every sheet has a bold frozen header, an autofilter over its rows and columns sized to their
content. Money is a number (exact decimal text in the file, so nothing is lost to binary floats)
with its currency's number format on each cell (``#,##0.00 [$EUR]``, JPY without decimals, KWD
with three) and a currency column beside the amounts. Records link to their source systems.
Sheets: KPIs (with formula variants and the change since the last run), exceptions by code,
exceptions, chains, records, and one sheet per exception code. Text is neutralised against formula
injection and control characters (:mod:`reports.cells`); amounts a spreadsheet cannot hold as a
number stay exact as text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from reports import labels
from reports.cells import FORMULA_START, neutralise, plain_decimal, spreadsheet_number
from reports.i18n import translations
from reports.model import Report
from reports.xlsx_frames import Column, add_rows
from reports.xlsx_stream import (
    DATE_FORMAT,
    FONT_BOLD,
    FONT_LINK,
    FONT_PLAIN,
    MAX_WIDTH,
    SheetWriter,
    Workbook,
    column_letter,
    display_width,
    money_format,
    serial_day,
)

_DIGITS_SHOWN = Decimal("1e15")  # an amount this large is sized by its plain digits, not grouped with 2 decimals


MAX_SHEET_ROWS = 1_048_576
"""Rows a sheet holds in Excel (and LibreOffice), the header's included. A larger sheet is a broken workbook: Excel
offers to "repair" it and drops what is past the limit. The records sheet passes it from about 250k chains."""


class _Sheet:
    """A sheet written row by row (streamed, :mod:`reports.xlsx_stream`): cells typed, formats per
    cell, widths tracked; rows past :data:`MAX_SHEET_ROWS` are left out, the last row saying how many and where
    they are."""

    def __init__(self, book: Workbook, title: str, headers: list[str], index: int | None = None,
                 gettext: Callable[[str], str] = str) -> None:
        self.ws = book.add_sheet(title, index)
        self.styles = book.styles
        self.widths = [display_width(h) + 2 for h in headers]
        self.letters = [column_letter(i) for i in range(1, len(headers) + 1)]
        self.money_styles: dict[str | None, str] = {}  # currency -> the style attribute of its amounts
        bold = self.styles.xf(font=FONT_BOLD, top=True)
        self.ws.row([SheetWriter.cell(f"{self.letters[i]}1", neutralise(h), bold) for i, h in enumerate(headers)])
        self.row = 1
        self.limit = MAX_SHEET_ROWS
        self.left_out = 0  # rows past the limit
        self.bold = bold
        self.gettext = gettext

    def _letter(self, col: int) -> str:
        while len(self.letters) < col:
            self.letters.append(column_letter(len(self.letters) + 1))
            self.widths.append(0)
        return self.letters[col - 1]

    def add(self, values: list[Any], *, money: dict[int, str | None] | None = None,
            links: dict[int, str | None] | None = None, formats: dict[int, str] | None = None) -> None:
        """One row; ``money``: column -> currency of an amount; ``links``: column -> URL."""
        if self.row >= self.limit - 1:  # the sheet's last row is kept for the note of what was left out
            self.left_out += 1
            return
        self.row += 1
        row = str(self.row)
        styles, widths, money_styles = self.styles, self.widths, self.money_styles
        if len(values) > len(self.letters):
            self._letter(len(values))  # the letters (and widths) of the columns up to this row's last
        letters = self.letters
        cells: list[str] = []
        for i, v in enumerate(values):
            url = links.get(i) if links else None
            kind = type(v)
            # the common cells (text, with a link or not; an amount or a date without one) are written here
            # at once (a large report has a million cells): the same XML, style and width as _cell gives them; a
            # column already MAX_WIDTH wide is not measured again
            if kind is str:
                text = v if v.isprintable() and not v.startswith(FORMULA_START) else neutralise(v)
                # what strip() takes off is what isspace() calls space: text with it at either end keeps it
                space = ' xml:space="preserve"' if text.strip() != text else ""
                ref = letters[i] + row
                style = ""
                if url:
                    self.ws.links.append((ref, url))
                    style = f' s="{styles.xf(None, FONT_LINK)}"'
                esc = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") if (
                    "&" in text or "<" in text or ">" in text) else text
                cells.append(f'<c r="{ref}"{style} t="inlineStr"><is><t{space}>{esc}</t></is></c>')
                if widths[i] < MAX_WIDTH:
                    w = (len(text) if text.isascii() else display_width(text)) + 2
                    if w > widths[i]:
                        widths[i] = w if w < MAX_WIDTH else MAX_WIDTH
                continue
            if v is None and not url:
                w = 2
            elif kind is Decimal and not url and spreadsheet_number(v):
                ccy: str | None = None
                if money and i in money:
                    ccy = money[i]
                    known = money_styles.get(ccy)
                    if known is None:
                        known = money_styles[ccy] = f' s="{styles.xf(money_format(ccy))}"'
                    style = known
                else:
                    fmt = formats.get(i) if formats else None
                    style = f' s="{styles.xf(fmt)}"' if fmt else ""
                cells.append(f'<c r="{letters[i]}{row}"{style}><v>{v}</v></c>')
                if widths[i] >= MAX_WIDTH:
                    continue
                shown = f"{v:,.2f}" if abs(v) < _DIGITS_SHOWN else plain_decimal(v)
                if money and i in money:
                    shown += " " + (ccy or "")
                w = min((len(shown) if shown.isascii() else display_width(shown)) + 2, MAX_WIDTH)
            elif kind is date and not url:
                cells.append(f'<c r="{letters[i]}{row}" s="{styles.xf(DATE_FORMAT)}"><v>{serial_day(v)}</v></c>')
                w = 12  # "2026-01-01" and its margin
            else:
                w = self._cell(cells, letters[i] + row, i, v, url, money, formats)
            if w > widths[i]:
                widths[i] = w
        self.ws.row(cells)

    def _cell(self, cells: list[str], ref: str, i: int, v: Any, url: str | None,
              money: dict[int, str | None] | None, formats: dict[int, str] | None) -> int:
        """One cell of any kind appended to ``cells``; returns its width."""
        shown: str
        fmt: str | None = None
        right = False
        value: Any
        if isinstance(v, Decimal):
            if spreadsheet_number(v):
                value = v
                if money and i in money:
                    fmt = money_format(money[i])
                elif formats and i in formats:
                    fmt = formats[i]
                shown = f"{v:,.2f}" if abs(v) < _DIGITS_SHOWN else plain_decimal(v)
            else:  # beyond a double: the exact digits as text
                value = shown = plain_decimal(v)
                right = True
        elif isinstance(v, bool) or v is None or isinstance(v, int):
            value = v
            shown = "" if v is None else str(v)
        elif isinstance(v, datetime):
            value = v.replace(tzinfo=None)
            fmt = "yyyy-mm-dd hh:mm"
            shown = "2026-01-01 00:00"
        elif hasattr(v, "isoformat"):
            value = v
            fmt = DATE_FORMAT
            shown = "2026-01-01"
        else:
            value = shown = neutralise(str(v))
        font = FONT_PLAIN
        if url:
            self.ws.links.append((ref, url))
            font = FONT_LINK
        style = self.styles.xf(fmt, font, right) if (fmt or right or url) else 0
        cells.append(SheetWriter.cell(ref, value, style))
        if money and i in money and isinstance(value, Decimal):
            shown += " " + (money[i] or "")
        return min((len(shown) if shown.isascii() else display_width(shown)) + 2, MAX_WIDTH)

    def settle(self) -> SheetWriter:
        """The sheet's frozen header, autofilter and widths set: ready to be written out."""
        ws = self.ws
        ws.freeze_header = True
        ws.autofilter = f"A1:{self.letters[-1]}{max(self.row, 1)}"
        if self.left_out:
            self.row += 1
            note = self.gettext("… %(n)s more rows are not in this sheet: a sheet holds %(limit)s rows in Excel. "
                                "chains.csv, beside this workbook, has every chain with its orders, invoices and "
                                "payments.") % {"n": f"{self.left_out:,}", "limit": f"{self.limit:,}"}
            ws.row([SheetWriter.cell(f"A{self.row}", note, self.bold)])
            self.left_out = 0
        ws.widths = [max(8, w) for w in self.widths]
        return ws

    def finish(self) -> None:
        self.settle().close()


def _sheet_title(text: str, taken: set[str]) -> str:
    clean = "".join("_" if ch in "[]:*?/\\" else ch for ch in text)[:31] or "Sheet"
    title, n = clean, 2
    while title.lower() in taken:
        title = f"{clean[:28]}~{n}"
        n += 1
    taken.add(title.lower())
    return title


StylesUsed = tuple[tuple[tuple[str, int], ...], tuple[tuple[tuple[int, int, bool, bool], int], ...]]
"""A workbook's number formats and cell formats with their ids (:class:`~reports.xlsx_stream.Styles`)."""


def _styles_used(wb: Workbook) -> StylesUsed:
    return tuple(wb.styles.formats.items()), tuple(wb.styles.xfs.items())


def _preregister(wb: Workbook, report: Report) -> None:
    """The cell formats the chains and records sheets use, registered first, in one order: such a sheet written by
    another process (:func:`write_sheet_part`) then numbers them as the workbook does."""
    st = wb.styles
    st.xf(font=FONT_BOLD, top=True)  # headers
    st.xf(None, FONT_LINK)  # links
    st.xf(DATE_FORMAT)
    st.xf(None, FONT_PLAIN, True)  # an amount beyond a spreadsheet's numbers: its digits as text, right-aligned
    currencies = report.records.currencies() | report.chains.currencies()
    for currency in sorted(currencies, key=lambda c: (c is None, str(c))):
        st.xf(money_format(currency))


def write_xlsx(path: Path, report: Report, *, lang: str = "en", locale: str = "en_US",
               apart: str | None = None) -> tuple[int, StylesUsed]:
    """Write the workbook. ``apart`` (``chains`` or ``records``): that sheet is left for :func:`write_sheet_part`
    (written meanwhile by another process) and :func:`~reports.xlsx_stream.add_sheet_part`, which puts it in its
    place. Returns that sheet's place (0 without) and the styles the workbook's sheets use."""
    _ = translations(lang).gettext
    wb = Workbook(path)
    _preregister(wb, report)
    taken: set[str] = set()

    def sheet(title: str, headers: list[str]) -> _Sheet:
        return _Sheet(wb, _sheet_title(title, taken), headers, gettext=_)

    # KPIs
    s = sheet(_("KPIs"), [_("KPI"), _("Value"), _("Unit"), _("Previous run"), _("Change"), _("Formula variant"),
                          _("Formula"), _("Numerator"), _("Denominator"), _("Period start"), _("Period end"),
                          _("KPI code")])
    for k in report.kpis:
        unit = k["unit"]
        is_money = len(unit) == 3 and unit.isupper()
        prev = report.previous.get((k["kpi"], k["variant"]))
        change = (k["value"] - prev) if k["value"] is not None and prev is not None else None
        fmt = {1: "#,##0", 3: "#,##0", 4: "+#,##0;-#,##0;0"} if unit == "count" else \
            {1: "#,##0.0", 3: "#,##0.0", 4: "+#,##0.0;-#,##0.0;0.0"}
        s.add([labels.label(labels.KPI_LABELS, k["kpi"], _), k["value"], labels.label(labels.UNITS, unit, _), prev, change,
               k["variant"], labels.label(labels.VARIANT_NOTES, k["variant"], _), k["numerator"], k["denominator"],
               k["period_start"], k["period_end"], k["kpi"]],
              money={1: unit, 3: unit, 4: unit} if is_money else None, formats=None if is_money else fmt)
    s.finish()

    # Exceptions by code
    s = sheet(_("Exceptions by code"), [_("Code"), _("Exception"), _("Count"), _("Amount at risk"), _("Currency"),
                                        _("Owners"), _("Explanation")])
    for row in report.by_code:
        s.add([row["code"], labels.label(labels.CODE_TITLES, row["code"], _), row["count"], row["amount_reporting"],
               row["reporting_currency"], ", ".join(f"{o or _('unowned')} ({n})" for o, n in row["owner_counts"]),
               labels.label(labels.CODE_EXPLANATIONS, row["code"], _)],
              money={3: row["reporting_currency"]})
    s.finish()

    exc_headers = [_("Exception id"), _("Code"), _("Exception"), _("Status"), _("Severity"), _("Owner"),
                   _("Amount at risk"), _("Currency"), _("Amount in reporting currency"), _("Reporting currency"),
                   _("Chain"), _("Records"), _("First seen"), _("Last seen"), _("Evidence"), _("Source record")]

    def exception_row(sh: _Sheet, x: dict[str, Any]) -> None:
        recs = [report.named.get(i) for i in x["record_ids"]]
        url = next((r.url for r in recs if r is not None and r.url), None)
        first_rec = next((r for r in recs if r is not None and r.url), None)
        sh.add([x["fingerprint"], x["code"], labels.label(labels.CODE_TITLES, x["code"], _), labels.label(labels.STATUS, x["status"], _),
                labels.label(labels.SEVERITY, x["severity"], _), x["owner"], x["amount_at_risk"], x["currency"],
                x["amount_reporting"], x["reporting_currency"], x["chain_id"], x["records"], x["first_seen_at"],
                x["last_seen_at"], x["detail"],
                f"{first_rec.system} {first_rec.source_id}" if first_rec else None],
               money={6: x["currency"], 8: x["reporting_currency"]}, links={15: url})

    s = sheet(_("Exceptions"), exc_headers)
    for x in report.exceptions:
        exception_row(s, x)
    s.finish()

    # Chains, then records: either may be written apart (the two largest sheets)
    placed = 0
    for name, title in (("chains", _("Chains")), ("records", _("Records"))):
        headers, rows = _LARGE[name]
        if apart == name:
            placed = wb.reserve_sheet(_sheet_title(title, taken)).index
        else:
            s = sheet(title, headers(_))
            rows(s, report, _)
            s.finish()

    # One sheet per exception code
    by_code: dict[str, list[dict[str, Any]]] = {}
    for x in report.exceptions:
        by_code.setdefault(x["code"], []).append(x)
    for code in [b["code"] for b in report.by_code]:
        s = sheet(code, exc_headers)
        for x in by_code.get(code, []):
            exception_row(s, x)
        s.finish()
    wb.close()
    return placed, _styles_used(wb)


def _chains_headers(_: Any) -> list[str]:
    return [_("Chain"), _("Deal"), _("Customer"), _("Owner"), _("Stage"), _("Close date"), _("Currency"),
            _("Deal amount"), _("Ordered"), _("Invoiced"), _("Paid"), _("Open"), _("Status"), _("Exceptions"),
            _("Orders"), _("Invoices"), _("Payments")]


def _chains_rows(s: _Sheet, report: Report, _: Any) -> None:
    for c in report.chains:
        ccy = c["currency"]
        s.add([c["chain_id"], c["deal"], c["customer"], c["owner"], c["stage"], c["close_date"], ccy,
               c["deal_amount"], c["ordered"], c["invoiced"], c["paid"], c["open"],
               labels.label(labels.CHAIN_STATUS, c["status"], _), c["exceptions"], c["orders"], c["invoices"],
               c["payments"]],
              money={i: ccy for i in (7, 8, 9, 10, 11)}, links={1: c["deal_url"]})


def _records_headers(_: Any) -> list[str]:
    return [_("Chain"), _("Record"), _("System"), _("Object"), _("Source id"), _("Name or number"), _("Amount"),
            _("Currency"), _("Date"), _("Status"), _("Source record")]


def _records_rows(s: _Sheet, report: Report, _: Any) -> None:
    """One row per record of a chain or an exception, each linked to its source."""
    for chain, r in report.records.with_chain():
        s.add([chain, labels.label(labels.ENTITY, r.entity, _), r.system, r.object, r.source_id, r.label,
               r.amount, r.currency, r.day, r.status, r.url], money={6: r.currency}, links={10: r.url})


_LARGE = {"chains": (_chains_headers, _chains_rows), "records": (_records_headers, _records_rows)}

_CHAIN_SHEET = [Column("chain_id"), Column("deal", link="deal_url"), Column("customer"), Column("owner"),
                Column("stage"), Column("close_date", "date"), Column("currency"),
                *(Column(c, "money", currency="currency") for c in ("deal_amount", "ordered", "invoiced", "paid", "open")),
                Column("_status"), Column("exceptions"), Column("orders"), Column("invoices"), Column("payments")]


def _chains_frame_rows(s: _Sheet, report: Report, _: Any) -> None:
    """The chains sheet's rows as :func:`_chains_rows` writes them, made by Polars a frame of the chain table at a
    time (:mod:`reports.xlsx_frames`)."""
    for df in report.chains.frames():
        status = pl.col("status").cast(pl.String)
        shown = {v: labels.label(labels.CHAIN_STATUS, v, _) for v in df["status"].cast(pl.String).unique().to_list()
                 if v is not None}
        add_rows(s, df.with_columns(status.replace_strict(shown, default=None, return_dtype=pl.String)
                                    .alias("_status")), _CHAIN_SHEET)


_BY_FRAMES = {"chains": _chains_frame_rows}  # the sheets whose rows Polars can make (reports.xlsx_frames)


def write_sheet_part(part: Path, report: Report, name: str, index: int, *, lang: str = "en",
                     by_frames: bool = False) -> tuple[str | None, StylesUsed]:
    """The ``name`` sheet's XML part (``chains`` or ``records``), for a workbook written meanwhile with it
    ``apart``. Returns its relationships part and the styles it used, which must be numbered as the workbook
    numbers them (:func:`_preregister`). ``by_frames``: its rows made by Polars where they can be (the same XML;
    only in the process that built the report, never in a forked child, where Polars' threads are not)."""
    _ = translations(lang).gettext
    wb = Workbook(None)
    _preregister(wb, report)
    headers, rows = _LARGE[name]
    if by_frames:
        rows = _BY_FRAMES.get(name, rows)
    s = _Sheet(wb, name, headers(_), index, gettext=_)
    rows(s, report, _)
    with part.open("wb") as raw:
        rels = s.settle().write_part(raw)
    return rels, _styles_used(wb)


def write_sheet_part_frames(part: Path, report: Report, name: str, index: int, *,
                            lang: str = "en") -> tuple[str | None, StylesUsed]:
    """:func:`write_sheet_part` with its rows made by Polars."""
    return write_sheet_part(part, report, name, index, lang=lang, by_frames=True)


def styles_agree(book: StylesUsed, sheet: StylesUsed) -> bool:
    """Whether every style a sheet written apart uses has the number the workbook gave it."""
    formats, xfs = dict(book[0]), dict(book[1])
    return all(formats.get(f) == i for f, i in sheet[0]) and all(xfs.get(k) == i for k, i in sheet[1])


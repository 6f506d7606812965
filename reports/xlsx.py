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

import unicodedata
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from canonical.money import minor_units
from reports import labels
from reports.cells import neutralise, plain_decimal, spreadsheet_number
from reports.i18n import translations
from reports.model import Report

MAX_WIDTH = 60
LINK_FONT = Font(color="0563C1", underline="single")


def money_format(currency: str | None) -> str:
    """The number format of an amount in ``currency``: its decimals and its code."""
    try:
        places = minor_units(currency) if currency else 2
    except ValueError:
        places = 2
    number = "#,##0" + ("." + "0" * places if places else "")
    code = "".join(ch for ch in (currency or "") if ch.isalnum())[:3]
    return f"{number} [${code}]" if code else number


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


class _Sheet:
    """A sheet written row by row: cells typed, formats per cell, widths tracked."""

    def __init__(self, ws: Worksheet, headers: list[str]) -> None:
        self.ws = ws
        self.widths = [_display_width(h) + 2 for h in headers]
        ws.append([neutralise(h) for h in headers])
        for c in ws[1]:
            c.font = Font(bold=True)
            c.alignment = Alignment(vertical="top", wrap_text=False)
        self.row = 1

    def add(self, values: list[Any], *, money: dict[int, str | None] | None = None,
            links: dict[int, str | None] | None = None, formats: dict[int, str] | None = None) -> None:
        """One row; ``money``: column -> currency of an amount; ``links``: column -> URL."""
        self.row += 1
        for col, v in enumerate(values, start=1):
            cell = self.ws.cell(row=self.row, column=col)
            shown: str
            if isinstance(v, Decimal):
                if spreadsheet_number(v):
                    cell.value = v
                    if money and col - 1 in money:
                        cell.number_format = money_format(money[col - 1])
                    elif formats and col - 1 in formats:
                        cell.number_format = formats[col - 1]
                    shown = f"{v:,.2f}" if abs(v) < Decimal("1e15") else plain_decimal(v)
                else:  # beyond a double: the exact digits as text
                    cell.value = plain_decimal(v)
                    cell.alignment = Alignment(horizontal="right")
                    shown = cell.value
            elif isinstance(v, bool) or v is None or isinstance(v, int):
                cell.value = v
                shown = "" if v is None else str(v)
            elif isinstance(v, datetime):
                cell.value = v.replace(tzinfo=None)
                cell.number_format = "yyyy-mm-dd hh:mm"
                shown = "2026-01-01 00:00"
            elif hasattr(v, "isoformat"):
                cell.value = v
                cell.number_format = "yyyy-mm-dd"
                shown = "2026-01-01"
            else:
                cell.value = neutralise(str(v))
                shown = cell.value
            url = links.get(col - 1) if links else None
            if url:
                cell.hyperlink = url
                cell.font = LINK_FONT
            if money and col - 1 in money and isinstance(cell.value, Decimal):
                shown += " " + (money[col - 1] or "")
            self.widths[col - 1] = max(self.widths[col - 1], min(_display_width(shown) + 2, MAX_WIDTH))

    def finish(self) -> None:
        ws = self.ws
        ws.freeze_panes = "A2"
        last = get_column_letter(len(self.widths))
        ws.auto_filter.ref = f"A1:{last}{max(self.row, 1)}"
        for i, w in enumerate(self.widths, start=1):
            ws.column_dimensions[get_column_letter(i)].width = max(8, w)


def _sheet_title(text: str, taken: set[str]) -> str:
    clean = "".join("_" if ch in "[]:*?/\\" else ch for ch in text)[:31] or "Sheet"
    title, n = clean, 2
    while title.lower() in taken:
        title = f"{clean[:28]}~{n}"
        n += 1
    taken.add(title.lower())
    return title


def write_xlsx(path: Path, report: Report, *, lang: str = "en", locale: str = "en_US") -> None:
    _ = translations(lang).gettext
    wb = Workbook()
    taken: set[str] = set()
    first = True

    def sheet(title: str, headers: list[str]) -> _Sheet:
        nonlocal first
        ws = wb.active if first else wb.create_sheet()
        first = False
        assert ws is not None
        ws.title = _sheet_title(title, taken)
        return _Sheet(ws, headers)

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
        recs = [report.records.get(i) for i in x["record_ids"]]
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

    # Chains
    s = sheet(_("Chains"), [_("Chain"), _("Deal"), _("Customer"), _("Owner"), _("Stage"), _("Close date"),
                            _("Currency"), _("Deal amount"), _("Ordered"), _("Invoiced"), _("Paid"), _("Open"),
                            _("Status"), _("Exceptions"), _("Orders"), _("Invoices"), _("Payments")])
    for c in report.chains:
        deal = report.records.get(c["chain_id"])
        ccy = c["currency"]
        s.add([c["chain_id"], c["deal"], c["customer"], c["owner"], c["stage"], c["close_date"], ccy,
               c["deal_amount"], c["ordered"], c["invoiced"], c["paid"], c["open"],
               labels.label(labels.CHAIN_STATUS, c["status"], _), c["exceptions"], c["orders"], c["invoices"], c["payments"]],
              money={i: ccy for i in (7, 8, 9, 10, 11)}, links={1: deal.url if deal else None})
    s.finish()

    # Records: one row per record of a chain or an exception, each linked to its source
    s = sheet(_("Records"), [_("Chain"), _("Record"), _("System"), _("Object"), _("Source id"), _("Name or number"),
                             _("Amount"), _("Currency"), _("Date"), _("Status"), _("Source record")])
    chain_of = {rid: c["chain_id"] for c in report.chains for rid in c["record_ids"]}
    for rid, r in report.records.items():
        s.add([chain_of.get(rid), labels.label(labels.ENTITY, r.entity, _), r.system, r.object, r.source_id, r.label,
               r.amount, r.currency, r.day, r.status, r.url], money={6: r.currency}, links={10: r.url})
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
    wb.save(path)


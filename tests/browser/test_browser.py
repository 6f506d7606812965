"""Real browser: Debian's headless Chromium driven by Playwright — the report (drill-down, print to PDF,
Chinese) and the work queue (log in, filter, open an exception, resolve it, see the audit row).

Screenshots and PDFs are kept in ``.artifacts/browser/`` (ignored by git). Skipped, saying why, where
Chromium is not installed (``apt-get install -y chromium``; CI installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from canonical.store import Store
from ltc.app.config import Config
from reconcile import lifecycle
from reconcile.engine import run_reconciliation
from reports.finance import write_reports
from reports.html import anchor
from sandbox.scenario import generate
from ui.auth import hash_password

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "browser"
MONEY_HEADERS = ("Deal amount", "Ordered", "Invoiced", "Paid", "Open")
PASSWORD = "fiona-secret-1"
CONFIG = Config.model_validate({
    "sources": {"salesforce": {"kind": "salesforce", "base_url": "https://acme.my.salesforce.com"},
                "tryton": {"kind": "tryton", "base_url": "https://erp.example.com", "options": {"database": "ltc"}},
                "stripe": {"kind": "stripe"}},
    "ui": {"users": {"fiona": {"role": "finance", "password_hash": hash_password(PASSWORD)}}},
})


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        reason = "Debian's chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("LTC_REQUIRE_BROWSER"):
            pytest.fail(reason + "; CI requires it (LTC_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("browser")
    w = generate(60, seed=13)
    store = Store.open(f"sqlite:///{tmp / 'b.db'}")
    w.load(store)
    run_reconciliation(store, CONFIG, w.as_of - timedelta(days=14))
    run_reconciliation(store, CONFIG, w.as_of)
    en = write_reports(store, tmp / "en", config=CONFIG, title="Finance report (browser test)")
    zh = write_reports(store, tmp / "zh", config=CONFIG, lang="zh")
    return {"store": store, "en": en, "zh": zh, "tmp": tmp}


def _pdf_pages(path: Path) -> list[tuple[float, float, str]]:
    reader = PdfReader(str(path))
    return [(float(p.mediabox.width), float(p.mediabox.height), p.extract_text() or "") for p in reader.pages]


def _png_of_page(pdf: Path, page: int, out: Path) -> None:
    """Keep a picture of a printed page when poppler's pdftoppm is there (an artifact, not an assertion)."""
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "70", "-f", str(page), "-l", str(page), "-singlefile", str(pdf),
                        str(out.with_suffix(""))], check=False, timeout=60)


def test_report_drill_down_and_print(browser: Any, world: dict[str, Any]) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(world["en"].html.as_uri())
    page.screenshot(path=str(ARTIFACTS / "report_top.png"))
    summary = page.locator("#summary").inner_text()
    assert "Open exceptions" in summary and "Amount at risk" in summary and "$" in summary
    assert "Change since the last run" in summary
    assert page.locator("svg.chart").count() >= 6
    # exception -> its code's section -> its chain -> the chain's records -> the source system
    report = world["en"].report
    x = next(e for e in report.exceptions if e["chain_id"] and e["code"] == "INVOICE_OVERDUE")
    page.locator(f'#by-code a[href="#code-{x["code"]}"]').click()
    assert page.evaluate("location.hash") == f"#code-{x['code']}"
    row = page.locator(f"#{anchor('x', x['fingerprint'])}")
    row.locator(f'a[href="#{anchor("c", x["chain_id"])}"]').click()
    assert page.evaluate("location.hash") == "#" + anchor("c", x["chain_id"])
    chain_row = page.locator(":target")
    assert chain_row.is_visible()
    hrefs = chain_row.locator("a[href^='https://']").evaluate_all("els => els.map(e => e.href)")
    deal_id = x["chain_id"].split(":", 2)[2]
    assert f"https://acme.my.salesforce.com/lightning/r/Opportunity/{deal_id}/view" in hrefs
    assert any(h.startswith("https://erp.example.com/#ltc/model/account.invoice/") for h in hrefs)
    assert chain_row.locator(f'a[href="#{anchor("x", x["fingerprint"])}"]').count() == 1  # and back
    page.screenshot(path=str(ARTIFACTS / "report_chain_target.png"))

    for fmt in ("A4", "Letter"):
        pdf = ARTIFACTS / f"report_{fmt}.pdf"
        page.pdf(path=str(pdf), format=fmt, print_background=True)
        pages = _pdf_pages(pdf)
        n = len(pages)
        assert all(w > h for w, h, _ in pages), "landscape"
        for i, (_, _, text) in enumerate(pages, start=1):
            assert f"Page {i} of {n}" in text, (fmt, i)
        start = next(i for i, (_, _, t) in enumerate(pages) if "Chains: deal" in t)
        chain_pages = pages[start:]
        assert len(chain_pages) >= 2
        for _, _, text in chain_pages:  # headers repeat and the money columns are on every page
            assert all(h in text for h in MONEY_HEADERS), text[:300]
            assert re.search(r"[$€£]\d{1,3}(,\d{3})*\.\d{2}", text)
        if fmt == "A4":
            _png_of_page(pdf, start + 2, ARTIFACTS / "report_printed_chains.png")
    page.close()


def test_chinese_report(browser: Any, world: dict[str, Any]) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(world["zh"].html.as_uri())
    page.screenshot(path=str(ARTIFACTS / "report_zh_top.png"))
    summary = page.locator("#summary").inner_text()
    assert "未结异常" in summary and "风险金额" in summary and "US$" in summary
    pdf = ARTIFACTS / "report_zh_A4.pdf"
    page.pdf(path=str(pdf), format="A4")
    pages = _pdf_pages(pdf)
    for i, (_, _, text) in enumerate(pages, start=1):  # the page footer in Chinese on every page
        assert f"第{i}页，共{len(pages)}页" in re.sub(r"\s+", "", text), i
    assert "应收账款周转天数" in re.sub(r"\s+", "", pages[0][2])
    page.close()


@pytest.fixture(scope="module")
def server(world: dict[str, Any]) -> Iterator[str]:
    import uvicorn

    from ui.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(world["store"], CONFIG), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the work queue did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_work_queue_filter_open_resolve_and_audit(browser: Any, world: dict[str, Any], server: str) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server + "/")
    assert "/login" in page.url
    page.fill("input[name=username]", "fiona")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server + "/")
    total = int(page.locator("#totals [data-total]").get_attribute("data-total") or 0)
    assert total == len(lifecycle.list_exceptions(world["store"], status="open"))
    page.screenshot(path=str(ARTIFACTS / "queue.png"))
    page.select_option("select[name=code]", "PAYMENT_MISMATCH")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r".*code=PAYMENT_MISMATCH.*"))
    rows = page.locator("table.queue tbody tr[data-fp]")
    assert rows.count() >= 1
    fp = rows.first.get_attribute("data-fp")
    assert page.locator("#totals [data-total]").get_attribute("data-total") == str(rows.count())
    rows.first.locator("a[href^='/x/']").click()
    page.wait_for_url(f"{server}/x/{fp}")
    assert page.locator("#chain a[href*='lightning/r/Opportunity']").count() == 1
    assert page.locator("#records a").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "exception.png"), full_page=True)
    page.fill("#resolve textarea[name=note]", "short payment written off, approved by CFO")
    page.click("#resolve button[type=submit]")
    page.wait_for_url(re.compile(r".*done=resolve.*"))
    assert page.locator("#status").get_attribute("data-status") == "resolved"
    audit = page.locator("#history tbody tr").first
    assert audit.get_attribute("data-action") == "resolve"
    assert "fiona" in audit.inner_text() and "approved by CFO" in audit.inner_text()
    page.screenshot(path=str(ARTIFACTS / "exception_resolved.png"), full_page=True)
    stored = lifecycle.audit_trail(world["store"], fp or "")[-1]
    assert (stored["action"], stored["actor"], stored["to_status"]) == ("resolve", "fiona", "resolved")
    page.close()

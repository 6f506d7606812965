"""The report in English and 简体中文: complete catalogs, locale formatting, nothing left untranslated."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest
from babel.messages.pofile import read_po
from babel.support import Translations
from openpyxl import load_workbook

from canonical.errors import ConfigError
from canonical.store import Store
from ltc.app.config import Config
from reconcile.engine import run_reconciliation
from reports import i18n
from reports.finance import build_report, write_reports
from reports.fmt import Formatter
from reports.html import View, summary
from sandbox.scenario import generate

PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _po(lang: str = "zh") -> Any:
    with i18n.po_path(lang).open("rb") as fh:
        return read_po(fh, locale=lang)


def test_every_message_of_code_and_templates_is_translated() -> None:
    po = _po()
    entries = {m.id: m for m in po if m.id}
    extracted = [m.id for m in i18n.extract() if m.id]
    assert len(extracted) > 150
    missing = [mid for mid in extracted if mid not in entries]
    assert missing == [], "run `python -m reports.i18n update` and translate: " + repr(missing[:5])
    for mid in extracted:
        m = entries[mid]
        assert m.string and "fuzzy" not in m.flags, mid
        assert set(PLACEHOLDER.findall(m.string)) == set(PLACEHOLDER.findall(mid)), mid


def test_shipped_mo_is_the_compiled_po() -> None:
    mo = i18n.po_path("zh").with_suffix(".mo")
    assert mo.exists(), "compile with `python -m reports.i18n compile`"
    with mo.open("rb") as fh:
        compiled = Translations(fh)
    for m in _po():
        if m.id:
            assert compiled.gettext(m.id) == m.string, m.id


def test_a_po_newer_than_its_mo_is_compiled_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(i18n.LOCALE_DIR, tmp_path / "locale")
    po = tmp_path / "locale" / "zh" / "LC_MESSAGES" / "messages.po"
    po.write_text(po.read_text(encoding="utf-8").replace('msgstr "工作队列"', 'msgstr "待办队列"'), encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path / "locale")
    i18n.translations.cache_clear()
    try:
        assert i18n.translations("zh").gettext("Work queue") == "待办队列"
        (tmp_path / "locale" / "zh" / "LC_MESSAGES" / "messages.mo").unlink()
        i18n.translations.cache_clear()
        assert i18n.translations("zh").gettext("Work queue") == "待办队列"
    finally:
        i18n.translations.cache_clear()


@pytest.mark.parametrize(("lang", "locale", "want"), [
    (None, "en_US", ("en", "en_US")), (None, "zh_Hans_CN", ("zh", "zh_Hans_CN")), ("zh", "en_US", ("zh", "zh_Hans_CN")),
    ("en", "de_DE", ("en", "de_DE")), (None, "de_DE", ("en", "de_DE")), ("zh", None, ("zh", "zh_Hans_CN")),
    ("en", "zh_Hans_CN", ("en", "en_US")),
])
def test_language_and_locale(lang: str | None, locale: str | None, want: tuple[str, str]) -> None:
    assert i18n.report_language(lang, locale) == want


def test_unknown_language_is_one_line_error() -> None:
    with pytest.raises(ConfigError, match="--lang 'fr'"):
        i18n.report_language("fr", None)
    with pytest.raises(Exception, match="reporting_locale"):
        Config.model_validate({"reporting_locale": "xx_QQ"})


@pytest.mark.parametrize(("locale", "amount", "ccy", "want"), [
    ("en_US", "27383502.44", "USD", "$27,383,502.44"),
    ("zh_Hans_CN", "27383502.44", "USD", "US$27,383,502.44"),
    ("zh_Hans_CN", "1500", "CNY", "¥1,500.00"),
    ("de_DE", "27383502.44", "EUR", "27.383.502,44\xa0€"),
    ("en_US", "1000", "JPY", "¥1,000"),
    ("en_US", "1.2346", "KWD", "KWD1.235"),
    ("en_US", "1.23E+29", "USD", "$123,000,000,000,000,000,000,000,000,000.00"),
    ("en_US", "1E+999999", "USD", "1E+999999 USD"),
    ("en_US", None, "USD", "—"),
])
def test_money_per_locale_and_currency(locale: str, amount: str | None, ccy: str, want: str) -> None:
    assert Formatter(locale).money(Decimal(amount) if amount else None, ccy) == want


def test_huge_money_is_exact_with_separators() -> None:
    text = Formatter("en_US").money(Decimal("1E+308"), "USD")
    assert text.startswith("$100,000,") and text.endswith(".00") and text.count(",") == 102


# -- the translated report -------------------------------------------------------------------------

class _Text(HTMLParser):
    """Visible text nodes, leaving out data: codes, ids, record labels, owners."""

    SKIP_CLASSES: ClassVar[set[str]] = {"code", "id", "recs"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "meta", "col", "input", "circle", "rect", "line", "polyline"):
            return
        classes = set((dict(attrs).get("class") or "").split())
        skip = tag in ("code", "style", "a") or bool(classes & self.SKIP_CLASSES)
        self.stack.append(skip or (bool(self.stack) and self.stack[-1]))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("br", "meta", "col", "input", "circle", "rect", "line", "polyline"):
            return
        if self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1]) and data.strip():
            self.texts.append(data.strip())


@pytest.fixture(scope="module")
def zh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("zh")
    world = generate(60, seed=9)
    store = Store.open(f"sqlite:///{tmp / 'z.db'}")
    world.load(store)
    run_reconciliation(store, Config(), world.as_of - timedelta(days=7))
    run_reconciliation(store, Config(), world.as_of)  # a second run: trends and the change since the last one
    cfg = Config(reporting_locale="zh_CN")
    return {"store": store, "files": write_reports(store, tmp / "zh", config=cfg),
            "en": write_reports(store, tmp / "en", lang="en")}


def _english_labels() -> set[str]:
    """Every English label that has a different Chinese text (so an English one left over is a miss)."""
    out = set()
    for m in _po():
        if m.id and m.string != m.id and re.search(r"[A-Za-z]{3}", m.id):
            out.add(PLACEHOLDER.sub("", m.id).strip(" ().:;,"))
    return {o for o in out if len(o) >= 3}


def test_chinese_report_has_no_untranslated_label(zh: dict[str, Any]) -> None:
    text = zh["files"].html.read_text(encoding="utf-8")
    assert '<html lang="zh-Hans">' in text and "订单—开票—回款对账报告" in text
    parser = _Text()
    parser.feed(text)
    english = _english_labels()
    leftovers = [t for t in parser.texts if t.strip(" ().:;,·") in english]
    assert leftovers == []
    # the visible words that are Latin are data (codes, currency codes, KPI identifiers), not labels
    latin = {w for t in parser.texts for w in re.findall(r"[A-Za-z][A-Za-z ,]{6,}", t)}
    assert not (latin & english), latin & english
    assert "未结异常" in text and "风险金额" in text and "应收账款周转天数（DSO）" in text
    assert "US$" in text  # money in the zh_Hans_CN locale
    assert "第 \" counter(page) \" 页，共 \" counter(pages) \" 页" in text  # printed page numbers in Chinese


def test_english_report_is_english(zh: dict[str, Any]) -> None:
    text = zh["en"].html.read_text(encoding="utf-8")
    assert '<html lang="en">' in text and "Open exceptions" in text and "未结异常" not in text


def test_chinese_workbook_headers_are_translated(zh: dict[str, Any]) -> None:
    wb = load_workbook(zh["files"].xlsx, read_only=True)
    assert wb.sheetnames[:5] == ["关键指标", "按代码分类的异常", "异常", "链路", "记录"]
    english = _english_labels()
    for ws in wb.worksheets:
        header = next(ws.iter_rows(max_row=1, values_only=True))
        assert not [h for h in header if h in english], (ws.title, header)


def test_trends_and_change_since_the_last_run(zh: dict[str, Any]) -> None:
    report = build_report(zh["store"])
    assert len(report.history) == 2 and report.previous_as_of is not None
    assert report.history[0]["as_of"] < report.history[1]["as_of"]
    dso_now = next(k["value"] for k in report.kpis if k["kpi"] == "dso")
    dso_before = report.previous[("dso", "ending_ar_over_period_sales_x_days")]
    assert dso_now is not None and dso_before is not None
    line = summary(report, View("en", "en_US"))
    dso = next(i for i in line["items"] if i["kpi"] == "dso")
    if dso_now != dso_before:
        sign = "+" if dso_now > dso_before else "−"
        assert dso["change"] == f"{sign}{abs(dso_now - dso_before):.1f} days"
    opened = next(i for i in line["items"] if i["kpi"] == "open_exceptions")
    assert opened["value"] == str(len(report.exceptions))
    html = zh["en"].html.read_text(encoding="utf-8")
    assert "Change since the last run (as of" in html
    # both runs are points of the trend charts
    dso_chart = html[html.index("<title>DSO across runs</title>"):]
    assert dso_chart[:dso_chart.index("</svg>")].count("<circle") == 2


@pytest.mark.parametrize("locale", ["en_US", "de_DE", "zh_Hans_CN"])
def test_remembered_amounts_are_written_as_the_first_time(locale: str) -> None:
    amounts: list[object] = [Decimal("-0"), Decimal("0"), Decimal("0.00"), Decimal("1.005"), Decimal("1.0050"),
                             Decimal("-12345.678"), 5, 5.5, "7.25", Decimal("1E+30"), Decimal("NaN")]
    fresh = [Formatter(locale).money(a, c) for a in amounts for c in ("USD", "JPY", "KWD", None, "ZZZ")]
    f = Formatter(locale)
    first = [f.money(a, c) for a in amounts for c in ("USD", "JPY", "KWD", None, "ZZZ")]
    again = [f.money(a, c) for a in amounts for c in ("USD", "JPY", "KWD", None, "ZZZ")]
    assert first == fresh == again  # "-0" and "0", "1.005" and "1.0050" each written as on their own

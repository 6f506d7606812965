"""``report.html`` from Jinja2 templates: self-contained (inline CSS and SVG), translated, printable.

The page reads top-down as finance does: the summary line a CFO reads first (open exceptions,
amount at risk, DSO, unapplied cash, change since the last run), the KPIs with human labels and
their formula as a note, charts (AR aging, exceptions by code by count and by amount, invoiced vs
collected per month, trends across runs), the exceptions by code, each exception (linked to its
chain and its records), and the chains (each listing its records, each record linked to its source
system). Print: landscape, repeated table headers, page numbers (``report.css``).
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from reports import labels, svg
from reports.cells import clean_text
from reports.fmt import DASH, Formatter
from reports.i18n import translations
from reports.model import HTML_CHAIN_LIMIT, HTML_EXCEPTION_LIMIT, Report

TEMPLATES = Path(__file__).parent / "templates"
BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


@lru_cache(maxsize=8)
def environment(lang: str, extra: str | None = None) -> Environment:
    """The Jinja2 environment of the report's (and, with ``extra``, the work queue's) templates in
    ``lang``: autoescaping on, unknown names fail, gettext installed (one environment per language,
    so concurrent pages in two languages never share a catalog)."""
    paths = ([extra] if extra else []) + [str(TEMPLATES)]
    env = Environment(loader=FileSystemLoader(paths), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, extensions=["jinja2.ext.i18n"], trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["clean"] = lambda v: clean_text(str(v)) if v is not None else ""
    env.filters["anchor"] = anchor
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]
    return env


def anchor(prefix: str, ident: Any) -> str:
    """An HTML id / URL fragment for a canonical id (``c-salesforce-deal-006...``)."""
    text = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in str(ident))
    return f"{prefix}-{text}"


def css_string(text: str) -> str:
    """A CSS string literal (for ``content:`` in @page rules)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def page_footer(text: str) -> str:
    """CSS ``content`` for a translated "Page %(page)s of %(pages)s" (page counters in place)."""
    out: list[str] = []
    rest = text
    while rest:
        i, j = rest.find("%(page)s"), rest.find("%(pages)s")
        cut = min((k for k in (i, j) if k >= 0), default=-1)
        if cut < 0:
            out.append(css_string(rest))
            break
        if cut > 0:
            out.append(css_string(rest[:cut]))
        if rest.startswith("%(pages)s", cut):
            out.append("counter(pages)")
            rest = rest[cut + len("%(pages)s"):]
        else:
            out.append("counter(page)")
            rest = rest[cut + len("%(page)s"):]
    return " ".join(out)


def is_currency(unit: str) -> bool:
    return len(unit) == 3 and unit.isalpha() and unit.isupper()


class View:
    """What the templates call: formatting and labels in the report's language and locale."""

    def __init__(self, lang: str, locale: str) -> None:
        self.lang, self.locale = lang, locale
        self.t = translations(lang)
        self.f = Formatter(locale)

    def _(self, text: str) -> str:
        return self.t.gettext(text)

    def label(self, table: str, key: Any) -> str:
        return labels.label(getattr(labels, table), key, self.t.gettext)

    def kpi_value(self, value: Decimal | None, unit: str) -> str:
        if value is None:
            return DASH
        if is_currency(unit):
            return self.f.money(value, unit)
        if unit == "count":
            return self.f.number(value, 0)
        if unit == "pct":
            return self.f.percent(value)
        if unit == "days":
            return self.t.gettext("%(n)s days") % {"n": self.f.number(value, 1)}
        return f"{self.f.number(value, 2)} {unit}"

    def change(self, now: Decimal | None, before: Decimal | None, unit: str) -> str:
        """``+2``, ``−$3,400.00``, ``+1.3 days``; empty when there is nothing to compare."""
        if now is None or before is None:
            return ""
        d = now - before
        if d == 0:
            return self.t.gettext("no change")
        sign = "+" if d > 0 else "−"
        return sign + self.kpi_value(abs(d), unit)


def _overall(report: Report, kpi: str) -> dict[str, Any] | None:
    return next((k for k in report.kpis if k["kpi"] == kpi), None)


def summary(report: Report, v: View) -> dict[str, Any]:
    """The CFO line: open exceptions, amount at risk, DSO, unapplied cash, each with its change."""
    rep = report.reporting_currency or ""
    items = []
    open_n = _overall(report, "open_exceptions")
    count = Decimal(len(report.exceptions)) if open_n is None else open_n["value"]
    risk = sum((b["amount_reporting"] or Decimal(0) for b in report.by_code), Decimal(0))
    for kpi, value, unit in (("open_exceptions", count, "count"), ("amount_at_risk", risk, rep),
                             ("dso", (_overall(report, "dso") or {}).get("value"), "days"),
                             ("unapplied_cash", (_overall(report, "unapplied_cash") or {}).get("value"), rep)):
        variant = next((k["variant"] for k in report.kpis if k["kpi"] == kpi), "")
        before = report.previous.get((kpi, variant))
        trend = "same" if before is None or value is None or value == before else (
            "worse" if value > before else "better")  # more of any of these four is worse
        note = (v._("excluding %(n)s unconverted") % {"n": len(report.unconverted)}
                if kpi == "amount_at_risk" and report.unconverted else None)
        items.append({"kpi": kpi, "label": v.label("KPI_LABELS", kpi), "value": v.kpi_value(value, unit),
                      "change": v.change(value, before, unit), "trend": trend, "note": note})
    return {"items": items, "previous_as_of": report.previous_as_of}


def kpi_cards(report: Report, v: View) -> list[dict[str, Any]]:
    cards = []
    order = {k: i for i, k in enumerate(labels.KPI_LABELS)}
    for k in sorted(report.kpis, key=lambda k: (order.get(k["kpi"], 99), k["variant"])):
        if k["kpi"].startswith("ar_aging_"):
            continue
        prev = report.previous.get((k["kpi"], k["variant"]))
        short = labels.VARIANT_SHORT.get(k["variant"])
        cards.append({
            "kpi": k["kpi"], "variant": k["variant"],
            "label": v.label("KPI_LABELS", k["kpi"]) + (f" ({v._(short)})" if short else ""),
            "value": v.kpi_value(k["value"], k["unit"]), "note": v.label("VARIANT_NOTES", k["variant"]),
            "change": v.change(k["value"], prev, k["unit"]),
        })
    return cards


def charts(report: Report, v: View) -> dict[str, Markup]:
    rep = report.reporting_currency or ""
    _ = v._
    out: dict[str, Markup] = {}

    def money(x: Decimal) -> str:
        return v.f.compact_money(x, rep)

    aging = [svg.Bar(v.label("AGING_BUCKETS", b), (_overall(report, f"ar_aging_{b}") or {}).get("value")
                     or Decimal(0)) for b in BUCKETS]
    out["aging"] = Markup(svg.bar_chart(aging, title=_("AR aging"), fmt=money, color="#2f6db3"))
    by_count = [svg.Bar(b["code"], Decimal(b["count"]), text=v.f.number(b["count"]), href=f"#code-{b['code']}")
                for b in sorted(report.by_code, key=lambda b: -b["count"])]
    out["codes_count"] = Markup(svg.bar_chart(by_count, title=_("Exceptions by code: count"),
                                              fmt=lambda x: v.f.number(x), color="#7a4fb0"))
    by_amount = [svg.Bar(b["code"], b["amount_reporting"] or Decimal(0), href=f"#code-{b['code']}")
                 for b in sorted(report.by_code, key=lambda b: -(b["amount_reporting"] or 0))]
    out["codes_amount"] = Markup(svg.bar_chart(by_amount, title=_("Exceptions by code: amount at risk"), fmt=money,
                                               color="#b3261e"))
    months = [m["month"] for m in report.monthly]
    out["monthly"] = Markup(svg.column_chart(months, [
        svg.Series(_("Invoiced"), [m["invoiced"] for m in report.monthly], "#2f6db3"),
        svg.Series(_("Collected"), [m["collected"] for m in report.monthly], "#3a9a5b")],
        title=_("Invoiced vs collected per month"), fmt=money))
    runs = [v.f.date(h["as_of"]) if h["as_of"] else h["run_id"] for h in report.history]

    def trend(kpi: str) -> list[Decimal | None]:
        return [next((val for key, val in h["values"].items() if key.startswith(kpi + "/")), None)
                for h in report.history]

    out["trend_dso"] = Markup(svg.line_chart(runs, [svg.Series(v.label("KPI_LABELS", "dso"), trend("dso"))],
                                             title=_("DSO across runs"), fmt=lambda x: v.f.number(x, 0)))
    out["trend_wni"] = Markup(svg.line_chart(runs, [
        svg.Series(v.label("KPI_LABELS", "won_not_invoiced_amount"), trend("won_not_invoiced_amount"), "#e07b24"),
        svg.Series(v.label("KPI_LABELS", "amount_at_risk"), trend("amount_at_risk"), "#b3261e")],
        title=_("Won, not invoiced and amount at risk across runs"), fmt=money))
    return out


def _exception_rows(report: Report) -> list[dict[str, Any]]:
    """The open exceptions in the page's order: by code as the summary orders them, the most severe first, then the
    largest amount."""
    order = {code: i for i, code in enumerate(b["code"] for b in report.by_code)}
    return sorted(report.exceptions, key=lambda x: (order.get(x["code"], 99), SEVERITY_ORDER.get(x["severity"], 9),
                                                    -(x["amount_reporting"] or 0), x["fingerprint"]))


def render_html(report: Report, title: str | None = None, *, lang: str = "en", locale: str = "en_US") -> str:
    """The page. A large report shows the first :data:`HTML_EXCEPTION_LIMIT` exceptions of each code and the first
    :data:`HTML_CHAIN_LIMIT` chains (those of the exceptions shown first), each table saying how many more the CSV
    files and the workbook hold; every link within the page leads to a row it shows (at 1M chains the page held
    57k exceptions, 40 MB, and linked exceptions to chains it did not show)."""
    v = View(lang, locale)
    template = environment(lang).get_template("report.html.j2")
    by_code: dict[str, list[dict[str, Any]]] = {}
    hidden: Counter[str] = Counter()
    for x in _exception_rows(report):
        rows = by_code.setdefault(x["code"], [])
        if len(rows) < HTML_EXCEPTION_LIMIT:
            rows.append(x)
        else:
            hidden[x["code"]] += 1
    chains = report.chains.first(HTML_CHAIN_LIMIT, prefer=(x["chain_id"] for rows in by_code.values() for x in rows
                                                           if x["chain_id"]))
    statuses = report.chains.status_counts()
    records = {**report.named, **report.records.lookup(i for c in chains for i in c["record_ids"])}
    on_page = {c["chain_id"] for c in chains}
    shown_by_code = {code: [dict(x, chain_shown=x["chain_id"] in on_page,
                                 recs=[records[i] for i in x["record_ids"] if i in records]) for x in rows]
                     for code, rows in by_code.items()}
    of_chain: dict[str, list[dict[str, Any]]] = {}
    for x in report.exceptions:
        if x["chain_id"] in on_page:
            of_chain.setdefault(x["chain_id"], []).append(x)
    shown = [dict(c, recs=[records[i] for i in c["record_ids"] if i in records],
                  excs=of_chain.get(c["chain_id"], [])) for c in chains]
    return template.render(
        r=report, v=v, f=v.f, lang=lang, title=title or v._("Reconciled order-to-invoice-to-cash report"),
        css=Markup((TEMPLATES / "report.css").read_text(encoding="utf-8")),
        title_css=Markup(css_string(clean_text(title or v._("Reconciled order-to-invoice-to-cash report"))
                                    .replace("<", "\\3c "))),
        page_footer=Markup(page_footer(v._("Page %(page)s of %(pages)s"))),
        summary=summary(report, v), cards=kpi_cards(report, v), charts=charts(report, v),
        aging=[k for k in report.kpis if k["kpi"].startswith("ar_aging_")],
        open_count=len(report.exceptions), hidden_by_code=hidden,
        shown_fps={x["fingerprint"] for rows in by_code.values() for x in rows}, chains=shown, records=records,
        more=len(report.chains) - len(shown), statuses=sorted(statuses.items()),
        by_code_rows=report.by_code,
        exceptions_by_code={b["code"]: shown_by_code.get(b["code"], []) for b in report.by_code},
    )

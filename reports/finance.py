"""The finance report: the reconciled order-to-invoice-to-cash view of the latest reconciliation run.

Everything is read from the store (what ``ltc reconcile`` left there), nothing is recomputed:

* **KPIs**: the latest ``kpi_snapshot`` run, all owners, each with its formula variant.
* **Exceptions**: ``recon_exception`` rows that are not resolved; by code with count, amount at risk
  in the reporting currency and owners; and one row each.
* **Chains**: one per closed-won deal (and per other deal a link or an exception names): its orders
  (``recon_link`` deal -> order), invoices (links to invoices of the chain), payments
  (``recon_allocation`` on those invoices), the totals and a status.

:func:`write_reports` writes ``report.html`` (self-contained: inline CSS, no script, no external
asset), ``exceptions.csv``, ``chains.csv``, ``kpis.csv`` and ``report.xlsx`` (one sheet each, plus a
summary by code). ``ltc report`` and ``ltc demo`` call it.
"""

from __future__ import annotations

import csv
import html
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from canonical import tables as ct
from canonical.money import minor_units
from canonical.store import Store
from reconcile.codes import CODES
from reconcile.tables import kpi_snapshot, recon_allocation, recon_exception, recon_link

ZERO = Decimal(0)
HTML_CHAIN_LIMIT = 2000  # the HTML lists this many chains (exceptions first); the CSV/XLSX list all

EXCEPTION_COLUMNS = ["fingerprint", "code", "status", "severity", "chain_id", "records", "owner", "currency",
                     "amount_at_risk", "reporting_currency", "amount_reporting", "first_seen_at", "last_seen_at"]
CHAIN_COLUMNS = ["chain_id", "deal", "account", "customer", "owner", "stage", "close_date", "currency", "deal_amount",
                 "orders", "ordered", "invoices", "invoiced", "payments", "paid", "open", "status", "exceptions"]
KPI_COLUMNS = ["kpi", "variant", "value", "unit", "numerator", "denominator", "period_start", "period_end"]
SUMMARY_COLUMNS = ["code", "meaning", "count", "amount_reporting", "reporting_currency", "owners"]


@dataclass
class Report:
    """What the report shows; every list of rows follows its ``*_COLUMNS``."""

    as_of: date | None
    run_id: str | None
    reporting_currency: str | None
    kpis: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    by_code: list[dict[str, Any]] = field(default_factory=list)
    chains: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ReportFiles:
    directory: Path
    html: Path
    xlsx: Path
    csv: dict[str, Path]
    report: Report | None = None  # what was written

    def all(self) -> list[Path]:
        return [self.html, *self.csv.values(), self.xlsx]


def _money(v: Any, currency: str | None = None) -> Decimal | None:
    """An amount as an exact Decimal, shown with its currency's decimals where that loses nothing
    (``63095.1100`` -> ``63095.11``; a converted ``1791.2043`` keeps its digits)."""
    if v is None:
        return None
    d = Decimal(v)
    try:
        places = Decimal(1).scaleb(-minor_units(currency)) if currency else Decimal("0.01")
    except ValueError:
        places = Decimal("0.01")
    q = d.quantize(places)
    return q if q == d else d


def _latest_kpis(conn: sa.Connection) -> tuple[str | None, date | None, list[dict[str, Any]]]:
    k = kpi_snapshot.c
    last = conn.execute(sa.select(k.run_id, k.as_of).order_by(k.id.desc()).limit(1)).first()
    if last is None:
        return None, None, []
    rows = conn.execute(sa.select(k.kpi, k.variant, k.value, k.unit, k.numerator, k.denominator, k.period_start,
                                  k.period_end).where(k.run_id == last.run_id, k.owner.is_(None))
                        .order_by(k.kpi, k.variant)).all()
    return last.run_id, last.as_of, [dict(r._mapping) for r in rows]


def _exceptions(conn: sa.Connection) -> list[dict[str, Any]]:
    e = recon_exception.c
    rows = conn.execute(sa.select(recon_exception).where(e.status != "resolved").order_by(e.code, e.fingerprint))
    out = []
    for r in rows:
        m = dict(r._mapping)
        out.append({
            "fingerprint": m["fingerprint"], "code": m["code"], "status": m["status"], "severity": m["severity"],
            "chain_id": m["chain_id"], "records": " ".join(m["subject_ids"] or []), "owner": m["owner"],
            "currency": m["currency"], "amount_at_risk": _money(m["amount_at_risk"], m["currency"]),
            "reporting_currency": m["reporting_currency"],
            "amount_reporting": _money(m["amount_reporting"], m["reporting_currency"]),
            "first_seen_at": m["first_seen_at"], "last_seen_at": m["last_seen_at"],
        })
    return out


def _by_code(exceptions: list[dict[str, Any]], reporting: str | None) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for x in exceptions:
        groups[x["code"]].append(x)
    out = []
    for code in sorted(groups, key=lambda c: list(CODES).index(c) if c in CODES else len(CODES)):
        xs = groups[code]
        owners: dict[str, int] = defaultdict(int)
        for x in xs:
            owners[x["owner"] or "(unowned)"] += 1
        out.append({
            "code": code, "meaning": CODES.get(code, ""), "count": len(xs),
            "amount_reporting": _money(sum((x["amount_reporting"] or ZERO for x in xs), ZERO), reporting),
            "reporting_currency": next((x["reporting_currency"] for x in xs if x["reporting_currency"]), reporting),
            "owners": ", ".join(f"{o} ({n})" for o, n in sorted(owners.items(), key=lambda t: (-t[1], t[0]))),
        })
    return out


def _chains(conn: sa.Connection, exceptions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    deal, order, invoice, payment = (ct.table_for(e) for e in ("deal", "order", "invoice", "payment"))
    lk, al = recon_link.c, recon_allocation.c
    deals = {r.id: r for r in conn.execute(sa.select(
        deal.c.id, deal.c.source_id, deal.c.account_id, deal.c.owner, deal.c.stage, deal.c.close_date,
        deal.c.currency, deal.c.amount).where(deal.c.deleted_at.is_(None)))}
    orders_of: dict[str, list[str]] = defaultdict(list)
    invoices_of: dict[str, list[str]] = defaultdict(list)
    for chain, frm, to_entity, to_id in conn.execute(sa.select(lk.chain_id, lk.from_entity, lk.to_entity, lk.to_id)
                                                     .where(lk.chain_id.is_not(None))):
        if to_entity == "order" and frm == "deal":
            orders_of[chain].append(to_id)
        elif to_entity == "invoice":
            invoices_of[chain].append(to_id)
    order_rows = {r.id: r for r in conn.execute(sa.select(order.c.id, order.c.number, order.c.total,
                                                          order.c.currency))}
    inv_rows = {r.id: r for r in conn.execute(sa.select(invoice.c.id, invoice.c.number, invoice.c.kind,
                                                        invoice.c.total, invoice.c.currency, invoice.c.status))}
    paid_on: dict[str, Decimal] = defaultdict(lambda: ZERO)
    pays_on: dict[str, list[str]] = defaultdict(list)
    for inv_id, pay_id, amount in conn.execute(sa.select(al.invoice_id, al.payment_id, al.amount)):
        paid_on[inv_id] += Decimal(amount)
        pays_on[inv_id].append(pay_id)
    account = ct.table_for("account")
    names = dict(conn.execute(sa.select(account.c.id, account.c.name)).all())
    pay_src = {r.id: f"{r.source_system}:{r.source_id}" for r in conn.execute(
        sa.select(payment.c.id, payment.c.source_system, payment.c.source_id))}
    codes_of: dict[str, set[str]] = defaultdict(set)
    for x in exceptions:
        if x["chain_id"]:
            codes_of[x["chain_id"]].add(x["code"])
    chain_ids = {d for d, r in deals.items() if r.stage == "closed_won"} | set(orders_of) | set(invoices_of) \
        | {c for c in codes_of if c in deals}
    out = []
    for cid in sorted(chain_ids):
        d = deals.get(cid)
        ords = sorted(set(orders_of.get(cid, [])))
        invs = sorted(set(invoices_of.get(cid, [])))
        ordered = sum((Decimal(order_rows[o].total or 0) for o in ords if o in order_rows), ZERO)
        invoiced = ZERO
        paid = ZERO
        pays: set[str] = set()
        for i in invs:
            row = inv_rows.get(i)
            if row is None:
                continue
            total = abs(Decimal(row.total or 0))
            sign = -1 if row.kind == "credit_note" else 1
            invoiced += sign * total
            paid += paid_on.get(i, ZERO)  # a refund is allocated (negative) to its credit note
            pays.update(pay_src.get(p, p) for p in pays_on.get(i, []))
        ccy = d.currency if d else None
        invoiced, paid, ordered = (_money(v, ccy) or ZERO for v in (invoiced, paid, ordered))
        open_amount = invoiced - paid
        codes = sorted(codes_of.get(cid, set()))
        if codes:
            status = "exception"
        elif not ords and not invs:
            status = "won, not ordered"
        elif not invs:
            status = "ordered, not invoiced"
        elif open_amount > Decimal("0.01"):
            status = "partly paid" if paid > 0 else "invoiced, unpaid"
        else:
            status = "paid"
        out.append({
            "chain_id": cid, "deal": d.source_id if d else None, "account": d.account_id if d else None,
            "customer": names.get(d.account_id) if d else None,
            "owner": d.owner if d else None, "stage": d.stage if d else None,
            "close_date": d.close_date if d else None, "currency": d.currency if d else None,
            "deal_amount": _money(d.amount, d.currency) if d else None,
            "orders": " ".join(order_rows[o].number or o for o in ords if o in order_rows), "ordered": ordered,
            "invoices": " ".join(inv_rows[i].number or i for i in invs if i in inv_rows), "invoiced": invoiced,
            "payments": " ".join(sorted(pays)), "paid": paid, "open": open_amount, "status": status,
            "exceptions": " ".join(codes),
        })
    return out


def build_report(store: Store) -> Report:
    """Read the latest reconciliation results from the store."""
    with store.engine.connect() as conn:
        run_id, as_of, kpis = _latest_kpis(conn)
        exceptions = _exceptions(conn)
        chains = _chains(conn, exceptions)
    reporting = next((x["reporting_currency"] for x in exceptions if x["reporting_currency"]), None)
    if reporting is None:
        reporting = next((k["unit"] for k in kpis if k["kpi"] == "unapplied_cash"), None)
    return Report(as_of=as_of, run_id=run_id, reporting_currency=reporting, kpis=kpis, exceptions=exceptions,
                  by_code=_by_code(exceptions, reporting), chains=chains)


# --- rendering ------------------------------------------------------------------------------------

def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, datetime | date):
        return v.isoformat()
    return str(v)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow([_text(r.get(c)) for c in columns])


def _cell(v: Any) -> Any:
    # XLSX: money and counts as numbers (a spreadsheet sums them), everything else as text.
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, datetime):
        return v.replace(tzinfo=None)
    return v


def _write_xlsx(path: Path, report: Report) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    sheets = [("KPIs", KPI_COLUMNS, report.kpis), ("Exceptions by code", SUMMARY_COLUMNS, report.by_code),
              ("Exceptions", EXCEPTION_COLUMNS, report.exceptions), ("Chains", CHAIN_COLUMNS, report.chains)]
    first = True
    for title, columns, rows in sheets:
        ws = wb.active if first else wb.create_sheet()
        first = False
        assert ws is not None
        ws.title = title
        ws.append(columns)
        for c in ws[1]:
            c.font = Font(bold=True)
        for r in rows:
            ws.append([_cell(r.get(c)) for c in columns])
        ws.freeze_panes = "A2"
    wb.save(path)


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2733}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#5b6775;margin-bottom:16px}
table{border-collapse:collapse;margin:4px 0 12px}th,td{border:1px solid #d5dbe2;padding:4px 8px;text-align:left}
th{background:#f1f4f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
.kpis{display:flex;flex-wrap:wrap;gap:10px}.kpi{border:1px solid #d5dbe2;border-radius:6px;padding:8px 12px;min-width:170px}
.kpi b{display:block;font-size:18px}.kpi small{color:#5b6775}
.s-paid{color:#1f7a3a}.s-exception{color:#b3261e;font-weight:600}
"""


def _table(columns: list[str], rows: list[dict[str, Any]], numeric: set[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = html.escape(_text(r.get(c)))
            cls = ' class="n"' if c in numeric else (f' class="s-{v.split(",")[0]}"' if c == "status" else "")
            cells.append(f"<td{cls}>{v}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kpi_value(k: dict[str, Any]) -> Any:
    v = k["value"]
    if v is None:
        return None
    if k["unit"] == "count":
        return int(v)
    if len(k["unit"]) == 3 and k["unit"].isupper():  # a currency
        return _money(v, k["unit"])
    return Decimal(v).quantize(Decimal("0.01"))


def render_html(report: Report, title: str | None = None) -> str:
    rep = report.reporting_currency or ""
    kpi_cards = "".join(
        f'<div class="kpi"><small>{html.escape(k["kpi"])}</small><b>{html.escape(_text(_kpi_value(k)))} '
        f'{html.escape(k["unit"])}</b><small>{html.escape(k["variant"])}</small></div>' for k in report.kpis)
    chains = sorted(report.chains, key=lambda c: (c["status"] != "exception", c["chain_id"]))
    shown = chains[:HTML_CHAIN_LIMIT]
    more = (f"<p>{len(chains) - len(shown)} more chains in chains.csv / report.xlsx.</p>"
            if len(chains) > len(shown) else "")
    total_risk = sum((c["amount_reporting"] for c in report.by_code), ZERO)
    statuses: dict[str, int] = defaultdict(int)
    for c in report.chains:
        statuses[c["status"]] += 1
    status_line = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
    name = title or "Reconciled order-to-invoice-to-cash report"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(name)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(name)}</h1>
<div class="meta">as of {html.escape(_text(report.as_of))} · reconcile run {html.escape(report.run_id or "-")} ·
reporting currency {html.escape(rep or "-")} · {len(report.chains)} chains ({html.escape(status_line)}) ·
{len(report.exceptions)} open exceptions, {html.escape(_text(total_risk))} {html.escape(rep)} at risk</div>
<h2>KPIs</h2>
<div class="kpis">{kpi_cards}</div>
{_table(KPI_COLUMNS, report.kpis, {"value", "numerator", "denominator"})}
<h2>Exceptions by code</h2>
{_table(SUMMARY_COLUMNS, report.by_code, {"count", "amount_reporting"})}
<h2>Chains: deal → orders → invoices → payments</h2>
{_table(CHAIN_COLUMNS, shown, {"deal_amount", "ordered", "invoiced", "paid", "open"})}
{more}
<h2>Exceptions</h2>
{_table(EXCEPTION_COLUMNS, report.exceptions, {"amount_at_risk", "amount_reporting"})}
</body></html>
"""


def write_reports(store: Store, out_dir: str | Path, *, title: str | None = None) -> ReportFiles:
    """Write the HTML, CSV and XLSX reports of the latest reconciliation into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(store)
    files = ReportFiles(directory=out, html=out / "report.html", xlsx=out / "report.xlsx", csv={
        "exceptions": out / "exceptions.csv", "chains": out / "chains.csv", "kpis": out / "kpis.csv"}, report=report)
    _write_csv(files.csv["exceptions"], EXCEPTION_COLUMNS, report.exceptions)
    _write_csv(files.csv["chains"], CHAIN_COLUMNS, report.chains)
    _write_csv(files.csv["kpis"], KPI_COLUMNS, report.kpis)
    _write_xlsx(files.xlsx, report)
    files.html.write_text(render_html(report, title), encoding="utf-8")
    return files

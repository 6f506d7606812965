"""Write a planned company as a world directory (docs/world.md): each system's records in the shape its
API returns them, the bank's camt.053 statements, the day's FX rates; the truth goes elsewhere.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from sandbox.scenarios.build import erp_id
from sandbox.scenarios.model import Company, Customer, Invoice, Order, Payment

_COUNTRY_NAMES = {"DE": "Germany", "AT": "Austria", "FR": "France", "GB": "United Kingdom", "US": "United States",
                  "NL": "Netherlands", "ES": "Spain", "IT": "Italy", "CN": "China"}
_CURRENCY_IDS = {"EUR": 1, "USD": 2, "GBP": 3}
_COUNTRY_IDS = {c: i + 50 for i, c in enumerate(_COUNTRY_NAMES)}
_IBANS = {"EUR": "DE44500105175407324931", "USD": "GB33BUKB20201555555555", "GBP": "GB94BARC10201530093459"}


def _dumps(value: Any) -> str:
    """JSON with Decimals as number literals of their exact digits."""
    marks: list[str] = []

    def default(o: Any) -> Any:
        if isinstance(o, Decimal):
            marks.append(str(o))
            return f"\x00{len(marks) - 1}\x00"
        raise TypeError(type(o).__name__)

    text = json.dumps(value, default=default, ensure_ascii=False)
    return re.sub(r'"\\u0000(\d+)\\u0000"', lambda m: marks[int(m.group(1))], text)


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(_dumps(row) + "\n")


def _at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def _minor(v: Decimal) -> int:
    return int((v * 100).to_integral_value())


def _epoch(day: date, hour: int = 10) -> int:
    return int(_at(day, hour).timestamp())


# -- CRM ---------------------------------------------------------------------------------------------------
def _first_day(co: Company, c: Customer) -> date:
    days = [d.close_date for d in co.deals if d.customer is c] + [co.as_of]
    return min(days) - timedelta(days=40)


def _stamp_of(co: Company, day: date) -> date:
    return min(day, co.as_of)


def salesforce(co: Company, out: Path) -> None:
    conv = co.conventions

    def sf_time(day: date) -> str:
        return _at(day).strftime("%Y-%m-%dT%H:%M:%S.000+0000")

    def rec(obj: str, sid: str, day: date, fields: dict[str, Any]) -> dict[str, Any]:
        stamp = sf_time(_stamp_of(co, day))
        return {"attributes": {"type": obj, "url": f"/services/data/v59.0/sobjects/{obj}/{sid}"}, "Id": sid,
                "IsDeleted": False, **fields, "CreatedDate": stamp, "LastModifiedDate": stamp, "SystemModstamp": stamp}

    accounts = [rec("Account", c.crm_id, _first_day(co, c), {
        "Name": c.crm_name, "Type": "Customer", "BillingCountry": c.country, "Website": f"https://www.{c.domain}",
        "Phone": None, conv.crm_tax_field: c.crm_tax_id}) for c in co.customers]
    opps = []
    for d in co.deals:
        stage = {"won": "Closed Won", "lost": "Closed Lost", "open": "Negotiation/Review"}[d.stage]
        fields: dict[str, Any] = {
            "AccountId": d.customer.crm_id, "Name": d.name, "StageName": stage, "Amount": d.amount,
            "CurrencyIsoCode": d.currency, "CloseDate": d.close_date.isoformat(),
            "Probability": {"won": 100, "lost": 0, "open": 60}[d.stage], "IsClosed": d.stage != "open",
            "IsWon": d.stage == "won"}
        if conv.crm_order_field:
            fields[conv.crm_order_field] = d.order_number_on_crm
        opps.append(rec("Opportunity", d.crm_id, d.close_date if d.stage != "open" else co.as_of, fields))
    _write(out / "salesforce" / "Account.jsonl", accounts)
    _write(out / "salesforce" / "Opportunity.jsonl", opps)


def hubspot(co: Company, out: Path) -> None:
    conv = co.conventions

    def iso(day: date) -> str:
        return _at(_stamp_of(co, day)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    companies = []
    for c in co.customers:
        t = iso(_first_day(co, c))
        companies.append({"id": c.crm_id, "properties": {
            "name": c.crm_name, "domain": c.domain, "country": c.country, conv.crm_tax_field: c.crm_tax_id,
            "createdate": t, "hs_lastmodifieddate": t, "hs_object_id": c.crm_id},
            "createdAt": t, "updatedAt": t, "archived": False})
    deals, assoc = [], []
    for d in co.deals:
        t = iso(d.close_date if d.stage != "open" else co.as_of)
        props: dict[str, Any] = {
            "dealname": d.name, "amount": str(d.amount),
            "dealstage": {"won": "closedwon", "lost": "closedlost", "open": "contractsent"}[d.stage],
            "pipeline": "default", "closedate": _at(d.close_date, 0).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "deal_currency_code": d.currency, "createdate": t, "hs_lastmodifieddate": t, "hs_object_id": d.crm_id}
        if conv.crm_order_field:
            props[conv.crm_order_field] = d.order_number_on_crm
        deals.append({"id": d.crm_id, "properties": props, "createdAt": t, "updatedAt": t, "archived": False})
        assoc.append({"from": {"id": d.crm_id}, "to": [{"toObjectId": int(d.customer.crm_id), "associationTypes": [
            {"category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"}]}]})
    _write(out / "hubspot" / "companies.jsonl", companies)
    _write(out / "hubspot" / "deals.jsonl", deals)
    _write(out / "hubspot" / "associations" / "deals_to_companies.jsonl", assoc)


# Jiandaoyun (简道云): the company built its own forms; labels (and the widget names they get) vary.
_JDY_LABELS = {
    "customers": {"name": ("客户名称", "公司名称", "客户全称"), "country": ("国家", "国家/地区", "所在国家")},
    "opportunities": {"name": ("商机名称", "机会名称", "项目名称"), "account_id": ("客户", "关联客户", "所属客户"),
                      "amount": ("商机金额", "预计金额", "预计成交金额"), "currency": ("币种", "结算币种"),
                      "stage": ("销售阶段", "商机阶段", "阶段"), "close_date": ("预计成交日期", "预计签单日期", "成交日期")},
}
_JDY_TYPES = {"name": "text", "country": "text", "account_id": "linkdata", "amount": "number", "currency": "combo",
              "stage": "combo", "close_date": "datetime"}


def jiandaoyun(co: Company, out: Path) -> None:
    """Two forms of a Jiandaoyun app (``POST /api/v5/app/entry/data/list`` records and ``/widget/list``
    answers), and ``app.yaml``: which form is customers / opportunities and which label is which
    field, as the company's admin would configure it — the tax id and order number widgets are the
    company's own and left for discovery, as custom fields are on the other CRMs."""
    import random

    import yaml

    conv = co.conventions
    r = random.Random(f"jiandaoyun-forms:{co.seed}")
    folder = out / "jiandaoyun"
    folder.mkdir(parents=True, exist_ok=True)
    taken: set[int] = set()

    def widget_name() -> str:
        while (n := r.randrange(1_600_000_000_000, 1_700_000_000_000)) in taken:
            pass
        taken.add(n)
        return f"_widget_{n}"

    def day_instant(day: date) -> str:  # a date widget: the UTC instant of Beijing midnight
        return (datetime.combine(day, time(0), tzinfo=UTC) - timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    app_id = f"66e4{co.seed % 65536:04x}{0:016x}"
    forms: dict[str, Any] = {}
    names: dict[str, dict[str, str]] = {}
    for i, (key, fields) in enumerate(_JDY_LABELS.items()):
        entry = f"66e4{co.seed % 65536:04x}{i + 1:016x}"
        names[key] = {f: widget_name() for f in fields}
        labels = {f: r.choice(v) for f, v in fields.items()}
        widgets = [{"name": names[key][f], "widgetName": names[key][f], "label": labels[f], "type": _JDY_TYPES[f]}
                   for f in fields]
        extra = {"customers": [("tax", conv.crm_tax_field)],
                 "opportunities": [("order", conv.crm_order_field)] if conv.crm_order_field else []}[key]
        for f, label in extra:
            names[key][f] = widget_name()
            widgets.append({"name": names[key][f], "widgetName": names[key][f], "label": label, "type": "text"})
        (folder / f"{key}.widgets.json").write_text(json.dumps(
            {"widgets": widgets, "sysWidgets": [{"name": n} for n in ("creator", "createTime", "updater", "updateTime")],
             "dataModifyTime": _at(co.as_of).strftime("%Y-%m-%dT%H:%M:%S.000Z")}, ensure_ascii=False, indent=1) + "\n",
            encoding="utf-8")
        forms[key] = {"entry_id": entry, "name": {"customers": "客户", "opportunities": "商机"}[key],
                      "fields": labels}
    member = {"name": "销售管理员", "username": "sales_admin", "status": 1, "type": 0, "departments": [1]}

    def rec(key: str, rid: str, day: date, values: dict[str, Any]) -> dict[str, Any]:
        t = _at(_stamp_of(co, day)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        return {"_id": rid, "appId": app_id, "entryId": forms[key]["entry_id"], "creator": member, "updater": member,
                "deleter": None, "createTime": t, "updateTime": t, "deleteTime": None,
                **{names[key][f]: v for f, v in values.items()}}

    customers = [rec("customers", c.crm_id, _first_day(co, c), {"name": c.crm_name, "country": c.country,
                                                                 "tax": c.crm_tax_id}) for c in co.customers]
    opps = []
    for d in co.deals:
        values: dict[str, Any] = {
            "name": d.name, "account_id": d.customer.crm_id, "amount": d.amount, "currency": d.currency,
            "stage": {"won": "赢单", "lost": "输单", "open": "商务谈判"}[d.stage], "close_date": day_instant(d.close_date)}
        if conv.crm_order_field:
            values["order"] = d.order_number_on_crm
        opps.append(rec("opportunities", d.crm_id, d.close_date if d.stage != "open" else co.as_of, values))
    _write(folder / "customers.jsonl", customers)
    _write(folder / "opportunities.jsonl", opps)
    (folder / "app.yaml").write_text(
        "# The company's Jiandaoyun app: which form is which, which widget label is which field\n"
        + yaml.safe_dump({"app_id": app_id, "timezone": "Asia/Shanghai", "forms": forms}, sort_keys=False,
                         allow_unicode=True), encoding="utf-8")


def zoho(co: Company, out: Path) -> None:
    """Accounts and Deals as Zoho CRM v8 ``GET /crm/v8/{module}`` returns them: ids as digit strings,
    lookups as ``{"name", "id"}``, amounts as JSON numbers, times with the org's offset, custom fields
    by API name."""
    conv = co.conventions
    offset = timezone(timedelta(hours=1))  # the org's time zone (CET)
    owner = {"name": "Lena Brandt", "id": "4876876000000017001", "email": "lena@example.com"}

    def ztime(day: date) -> str:
        return _at(_stamp_of(co, day)).astimezone(offset).isoformat(timespec="seconds")

    accounts = []
    for c in co.customers:
        t = ztime(_first_day(co, c))
        accounts.append({"id": c.crm_id, "Account_Name": c.crm_name, "Website": f"www.{c.domain}",
                         "Billing_Country": _COUNTRY_NAMES.get(c.country, c.country), "Phone": None,
                         "Account_Type": "Customer", conv.crm_tax_field: c.crm_tax_id, "Owner": owner,
                         "Created_Time": t, "Modified_Time": t})
    deals = []
    for d in co.deals:
        t = ztime(d.close_date if d.stage != "open" else co.as_of)
        rec: dict[str, Any] = {
            "id": d.crm_id, "Deal_Name": d.name, "Account_Name": {"name": d.customer.crm_name, "id": d.customer.crm_id},
            "Stage": {"won": "Closed Won", "lost": "Closed Lost", "open": "Negotiation/Review"}[d.stage],
            "Amount": d.amount, "Currency": d.currency, "Closing_Date": d.close_date.isoformat(),
            "Probability": {"won": 100, "lost": 0, "open": 75}[d.stage], "Pipeline": "Standard", "Owner": owner,
            "Created_Time": t, "Modified_Time": t}
        if conv.crm_order_field:
            rec[conv.crm_order_field] = d.order_number_on_crm
        deals.append(rec)
    _write(out / "zoho" / "Accounts.jsonl", accounts)
    _write(out / "zoho" / "Deals.jsonl", deals)


_CRMS = {"salesforce": salesforce, "hubspot": hubspot, "zoho": zoho, "jiandaoyun": jiandaoyun}


# -- ERP ---------------------------------------------------------------------------------------------------
def _dec(v: Decimal) -> dict[str, Any]:
    return {"__class__": "Decimal", "decimal": str(v)}


def _tdate(d: date) -> dict[str, Any]:
    return {"__class__": "date", "year": d.year, "month": d.month, "day": d.day}


def _tdt(d: date, hour: int = 9) -> dict[str, Any]:
    return {"__class__": "datetime", "year": d.year, "month": d.month, "day": d.day, "hour": hour, "minute": 0,
            "second": 0, "microsecond": 0}


def _invoices_of(co: Company) -> dict[int, list[Invoice]]:
    by_order: dict[int, list[Invoice]] = defaultdict(list)
    for inv in co.invoices:
        if inv.order is not None:
            by_order[inv.order.erp_id].append(inv)
    return by_order


def _erp_payments(co: Company) -> tuple[list[Payment], dict[int, list[Payment]]]:
    """The payments booked in the ERP (cash convention ``erp``), and per invoice the ones that pay it."""
    pays = [p for p in co.payments if p.system == co.conventions.erp]
    by_inv: dict[int, list[Payment]] = defaultdict(list)
    for p in pays:
        for inv in p.invoices:
            by_inv[id(inv)].append(p)
    return pays, by_inv


def _residual(inv: Invoice, pays: list[Payment]) -> Decimal:
    paid = sum((p.amount if len(p.invoices) == 1 else inv.total for p in pays), Decimal(0))
    return max(inv.total - paid, Decimal("0.00"))


def _order_texts(co: Company, o: Order) -> tuple[str | None, str | None]:
    """(reference field, description field) as this company fills them."""
    place = co.conventions.erp_deal_place
    title = o.deal.name if o.deal is not None else f"{o.product} for {o.customer.name}"
    if o.deal_ref is None:
        return o.customer_po, title
    if place == "description":
        return o.customer_po, f"{title} (Opp {o.deal_ref})"
    return o.deal_ref, title


def tryton(co: Company, out: Path) -> None:
    conv = co.conventions
    parties, sales, slines, invoices, ilines = [], [], [], [], []

    def cur(code: str) -> dict[str, Any]:
        return {"id": _CURRENCY_IDS[code], "code": code}

    erp_pays, erp_by_inv = _erp_payments(co)

    for c in co.customers:
        pid = erp_id("party", c.key)
        day = _first_day(co, c)
        parties.append({
            "id": pid, "name": c.name, "code": f"C{c.key:05d}", "active": True, "email": f"ap@{c.domain}",
            "phone": None, "website": f"https://{c.domain}", "lang.": None,
            "identifiers.": ([{"id": pid * 10, "code": c.crm_id, "type": None}] if conv.erp_crm_id_on_party else []),
            "tax_identifier.": {"id": pid * 10 + 1, "code": c.tax_id},
            "addresses.": [{"id": pid * 10 + 2, "country.": {"id": _COUNTRY_IDS[c.country], "code": c.country},
                            "city": None, "postal_code": None}],
            "create_date": _tdt(day), "write_date": None})
    by_order = _invoices_of(co)
    for o in co.orders:
        sid, lid = erp_id("order", o.erp_id), erp_id("order_line", o.line_id)
        ref, desc = _order_texts(co, o)
        invs = [i for i in by_order.get(o.erp_id, []) if i.system == "tryton"]
        sales.append({
            "id": sid, "number": o.number, "reference": ref, "description": desc, "state": "processing",
            "sale_date": _tdate(o.order_date), "company": 1, "party": erp_id("party", o.customer.key),
            "invoice_party": None, "currency.": cur(o.currency), "payment_term": 1,
            "invoice_method": "order" if o.billing == "erp" else "manual",
            "invoice_state": ("waiting" if invs else "none"), "shipment_state": ("none" if not conv.ships else "sent" if o.shipped else "waiting"),
            "untaxed_amount": _dec(o.total), "tax_amount": _dec(Decimal("0.00")), "total_amount": _dec(o.total),
            "lines": [lid], "invoices": [erp_id("invoice", int(i.ident)) for i in invs], "origin": None,
            "create_date": _tdt(o.order_date), "write_date": None})
        slines.append({
            "id": lid, "sale": sid, "sequence": 1, "type": "line", "product": 5, "product.": {"id": 5, "code": o.product},
            "description": o.product, "quantity": 1.0, "unit.": {"id": 1, "name": "Unit"},
            "unit_price": _dec(o.total), "amount": _dec(o.total), "taxes": [], "currency.": cur(o.currency),
            "create_date": _tdt(o.order_date), "write_date": None})
    for inv in co.invoices:
        if inv.system != "tryton":
            continue
        iid = erp_id("invoice", int(inv.ident))
        lid = erp_id("invoice_line", int(inv.ident))
        so = inv.order
        paid_by = erp_by_inv.get(id(inv), [])
        residual = _residual(inv, paid_by)
        invoices.append({
            "id": iid, "number": inv.number, "reference": so.customer_po if so else None, "description": inv.memo,
            "type": "out", "state": "paid" if residual == 0 else "posted", "invoice_date": _tdate(inv.invoice_date),
            "accounting_date": None, "company": 1, "party": erp_id("party", inv.customer.key),
            "currency.": cur(inv.currency), "payment_term": 1, "untaxed_amount": _dec(inv.total),
            "tax_amount": _dec(Decimal("0.00")), "total_amount": _dec(inv.total), "amount_to_pay": _dec(residual),
            "reconciled": _tdate(max(p.value_date for p in paid_by)) if residual == 0 and paid_by else None,
            "origins": so.number if so else None, "sales": [erp_id("order", so.erp_id)] if so else [],
            "origin_invoices": [], "lines": [lid], "lines_to_pay": [iid * 10],
            "lines_to_pay.": [{"id": iid * 10, "maturity_date": _tdate(inv.due_date)}],
            "payment_lines": [int(p.ident) for p in paid_by],
            "reconciliation_lines": [int(p.ident) for p in paid_by] if residual == 0 else [], "move": iid, "create_date": _tdt(inv.invoice_date), "write_date": None})
        ilines.append({
            "id": lid, "invoice": iid, "sequence": 1, "type": "line", "product": 5,
            "product.": {"id": 5, "code": so.product if so else "SRV-ADHOC"}, "description": inv.memo or "Services",
            "quantity": 1.0, "unit.": {"id": 1, "name": "Unit"}, "unit_price": _dec(inv.total),
            "amount": _dec(inv.total), "taxes": [], "currency.": cur(inv.currency),
            "origin": f"sale.line,{erp_id('order_line', so.line_id)}" if so else None,
            "create_date": _tdt(inv.invoice_date), "write_date": None})
    moves = []
    for p in erp_pays:
        inv0 = p.invoices[0] if p.invoices else None
        moves.append({
            "id": int(p.ident), "move": int(p.ident), "move.": {"id": int(p.ident), "number": f"CASH-{p.ident}",
                                                             "journal.": {"id": 4, "type": "cash"}},
            "date": _tdate(p.value_date), "debit": _dec(Decimal("0.00")), "credit": _dec(p.amount),
            "currency.": cur(p.currency), "amount_second_currency": None, "second_currency.": None,
            "party": erp_id("party", p.customer.key) if p.customer else None,
            "account.": {"id": 9, "code": "1100", "type.": {"id": 3, "receivable": True}},
            "description": inv0.number if inv0 else None, "move_description_used": "Customer payment",
            "move_origin": None, "invoice_payment": erp_id("invoice", int(inv0.ident)) if inv0 else None,
            "invoice_payment.": ({"id": erp_id("invoice", int(inv0.ident)), "number": inv0.number} if inv0 else None),
            "reconciliation": None, "maturity_date": None, "state": "valid", "move_state": "posted",
            "create_date": _tdt(p.value_date, 11), "write_date": None})
    base = out / "tryton"
    if moves:
        _write(base / "account.move.line.jsonl", moves)
    if conv.ships:
        _tryton_shipments(co, base)
    for name, rows in (("party.party", parties), ("sale.sale", sales), ("sale.line", slines),
                       ("account.invoice", invoices), ("account.invoice.line", ilines)):
        _write(base / f"{name}.jsonl", rows)


def _tryton_shipments(co: Company, base: Path) -> None:
    """``stock.shipment.out`` (one per sale; ``origins`` = the sale's number, as Tryton's function field
    gives it) and its ``stock.move``: done on the day the goods left, else waiting."""
    ships, moves = [], []
    for o in co.orders:
        sid, mid = erp_id("shipment", o.erp_id), erp_id("move", o.line_id)
        planned = o.order_date + timedelta(days=2)
        done = o.shipped is not None
        ships.append({
            "id": sid, "number": f"CS{o.erp_id:05d}", "reference": o.customer_po, "state": "done" if done else "waiting",
            "company": 1, "customer": erp_id("party", o.customer.key), "planned_date": _tdate(planned),
            "effective_date": _tdate(o.shipped) if o.shipped else None, "origins": o.number, "moves": [mid],
            "create_date": _tdt(o.order_date), "write_date": _tdt(o.shipped, 16) if o.shipped else None})
        moves.append({
            "id": mid, "shipment": f"stock.shipment.out,{sid}", "product": 5, "product.": {"id": 5, "code": o.product},
            "quantity": 1.0, "unit.": {"id": 1, "name": "Unit"}, "origin": f"sale.line,{erp_id('order_line', o.line_id)}",
            "state": "done" if done else "assigned", "planned_date": _tdate(planned),
            "effective_date": _tdate(o.shipped) if o.shipped else None, "create_date": _tdt(o.order_date),
            "write_date": _tdt(o.shipped, 16) if o.shipped else None})
    _write(base / "stock.shipment.out.jsonl", ships)
    _write(base / "stock.move.jsonl", moves)


def _odoo_pickings(co: Company, base: Path, names: dict[int, str]) -> None:
    """Outgoing ``stock.picking`` (``origin`` and ``sale_id`` name the sale order) and its ``stock.move``:
    ``done`` with ``date_done`` when the goods left, else ``assigned``."""
    picks, moves = [], []

    def ts(day: date, hour: int = 9) -> str:
        return f"{_stamp_of(co, day).isoformat()} {hour:02d}:00:00"

    for o in co.orders:
        pid, mid = erp_id("shipment", o.erp_id), erp_id("move", o.line_id)
        name = f"WH/OUT/{o.erp_id:05d}"
        done = o.shipped is not None
        last = o.shipped or o.order_date
        picks.append({
            "id": pid, "write_date": ts(last, 16), "create_date": ts(o.order_date), "display_name": name, "name": name,
            "partner_id": [erp_id("party", o.customer.key), names[o.customer.key]], "picking_type_code": "outgoing",
            "state": "done" if done else "assigned", "origin": o.number, "sale_id": [erp_id("order", o.erp_id), o.number],
            "scheduled_date": ts(o.order_date + timedelta(days=2), 8), "date_deadline": False,
            "date_done": ts(o.shipped, 15) if o.shipped else False, "move_ids": [mid]})
        moves.append({
            "id": mid, "write_date": ts(last, 16), "create_date": ts(o.order_date),
            "display_name": f"[{o.product}] {o.product}", "picking_id": [pid, name], "picking_code": "outgoing",
            "product_id": [5, f"[{o.product}] {o.product}"], "product_uom_qty": Decimal("1.0"),
            "quantity": Decimal("1.0") if done else Decimal("0.0"), "state": "done" if done else "assigned",
            "sale_line_id": [erp_id("order_line", o.line_id), f"{o.number} - {o.product}"],
            "date": ts(last, 15)})
    _write(base / "stock.picking.jsonl", picks)
    _write(base / "stock.move.jsonl", moves)


def odoo(co: Company, out: Path) -> None:
    conv = co.conventions
    partners, orders, olines, moves, mlines = [], [], [], [], []

    def ts(day: date, hour: int = 9) -> str:
        return f"{_stamp_of(co, day).isoformat()} {hour:02d}:00:00"

    def cur(code: str) -> list[Any]:
        return [_CURRENCY_IDS[code], code]

    names = {c.key: c.name for c in co.customers}
    erp_pays, erp_by_inv = _erp_payments(co)
    for c in co.customers:
        pid = erp_id("party", c.key)
        day = _first_day(co, c)
        partners.append({
            "id": pid, "write_date": ts(day), "create_date": ts(day), "display_name": c.name, "name": c.name,
            "ref": c.crm_id if conv.erp_crm_id_on_party else False, "email": f"ap@{c.domain}", "phone": False,
            "website": f"https://{c.domain}", "vat": c.tax_id, "is_company": True, "parent_id": False,
            "commercial_partner_id": [pid, c.name], "country_id": [_COUNTRY_IDS[c.country], _COUNTRY_NAMES[c.country]],
            "customer_rank": 1, "active": True})
    by_order = _invoices_of(co)
    for o in co.orders:
        sid, lid = erp_id("order", o.erp_id), erp_id("order_line", o.line_id)
        ref, desc = _order_texts(co, o)
        invs = [i for i in by_order.get(o.erp_id, []) if i.system == "odoo"]
        partner = [erp_id("party", o.customer.key), names[o.customer.key]]
        orders.append({
            "id": sid, "write_date": ts(o.order_date), "create_date": ts(o.order_date), "display_name": o.number,
            "name": o.number, "partner_id": partner, "date_order": ts(o.order_date),
            "validity_date": (o.order_date + timedelta(days=30)).isoformat(), "client_order_ref": ref or False,
            "origin": (desc if co.conventions.erp_deal_place == "description" and o.deal_ref else False),
            "state": "sale", "amount_untaxed": o.total, "amount_tax": Decimal("0.0"), "amount_total": o.total,
            "currency_id": cur(o.currency), "invoice_status": "invoiced" if invs else "to invoice",
            "invoice_ids": [erp_id("invoice", int(i.ident)) for i in invs], "order_line": [lid]})
        olines.append({
            "id": lid, "write_date": ts(o.order_date), "create_date": ts(o.order_date),
            "display_name": f"{o.number} - {o.product}", "order_id": [sid, o.number],
            "product_id": [5, f"[{o.product}] {o.product}"], "name": o.product, "product_uom_qty": Decimal("1.0"),
            "price_unit": o.total, "discount": Decimal("0.0"), "price_subtotal": o.total, "price_total": o.total,
            "qty_invoiced": Decimal("1.0") if invs else Decimal("0.0"), "currency_id": cur(o.currency)})
    for inv in co.invoices:
        if inv.system != "odoo":
            continue
        mid, lid = erp_id("invoice", int(inv.ident)), erp_id("invoice_line", int(inv.ident))
        so = inv.order
        residual = _residual(inv, erp_by_inv.get(id(inv), []))
        moves.append({
            "id": mid, "write_date": ts(inv.invoice_date), "create_date": ts(inv.invoice_date),
            "display_name": inv.number, "name": inv.number, "move_type": "out_invoice", "state": "posted",
            "payment_state": ("not_paid" if residual == inv.total else "paid" if residual == 0 else "partial"),
            "partner_id": [erp_id("party", inv.customer.key), names[inv.customer.key]],
            "currency_id": cur(inv.currency), "invoice_date": inv.invoice_date.isoformat(),
            "invoice_date_due": inv.due_date.isoformat(), "invoice_origin": so.number if so else False,
            "ref": (so.customer_po if so else inv.memo) or False, "payment_reference": inv.number,
            "amount_untaxed": inv.total, "amount_tax": Decimal("0.0"), "amount_total": inv.total,
            "amount_residual": residual, "invoice_line_ids": [lid], "reversed_entry_id": False})
        mlines.append({
            "id": lid, "write_date": ts(inv.invoice_date), "create_date": ts(inv.invoice_date),
            "display_name": f"{inv.number} {so.product if so else 'Services'}", "move_id": [mid, inv.number],
            "product_id": [5, so.product] if so else False, "name": so.product if so else (inv.memo or "Services"),
            "quantity": Decimal("1.0"), "price_unit": inv.total, "discount": Decimal("0.0"),
            "price_subtotal": inv.total, "price_total": inv.total, "currency_id": cur(inv.currency),
            "display_type": "product", "sale_line_ids": [erp_id("order_line", so.line_id)] if so else []})
    payments = []
    for p in erp_pays:
        pid = int(p.ident)
        name = f"PBNK1/2026/{pid % 100000:05d}"
        payments.append({
            "id": pid, "write_date": ts(p.value_date, 11), "create_date": ts(p.value_date, 11), "display_name": name,
            "name": name, "partner_id": ([erp_id("party", p.customer.key), names[p.customer.key]] if p.customer
                                         else False),
            "amount": p.amount, "currency_id": cur(p.currency), "date": p.value_date.isoformat(),
            "payment_type": "inbound", "partner_type": "customer", "state": "paid", "move_id": [pid, name],
            "reconciled_invoice_ids": [erp_id("invoice", int(i.ident)) for i in p.invoices]})
    base = out / "odoo"
    if conv.ships:
        _odoo_pickings(co, base, names)
    if payments:
        _write(base / "account.payment.jsonl", payments)
    for name, rows in (("res.partner", partners), ("sale.order", orders), ("sale.order.line", olines),
                       ("account.move", moves), ("account.move.line", mlines)):
        _write(base / f"{name}.jsonl", rows)


# -- Stripe ------------------------------------------------------------------------------------------------
def stripe(co: Company, out: Path) -> None:
    conv = co.conventions
    invs = [i for i in co.invoices if i.system == "stripe"]
    custs = {i.customer.key: i.customer for i in invs}
    customers = []
    for c in custs.values():
        c.stripe_id = f"cus_W{co.seed % 100:02d}{c.key:010d}"
        customers.append({
            "id": c.stripe_id, "object": "customer", "created": _epoch(_first_day(co, c)), "name": c.name,
            "email": f"ap@{c.domain}", "currency": c.currency.lower(), "description": None, "livemode": False,
            "metadata": {conv.stripe_customer_key: c.crm_id}, "balance": 0, "delinquent": False,
            "address": {"city": None, "country": c.country, "line1": None, "line2": None, "postal_code": None,
                        "state": None}, "tax_exempt": "none"})
    paid_at: dict[str, date] = {}
    for p in co.payments:
        if p.system == "stripe" and p.stripe_invoice:
            paid_at[p.stripe_invoice] = p.value_date
    invoices = []
    for inv in invs:
        o = inv.order
        meta: dict[str, str] = {}
        description, footer, custom = inv.memo, None, None
        if o is not None:
            if o.deal is not None:
                meta[conv.stripe_deal_key] = o.deal.crm_id
            place = conv.stripe_order_place
            if place == "metadata":
                meta[conv.stripe_order_key] = o.number
            elif place == "description":
                description = f"{o.product} as per order {o.number}"
            elif place == "footer":
                footer = f"Your order: {o.number}. Payment terms 30 days net."
            else:
                custom = [{"name": "Order", "value": o.number}]
        total = _minor(inv.total)
        paid = _minor(inv.paid) if inv.paid <= inv.total else total
        status = "paid" if inv.paid >= inv.total else "open"
        created = _epoch(inv.invoice_date)
        invoices.append({
            "id": inv.ident, "object": "invoice", "created": created, "customer": inv.customer.stripe_id,
            "customer_email": f"ap@{inv.customer.domain}", "customer_name": inv.customer.name,
            "currency": inv.currency.lower(), "collection_method": "send_invoice", "days_until_due": 30,
            "status": status, "number": inv.number, "due_date": _epoch(inv.due_date), "subtotal": total,
            "tax": None, "total": total, "amount_due": total, "amount_paid": paid, "amount_remaining": total - paid,
            "auto_advance": False, "metadata": meta, "description": description, "footer": footer,
            "custom_fields": custom, "livemode": False, "hosted_invoice_url": None, "period_start": created,
            "period_end": created, "effective_at": created + 60,
            "status_transitions": {"finalized_at": created + 60,
                                   "paid_at": _epoch(paid_at[inv.ident]) if status == "paid" and inv.ident in paid_at
                                   else None, "voided_at": None, "marked_uncollectible_at": None},
            "lines": {"object": "list", "data": [{
                "id": f"il_{inv.ident[3:]}", "object": "line_item", "amount": total, "currency": inv.currency.lower(),
                "description": o.product if o else (inv.memo or "Services"), "quantity": 1, "type": "invoiceitem",
                "metadata": {}, "period": {"start": created, "end": created},
                "price": {"id": "price_W1", "object": "price", "product": "prod_W1", "unit_amount": total,
                          "currency": inv.currency.lower()}}],
                "has_more": False, "total_count": 1, "url": f"/v1/invoices/{inv.ident}/lines"}})
    charges, txns = [], []
    for p in co.payments:
        if p.system != "stripe":
            continue
        inv = p.invoices[0]
        amount = _minor(p.amount)
        txn = "txn_" + p.ident[3:]
        created = _epoch(p.value_date, 14)
        charges.append({
            "id": p.ident, "object": "charge", "created": created, "amount": amount, "amount_captured": amount,
            "amount_refunded": 0, "currency": p.currency.lower(), "customer": inv.customer.stripe_id,
            "payment_intent": None, "invoice": p.stripe_invoice, "balance_transaction": txn, "status": "succeeded",
            "paid": True, "refunded": False, "captured": True, "description": "Payment for Invoice",
            "metadata": {}, "livemode": False, "billing_details": {"name": inv.customer.name, "email": None}})
        txns.append({
            "id": txn, "object": "balance_transaction", "created": created, "amount": amount, "fee": p.fee,
            "net": amount - p.fee, "currency": p.currency.lower(), "type": "charge", "source": p.ident,
            "status": "available", "available_on": created + 2 * 86400, "reporting_category": "charge",
            "exchange_rate": None, "description": None,
            "fee_details": [{"amount": p.fee, "currency": p.currency.lower(), "type": "stripe_fee",
                             "description": "Stripe processing fees"}]})
    _write(out / "stripe" / "customers.jsonl", customers)
    _write(out / "stripe" / "invoices.jsonl", invoices)
    _write(out / "stripe" / "charges.jsonl", charges)
    _write(out / "stripe" / "balance_transactions.jsonl", txns)


# -- Bank --------------------------------------------------------------------------------------------------
def _entry(p: Payment) -> str:
    amt = f'<Amt Ccy="{p.currency}">{p.amount:.2f}</Amt>'
    refs = f"<Refs><EndToEndId>{escape(p.end_to_end or 'NOTPROVIDED')}</EndToEndId></Refs>"
    amt_dtls = ""
    if p.instructed is not None:
        i_amt, i_cur = p.instructed
        amt_dtls = (f'<AmtDtls><InstdAmt><Amt Ccy="{i_cur}">{i_amt:.2f}</Amt></InstdAmt>'
                    f"<TxAmt><Amt Ccy=\"{p.currency}\">{p.amount:.2f}</Amt></TxAmt></AmtDtls>")
    chrgs = ""
    if p.charges is not None:
        chrgs = (f'<Chrgs><Rcrd><Amt Ccy="{p.currency}">{p.charges:.2f}</Amt><CdtDbtInd>DBIT</CdtDbtInd>'
                 f"<ChrgInclInd>true</ChrgInclInd></Rcrd></Chrgs>")
    iban = p.customer.iban if p.customer is not None else "DE02100100109307118603"
    parties = (f"<RltdPties><Dbtr><Pty><Nm>{escape(p.payer_name)}</Nm></Pty></Dbtr>"
               f"<DbtrAcct><Id><IBAN>{iban}</IBAN></Id></DbtrAcct></RltdPties>")
    rmt = ""
    if p.remittance:
        rmt = f"<RmtInf><Ustrd>{escape(p.remittance)}</Ustrd></RmtInf>"
    elif p.structured_ref:
        rmt = (f"<RmtInf><Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp>"
               f"<Ref>{escape(p.structured_ref)}</Ref></CdtrRefInf></Strd></RmtInf>")
    day = p.value_date.isoformat()
    return (f"<Ntry>{amt}<CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{day}</Dt></BookgDt>"
            f"<ValDt><Dt>{day}</Dt></ValDt><AcctSvcrRef>{p.ident}</AcctSvcrRef><BkTxCd><Domn><Cd>PMNT</Cd><Fmly>"
            f"<Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd><NtryDtls><TxDtls>{refs}{amt_dtls}"
            f"{chrgs}{parties}{rmt}</TxDtls></NtryDtls></Ntry>")


def bank(co: Company, out: Path) -> int:
    groups: dict[tuple[str, str], list[Payment]] = defaultdict(list)
    for p in co.payments:
        if p.system == "bank":
            groups[(p.currency, p.value_date.strftime("%Y-%m"))].append(p)
    folder = out / "bank"
    if groups:
        folder.mkdir(parents=True, exist_ok=True)
    for (currency, month), pays in sorted(groups.items()):
        pays.sort(key=lambda p: (p.value_date, p.ident))
        first = date.fromisoformat(f"{month}-01")
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        total = sum((p.amount for p in pays), Decimal(0))
        sid = f"STMT-{currency}-{month}"
        xml = (
            "<?xml version='1.0' encoding='utf-8'?>\n"
            '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
            f"<GrpHdr><MsgId>MSG-{sid}</MsgId><CreDtTm>{last.isoformat()}T23:00:00Z</CreDtTm></GrpHdr>"
            f"<Stmt><Id>{sid}</Id><CreDtTm>{last.isoformat()}T23:00:00Z</CreDtTm>"
            f"<FrToDt><FrDtTm>{first.isoformat()}T00:00:00Z</FrDtTm><ToDtTm>{last.isoformat()}T23:59:59Z</ToDtTm>"
            f"</FrToDt><Acct><Id><IBAN>{_IBANS[currency]}</IBAN></Id><Ccy>{currency}</Ccy>"
            "<Ownr><Nm>Westwind Systems GmbH</Nm></Ownr></Acct>"
            f'<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="{currency}">0.00</Amt>'
            f"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{first.isoformat()}</Dt></Dt></Bal>"
            f'<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="{currency}">{total:.2f}</Amt>'
            f"<CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>{last.isoformat()}</Dt></Dt></Bal>"
            + "".join(_entry(p) for p in pays)
            + "</Stmt></BkToCstmrStmt></Document>\n")
        (folder / f"{month}-{currency}.xml").write_text(xml, encoding="utf-8")
    return len(groups)


def fx_rates(co: Company, out: Path) -> None:
    first = min([p.value_date for p in co.payments] + [co.as_of]) - timedelta(days=5)
    rows = ["rate_date,base,quote,rate"]
    day = first
    while day <= co.as_of:
        for quote, mid in (("USD", Decimal("1.08")), ("GBP", Decimal("0.86"))):
            rate = co.fx.get((day, quote), mid.quantize(Decimal("0.0001")))
            rows.append(f"{day.isoformat()},EUR,{quote},{rate}")
        day += timedelta(days=1)
    (out / "fx_rates.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def write(co: Company, out: Path) -> Path:
    conv = co.conventions
    out.mkdir(parents=True, exist_ok=True)
    systems = [conv.crm]
    _CRMS[conv.crm](co, out)
    if any(i.system == "stripe" for i in co.invoices):
        systems.append("stripe")
        stripe(co, out)
    systems.append(conv.erp)
    (tryton if conv.erp == "tryton" else odoo)(co, out)
    if bank(co, out):
        systems.append("bank")
    fx_rates(co, out)
    (out / "world.yaml").write_text(
        "# Generated by sandbox.scenarios (independent labelled world; the truth is kept outside)\n"
        f"format: 1\nname: scenarios-seed-{co.seed}\nsystems: [{', '.join(systems)}]\nerp: {conv.erp}\n"
        f"reporting_currency: {conv.reporting_currency}\nas_of: {co.as_of.isoformat()}\n", encoding="utf-8")
    return out

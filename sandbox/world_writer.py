"""Write a generated :class:`sandbox.scenario.World` as a world directory (``docs/world.md``).

Each canonical table of the generator is rendered into the records the vendors' APIs return, so
that the shipped mappings (``mappings/*.yaml``) turn them back into the same canonical rows (same
canonical ids, amounts, currencies, dates and references) and identity resolution links the same
customers the generator's ``cross_ref`` says:

* **Salesforce** (``salesforce/``): ``Account``, ``Opportunity``, ``OpportunityLineItem``, ``Lead``
  REST query records (``attributes``, ``Id``, ``SystemModstamp``, ``IsDeleted``, numbers as JSON numbers).
* **Tryton** (``tryton/``): ``party.party`` (the CRM account id as a party identifier ``CRM-<id>``,
  as the push flow writes it; the tax identifier; the address country), ``sale.sale``, ``sale.line``
  and ``account.invoice`` ``search_read`` rows in Tryton's JSON-RPC encoding, with the dotted reads
  the connector asks for (``currency.``, ``product.``, ``lines_to_pay.``...). Credit notes have a
  negative total, as in Tryton. An invoice's ``origins`` is its sale's number.
* **Stripe** (``stripe/``): ``customers`` (``metadata.crm_account_id``), ``charges`` (amounts in minor
  units, ``metadata.deal_id`` / ``metadata.invoice_number``, the balance transaction expanded so the
  fee is there), ``refunds``, ``balance_transactions`` and ``payouts``.
* **Bank** (``bank/``): one camt.053 statement per account currency (:mod:`sandbox.camt053`), each
  payment a credit entry whose account-servicer reference is the payment's source id, with the
  payer name and the remittance text as the generator made them.
* ``fx_rates.csv`` and ``world.yaml`` (``as_of``, the reporting currency).

* **Odoo** (``odoo/``, a world generated with ``erp="odoo"``): ``res.partner`` (``ref`` = the CRM
  account id, ``vat``, ``country_id``), ``sale.order``, ``sale.order.line`` (product ``[CODE] Name``),
  ``account.move`` (``out_invoice`` / ``out_refund``) ``search_read`` rows: many2one as ``[id, name]``,
  ``false`` for empty, UTC ``YYYY-MM-DD HH:MM:SS`` stamps.

``python -m sandbox.world_writer --chains 300 --out DIR`` generates a world and writes it.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import yaml

from canonical.errors import InputError
from connectors.tryton import codec
from sandbox import camt053
from sandbox.scenario import World, generate

FORMAT = 1
SF_API = "v59.0"
# What the bank's statement account is called for each currency (valid IBAN shape, not a real account).
_BANK_IBANS = {"USD": "US64SVBKUS6S3300958879", "EUR": "DE89370400440532013000", "GBP": "GB29NWBK60161331926819"}


def _sid(canonical_id: str) -> str:
    """The source id part of a canonical id ``system:entity:source id``."""
    return canonical_id.split(":", 2)[2]


def _stamp(day: date | None, as_of: date, hour: int = 12) -> datetime:
    """An instant on ``day`` (the day after a record's own date, capped at the export day)."""
    d = min(day or as_of, as_of)
    return datetime.combine(d, time(hour), tzinfo=UTC)


def _sf_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _num(value: Decimal | None) -> float | None:
    # Salesforce sends numbers as JSON numbers; the connector parses them back as exact Decimals
    # (a float's shortest repr of a 2-decimal amount is that amount's text).
    return None if value is None else float(value)


def _minor(value: Decimal, currency: str) -> int:
    from canonical.money import Money

    return Money.of(value, currency).to_minor(convention="stripe")


def _qd(value: Decimal, currency: str) -> Decimal:
    """An amount with its currency's decimals, as the vendor writes it (12.3000 -> 12.30)."""
    from canonical.money import minor_units

    return value.quantize(Decimal(1).scaleb(-minor_units(currency)))


def _q(value: Decimal | None, currency: str) -> Decimal | None:
    return None if value is None else _qd(value, currency)


def _epoch(day: date, hour: int = 12) -> int:
    return int(datetime.combine(day, time(hour), tzinfo=UTC).timestamp())


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row))
            fh.write(b"\n")
            n += 1
    return n


def _tryton(row: dict[str, Any]) -> dict[str, Any]:
    """A row in Tryton's JSON-RPC encoding (Decimal/date/datetime tagged)."""
    out: dict[str, Any] = orjson.loads(codec.dumps(row))
    return out


def _rows(world: World, table: str) -> list[dict[str, Any]]:
    if table not in world.tables:  # a world saved before the table existed
        return []
    return list(world.tables[table].iter_rows(named=True))


def _crm_accounts(world: World, system: str) -> dict[str, str]:
    """Account canonical id of ``system`` -> the CRM (Salesforce or Zoho) account of its cluster (cross_ref)."""
    members: dict[str, list[str]] = defaultdict(list)
    for r in _rows(world, "cross_ref"):
        if r["entity"] == "account":
            members[r["cluster_id"]].append(r["member_id"])
    out: dict[str, str] = {}
    for ms in members.values():
        crm = next((m for m in ms if m.startswith(("salesforce:", "zoho:", "jiandaoyun:"))), None)
        if crm:
            out.update((m, crm) for m in ms if m.startswith(f"{system}:"))
    return out


# --- Salesforce -----------------------------------------------------------------------------------

_SF_QUOTE_STATUS = {"draft": "Draft", "sent": "Presented", "accepted": "Accepted", "rejected": "Rejected",
                    "expired": "Expired"}
_SF_CONTRACT_STATUS = {"draft": "Draft", "in_approval": "InApproval", "activated": "Activated",
                       "expired": "Expired", "terminated": "Terminated", "cancelled": "Draft"}
_SF_STAGE = {"prospecting": "Prospecting", "qualification": "Qualification", "proposal": "Proposal/Price Quote",
             "negotiation": "Negotiation/Review", "closed_won": "Closed Won", "closed_lost": "Closed Lost"}


def _sf(obj: str, sid: str, stamp: datetime, fields: dict[str, Any]) -> dict[str, Any]:
    return {"attributes": {"type": obj, "url": f"/services/data/{SF_API}/sobjects/{obj}/{sid}"}, "Id": sid,
            **fields, "IsDeleted": False, "SystemModstamp": _sf_time(stamp)}


def salesforce_records(world: World) -> dict[str, list[dict[str, Any]]]:
    as_of = world.as_of
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in _rows(world, "account"):
        if a["source_system"] != "salesforce":
            continue
        sid = _sid(a["id"])
        out["Account"].append(_sf("Account", sid, _stamp(as_of - timedelta(days=400), as_of), {
            "Name": a["name"], "Website": None, "BillingCountryCode": a["country"], "CurrencyIsoCode": None,
            "OwnerId": a["owner"], "ParentId": None, "Industry": None, "Phone": None,
        }))
    deals = _rows(world, "deal")
    for d in deals:
        sid = _sid(d["id"])
        created: datetime = d["created_at"]
        out["Opportunity"].append(_sf("Opportunity", sid, _stamp(d["close_date"] + timedelta(days=1), as_of), {
            "AccountId": _sid(d["account_id"]) if d["account_id"] else None, "Name": f"Deal {sid}",
            "StageName": _SF_STAGE[d["stage"]], "CurrencyIsoCode": d["currency"], "Amount": _num(d["amount"]),
            "CloseDate": d["close_date"].isoformat(), "CreatedDate": _sf_time(created), "OwnerId": d["owner"],
            "Probability": 100.0 if d["stage"] == "closed_won" else (0.0 if d["stage"] == "closed_lost" else 80.0),
            "Type": "New Business", "LeadSource": None,
        }))
    close = {d["id"]: d["close_date"] for d in deals}
    for ln in _rows(world, "deal_line"):
        sid = _sid(ln["id"])
        total = ln["amount"]
        out["OpportunityLineItem"].append(_sf("OpportunityLineItem", sid,
                                              _stamp(close.get(ln["deal_id"], as_of), as_of), {
            "OpportunityId": _sid(ln["deal_id"]), "ProductCode": ln["product_code"],
            "Name": f"Product {ln['product_code']}", "Quantity": _num(ln["quantity"]),
            "CurrencyIsoCode": ln["currency"], "UnitPrice": _num(ln["unit_price"]), "Subtotal": _num(total),
            "TotalPrice": _num(total), "Discount": None, "Product2Id": None,
        }))
    account_of = {d["id"]: d["account_id"] for d in deals}
    for q in _rows(world, "quote"):
        sid = _sid(q["id"])
        day = q["quote_date"] or as_of
        out["Quote"].append(_sf("Quote", sid, _stamp(day, as_of), {
            "QuoteNumber": q["number"], "Name": f"Quote {q['number']}", "OpportunityId": _sid(q["deal_id"]),
            "AccountId": _sid(account_of[q["deal_id"]]) if account_of.get(q["deal_id"]) else None,
            "Status": _SF_QUOTE_STATUS[q["status"]], "CreatedDate": _sf_time(_stamp(day, as_of)),
            "ExpirationDate": q["valid_until"].isoformat() if q["valid_until"] else None,
            "CurrencyIsoCode": q["currency"], "Subtotal": _num(q["untaxed"]), "Tax": 0.0,
            "TotalPrice": _num(q["untaxed"]), "GrandTotal": _num(q["total"]),
        }))
    quote_day = {q["id"]: q["quote_date"] for q in _rows(world, "quote")}
    for ln in _rows(world, "quote_line"):
        out["QuoteLineItem"].append(_sf("QuoteLineItem", _sid(ln["id"]), _stamp(quote_day.get(ln["quote_id"]) or as_of,
                                                                                as_of), {
            "QuoteId": _sid(ln["quote_id"]), "Description": f"Product {ln['product_code']}",
            "Quantity": _num(ln["quantity"]), "CurrencyIsoCode": ln["currency"], "UnitPrice": _num(ln["unit_price"]),
            "Subtotal": _num(ln["amount"]), "TotalPrice": _num(ln["amount"]), "Discount": None, "Product2Id": None,
        }))
    for c in _rows(world, "contract"):
        sid = _sid(c["id"])
        out["Contract"].append(_sf("Contract", sid, _stamp(c["signed_date"] or as_of, as_of), {
            "ContractNumber": c["number"], "AccountId": _sid(c["account_id"]) if c["account_id"] else None,
            "Status": "Activated" if c["status"] == "activated" else c["status"].title(),
            "StatusCode": _SF_CONTRACT_STATUS[c["status"]],
            "StartDate": c["start_date"].isoformat(), "EndDate": c["end_date"].isoformat(),
            "ContractTerm": 12, "CustomerSignedDate": c["signed_date"].isoformat() if c["signed_date"] else None,
            "CompanySignedDate": None, "CurrencyIsoCode": c["currency"], "OwnerId": c["owner"],
            # the custom fields the shipped mapping reads (docs: mappings/salesforce.yaml)
            "Opportunity__c": _sid(c["deal_id"]) if c["deal_id"] else None, "Contract_Value__c": _num(c["value"]),
        }))
    for ld in _rows(world, "lead"):
        sid = _sid(ld["id"])
        created = ld["created_at"]
        conv: datetime | None = ld["converted_at"]
        out["Lead"].append(_sf("Lead", sid, _stamp((conv or created).date() + timedelta(days=1), as_of), {
            "FirstName": "Lead", "LastName": sid, "Company": f"Prospect {sid}", "Email": None,
            # the mapping keeps Status as the org's picklist value
            "Status": ld["status"], "LeadSource": "Web", "CreatedDate": _sf_time(created),
            "ConvertedDate": conv.date().isoformat() if conv else None, "ConvertedAccountId": None,
            "ConvertedOpportunityId": None, "OwnerId": ld["owner"],
        }))
    return out


# --- Zoho CRM (the CRM of a world written with crm="zoho") ---------------------------------------

# Salesforce id prefixes of the generator -> a digit, so that every id becomes a Zoho-like number
_ZOHO_IDS = (("001", "1"), ("006", "6"), ("00k", "7"), ("00Q", "9"))
_ZOHO_STAGE = {"prospecting": "Qualification", "qualification": "Qualification",
               "proposal": "Proposal/Price Quote", "negotiation": "Negotiation/Review",
               "closed_won": "Closed Won", "closed_lost": "Closed Lost"}


def _with_crm(world: World, crm: str, text: Callable[[pl.Expr], pl.Expr], *, cleared: tuple[str, ...],
              dropped: tuple[str, ...]) -> World:
    """``world`` with its CRM ids rewritten by ``text`` in every string (and list of strings) column and in the
    truth's keys (fingerprints recomputed); the ``cleared`` tables emptied and the ``dropped`` codes' breaks
    left out (what that CRM does not hold)."""
    from reconcile.codes import fingerprint

    tables: dict[str, pl.DataFrame] = {}
    for name, df in world.tables.items():
        if name in cleared:
            df = df.clear()
        tables[name] = df.with_columns(
            [text(pl.col(c)).alias(c) for c, t in df.schema.items() if t == pl.String]
            + [pl.col(c).list.eval(text(pl.element())).alias(c) for c, t in df.schema.items()
               if t == pl.List(pl.String)])
    # a cluster is named by its smallest member id: with the new ids that may now be another member
    renamed: dict[str, str] = {}
    if "cross_ref" in tables:
        cross = tables["cross_ref"].with_columns(pl.col("member_id").min().over("entity", "cluster_id").alias("new"))
        renamed = dict(zip(cross["cluster_id"].to_list(), cross["new"].to_list(), strict=True))
        tables["cross_ref"] = cross.with_columns(pl.col("new").alias("cluster_id")).drop("new")
    truth = world.truth.filter(~pl.col("code").is_in(list(dropped))).with_columns(
        pl.col("keys").list.eval(text(pl.element())).alias("keys"))
    truth = truth.with_columns(pl.Series("keys", [sorted(renamed.get(k, k) for k in keys)
                                                  for keys in truth["keys"].to_list()], dtype=pl.List(pl.String)))
    truth = truth.with_columns(pl.Series("fingerprint", [fingerprint(c, k) for c, k in
                                                         zip(truth["code"].to_list(), truth["keys"].to_list(),
                                                             strict=True)], dtype=pl.String))
    return World(tables=tables, truth=truth, as_of=world.as_of, seed=world.seed, meta={**world.meta, "crm": crm})


def as_zoho(world: World) -> World:
    """The same world with Zoho CRM as its CRM: every ``salesforce:<entity>:<id>`` becomes
    ``zoho:<entity>:<digits>`` (and every bare CRM id in references the same digits), in the tables
    and in the ground truth (fingerprints recomputed). Zoho deals carry no line items, so the deal
    lines and the LINE_MISMATCH breaks planted on them are left out; the generated quotes and contracts
    are not written as Zoho records (Zoho has no contracts module; quotes are not rendered as Quotes),
    so they and their QUOTE_MISMATCH / CONTRACT_MISMATCH breaks are left out too."""
    def text(expr: pl.Expr) -> pl.Expr:
        for prefix, digit in _ZOHO_IDS:
            expr = expr.str.replace_all(rf"\b{prefix}(\d{{12}}\d*)\b", f"5725767{digit}$1")
        return expr.str.replace_all("salesforce:", "zoho:", literal=True).str.replace(r"^salesforce$", "zoho")

    return _with_crm(world, "zoho", text, cleared=("deal_line", "quote", "quote_line", "contract"),
                     dropped=("LINE_MISMATCH", "QUOTE_MISMATCH", "CONTRACT_MISMATCH"))


def _zoho_time(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds")


def zoho_records(world: World) -> dict[str, list[dict[str, Any]]]:
    """Accounts, Deals and Leads as ``GET /crm/v8/{module}`` returns them (of a world made by :func:`as_zoho`)."""
    as_of = world.as_of
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    names: dict[str, str] = {}
    for a in _rows(world, "account"):
        if a["source_system"] != "zoho":
            continue
        sid = _sid(a["id"])
        names[sid] = a["name"]
        stamp = _zoho_time(_stamp(as_of - timedelta(days=400), as_of))
        out["Accounts"].append({
            "id": sid, "Account_Name": a["name"], "Website": None, "Billing_Country": a["country"],
            "Currency": None, "Owner": {"name": a["owner"], "id": a["owner"], "email": a["owner"]},
            "Industry": None, "Phone": None, "Created_Time": stamp, "Modified_Time": stamp})
    for d in _rows(world, "deal"):
        sid = _sid(d["id"])
        acc = _sid(d["account_id"]) if d["account_id"] else None
        created: datetime = d["created_at"]
        out["Deals"].append({
            "id": sid, "Deal_Name": f"Deal {sid}",
            "Account_Name": {"name": names.get(acc or "", ""), "id": acc} if acc else None,
            "Stage": _ZOHO_STAGE[d["stage"]], "Currency": d["currency"], "Amount": _num(d["amount"]),
            "Closing_Date": d["close_date"].isoformat(), "Owner": {"name": d["owner"], "id": d["owner"],
                                                                  "email": d["owner"]},
            "Probability": 100 if d["stage"] == "closed_won" else (0 if d["stage"] == "closed_lost" else 80),
            "Type": "New Business", "Lead_Source": None, "Created_Time": _zoho_time(created),
            "Modified_Time": _zoho_time(_stamp(d["close_date"] + timedelta(days=1), as_of))})
    for ld in _rows(world, "lead"):
        sid = _sid(ld["id"])
        created = ld["created_at"]
        conv: datetime | None = ld["converted_at"]
        out["Leads"].append({
            "id": sid, "First_Name": "Lead", "Last_Name": sid, "Company": f"Prospect {sid}", "Email": None,
            "Lead_Status": ld["status"], "Lead_Source": "Web",
            "Owner": {"name": ld["owner"], "id": ld["owner"], "email": ld["owner"]},
            "Created_Time": _zoho_time(created),
            "Modified_Time": _zoho_time(_stamp((conv or created).date() + timedelta(days=1), as_of))})
    return out


# --- Jiandaoyun (the CRM of a world written with crm="jiandaoyun") ---------------------------------

# Salesforce id prefixes of the generator -> the head of a 24-hex Jiandaoyun data id, and the zeros
# that pad the digits to 24 characters (longest digit runs first)
_JDY_IDS = (("00k", r"(\d{14})", "66e3a70000"), ("00k", r"(\d{13})", "66e3a700000"),
            ("001", r"(\d{12})", "66e3a1000000"), ("006", r"(\d{12})", "66e3a6000000"),
            ("800", r"(\d{12})", "66e3a8000000"), ("00Q", r"(\d{12})", "66e3a9000000"))
_JDY_STAGE = {"prospecting": "初步接洽", "qualification": "需求确认", "proposal": "方案报价",
              "negotiation": "商务谈判", "closed_won": "赢单", "closed_lost": "输单"}
_JDY_CONTRACT = {"draft": "草稿", "in_approval": "审批中", "activated": "执行中", "expired": "已到期",
                 "terminated": "已终止", "cancelled": "已作废"}
# form key -> (form name, entry id, [(config field, label variants, widget type)], sub-form items)
_JDY_FORMS: dict[str, tuple[str, str, list[tuple[str, tuple[str, ...], str]]]] = {
    "customers": ("客户", "66e3f0000000000000000011", [
        ("name", ("客户名称", "公司名称", "客户全称"), "text"),
        ("tax_id", ("统一社会信用代码", "税号", "纳税人识别号"), "text"),
        ("country", ("国家/地区", "国家"), "text"), ("owner", ("负责人邮箱", "销售邮箱"), "text")]),
    "opportunities": ("商机", "66e3f0000000000000000012", [
        ("name", ("商机名称", "机会名称", "项目名称"), "text"), ("account_id", ("客户", "关联客户", "所属客户"), "linkdata"),
        ("amount", ("商机金额", "预计金额", "预计成交金额"), "number"), ("currency", ("币种", "结算币种"), "combo"),
        ("stage", ("销售阶段", "商机阶段", "阶段"), "combo"), ("close_date", ("预计成交日期", "预计签单日期"), "datetime"),
        ("owner", ("负责人邮箱", "销售邮箱"), "text"), ("lines", ("产品明细", "商机明细", "产品清单"), "subform")]),
    "contracts": ("合同", "66e3f0000000000000000013", [
        ("number", ("合同编号", "合同号"), "sn"), ("account_id", ("客户", "签约客户", "甲方"), "linkdata"),
        ("deal_id", ("关联商机", "商机", "对应商机"), "linkdata"), ("value", ("合同金额", "合同总额", "签约金额"), "number"),
        ("currency", ("币种", "合同币种"), "combo"), ("status", ("合同状态", "状态"), "combo"),
        ("start_date", ("开始日期", "生效日期"), "datetime"), ("end_date", ("结束日期", "到期日期"), "datetime"),
        ("signed_date", ("签订日期", "签约日期"), "datetime"), ("owner", ("负责人邮箱", "销售邮箱"), "text")]),
}
_JDY_ITEMS = [("product_code", ("产品编码", "产品编号"), "text"), ("quantity", ("数量", "购买数量"), "number"),
              ("unit_price", ("单价", "销售单价"), "number"), ("amount", ("小计", "金额", "行金额"), "number")]
JDY_APP_ID = "66e3f0000000000000000001"


def as_jiandaoyun(world: World) -> World:
    """The same world with a Jiandaoyun app as its CRM: every ``salesforce:<entity>:<id>`` becomes
    ``jiandaoyun:<entity>:<24 hex>`` (and every bare CRM id in references the same hex), in the
    tables and the ground truth (fingerprints recomputed). Deals keep their lines (a 产品明细
    sub-form) and contracts (a 合同 form); the app has no quotes and no leads, so those tables and the
    QUOTE_MISMATCH breaks are left out."""
    def text(expr: pl.Expr) -> pl.Expr:
        for prefix, digits, head in _JDY_IDS:
            expr = expr.str.replace_all(rf"\b{prefix}{digits}\b", f"{head}$1")
        return expr.str.replace_all("salesforce:", "jiandaoyun:", literal=True).str.replace(r"^salesforce$",
                                                                                            "jiandaoyun")

    return _with_crm(world, "jiandaoyun", text, cleared=("quote", "quote_line", "lead"), dropped=("QUOTE_MISMATCH",))


def _jdy_time(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jdy_day(day: date | None) -> str | None:
    """A date widget's value: the UTC instant of Beijing midnight of that day."""
    return None if day is None else _jdy_time(datetime.combine(day, time(0), tzinfo=UTC) - timedelta(hours=8))


def jiandaoyun_records(world: World) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """``(app.yaml, widget lists, records)`` of a world made by :func:`as_jiandaoyun`: forms 客户, 商机
    (with a product sub-form) and 合同; widget names ``_widget_<13 digits>`` and labels chosen by the
    world's seed, and an app.yaml that names every widget by its label."""
    import random

    rng = random.Random(f"jiandaoyun-{world.seed}")
    as_of = world.as_of
    names: dict[str, dict[str, str]] = {}
    labels: dict[str, dict[str, str]] = {}
    widget_lists: dict[str, dict[str, Any]] = {}
    used: set[int] = set()

    def widget_name() -> str:
        while (n := rng.randrange(1_600_000_000_000, 1_700_000_000_000)) in used:
            pass
        used.add(n)
        return f"_widget_{n}"

    for key, (_form, _entry, fields) in _JDY_FORMS.items():
        names[key], labels[key], widgets = {}, {}, []
        for fname, variants, wtype in fields:
            wname, label = widget_name(), rng.choice(variants)
            names[key][fname], labels[key][fname] = wname, label
            widget: dict[str, Any] = {"name": wname, "widgetName": wname, "label": label, "type": wtype}
            if wtype == "subform":
                widget["items"] = []
                for iname, ivariants, itype in _JDY_ITEMS:
                    sub, sub_label = widget_name(), rng.choice(ivariants)
                    names[key][f"lines.{iname}"], labels[key][f"lines.{iname}"] = sub, sub_label
                    widget["items"].append({"name": sub, "widgetName": sub, "label": sub_label, "type": itype})
            widgets.append(widget)
        sys_widgets = [{"name": n} for n in ("creator", "createTime", "updater", "updateTime")]
        widget_lists[key] = {"widgets": widgets, "sysWidgets": sys_widgets,
                             "dataModifyTime": _jdy_time(_stamp(as_of, as_of))}
    member = {"name": "系统管理员", "username": "admin", "status": 1, "type": 0, "departments": [1]}

    def rec(key: str, sid: str, created: datetime, updated: datetime, values: dict[str, Any]) -> dict[str, Any]:
        return {"_id": sid, "appId": JDY_APP_ID, "entryId": _JDY_FORMS[key][1], "creator": member, "updater": member,
                "deleter": None, "createTime": _jdy_time(created), "updateTime": _jdy_time(updated),
                "deleteTime": None, **{names[key][f]: v for f, v in values.items()}}

    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in _rows(world, "account"):
        if a["source_system"] != "jiandaoyun":
            continue
        stamp = _stamp(as_of - timedelta(days=400), as_of)
        out["customers"].append(rec("customers", _sid(a["id"]), stamp, stamp, {
            "name": a["name"], "tax_id": a["tax_id"], "country": a["country"], "owner": a["owner"]}))
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ln in _rows(world, "deal_line"):
        lines[ln["deal_id"]].append({"_id": _sid(ln["id"]), names["opportunities"]["lines.product_code"]: ln["product_code"],
                                     names["opportunities"]["lines.quantity"]: _num(ln["quantity"]),
                                     names["opportunities"]["lines.unit_price"]: _num(ln["unit_price"]),
                                     names["opportunities"]["lines.amount"]: _num(ln["amount"])})
    for d in _rows(world, "deal"):
        sid = _sid(d["id"])
        out["opportunities"].append(rec("opportunities", sid, d["created_at"],
                                        _stamp(d["close_date"] + timedelta(days=1), as_of), {
            "name": f"商机 {sid[-6:]}", "account_id": _sid(d["account_id"]) if d["account_id"] else None,
            "amount": _num(d["amount"]), "currency": d["currency"], "stage": _JDY_STAGE[d["stage"]],
            "close_date": _jdy_day(d["close_date"]), "owner": d["owner"], "lines": lines.get(d["id"], [])}))
    for c in _rows(world, "contract"):
        signed = c["signed_date"] or c["start_date"]
        created = _stamp(signed, as_of) if signed else _stamp(as_of, as_of)
        out["contracts"].append(rec("contracts", _sid(c["id"]), created, created, {
            "number": c["number"], "account_id": _sid(c["account_id"]) if c["account_id"] else None,
            "deal_id": _sid(c["deal_id"]) if c["deal_id"] else None, "value": _num(c["value"]),
            "currency": c["currency"], "status": _JDY_CONTRACT.get(c["status"], c["status"]),
            "start_date": _jdy_day(c["start_date"]), "end_date": _jdy_day(c["end_date"]),
            "signed_date": _jdy_day(c["signed_date"]), "owner": c["owner"]}))
    forms: dict[str, Any] = {}
    for key, (form_name, entry, fields) in _JDY_FORMS.items():
        spec: dict[str, Any] = {"entry_id": entry, "name": form_name,
                                "fields": {f: labels[key][f] for f, _v, t in fields if t != "subform"}}
        if key == "opportunities":
            spec["lines"] = {"widget": labels[key]["lines"],
                             "fields": {f: labels[key][f"lines.{f}"] for f, _v, _t in _JDY_ITEMS}}
        forms[key] = spec
    app = {"app_id": JDY_APP_ID, "timezone": "Asia/Shanghai", "forms": forms}
    return app, widget_lists, dict(out)


# --- Tryton ---------------------------------------------------------------------------------------

def _product_id(code: str) -> int:
    digits = "".join(c for c in code if c.isdigit())
    return int(digits) + 1 if digits else 100000 + sum(ord(c) for c in code)


def tryton_records(world: World) -> dict[str, list[dict[str, Any]]]:
    as_of = world.as_of
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    currency_ids: dict[str, int] = {}

    def cur(code: str) -> dict[str, Any]:
        return {"id": currency_ids.setdefault(code, len(currency_ids) + 1), "code": code}

    def stamps(day: date) -> dict[str, Any]:
        ts = _stamp(day, as_of)
        return {"create_date": ts, "write_date": ts}

    crm_of = _crm_accounts(world, "tryton")
    ident = 0
    for a in _rows(world, "account"):
        if a["source_system"] != "tryton":
            continue
        pid = int(_sid(a["id"]))
        identifiers = []
        crm = crm_of.get(a["id"])
        if crm:  # the CRM account id, as the push flow records it on the party
            ident += 1
            identifiers.append({"id": ident, "code": f"CRM-{_sid(crm)}", "type": None})
        tax = None
        if a["tax_id"]:
            ident += 1
            tax = {"id": ident, "code": a["tax_id"], "type": "us_ein"}
            identifiers.append(dict(tax))
        out["party.party"].append(_tryton({
            "id": pid, "name": a["name"], "code": f"C{pid:05d}", "active": True, "email": None, "phone": None,
            "website": None, "lang.": None, "identifiers": [i["id"] for i in identifiers], "identifiers.": identifiers,
            "tax_identifier": tax["id"] if tax else None, "tax_identifier.": tax,
            "addresses": [pid], "addresses.": [{"id": pid, "country.": {"id": 1, "code": a["country"]}
                                                if a["country"] else None, "city": None, "postal_code": None}],
            **stamps(as_of - timedelta(days=400)),
        }))
    lines_of: dict[str, list[int]] = defaultdict(list)
    for ln in _rows(world, "order_line"):
        lines_of[ln["order_id"]].append(int(_sid(ln["id"])))
    order_of_number: dict[str, int] = {}
    orders = _rows(world, "order")
    for o in orders:
        oid = int(_sid(o["id"]))
        order_of_number[o["number"]] = oid
        out["sale.sale"].append(_tryton({
            "id": oid, "number": o["number"], "reference": o["deal_ref"], "description": None, "state": o["state"],
            "sale_date": o["order_date"], "company": 1, "party": int(_sid(o["account_id"])),
            "invoice_party": int(_sid(o["account_id"])), "currency": cur(o["currency"])["id"],
            "currency.": cur(o["currency"]), "payment_term": 1, "invoice_method": "order",
            "invoice_state": "none", "shipment_state": "none", "untaxed_amount": _q(o["untaxed"], o["currency"]),
            "tax_amount": _q(o["tax"], o["currency"]), "total_amount": _q(o["total"], o["currency"]), "lines": sorted(lines_of[o["id"]]),
            "invoices": [], "origin": None, **stamps(o["order_date"]),
        }))
    order_date = {o["id"]: o["order_date"] for o in orders}
    for seq, ln in enumerate(_rows(world, "order_line"), 1):
        pid = _product_id(ln["product_code"])
        out["sale.line"].append(_tryton({
            "id": int(_sid(ln["id"])), "sale": int(_sid(ln["order_id"])), "sequence": seq, "type": "line",
            "product": pid, "product.": {"id": pid, "code": ln["product_code"]},
            "description": f"Product {ln['product_code']}", "quantity": float(ln["quantity"]), "unit.": None,
            "unit_price": _q(ln["unit_price"], ln["currency"]), "amount": _q(ln["amount"], ln["currency"]), "taxes": [], "currency": cur(ln["currency"])["id"],
            "currency.": cur(ln["currency"]), **stamps(order_date.get(ln["order_id"], as_of)),
        }))
    moves_of: dict[str, list[int]] = defaultdict(list)
    for mv in _rows(world, "delivery_line"):
        moves_of[mv["delivery_id"]].append(int(_sid(mv["id"])))
    ship_state = {"delivered": "done", "shipped": "shipped", "ready": "assigned", "waiting": "waiting",
                  "draft": "draft", "cancelled": "cancelled"}
    deliveries = _rows(world, "delivery")
    for dv in deliveries:
        out["stock.shipment.out"].append(_tryton({
            "id": int(_sid(dv["id"])), "number": dv["number"], "reference": None, "state": ship_state[dv["state"]],
            "company": 1, "customer": int(_sid(dv["account_id"])), "planned_date": dv["planned_date"],
            "effective_date": dv["delivered_date"], "origins": dv["order_ref"], "moves": sorted(moves_of[dv["id"]]),
            **stamps(dv["delivered_date"] or dv["planned_date"] or as_of),
        }))
    dv_by_id = {dv["id"]: dv for dv in deliveries}
    for mv in _rows(world, "delivery_line"):
        dv = dv_by_id[mv["delivery_id"]]
        pid = _product_id(mv["product_code"])
        out["stock.move"].append(_tryton({
            "id": int(_sid(mv["id"])), "shipment": f"stock.shipment.out,{int(_sid(mv['delivery_id']))}",
            "product": pid, "product.": {"id": pid, "code": mv["product_code"]}, "quantity": float(mv["quantity"]),
            "unit.": None, "origin": f"sale.line,{int(_sid(mv['order_line_id']))}" if mv["order_line_id"] else None,
            "state": ship_state[dv["state"]], "planned_date": dv["planned_date"], "effective_date": dv["delivered_date"],
            **stamps(dv["delivered_date"] or dv["planned_date"] or as_of),
        }))
    for inv in _rows(world, "invoice"):
        iid = int(_sid(inv["id"]))
        sign = Decimal(-1) if inv["kind"] == "credit_note" else Decimal(1)
        total = _q(inv["total"], inv["currency"]) * sign  # type: ignore[operator]
        # Tryton's `origins` is the rec_name of the invoice's origin lines: its sale's number
        sale = order_of_number.get(inv["order_ref"] or "")
        out["account.invoice"].append(_tryton({
            "id": iid, "number": inv["number"], "reference": None, "description": None, "type": "out",
            "state": {"open": "posted", "paid": "paid", "draft": "draft", "void": "cancelled"}.get(inv["status"], "posted"),
            "invoice_date": inv["issue_date"], "accounting_date": None, "company": 1,
            "party": int(_sid(inv["account_id"])), "currency": cur(inv["currency"])["id"],
            "currency.": cur(inv["currency"]), "payment_term": 1, "untaxed_amount": total, "tax_amount": _q(Decimal(0), inv["currency"]),
            "total_amount": total, "amount_to_pay": total, "reconciled": None, "origins": inv["order_ref"],
            "sales": [sale] if sale else [], "origin_invoices": [], "lines": [],
            "lines_to_pay": [iid], "lines_to_pay.": [{"id": iid, "maturity_date": inv["due_date"]}],
            "payment_lines": [], "reconciliation_lines": [], "move": iid, **stamps(inv["issue_date"]),
        }))
    return out


# --- Odoo ----------------------------------------------------------------------------------------

_COUNTRY_NAMES = {"US": "United States", "CA": "Canada", "GB": "United Kingdom", "DE": "Germany", "FR": "France"}


def _odoo_ts(day: date, as_of: date) -> str:
    return _stamp(day, as_of).strftime("%Y-%m-%d %H:%M:%S")


def _f(value: Decimal | None) -> float | bool:
    # Odoo sends monetary fields as JSON numbers and an empty field as `false`
    return False if value is None else float(value)


def odoo_records(world: World) -> dict[str, list[dict[str, Any]]]:
    """``search_read`` rows of res.partner, sale.order, sale.order.line, account.move (Odoo 17 shapes)."""
    as_of = world.as_of
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    currency_ids: dict[str, int] = {}

    def cur(code: str) -> list[Any]:
        return [currency_ids.setdefault(code, len(currency_ids) + 1), code]

    def stamps(day: date, name: str) -> dict[str, Any]:
        ts = _odoo_ts(day, as_of)
        return {"write_date": ts, "create_date": ts, "display_name": name}

    crm_of = _crm_accounts(world, "odoo")
    partner: dict[str, list[Any]] = {}
    for a in _rows(world, "account"):
        if a["source_system"] != "odoo":
            continue
        pid = int(_sid(a["id"]))
        partner[a["id"]] = [pid, a["name"]]
        crm = crm_of.get(a["id"])
        country = a["country"]
        out["res.partner"].append({
            "id": pid, **stamps(as_of - timedelta(days=400), a["name"]), "name": a["name"],
            "ref": _sid(crm) if crm else False,  # the CRM account id, as the push flow records it
            "email": False, "phone": False, "vat": a["tax_id"] or False, "is_company": True, "parent_id": False,
            "commercial_partner_id": [pid, a["name"]],
            "country_id": [list(_COUNTRY_NAMES).index(country) + 1 if country in _COUNTRY_NAMES else 999,
                           _COUNTRY_NAMES.get(country, country)] if country else False,
            "customer_rank": 1, "active": True,
        })
    lines_of: dict[str, list[int]] = defaultdict(list)
    for ln in _rows(world, "order_line"):
        lines_of[ln["order_id"]].append(int(_sid(ln["id"])))
    orders = _rows(world, "order")
    number_of = {o["id"]: o["number"] for o in orders}
    for o in orders:
        oid = int(_sid(o["id"]))
        ccy = o["currency"]
        out["sale.order"].append({
            "id": oid, **stamps(o["order_date"], o["number"]), "name": o["number"],
            "partner_id": partner.get(o["account_id"], [int(_sid(o["account_id"])), ""]),
            "date_order": _odoo_ts(o["order_date"], as_of), "validity_date": False,
            "client_order_ref": o["deal_ref"] or False, "origin": False,
            "state": {"confirmed": "sale", "done": "done", "cancelled": "cancel", "draft": "draft",
                      "quotation": "sent"}.get(o["state"], "sale"),
            "amount_untaxed": _f(_q(o["untaxed"], ccy)), "amount_tax": _f(_q(o["tax"], ccy)),
            "amount_total": _f(_q(o["total"], ccy)), "currency_id": cur(ccy), "invoice_status": "invoiced",
            "invoice_ids": [], "order_line": sorted(lines_of[o["id"]]),
        })
    order_date = {o["id"]: o["order_date"] for o in orders}
    for ln in _rows(world, "order_line"):
        code = ln["product_code"]
        ccy = ln["currency"]
        name = f"Product {code}"
        out["sale.order.line"].append({
            "id": int(_sid(ln["id"])), **stamps(order_date.get(ln["order_id"], as_of), name),
            "order_id": [int(_sid(ln["order_id"])), number_of.get(ln["order_id"], "")],
            "product_id": [_product_id(code), f"[{code}] {name}"], "name": name,
            "product_uom_qty": _f(ln["quantity"]), "price_unit": _f(_q(ln["unit_price"], ccy)), "discount": 0.0,
            "price_subtotal": _f(_q(ln["amount"], ccy)), "price_total": _f(_q(ln["amount"], ccy)),
            "qty_invoiced": 0.0, "currency_id": cur(ccy), "display_type": False,
        })
    pick_state = {"delivered": "done", "shipped": "done", "ready": "assigned", "waiting": "waiting",
                  "draft": "draft", "cancelled": "cancel"}
    moves_of: dict[str, list[int]] = defaultdict(list)
    for mv in _rows(world, "delivery_line"):
        moves_of[mv["delivery_id"]].append(int(_sid(mv["id"])))
    deliveries = _rows(world, "delivery")
    for dv in deliveries:
        day = dv["delivered_date"] or dv["planned_date"] or as_of
        sale = int(_sid(dv["order_id"])) if dv["order_id"] else None
        out["stock.picking"].append({
            "id": int(_sid(dv["id"])), **stamps(day, dv["number"]), "name": dv["number"],
            "partner_id": partner.get(dv["account_id"], [int(_sid(dv["account_id"])), ""]),
            "picking_type_code": "outgoing", "state": pick_state[dv["state"]], "origin": dv["order_ref"] or False,
            "sale_id": [sale, dv["order_ref"]] if sale else False,
            "scheduled_date": _odoo_ts(dv["planned_date"], as_of) if dv["planned_date"] else False,
            "date_deadline": False,
            "date_done": _odoo_ts(dv["delivered_date"], as_of) if dv["delivered_date"] else False,
            "move_ids": sorted(moves_of[dv["id"]]),
        })
    dv_by_id = {dv["id"]: dv for dv in deliveries}
    for mv in _rows(world, "delivery_line"):
        dv = dv_by_id[mv["delivery_id"]]
        code = mv["product_code"]
        qty = _f(mv["quantity"])
        out["stock.move"].append({
            "id": int(_sid(mv["id"])), **stamps(dv["delivered_date"] or dv["planned_date"] or as_of, f"Product {code}"),
            "picking_id": [int(_sid(dv["id"])), dv["number"]], "picking_code": "outgoing",
            "product_id": [_product_id(code), f"[{code}] Product {code}"], "product_uom_qty": qty,
            "quantity": qty, "state": pick_state[dv["state"]],
            "sale_line_id": [int(_sid(mv["order_line_id"])), f"Product {code}"] if mv["order_line_id"] else False,
            "date": _odoo_ts(dv["delivered_date"] or dv["planned_date"] or as_of, as_of),
        })
    for inv in _rows(world, "invoice"):
        iid = int(_sid(inv["id"]))
        ccy = inv["currency"]
        total = _f(_q(inv["total"], ccy))
        out["account.move"].append({
            "id": iid, **stamps(inv["issue_date"], inv["number"]), "name": inv["number"],
            "move_type": "out_refund" if inv["kind"] == "credit_note" else "out_invoice", "state": "posted",
            "payment_state": "not_paid", "partner_id": partner.get(inv["account_id"], [int(_sid(inv["account_id"])), ""]),
            "currency_id": cur(ccy), "invoice_date": inv["issue_date"].isoformat(),
            "invoice_date_due": inv["due_date"].isoformat() if inv["due_date"] else False,
            "invoice_origin": inv["order_ref"] or False, "ref": False, "payment_reference": inv["number"],
            "amount_untaxed": total, "amount_tax": 0.0, "amount_total": total, "amount_residual": total,
            "invoice_line_ids": [], "reversed_entry_id": False,
        })
    return out


# --- Stripe ---------------------------------------------------------------------------------------

def stripe_records(world: World) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    crm_of = _crm_accounts(world, "stripe")
    for a in _rows(world, "account"):
        if a["source_system"] != "stripe":
            continue
        sid = _sid(a["id"])
        meta = {"crm_account_id": _sid(crm_of[a["id"]])} if a["id"] in crm_of else {}
        out["customers"].append({
            "id": sid, "object": "customer", "created": _epoch(world.as_of - timedelta(days=400)),
            "name": a["name"], "email": None, "description": None, "currency": None, "address": None,
            "livemode": False, "metadata": meta, "tax_ids": {"object": "list", "data": [], "has_more": False},
        })
    crm_of_cus = {_sid(m): _sid(c) for m, c in crm_of.items()}
    payouts: dict[tuple[str, str], list[int]] = defaultdict(list)  # (settlement ref, currency) -> nets
    charges_of: dict[str, str] = {}
    pays = [p for p in _rows(world, "payment") if p["id"].startswith("stripe:")]
    for p in pays:
        sid = _sid(p["id"])
        ccy = p["currency"]
        amount = _minor(p["amount"], ccy)
        fee = _minor(p["fee"] or Decimal(0), ccy)
        created = _epoch(p["payment_date"])
        po = p["settlement_ref"] or f"po_{p['payment_date'].isoformat()}"
        charge = p["kind"] == "payment"
        net = amount - fee if charge else -amount
        txn = {
            "id": f"txn_{sid}", "object": "balance_transaction", "amount": amount if charge else -amount,
            "currency": ccy.lower(), "fee": fee if charge else 0, "net": net, "created": created,
            "available_on": created + 2 * 86400, "status": "available", "type": "charge" if charge else "refund",
            "reporting_category": "charge" if charge else "refund", "source": sid, "description": None,
        }
        out["balance_transactions"].append(txn)
        payouts[(po, ccy)].append(net)
        if charge:
            meta = {"deal_id": p["deal_ref"]} if p["deal_ref"] else {}
            if p["invoice_ref"]:
                meta["invoice_number"] = p["invoice_ref"]
            customer = _sid(p["account_id"]) if p["account_id"] else None
            if customer and customer in crm_of_cus:
                meta["crm_account_id"] = crm_of_cus[customer]
            out["charges"].append({
                "id": sid, "object": "charge", "amount": amount, "amount_captured": amount, "amount_refunded": 0,
                "currency": ccy.lower(), "created": created, "customer": customer, "description": p["remittance"],
                "paid": True, "captured": True, "refunded": False, "status": p["status"] or "succeeded",
                "payment_intent": None, "invoice": None, "livemode": False, "metadata": meta,
                "balance_transaction": txn,  # listed with expand[]=data.balance_transaction: the fee
                "billing_details": {"name": p["payer_name"], "email": None, "address": None, "phone": None},
            })
            charges_of[p["invoice_ref"] or sid] = sid
        else:
            meta = {"invoice_number": p["invoice_ref"]} if p["invoice_ref"] else {}
            if p["deal_ref"]:
                meta["deal_id"] = p["deal_ref"]
            out["refunds"].append({
                "id": sid, "object": "refund", "amount": amount, "currency": ccy.lower(), "created": created,
                "charge": charges_of.get(p["invoice_ref"] or ""), "reason": p["remittance"], "status": "succeeded",
                "balance_transaction": txn["id"], "payment_intent": None, "metadata": meta,
            })
    refunded: dict[str, int] = defaultdict(int)
    for r in out["refunds"]:
        if r["charge"]:
            refunded[r["charge"]] += r["amount"]
    for c in out["charges"]:
        if c["id"] in refunded:
            c["amount_refunded"] = refunded[c["id"]]
            c["refunded"] = refunded[c["id"]] >= c["amount"]
    for (po, ccy), nets in sorted(payouts.items()):
        day = po.removeprefix("po_")
        try:
            when = _epoch(date.fromisoformat(day) + timedelta(days=2))
        except ValueError:
            when = _epoch(world.as_of)
        out["payouts"].append({
            "id": f"{po}_{ccy.lower()}", "object": "payout", "amount": sum(nets), "currency": ccy.lower(),
            "created": when, "arrival_date": when, "status": "paid", "method": "standard", "type": "bank_account",
            "automatic": True, "metadata": {},
        })
    return out


# --- bank -----------------------------------------------------------------------------------------

def bank_statements(world: World) -> dict[str, bytes]:
    """One camt.053 file per account currency: ``<currency>-<as_of>.xml``."""
    by_ccy: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in _rows(world, "payment"):
        if p["id"].startswith("bank:"):
            by_ccy[p["currency"]].append(p)
    out: dict[str, bytes] = {}
    created = datetime.combine(world.as_of, time(23, 0), tzinfo=UTC)
    for ccy, pays in sorted(by_ccy.items()):
        pays.sort(key=lambda p: (p["payment_date"], p["id"]))
        entries = []
        for p in pays:
            sign_cd = "DBIT" if p["kind"] == "refund" else "CRDT"
            entries.append(camt053.Entry(
                amount=_qd(p["amount"], ccy), credit_debit=sign_cd, booking_date=p["payment_date"],
                account_servicer_ref=_sid(p["id"]),
                details=[camt053.Tx(end_to_end_id=None, debtor_name=p["payer_name"] if sign_cd == "CRDT" else None,
                                    creditor_name=p["payer_name"] if sign_cd == "DBIT" else None,
                                    remittance=p["remittance"])],
            ))
        iban = _BANK_IBANS.get(ccy, f"GB{len(out) + 10:02d}NWBK6016133192{len(out):04d}")
        first = pays[0]["payment_date"] if pays else world.as_of
        stmt = camt053.Statement(
            id=f"STMT-{ccy}-{world.as_of.isoformat()}", account_iban=iban, currency=ccy, opening_balance=Decimal("0.00"),
            opening_date=first, entries=entries, closing_date=world.as_of, created_at=created,
            owner_name="Demo Seller Inc",
        )
        out[f"{ccy}-{world.as_of.isoformat()}.xml"] = camt053.render(
            [stmt], message_id=f"MSG-{ccy}-{world.as_of.isoformat()}", created_at=created)
    return out


# --- the directory --------------------------------------------------------------------------------

def write_world(world: World, directory: str | Path, *, erp: str | None = None, name: str | None = None,
                reporting_currency: str = "USD", crm: str = "salesforce") -> Path:
    """Render ``world`` into ``directory`` (created; existing world files are replaced).

    ``erp``: ``none`` leaves the ERP out; otherwise it must be the world's own ERP (``generate(...,
    erp=...)``, default ``tryton``), whose ids its records carry. ``crm``: ``salesforce`` (default) or
    ``zoho`` — a world passed through :func:`as_zoho` (converted here if it is not yet).
    """
    if crm not in ("salesforce", "zoho", "jiandaoyun"):
        raise InputError(f"write_world: crm must be salesforce, zoho or jiandaoyun, not {crm!r}")
    if crm == "zoho" and world.meta.get("crm") != "zoho":
        world = as_zoho(world)
    if crm == "jiandaoyun" and world.meta.get("crm") != "jiandaoyun":
        world = as_jiandaoyun(world)
    own = str(world.meta.get("erp", "tryton"))
    erp = erp or own
    if erp not in ("none", own):
        raise InputError(f"write_world: this world's ERP is {own}; generate it with erp={erp!r} to write {erp} files")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    systems = [crm, "stripe", "bank"]
    rendered: dict[str, dict[str, list[dict[str, Any]]]] = {"stripe": stripe_records(world)}
    if crm == "jiandaoyun":
        app, widget_lists, records = jiandaoyun_records(world)
        folder = out / "jiandaoyun"
        if folder.exists():
            for old in [*folder.glob("*.jsonl"), *folder.glob("*.widgets.json")]:
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "app.yaml").write_text(yaml.safe_dump(app, sort_keys=False, allow_unicode=True), encoding="utf-8")
        for key, wl in widget_lists.items():
            (folder / f"{key}.widgets.json").write_text(json.dumps(wl, ensure_ascii=False, indent=1) + "\n",
                                                        encoding="utf-8")
        rendered[crm] = records
    else:
        rendered[crm] = salesforce_records(world) if crm == "salesforce" else zoho_records(world)
    if erp != "none":
        systems.insert(1, erp)
        rendered[erp] = tryton_records(world) if erp == "tryton" else odoo_records(world)
    for system, objects in rendered.items():
        folder = out / system
        if folder.exists():
            for old in folder.glob("*.jsonl"):
                old.unlink()
        for obj, rows in sorted(objects.items()):
            if rows:
                _write_jsonl(folder / f"{obj}.jsonl", rows)
    bank = out / "bank"
    bank.mkdir(exist_ok=True)
    for old in bank.glob("*.xml"):
        old.unlink()
    for fname, data in bank_statements(world).items():
        (bank / fname).write_bytes(data)
    with (out / "fx_rates.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rate_date", "base", "quote", "rate"])
        for r in sorted(_rows(world, "fx_rate"), key=lambda r: (r["rate_date"], r["base"], r["quote"])):
            w.writerow([r["rate_date"].isoformat(), r["base"], r["quote"], _rate_text(r["rate"])])
    meta = {
        "format": FORMAT, "name": name or f"generated-seed{world.seed}-{world.meta.get('chains', '')}",
        "systems": systems, "erp": erp, "reporting_currency": reporting_currency, "as_of": world.as_of,
    }
    (out / "world.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return out


def _rate_text(rate: Decimal) -> str:
    text = format(rate.normalize(), "f")
    return text if "." in text else text + ".0"


def iter_files(directory: Path) -> Iterator[Path]:
    yield from sorted(p for p in directory.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    """``python -m sandbox.world_writer --chains N --out DIR [--seed S] [--crm zoho|jiandaoyun]``: generate and write a world."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--chains", type=int, required=True)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", required=True)
    ap.add_argument("--erp", default="tryton", choices=["tryton", "odoo", "none"])
    ap.add_argument("--crm", default="salesforce", choices=["salesforce", "zoho", "jiandaoyun"])
    args = ap.parse_args(argv)
    world = generate(args.chains, seed=args.seed, erp="tryton" if args.erp == "none" else args.erp)
    out = write_world(world, args.out, erp=args.erp, crm=args.crm)
    print(json.dumps({"world": str(out), "files": sum(1 for _ in iter_files(out))}))


if __name__ == "__main__":
    main()

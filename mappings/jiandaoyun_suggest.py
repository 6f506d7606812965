"""``ltc mappings suggest --source <jiandaoyun source>``: propose ``options.forms`` from the app itself.

A Jiandaoyun app's forms are built by the customer, so before anything can be synced someone has to
say which form is customers / opportunities / contracts / orders / collections and which widget is
which field. :func:`survey` reads what an admin would look at — the app's forms, each form's widget
list and a page of its records — and :func:`propose` guesses it: a form's role from its name and
its widgets' labels (客户名称, 商机金额, 合同金额, 回款金额, 回款日期 …), each field from a label
pattern *and* the widget's type and values (an amount is a number widget whose values are numbers, a
customer link holds data ids, a tax id passes the USCC / VAT check digits, a stage's values are known
stage names). The proposal is printed as the ``forms:`` block of ltc.yaml, with the evidence beside
each line; nothing is written without the operator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from connectors.jiandaoyun import FormSurvey
from mappings.jiandaoyun import DEFAULT_VALUES

__all__ = ["FormSurvey", "Proposal", "options_of", "proposal_text", "propose"]

# role -> (form-name pattern, entity)
ROLE_NAMES: dict[str, tuple[str, str]] = {
    "customers": (r"客户(?!.*(回款|合同|商机|订单|联系))", "account"),
    "contacts": (r"联系人", "contact"),
    "opportunities": (r"商机|机会|销售项目", "deal"),
    "contracts": (r"合同", "contract"),
    "orders": (r"订单", "order"),
    "collections": (r"回款|收款", "payment"),
}
# entity -> [(canonical field, label pattern, widget types, value check)]
Check = str  # text | number | date | id | tax_id | stage | member
FIELDS: dict[str, list[tuple[str, str, tuple[str, ...], Check]]] = {
    "account": [("name", r"^(客户|公司|企业)(名称|全称)$|^客户$|^名称$", ("text",), "text"),
                ("tax_id", r"信用代码|税号|纳税人识别号", ("text",), "tax_id"),
                ("owner", r"负责人", ("user",), "member")],
    "contact": [("name", r"姓名|联系人", ("text",), "text"), ("phone", r"手机|电话", ("text", "phone"), "text"),
                ("email", r"邮箱|邮件", ("text",), "text"), ("account_id", r"客户|公司", ("linkdata",), "id")],
    "deal": [("name", r"(商机|机会|项目)名称", ("text",), "text"),
             ("account_id", r"客户", ("linkdata",), "id"),
             ("amount", r"金额", ("number",), "number"),
             ("stage", r"阶段", ("combo", "radiogroup", "text"), "stage"),
             ("close_date", r"成交日期|签单日期|结单日期", ("datetime",), "date")],
    "contract": [("number", r"合同(编号|号)", ("sn", "text"), "text"),
                 ("account_id", r"客户|甲方", ("linkdata",), "id"),
                 ("deal_id", r"商机|机会", ("linkdata",), "id"),
                 ("value", r"合同(金额|总额)|签约金额", ("number",), "number"),
                 ("signed_date", r"签(订|约|署)日期", ("datetime",), "date"),
                 ("status", r"状态", ("combo", "radiogroup", "text"), "status")],
    "order": [("number", r"订单(编号|号)", ("sn", "text"), "text"), ("account_id", r"客户", ("linkdata",), "id"),
              ("deal_ref", r"商机|机会", ("linkdata",), "id"), ("total", r"金额", ("number",), "number"),
              ("order_date", r"日期", ("datetime",), "date"), ("state", r"状态", ("combo", "radiogroup", "text"), "status")],
    "payment": [("reference", r"(回款|收款)(编号|单号)", ("sn", "text"), "text"),
                ("amount", r"(回款|收款|实收|到账)金额", ("number",), "number"),
                ("payment_date", r"(回款|收款|到账)日期", ("datetime",), "date"),
                ("deal_ref", r"商机|机会", ("linkdata",), "id"),
                ("attributes.contract_id", r"合同", ("linkdata",), "id"),
                ("payer_name", r"付款(单位|方|人)", ("text",), "text")],
}
LINE_FIELDS = [("product_name", r"产品|商品|品名", ("text",), "text"), ("quantity", r"数量", ("number",), "number"),
               ("unit_price", r"单价", ("number",), "number"), ("amount", r"小计|金额", ("number",), "number")]
_DATA_ID = re.compile(r"^[0-9a-f]{24}$")
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT")


@dataclass
class Proposal:
    key: str
    survey: FormSurvey
    entity: str
    fields: dict[str, str]  # canonical field -> widget label
    evidence: dict[str, str]
    lines: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _values_fit(check: Check, values: Sequence[Any]) -> tuple[bool, str]:
    present = [v for v in values if v not in (None, "", [])]
    if not present:
        return True, "no values to check"
    n = len(present)
    if check == "number":
        ok = sum(1 for v in present if (isinstance(v, int | float) and not isinstance(v, bool)) or
                 (hasattr(v, "as_tuple")))
    elif check == "date":
        ok = sum(1 for v in present if isinstance(v, str) and _ISO.match(v))
    elif check == "id":
        ok = sum(1 for v in present if isinstance(v, str) and _DATA_ID.match(v))
    elif check == "tax_id":
        from mappings.discover import tax_id_scheme

        ok = sum(1 for v in present if tax_id_scheme(v))
    elif check in ("stage", "status"):
        known = {v for table in DEFAULT_VALUES.values() for m in table.values() for v in m}
        ok = sum(1 for v in present if v in known)
    elif check == "member":
        ok = sum(1 for v in present if isinstance(v, Mapping) and v.get("name"))
    else:
        ok = sum(1 for v in present if isinstance(v, str))
    return ok * 5 >= n * 4, f"{ok}/{n} values fit"


def _pick(specs: Sequence[tuple[str, str, tuple[str, ...], Check]], widgets: Sequence[Mapping[str, Any]],
          records: Sequence[Mapping[str, Any]], *, sub: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
    chosen: dict[str, str] = {}
    evidence: dict[str, str] = {}
    used: set[str] = set()
    for fname, pattern, types, check in specs:
        for w in widgets:
            name, label = str(w.get("name")), str(w.get("label") or "")
            if name in used or w.get("type") not in types or not re.search(pattern, label):
                continue
            if sub is None:
                values = [r.get(name) for r in records]
            else:
                values = [row.get(name) for r in records for row in (r.get(sub) or []) if isinstance(row, Mapping)]
            fits, how = _values_fit(check, values)
            if not fits:
                continue
            chosen[fname], evidence[fname] = label, f"{label} ({name}, {w.get('type')}): label, {how}"
            used.add(name)
            break
    return chosen, evidence


def propose(forms: Sequence[FormSurvey]) -> list[Proposal]:
    """One proposal per form whose role is recognised (each role once, the best-scoring form)."""
    scored: list[tuple[int, str, FormSurvey]] = []
    for form in forms:
        labels = " ".join(str(w.get("label") or "") for w in form.widgets)
        for role, (pattern, entity) in ROLE_NAMES.items():
            score = 5 * bool(re.search(pattern, form.name))
            score += sum(1 for _f, pat, _t, _c in FIELDS.get(entity, []) if re.search(pat, labels))
            if score >= 3:
                scored.append((score, role, form))
    out: list[Proposal] = []
    taken_roles: set[str] = set()
    taken_forms: set[str] = set()
    for _score, role, form in sorted(scored, key=lambda t: -t[0]):
        if role in taken_roles or form.entry_id in taken_forms:
            continue
        entity = ROLE_NAMES[role][1]
        fields, evidence = _pick(FIELDS[entity], form.widgets, form.records)
        if not fields:
            continue
        taken_roles.add(role)
        taken_forms.add(form.entry_id)
        proposal = Proposal(role, form, entity, fields, evidence)
        for w in form.widgets:
            if w.get("type") != "subform":
                continue
            items = list(w.get("items") or [])
            line_fields, line_evidence = _pick(LINE_FIELDS, items, form.records, sub=str(w.get("name")))
            if entity not in ("deal", "quote", "order", "invoice"):
                proposal.notes.append(f"sub-form {w.get('label')} not proposed as lines: a {entity} has none "
                                      "(entity: order keeps them as order lines)")
            elif line_fields and proposal.lines is None:
                proposal.lines = {"widget": str(w.get("label")), "fields": line_fields}
                proposal.evidence.update({f"lines.{k}": v for k, v in line_evidence.items()})
        out.append(proposal)
    return sorted(out, key=lambda p: list(ROLE_NAMES).index(p.key))


def options_of(proposals: Sequence[Proposal]) -> dict[str, Any]:
    """The proposal as ``options.forms`` of ltc.yaml."""
    forms: dict[str, Any] = {}
    for p in proposals:
        spec: dict[str, Any] = {"entry_id": p.survey.entry_id, "fields": dict(p.fields)}
        if p.lines:
            spec["lines"] = p.lines
        forms[p.key] = spec
    return {"forms": forms}


def proposal_text(source: str, app_id: str, proposals: Sequence[Proposal], unmatched: Sequence[FormSurvey]) -> str:
    """The proposal as a ready-to-paste ``sources.<source>.options`` block, evidence in comments."""
    lines = [f"# Proposed by `ltc mappings suggest --source {source}` from the forms' widget labels and values;",
             f"# paste under sources.{source}.options in ltc.yaml and check each line.",
             f"app_id: {app_id}", "forms:"]
    for p in proposals:
        lines.append(f"  {p.key}:  # form {p.survey.name} -> {p.entity}")
        lines.append(f"    entry_id: {p.survey.entry_id}")
        lines.append("    fields:")
        for fname, label in p.fields.items():
            lines.append(f"      {fname}: {_scalar(label)}  # {p.evidence[fname]}")
        if p.lines:
            lines.append("    lines:")
            lines.append(f"      widget: {_scalar(p.lines['widget'])}")
            lines.append("      fields:")
            for fname, label in p.lines["fields"].items():
                lines.append(f"        {fname}: {_scalar(label)}  # {p.evidence.get('lines.' + fname, '')}")
        lines += [f"    # {note}" for note in p.notes]
    lines += [f"# form {f.name} ({f.entry_id}): no role recognised" for f in unmatched]
    return "\n".join(lines) + "\n"


def _scalar(value: str) -> str:
    return yaml.safe_dump(value, allow_unicode=True, default_style=None).strip().removesuffix("...").strip()

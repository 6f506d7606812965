"""The mapping of a Jiandaoyun source, generated from its configuration (``options.forms``).

Jiandaoyun forms are built by each customer, so no mapping file can be shipped: the source's
``options.forms`` says which form is which entity and which widget is which canonical field (by
widget name ``_widget_1615357357351`` or by label ``客户名称``). :func:`mapping_for` turns that, with
the forms' widget lists (landed by the connector's ``widgets`` stream), into an ordinary mapping tree
that :mod:`mappings.compiler` compiles like any shipped file; a ``sources.<name>.mapping`` override
file is merged over it as for every source.

What the generated mapping adds to the configured fields: ``source_updated_at`` from ``updateTime``,
``created_at`` from ``createTime`` where the entity has one, ``currency`` (``forms.<f>.currency`` /
``options.currency``, default CNY: Jiandaoyun amounts are plain numbers), member widgets read by
their ``name``, the usual Chinese stage and status values (``赢单`` → ``closed_won``; ``values:``
overrides and extends them), and sub-forms as the entity's lines. Dates are read in
``options.timezone`` (default Asia/Shanghai): a date widget is stored as the UTC instant of local
midnight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import sqlalchemy as sa

from canonical.errors import ConfigError
from connectors.jiandaoyun import LINES, FormConfig, name_of, parse_forms, resolve_form
from mappings.spec import Node, node_of

DEFAULT_CURRENCY = "CNY"
DEFAULT_TIMEZONE = "Asia/Shanghai"

# the usual values of Chinese CRM forms; a form's `values:` extends and overrides them
DEFAULT_VALUES: dict[str, dict[str, dict[str, str]]] = {
    "deal": {"stage": {
        "初步接洽": "prospecting", "线索": "prospecting", "初步沟通": "prospecting",
        "需求确认": "qualification", "需求分析": "qualification", "商机确认": "qualification",
        "方案报价": "proposal", "方案制定": "proposal", "报价": "proposal", "报价中": "proposal",
        "商务谈判": "negotiation", "谈判审核": "negotiation", "谈判": "negotiation",
        "赢单": "closed_won", "成交": "closed_won", "已成交": "closed_won", "签约": "closed_won",
        "输单": "closed_lost", "丢单": "closed_lost", "失败": "closed_lost", "已输单": "closed_lost"}},
    "contract": {"status": {
        "草稿": "draft", "待审批": "in_approval", "审批中": "in_approval", "已签订": "activated",
        "已签约": "activated", "执行中": "activated", "生效": "activated", "已生效": "activated",
        "已到期": "expired", "到期": "expired", "已终止": "terminated", "终止": "terminated",
        "已作废": "cancelled", "作废": "cancelled"}},
    "quote": {"status": {
        "草稿": "draft", "已发送": "sent", "待确认": "sent", "已接受": "accepted", "已确认": "accepted",
        "已拒绝": "rejected", "已过期": "expired"}},
    "order": {"state": {
        "草稿": "draft", "待审核": "draft", "已确认": "confirmed", "执行中": "confirmed", "已发货": "done",
        "已完成": "done", "已取消": "cancelled", "已作废": "cancelled"}},
    "invoice": {"status": {
        "草稿": "draft", "已开票": "open", "待收款": "open", "部分回款": "open", "已回款": "paid",
        "已收款": "paid", "已作废": "void", "作废": "void"}},
}
# canonical status fields whose source value is also kept (the entity has a source_* twin)
SOURCE_TWINS = {"stage": "source_stage", "status": "source_status", "state": "source_state"}


def _field_spec(entity: str, fname: str, path: str, values: Mapping[str, str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"from": path}
    if values:
        spec.update(map=dict(values), unmapped="default")
    if fname == "tax_id":
        spec["coerce"] = "tax_id"
    return spec


def _object(source: str, form: FormConfig, resolved: Mapping[str, Any], currency: str) -> dict[str, Any]:
    from connectors.jiandaoyun import _fields_of

    known = set(_fields_of(form.entity))
    fields: dict[str, Any] = {}
    for fname, path in resolved["fields"].items():
        values = {**DEFAULT_VALUES.get(form.entity, {}).get(fname, {}), **form.values.get(fname, {})} \
            if fname in SOURCE_TWINS else form.values.get(fname)
        fields[fname] = _field_spec(form.entity, fname, path, values)
        twin = SOURCE_TWINS.get(fname)
        if twin in known and twin not in resolved["fields"]:
            fields[twin] = {"from": path}
    if "currency" in known:
        fields["currency"] = ({"from": resolved["fields"]["currency"], "default": currency}
                              if "currency" in resolved["fields"] else {"const": currency})
    if "created_at" in known and "created_at" not in fields:
        fields["created_at"] = {"from": "createTime", "coerce": "instant"}
    fields["source_updated_at"] = {"from": "updateTime", "coerce": "instant"}
    fields.setdefault("attributes.creator", {"from": "creator.name"})
    if "flowState" not in resolved["fields"].values():
        fields.setdefault("attributes.flow_state", {"from": "flowState"})
    obj: dict[str, Any] = {"entity": form.entity, "fields": fields}
    lines = resolved.get("lines")
    if lines is not None:
        line_entity, parent_field = LINES[form.entity]
        line_fields: dict[str, Any] = {parent_field: {"from": "$parent._id", "entity": form.entity}}
        for fname, path in lines["fields"].items():
            line_fields[fname] = {"from": path}
        if "currency" in set(_fields_of(line_entity)):
            line_fields["currency"] = dict(fields["currency"])
            if "from" in line_fields["currency"]:
                line_fields["currency"]["from"] = f"$parent.{line_fields['currency']['from']}"
        line_fields["source_updated_at"] = {"from": "$parent.updateTime", "coerce": "instant"}
        obj["children"] = [{"each": lines["each"], "id": "_id", "entity": line_entity, "fields": line_fields}]
    return obj


def mapping_for(source: str, options: Mapping[str, Any], widget_lists: Mapping[str, Mapping[str, Any]]) -> Node:
    """The mapping tree of a Jiandaoyun source (``options`` of ltc.yaml; ``widget_lists``: entry id ->
    the form's widget list as ``/widget/list`` answers it)."""
    forms = parse_forms(source, options)
    currency = str(options.get("currency") or DEFAULT_CURRENCY)
    objects: dict[str, Any] = {}
    for form in forms:
        widget_list = widget_lists.get(form.entry_id)
        if widget_list is None:
            raise ConfigError(f"sources.{name_of(source, form.key)}: the widget list of form {form.entry_id} has not "
                              f"been landed yet: sync the source first (`ltc sync --source {source}`)")
        objects[form.key] = _object(source, form, resolve_form(source, form, widget_list),
                                    form.currency or currency)
    tree = {"kind": "jiandaoyun", "timezone": str(options.get("timezone") or DEFAULT_TIMEZONE), "objects": objects}
    return node_of(tree, f"<sources.{source}.options.forms>")


def stored_widgets(store: Any, system: str) -> dict[str, dict[str, Any]]:
    """entry id -> the form's widget list, from the landed ``_widgets`` records of ``system``."""
    from canonical.tables import raw_record

    c = raw_record.c
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(c.source_id, sa.cast(c.payload, sa.Text))
                            .where(c.system == system, c.object == "_widgets", c.deleted.is_(False)))
        return {str(sid): orjson.loads(payload) for sid, payload in rows if payload is not None}


def mapping_for_source(system: str, src: Any, store: Any) -> Node:
    """The generated mapping of the ltc.yaml source ``src`` (kind jiandaoyun), labels resolved with
    the widget lists landed in ``store``."""
    return mapping_for(system, dict(src.options or {}), stored_widgets(store, system))

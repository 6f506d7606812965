"""Compile a mapping (a validated YAML tree) into plain Python closures, once.

Applying a compiled object mapping to a record runs one closure per field: a path getter, then
the optional pattern, value map and coercion, then the default and the required check. Nothing
in the YAML is looked at per record.

Field spec keys (``fields: {<canonical field>: <spec>}``; a bare string is ``{from: <path>}``):

``from``      a path (``properties.amount``, ``partner_id.0``, ``lines.data``) or a list of paths,
              the first non-empty wins. ``$parent.<path>`` reads the parent record (``children``).
              Tryton dotted reads (key ``"party."``) are found by the path ``party.name``.
``args``      several paths, for the coercions that combine inputs (``join``, ``diff``, ``money_diff``).
``const``     a constant value.
``coerce``    a name from :data:`mappings.coerce.COERCIONS`; default by the canonical field's type.
``pattern``   a regular expression applied to the text; group 1 (else the whole match) is kept,
              no match gives no value: this is how references are extracted from free text.
``map``       a value map ``{vendor value: canonical value}``; ``map_by: <path>`` makes it a map of
              maps keyed by that path's value (HubSpot stages per pipeline); ``"*"`` is the fallback
              key at either level.
``unmapped``  ``error`` (default when there is a map), ``keep`` or ``default``.
``default``   the value when the result is empty. ``required: true`` makes an empty result an error.
``entity``    the referenced canonical entity (``coerce: ref``; implied for ``account_id``...).
``currency`` / ``currency_from``  for money fields: a fixed code, or a path; else the row's currency.
``convention``  ``stripe`` or ``iso4217`` for ``money_minor`` (default ``stripe``).
``or``        a whole field spec used when this one gives no value.

Object keys besides ``entity``/``fields``: ``when`` and ``deleted_if`` (matchers), ``children``
(``each`` + ``id``), and ``with: {key: object}`` — the raw record of another object with the same
source id, readable under ``key`` (HubSpot's association sweeps), or ``with: {key: {object: o, id: f}}``
— the record of ``o`` whose id is this record's field ``f`` (a Stripe charge's balance transaction);
a change to that record re-maps this one.

Canonical field ``attributes.<name>`` stores a custom field in the row's ``attributes`` JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from types import CodeType
from typing import Any, cast

from canonical import model
from canonical.money import MAX_SCALE, Convention, Money, insane_amount, normalize_currency, sane_bound
from mappings.coerce import (
    COERCIONS,
    CURRENCY_CACHE,
    EXPONENTS,
    MULTI_INPUT,
    CoercionError,
    decode_tagged,
    empty,
    scale_minor,
)
from mappings.spec import MappingError, Node

Getter = Callable[[Any, Any], Any]  # (record, parent record) -> value
Row = dict[str, Any]

_FIELD_KEYS = {
    "from", "args", "const", "coerce", "pattern", "map", "map_by", "unmapped", "default", "required",
    "entity", "currency", "currency_from", "convention", "or", "separator", "timezone", "max_length",
    "primary_type_ids", "positive", "negative",
}
_OBJECT_KEYS = {"entity", "fields", "when", "deleted_if", "children", "each", "id", "note", "with"}
_ENGINE_FIELDS = {"id", "source_system", "source_object", "source_id", "raw_id", "deleted_at"}
_REF_ENTITIES = {
    "account_id": "account", "deal_id": "deal", "order_id": "order", "invoice_id": "invoice",
    "converted_account_id": "account", "converted_deal_id": "deal", "quote_id": "quote",
    "delivery_id": "delivery", "order_line_id": "order_line",
}
_IMPLIED_BY_NAME = {"currency": "currency", "domain": "domain", "tax_id": "tax_id", "country": "country"}
_MISSING = object()


_BOUNDS: dict[str, Any] = {}  # currency -> its sane bound (canonical.money.sane_bound), filled on first use


def _insane(v: Decimal, cur: str, bound: Decimal) -> str:
    return insane_amount(v, cur, bound) or f"amount {v} {cur} is no sane amount"


class FieldFailure(Exception):
    """A record's field could not be mapped; the record goes to quarantine with field and reason."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@functools.lru_cache(maxsize=4096)
def _code(src: str, name: str) -> CodeType:
    """``compile(src, name, "exec")``, once per source text: a mapping is compiled again at each stage (its
    file may have changed), and most of its generated functions come out the same; each ``exec`` of the code
    still makes new functions in their own namespace. Bounded: a long-running worker whose mapping files
    change keeps the recent ones only."""
    return compile(src, name, "exec")


# --- paths --------------------------------------------------------------------------------------

def compile_path(path: str) -> Getter:
    if path.startswith("$parent."):
        inner = compile_path(path[len("$parent."):])
        return lambda rec, parent: inner(parent, None)
    parts: list[str | int] = [int(p) if p.lstrip("-").isdigit() else p for p in path.split(".")]
    if len(parts) == 1 and isinstance(parts[0], str):
        key = parts[0]
        return lambda rec, parent: rec.get(key) if type(rec) is dict or isinstance(rec, dict) else None
    return _generate_path(parts)


def _generate_path(parts: list[str | int]) -> Getter:
    """An unrolled getter for a dotted path (no per-record loop over the parts).

    Each step: a dict is read by key (an int part as its text; a non-last text part is overridden
    by Tryton's dotted read under ``part + "."`` when present), a list by index for an int part;
    anything else, ``None`` or ``False`` on the way gives ``None``.
    """
    last = len(parts) - 1
    lines = ["def get(rec, parent):", "    cur = rec"]
    for i, p in enumerate(parts):
        lines.append("    if isinstance(cur, dict):")
        if isinstance(p, str):
            lines.append(f"        nxt = cur.get({p!r})")
            if i < last:
                lines += [f"        alt = cur.get({p + '.'!r})", "        if alt is not None:", "            nxt = alt"]
            lines.append("        cur = nxt")
        else:
            lines.append(f"        cur = cur.get({str(p)!r})")
            lines += ["    elif isinstance(cur, list):",
                      f"        cur = cur[{p}] if {-p - 1 if p < 0 else p} < len(cur) else None"]
        lines += ["    else:", "        return None", "    if cur is None or cur is False:", "        return None"]
    lines.append("    return cur")
    env: dict[str, Any] = {}
    exec(_code("\n".join(lines), f"<path {'.'.join(map(str, parts))}>"), env)
    get: Getter = env["get"]
    return get


def _path_code(path: str, j: int, env: dict[str, Any], top: str) -> str:
    """Generated code's expression for one path: a top-level key read in line (``top`` formatted with
    the key's literal), any other path through its compiled getter, put in ``env`` as ``g<j>``."""
    if "." not in path and not path.lstrip("-").isdigit():
        return top.format(key=repr(path))
    env[f"g{j}"] = compile_path(path)
    return f"g{j}(rec, parent)"


def _coalesce(paths: list[str]) -> Getter:
    """The first non-empty value of several paths (one generated function; top-level keys in line)."""
    if len(paths) == 1:
        return compile_path(paths[0])
    env: dict[str, Any] = {"empty": empty}
    lines = ["def get(rec, parent):", "    is_dict = isinstance(rec, dict)"]
    for j, path in enumerate(paths):
        lines.append(f"    v = {_path_code(path, j, env, '(rec.get({key}) if is_dict else None)')}")
        lines += ["    if v is not None and v is not False and not empty(v):", "        return v"]
    lines.append("    return None")
    exec(_code("\n".join(lines), f"<paths {' | '.join(paths)}>"), env)
    get: Getter = env["get"]
    return get


def _args_getter(paths: list[str]) -> Getter:
    """The values of several paths, as a list (``args:``): one generated function, top-level keys in line."""
    env: dict[str, Any] = {}
    items = [_path_code(path, j, env, "get({key})") for j, path in enumerate(paths)]
    src = ("def args(rec, parent):\n"
           "    get = rec.get if type(rec) is dict or isinstance(rec, dict) else _none\n"
           f"    return [{', '.join(items)}]\n")
    env["_none"] = lambda key: None
    exec(_code(src, f"<args {' , '.join(paths)}>"), env)
    get: Getter = env["args"]
    return get


# --- compiled shapes ------------------------------------------------------------------------------

@dataclass(slots=True, frozen=True)
class FieldParts:
    """A field's compiled pieces: path getter, pattern/map stages, coercion, fallback, default."""

    get: Getter
    stages: list[Callable[[Any, Any], Any]]
    coerce: Callable[[Any], Any]
    fallback: Getter | None
    default: Any
    required: bool
    label: str
    origin: Any
    paths: list[str] | None = None  # the `from` paths (written into the generated code when simple)
    false_is_none: bool = False  # the coercion maps Odoo's `false` to None, like a missing value
    fast: str | None = None  # the coercion written out for a str value (``{c}`` is the coercion)
    text: bool = False  # the coercion produces text (no date to write as ISO text in attributes)
    fast_type: str = "str"  # the type of value ``fast`` is for


@dataclass(slots=True)
class FieldPlan:
    name: str
    value: Getter  # (record, parent) -> canonical value (money: Decimal or minor int)
    kind: str  # plain | attr | money | money_minor
    currency: Getter | None = None
    convention: Convention = "stripe"
    # (path of one or two keys, coercion, origin, fast text form of the coercion for a str value)
    inline: tuple[str, Callable[[Any], Any], str, str | None] | None = None
    # the compiled parts, written into the generated function when there is no inline form
    parts: FieldParts | None = None


@dataclass(slots=True)
class ObjectPlan:
    """One source object (or one child list of it) -> one canonical entity."""

    source_object: str
    entity: str
    template: Row
    plain: list[FieldPlan]
    money: list[FieldPlan]
    when: Callable[[Any], bool] | None = None
    deleted_if: Callable[[Any], bool] | None = None
    # the matchers' (path, allowed keys) tests, written into the generated code
    when_tests: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    deleted_tests: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    each: Getter | None = None  # for children: the list of items
    child_id: Getter | None = None
    each_path: str = ""
    id_path: str = ""
    children: list[ObjectPlan] = field(default_factory=list)
    # ``with: {key: object}``: the raw record of ``object`` with the same source id is read under ``key``;
    # ``with: {key: {object: o, id: field}}``: the record of ``o`` whose id is this record's ``field``
    sidecars: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    # generated: (record, parent, source id, raw id, source_updated_at, out) -> out, the whole record
    run: Callable[[Any, Any, str, int | None, datetime | None, list[tuple[str, Row]]], Any] | None = None


def _generate_run(
    plan: ObjectPlan, value_maps: Mapping[Callable[[Any, Any], Any], tuple[dict[str, dict[str, Any]], str | None]]
) -> Any:
    """One generated function that maps a record to its row (and its children's): no per-field
    closure dispatch, no per-record look-up of the plan.

    Simple fields (one top-level key, no map/pattern/default) are read inline with ``rec.get``;
    the others call their compiled getter, stages and coercion in line.
    """
    env = _run_env(plan)
    lines = _row_start_code(plan, env)
    for i, f in enumerate([*plan.plain, *plan.money]):
        lines += _field_read_code(i, f, env, value_maps)
        lines += _field_store_code(i, f, plan.entity, env)
    if plan.deleted_if is not None:
        lines += [f"    if {_match_code(plan.deleted_tests, env, 'x')}:",
                  "        row['deleted_at'] = row['source_updated_at'] or updated or now()"]
    lines.append(f"    out.append(({plan.entity!r}, row))")
    for k, child in enumerate(plan.children):
        lines += _child_code(k, child, env)
    lines.append("    return out")
    exec(_code("\n".join(lines), f"<mapping {plan.source_object} -> {plan.entity}>"), env)
    return env["run"]


def _run_env(plan: ObjectPlan) -> dict[str, Any]:
    """The names every generated ``run`` reads (each field adds its own)."""
    env: dict[str, Any] = {"CoercionError": CoercionError, "FieldFailure": FieldFailure, "date": date,
                           "set_money": _set_money, "template": plan.template, "when": plan.when,
                           "deleted_if": plan.deleted_if, "now": _now, "empty": empty,
                           "idp": f"{plan.template['source_system']}:{plan.entity}:"}
    env.update(key=_key, currency_cache=CURRENCY_CACHE)
    return env


def _row_start_code(plan: ObjectPlan, env: dict[str, Any]) -> list[str]:
    """The function's head: the ``when:`` test, and the row from the template with its keys."""
    lines = ["def run(rec, parent, source_id, raw_id, updated, out):",
             "    get = rec.get if type(rec) is dict else {}.get"]
    if plan.when is not None:
        lines += [f"    if not ({_match_code(plan.when_tests, env, 'w')}):", "        return out"]
    return [
        *lines,
        "    row = template.copy()",
        "    attrs = {}",
        "    row['attributes'] = attrs",
        "    row['id'] = f'{idp}{source_id}'",
        "    row['source_id'] = source_id",
        "    row['raw_id'] = raw_id",
        "    row['source_updated_at'] = updated",
    ]


def _field_read_code(
    i: int, f: FieldPlan, env: dict[str, Any],
    value_maps: Mapping[Callable[[Any, Any], Any], tuple[dict[str, dict[str, Any]], str | None]],
) -> list[str]:
    """Lines setting ``v`` to field ``i``'s coerced value: inline, from its compiled parts, or by its getter."""
    if f.inline is not None:
        return _inline_read_code(i, f, env)
    if f.parts is not None:
        return _parts_read_code(i, f, f.parts, env, value_maps)
    env[f"v{i}"] = f.value
    return [f"    v = v{i}(rec, parent)"]


def _failure_name(f: FieldPlan) -> str:
    """The name a field's failure is reported under."""
    return f.name if f.kind != "attr" else f"attributes.{f.name}"


def _coerce_code(i: int, fast: str | None, fast_type: str) -> str:
    """The coercion of a present ``v``: the fast form for a value of ``fast_type``, else the call."""
    if fast is not None:
        return f"v = ({fast.format(c=f'c{i}')}) if type(v) is {fast_type} else c{i}(v)"
    return f"v = c{i}(v)"


def _failure_code(i: int) -> list[str]:
    return ["    except CoercionError as exc:",
            f"        raise FieldFailure(n{i}, f'{{exc}} (from {{o{i}}})') from None"]


def _inline_read_code(i: int, f: FieldPlan, env: dict[str, Any]) -> list[str]:
    """A simple field (one or two keys, no stage): read with ``get`` and coerced in line."""
    assert f.inline is not None
    ft = f.parts.fast_type if f.parts is not None else "str"
    key, coerce, origin, fast = f.inline
    env[f"c{i}"], env[f"o{i}"], env[f"n{i}"] = coerce, origin, _failure_name(f)
    if "." in key:
        # two levels: HubSpot `properties.x`, Tryton dotted reads (key "party." wins over "party")
        k0, k1 = key.split(".")
        fetch = (f"t = get({k0 + '.'!r}) or get({k0!r})\n"
                 f"        v = t.get({k1!r}) if type(t) is dict else None")
    else:
        fetch = f"v = get({key!r})"
    # None in gives None out for every coercion: no call for a missing value
    if f.parts is not None and f.parts.false_is_none:
        fetch += "\n        if v is False:\n            v = None"
    read = f"{fetch}\n        if v is not None:\n            {_coerce_code(i, fast, ft)}"
    return ["    try:", f"        {read}", *_failure_code(i)]


def _parts_read_code(
    i: int, f: FieldPlan, fp: FieldParts, env: dict[str, Any],
    value_maps: Mapping[Callable[[Any, Any], Any], tuple[dict[str, dict[str, Any]], str | None]],
) -> list[str]:
    """A field with stages, fallback, default or a complex path: its compiled parts written out."""
    env[f"g{i}"], env[f"c{i}"], env[f"o{i}"] = fp.get, fp.coerce, fp.origin
    env[f"n{i}"] = _failure_name(f)
    lines = _fetch_code(fp.paths, env, f"p{i}") if fp.paths is not None else [f"    v = g{i}(rec, parent)"]
    lines.append("    try:")
    for j, stage in enumerate(fp.stages):
        env[f"s{i}_{j}"] = stage
        if stage in value_maps:
            lines += _value_map_code(value_maps[stage], env, f"s{i}_{j}")
        else:
            lines.append(f"        v = s{i}_{j}(v, rec)")
    if fp.false_is_none:
        lines += ["        if v is False:", "            v = None"]
    lines += ["        if v is not None:", f"            {_coerce_code(i, fp.fast, fp.fast_type)}", *_failure_code(i)]
    return lines + _missing_code(i, fp, env)


def _missing_code(i: int, fp: FieldParts, env: dict[str, Any]) -> list[str]:
    """What a missing value becomes: the fallback's, the default, or a required-value failure."""
    lines: list[str] = []
    if fp.fallback is not None:
        env[f"f{i}"] = fp.fallback
        lines += ["    if v is None:", f"        v = f{i}(rec, parent)"]
    if fp.default is not None:
        env[f"d{i}"] = fp.default
        lines += ["    if v is None:", f"        v = d{i}"]
    elif fp.required:
        env[f"r{i}"] = f"required value missing: {fp.label}"
        lines += ["    if v is None:", f"        raise FieldFailure(n{i}, r{i})"]
    return lines


def _field_store_code(i: int, f: FieldPlan, entity: str, env: dict[str, Any]) -> list[str]:
    """Lines putting a present ``v`` into the row: an attribute, a checked amount, or a plain field."""
    if f.kind == "attr" and f.parts is not None and f.parts.text:
        return ["    if v is not None:", f"        attrs[{f.name!r}] = v"]
    if f.kind == "attr":
        return ["    if v is not None:", f"        attrs[{f.name!r}] = v.isoformat() if isinstance(v, date) else v"]
    if f.kind in ("money", "money_minor"):
        return _money_code(i, f, entity, env)
    return ["    if v is not None:", f"        row[{f.name!r}] = v"]


def _money_code(i: int, f: FieldPlan, entity: str, env: dict[str, Any]) -> list[str]:
    """An amount: its currency agreed with the row's, minor units scaled, a sane bound and scale checked."""
    # _set_money written out: the currency is the field's own or the row's and must agree
    env[f"m{i}"] = f
    env[f"cur{i}"] = f.currency
    lines = _money_currency_code(i, f, entity)
    if f.kind == "money_minor":
        lines += _money_minor_code(f, env)
        # minor units scaled by a known exponent have that many places at most (the context's
        # rounding of a very long integer only raises the exponent): no scale check
        over_scale = f"(e is None or e > MAX_SCALE) and {_OVER_SCALE}"
    else:
        over_scale = _OVER_SCALE
    # a sane bound per currency: 1e308 or 1.23e29 never reaches reconciliation or a report
    env.update(sane_bound=sane_bound, bounds=_BOUNDS, FieldFailure=FieldFailure, MAX_SCALE=MAX_SCALE,
               insane=_insane)
    return [
        *lines,
        "        b = bounds.get(cur) or bounds.setdefault(cur, sane_bound(cur))",
        f"        if not -b < v < b or {over_scale}:",
        f"            raise FieldFailure({f.name!r}, insane(v, cur, b))",
        f"        row[{f.name!r}] = v",
    ]


def _money_currency_code(i: int, f: FieldPlan, entity: str) -> list[str]:
    """Lines setting ``cur``: the field's own currency (agreeing with the row's) or the row's."""
    if f.currency is not None:
        return [
            "    if v is not None:",
            f"        cur = cur{i}(rec, parent)",
            "        rc = row['currency']",
            "        if cur is None or (rc is not None and cur != rc):",
            f"            set_money(m{i}, v, rec, parent, row, {entity!r})  # raises the reason",
            "        if rc is None:",
            "            row['currency'] = cur",
        ]
    return [
        "    if v is not None:",
        "        cur = row['currency']",
        "        if cur is None:",
        f"            set_money(m{i}, v, rec, parent, row, {entity!r})  # raises the reason",
    ]


def _money_minor_code(f: FieldPlan, env: dict[str, Any]) -> list[str]:
    """Minor units to a Decimal: by the known exponent in line, else by :func:`scale_minor`."""
    env.update(scale_minor=scale_minor, exponents=EXPONENTS, Decimal=Decimal)
    return [
        f"        e = exponents.get((cur, {f.convention!r}))",  # known currencies: no call
        "        if e is not None:",
        "            v = Decimal(v).scaleb(-e)",
        "        else:",
        "            try:",
        f"                v = scale_minor(v, cur, {f.convention!r})",
        "            except ValueError as exc:",
        f"                raise FieldFailure({f.name!r}, str(exc)) from None",
    ]


def _child_code(k: int, child: ObjectPlan, env: dict[str, Any]) -> list[str]:
    """Lines running child plan ``k`` (its own generated ``run``) over each item of its list."""
    assert child.each is not None and child.child_id is not None and child.run is not None
    env[f"each{k}"], env[f"cid{k}"], env[f"run{k}"] = child.each, child.child_id, child.run
    env[f"noid{k}"] = f"{child.source_object}.id"
    each_path, id_path = child.each_path, child.id_path
    lines = _read_code(each_path, "items") if _simple_path(each_path) else [f"    items = each{k}(rec, parent)"]
    if _simple_path(id_path) and "." not in id_path:
        read_id = f"cid = item.get({id_path!r}) if isinstance(item, dict) else None"
    else:
        read_id = f"cid = cid{k}(item, rec)"
    return [
        *lines,
        "    if isinstance(items, list):",
        "        for item in items:",
        f"            {read_id}",
        "            if empty(cid):",
        f"                raise FieldFailure(noid{k}, 'child item without an id')",
        "            if len(str(cid)) > 255:",
        f"                raise FieldFailure(noid{k}, 'child item id longer than 255 characters')",
        f"            run{k}(item, rec, str(cid), raw_id, updated, out)",
    ]


# True when the Decimal ``v`` has more than MAX_SCALE decimal places. Its plain text (no exponent) has
# exactly that many digits after the point, so the text decides the usual amount; ``as_tuple`` (several
# times the cost: a tuple of digits) decides the rest (exponent notation, or a long text).
_OVER_SCALE = ("('E' in (sx := str(v)) or len(sx) - sx.find('.') > MAX_SCALE + 1) "
               "and v.as_tuple().exponent < -MAX_SCALE")


def _simple_path(path: str) -> bool:
    """A path the generated code reads in line: one key, or two (``properties.x``)."""
    return (path.count(".") <= 1 and not path.startswith("$")
            and not any(part.lstrip("-").isdigit() for part in path.split(".")))


def _read_code(path: str, target: str) -> list[str]:
    """Lines (indent 4) setting ``target`` as :func:`compile_path` reads ``path`` from ``get``."""
    if "." not in path:
        return [f"    {target} = get({path!r})"]
    k0, k1 = path.split(".")
    return [
        f"    t = get({k0 + '.'!r})",  # Tryton's dotted read wins when present
        "    if t is None:",
        f"        t = get({k0!r})",
        f"    {target} = t.get({k1!r}) if isinstance(t, dict) else None",
        f"    if {target} is False:",
        f"        {target} = None",
    ]


def _fetch_code(paths: list[str], env: dict[str, Any], tag: str) -> list[str]:
    """Lines setting ``v`` as :func:`_coalesce` does: the first non-empty of the paths."""
    if len(paths) == 1:
        if _simple_path(paths[0]):
            return _read_code(paths[0], "v")
        inner = paths[0][len("$parent."):]
        if paths[0].startswith("$parent.") and "." not in inner and _simple_path(inner):
            return [f"    v = parent.get({inner!r}) if isinstance(parent, dict) else None"]
        env[tag] = compile_path(paths[0])
        return [f"    v = {tag}(rec, parent)"]
    lines: list[str] = []
    indent = ""
    for j, path in enumerate(paths):
        if _simple_path(path):
            lines += [indent + line for line in _read_code(path, "v")]
        else:
            env[f"{tag}_{j}"] = compile_path(path)
            lines.append(f"{indent}    v = {tag}_{j}(rec, parent)")
        # empty(): None, False, "", [] and {} mean no value
        lines += [f"{indent}    if v is None or v is False or (not v and type(v) in (str, list, dict)):"]
        indent += "    "
    lines.append(f"{indent}    v = None")
    return lines


def _value_map_code(vm: tuple[dict[str, dict[str, Any]], str | None], env: dict[str, Any], tag: str) -> list[str]:
    """Lines (indent 8) applying a value map stage: a found key in line, anything else by the stage."""
    tables, by = vm
    env[f"{tag}_missing"] = _MISSING
    if by is None:
        env[f"{tag}_t"] = tables["*"]
        table = f"{tag}_t"
    else:
        env[f"{tag}_ts"] = tables
        env[f"{tag}_by"] = compile_path(by)
        table = f"{tag}_ts.get(key({tag}_by(rec, None)), {{}})"
    return [
        "        if v is None or v is False or (not v and type(v) in (str, list, dict)):",
        "            v = None",
        "        else:",
        f"            u = {table}.get(v if type(v) is str else key(v), {tag}_missing)",
        f"            v = {tag}(v, rec) if u is {tag}_missing else u",
    ]


def _match_code(tests: list[tuple[str, frozenset[str]]], env: dict[str, Any], tag: str) -> str:
    """An expression that is true when the record matches every (path, allowed keys) test."""
    terms = []
    for j, (path, allowed) in enumerate(tests):
        env[f"{tag}{j}"] = allowed
        if "." in path or path.startswith("$") or path.lstrip("-").isdigit():
            env[f"{tag}g{j}"] = compile_path(path)
            value = f"{tag}g{j}(rec, None)"
        else:
            value = f"get({path!r})"
        terms.append(f"key({value}) in {tag}{j}")
    return " and ".join(terms)


def _set_money(f: FieldPlan, v: Any, rec: Any, parent: Any, row: Row, entity: str) -> None:
    """Set a money field: the currency is the field's own or the row's, and must agree with the row's."""
    cur = f.currency(rec, parent) if f.currency is not None else row["currency"]
    if cur is None:
        raise FieldFailure(f.name, "amount without a currency (map `currency` or give `currency:`)")
    if row["currency"] is None:
        row["currency"] = cur
    elif cur != row["currency"]:
        raise FieldFailure(f.name, f"amount in {cur} on a {row['currency']} {entity}")
    if f.kind == "money_minor":
        try:
            v = scale_minor(v, cur, f.convention)
        except ValueError as exc:
            raise FieldFailure(f.name, str(exc)) from None
    b = _BOUNDS.get(cur) or _BOUNDS.setdefault(cur, sane_bound(cur))
    if not -b < v < b or v.as_tuple().exponent < -MAX_SCALE:
        raise FieldFailure(f.name, _insane(v, cur, b))
    row[f.name] = v


def _fail(node: Node, key: Any, msg: str) -> MappingError:
    return MappingError(f"{node.where(key)}: {msg}")


def _matcher(node: Node, key: str, spec: Any) -> Callable[[Any], bool]:
    if not isinstance(spec, Node) or not spec:
        raise _fail(node, key, f"`{key}` must be a mapping of path: value (or list of values)")
    tests: list[tuple[Getter, set[str]]] = []
    for path, allowed in spec.items():
        values = allowed if isinstance(allowed, list) else [allowed]
        tests.append((compile_path(str(path)), {_key(v) for v in values}))

    if len(tests) == 1:
        only_get, only_allowed = tests[0]
        return lambda rec: _key(only_get(rec, None)) in only_allowed

    def match(rec: Any) -> bool:
        return all(_key(get(rec, None)) in allowed for get, allowed in tests)

    return match


def _matcher_tests(spec: Any) -> list[tuple[str, frozenset[str]]]:
    return [(str(path), frozenset(_key(v) for v in (allowed if isinstance(allowed, list) else [allowed])))
            for path, allowed in spec.items()]


def _key(value: Any) -> str:
    """Value-map keys compare as text; YAML ``true``/``false``/``null`` and vendor ones agree."""
    if type(value) is str:
        return value
    if value is None:
        return "null"
    if value is False:
        return "false"  # Odoo's empty `false` must be matched explicitly: `[null, false]`
    if value is True:
        return "true"
    return str(value)


def _expected_type(tp: Any) -> Any:
    if tp is Money:
        return "money"
    return tp


def _compatible(produced: Any, expected: Any) -> bool:
    if expected == "money":
        return produced in ("money", "money_minor")
    if produced in ("money", "money_minor"):
        return False
    if expected is datetime:
        return produced is datetime
    if expected is date:
        return produced is date
    if expected is Decimal:
        return produced in (Decimal, int)
    if expected is str:
        return produced is str
    return produced is expected or expected is object or (produced is object and expected is not str)


def _field_spec(fname: str, spec: Any, node: Node) -> tuple[Mapping[str, Any], Node]:
    """A field spec as a mapping (a bare path is ``{from: path}``) with its known keys only, and the
    node its errors point at."""
    if isinstance(spec, str):
        spec = {"from": spec}
    if not isinstance(spec, dict):
        raise _fail(node, fname, f"field {fname!r}: expected a path or a mapping, got {spec!r}")
    where = spec if isinstance(spec, Node) else node
    unknown = set(spec) - _FIELD_KEYS
    if unknown:
        raise _fail(where, sorted(unknown)[0], f"field {fname!r}: unknown key {sorted(unknown)[0]!r} "
                    f"(known: {', '.join(sorted(_FIELD_KEYS))})")
    return spec, where


def _coercion_name(fname: str, spec: Mapping[str, Any], where: Node, expected: Any) -> str:
    """The field's coercion: given by ``coerce``, else implied by the field's type or name; it must
    exist and produce what the canonical field holds."""
    base = fname.rsplit(".", 1)[-1]
    coerce_name = spec.get("coerce")
    if coerce_name is None:
        if expected == "money":
            coerce_name = "money"
        elif "entity" in spec or base in _REF_ENTITIES:
            coerce_name = "ref"
        elif base in _IMPLIED_BY_NAME and expected is str:
            coerce_name = _IMPLIED_BY_NAME[base]
        else:
            coerce_name = {str: "str", Decimal: "decimal", date: "date", datetime: "instant", int: "int",
                           bool: "bool"}.get(expected, "json")
    if coerce_name not in COERCIONS:
        raise _fail(where, "coerce", f"field {fname!r}: unknown coercion {coerce_name!r} "
                    f"(known: {', '.join(sorted(COERCIONS))})")
    if not _compatible(COERCIONS[coerce_name][1], expected):
        raise _fail(where, "coerce", f"field {fname!r}: coercion {coerce_name!r} does not produce a "
                    f"{getattr(expected, '__name__', expected)}")
    return str(coerce_name)


def _make_coercion(fname: str, where: Node, coerce_name: str, options: dict[str, Any]) -> Callable[[Any], Any]:
    try:
        coerce: Callable[[Any], Any] = COERCIONS[coerce_name][0](options)
    except Exception as exc:
        raise _fail(where, "coerce", f"field {fname!r}: {exc}") from None
    return coerce


def _from_paths(spec: Mapping[str, Any]) -> list[str]:
    """The paths of ``from`` (one, or a list read in turn)."""
    return [str(p) for p in (spec["from"] if isinstance(spec["from"], list) else [spec["from"]])]


def _input_getter(fname: str, spec: Mapping[str, Any], where: Node, coerce_name: str, multi: bool) -> Getter:
    """The field's input: exactly one of ``from`` (first non-empty path), ``args`` (for the coercions
    that take several inputs) or ``const``."""
    sources = [k for k in ("from", "args", "const") if k in spec]
    if len(sources) != 1:
        raise _fail(where, None, f"field {fname!r}: give exactly one of `from`, `args` or `const`")
    if "args" in spec:
        if not multi or not isinstance(spec["args"], list):
            raise _fail(where, "args", f"field {fname!r}: `args` (a list) is for the coercions "
                        f"{', '.join(sorted(MULTI_INPUT))}")
        return _args_getter([str(p) for p in spec["args"]])
    if multi:
        raise _fail(where, "coerce", f"field {fname!r}: coercion {coerce_name!r} takes `args: [...]`")
    if "const" in spec:
        const = spec["const"]

        def get_const(rec: Any, parent: Any) -> Any:
            return const

        return get_const
    paths = spec["from"] if isinstance(spec["from"], list) else [spec["from"]]
    if not paths or not all(isinstance(p, str | int) for p in paths):
        raise _fail(where, "from", f"field {fname!r}: `from` must be a path or a list of paths")
    return _coalesce(_from_paths(spec))


def _pattern_stage(fname: str, spec: Mapping[str, Any], where: Node) -> Callable[[Any, Any], Any]:
    """``pattern``: the regular expression's first group (or whole match) in the value, else None."""
    try:
        rx = re.compile(str(spec["pattern"]))
    except re.error as exc:
        raise _fail(where, "pattern", f"field {fname!r}: bad regular expression: {exc}") from None
    group = 1 if rx.groups else 0

    def pattern(v: Any, rec: Any) -> Any:
        if empty(v):
            return None
        if isinstance(v, dict) and "__class__" in v:
            v = decode_tagged(v)
        m = rx.search(v if isinstance(v, str) else " ".join(map(str, v)) if isinstance(v, list) else str(v))
        return m.group(group) if m else None

    return pattern


def _coerced_default(fname: str, spec: Mapping[str, Any], where: Node, coerce: Callable[[Any], Any],
                     multi: bool) -> Any:
    """``default``, coerced like a read value (a multi-input coercion's default is kept as given)."""
    default = spec.get("default")
    if default is not None and not multi:
        try:
            default = coerce(default)
        except CoercionError as exc:
            raise _fail(where, "default", f"field {fname!r}: bad default: {exc}") from None
    return default


# the coercion's own fast path for a str value, written into the generated code ({c}: the coercion)
_FAST_FORMS = {
    "json": "v or None",
    "currency": "currency_cache.get(v) or {c}(v)",
    "money_minor": "v",  # for an int (see fast_type)
    "date": "{c}.cache.get(v) or {c}(v)",  # the dates of the texts seen (see coerce._date)
}


def _fast_form(coerce_name: str, spec: Mapping[str, Any], options: Mapping[str, Any]) -> str | None:
    """The coercion written out for a str value, where it has a short form (None: the call)."""
    if coerce_name == "str" and "max_length" not in spec:
        return "v.strip()[:400] or None"
    if coerce_name == "ref":
        prefix = options["system"] + ":" + options["entity"] + ":"
        return f"({prefix!r} + v) if v and len(v) <= {400 - len(prefix)} else {{c}}(v) if v else None"
    if coerce_name == "lower" and "max_length" not in spec:
        return "v.strip()[:400].lower() or None"
    return _FAST_FORMS.get(coerce_name)


def _simple_value(fname: str, get: Getter, coerce: Callable[[Any], Any], origin: Any) -> Getter:
    """The getter of a field with no stage, fallback, default or requirement: read and coerce."""
    def simple(rec: Any, parent: Any) -> Any:
        try:
            return coerce(get(rec, parent))
        except CoercionError as exc:
            raise FieldFailure(fname, f"{exc} (from {origin})") from None

    return simple


def _currency_getter(fname: str, spec: Mapping[str, Any], where: Node) -> Getter | None:
    """An amount's own currency: fixed by ``currency``, read by ``currency_from``, or None (the row's)."""
    if "currency" in spec:
        try:
            code = normalize_currency(str(spec["currency"]))
        except ValueError as exc:
            raise _fail(where, "currency", f"field {fname!r}: {exc}") from None
        return lambda rec, parent: code
    if "currency_from" in spec:
        cur_get = compile_path(str(spec["currency_from"]))
        cur_coerce = COERCIONS["currency"][0]({})

        def currency(rec: Any, parent: Any) -> Any:
            return cur_coerce(cur_get(rec, parent))

        return currency
    return None


def _convention(fname: str, spec: Mapping[str, Any], where: Node) -> Convention:
    """How minor units are scaled: ``stripe`` (default) or ``iso4217``."""
    convention = spec.get("convention", "stripe")
    if convention not in ("stripe", "iso4217"):
        raise _fail(where, "convention", f"field {fname!r}: `convention` is stripe or iso4217")
    return cast(Convention, convention)


# --- fields ---------------------------------------------------------------------------------------

class _Compiler:
    def __init__(self, mapping: Node, system: str, decimal_separator: str | None = None):
        self.mapping = mapping
        self.system = system
        self.decimal_separator = decimal_separator
        self.timezone = str(mapping.get("timezone") or "UTC")
        # value-map stage -> (tables by `map_by` key, the `map_by` path): the generated code looks up
        # mapped values in line and calls the stage only for what the tables do not hold
        self.value_maps: dict[Callable[[Any, Any], Any], tuple[dict[str, dict[str, Any]], str | None]] = {}

    def value_fn(
        self, fname: str, spec: Any, node: Node, expected: Any
    ) -> tuple[
        Getter, str, Getter | None, Convention, tuple[str, Callable[[Any], Any], str, str | None] | None,
        FieldParts,
    ]:
        """Compile one field spec; returns (getter, kind, currency getter, convention, inline form,
        compiled parts)."""
        spec, where = _field_spec(fname, spec, node)
        coerce_name = _coercion_name(fname, spec, where, expected)
        produces = COERCIONS[coerce_name][1]
        options = self._coercion_options(fname, spec, where, coerce_name)
        coerce = _make_coercion(fname, where, coerce_name, options)
        multi = coerce_name in MULTI_INPUT
        get = _input_getter(fname, spec, where, coerce_name, multi)
        stages = self._stages(fname, spec, where)
        default = _coerced_default(fname, spec, where, coerce, multi)
        required = bool(spec.get("required"))
        fallback = self.value_fn(fname, spec["or"], where, expected)[0] if "or" in spec else None
        label = f"{fname} (from {spec.get('from', spec.get('args', 'const'))})"
        origin = spec.get("from", spec.get("args"))
        fast = _fast_form(coerce_name, spec, options)
        plain = not stages and fallback is None and default is None and not required
        simple_key = spec.get("from")
        inline = None
        if plain and isinstance(simple_key, str) and _simple_path(simple_key):
            inline = (simple_key, coerce, str(origin), fast)
        parts = FieldParts(get, stages, coerce, fallback, default, required, label, origin,
                           None if multi or "from" not in spec else _from_paths(spec),
                           not multi and coerce_name not in ("bool", "json", "money_minor"),
                           None if multi else fast, produces is str and fallback is None,
                           "int" if coerce_name == "money_minor" else "str")
        if plain:  # the common case, kept to one call per stage
            value = _simple_value(fname, get, coerce, origin)
        else:
            value = self._full(fname, get, stages, coerce, fallback, default, required, label, origin)
        currency = _currency_getter(fname, spec, where) if produces in ("money", "money_minor") else None
        kind = produces if produces in ("money", "money_minor") else "plain"
        return value, kind, currency, _convention(fname, spec, where), inline, parts

    def _coercion_options(self, fname: str, spec: Mapping[str, Any], where: Node, coerce_name: str) -> dict[str, Any]:
        """What the coercion's factory is given: the mapping's timezone, the system, the source's
        decimal separator, the field spec, and the entity a reference points at."""
        base = fname.rsplit(".", 1)[-1]
        options: dict[str, Any] = {"timezone": self.timezone, "system": self.system,
                                   "decimal_separator": self.decimal_separator, **spec}
        if coerce_name == "hubspot_association" and (spec.get("entity") or base in _REF_ENTITIES):
            options["entity"] = spec.get("entity") or _REF_ENTITIES[base]
        if coerce_name == "ref":
            ent = spec.get("entity") or _REF_ENTITIES.get(base)
            if ent not in model.ENTITIES:
                raise _fail(where, "entity", f"field {fname!r}: `coerce: ref` needs `entity:` one of "
                            f"{', '.join(model.ENTITIES)}")
            options["entity"] = ent
        return options

    def _stages(self, fname: str, spec: Mapping[str, Any], where: Node) -> list[Callable[[Any, Any], Any]]:
        """The (value, record) -> value steps before the coercion: ``pattern``, then ``map``."""
        stages: list[Callable[[Any, Any], Any]] = []
        if "pattern" in spec:
            stages.append(_pattern_stage(fname, spec, where))
        if "map" in spec:
            stages.append(self._value_map(fname, spec, where))
        elif "map_by" in spec or "unmapped" in spec:
            raise _fail(where, "map_by", f"field {fname!r}: `map_by`/`unmapped` need a `map`")
        return stages

    @staticmethod
    def _full(
        fname: str, get: Getter, stages: list[Callable[[Any, Any], Any]], coerce: Callable[[Any], Any],
        fallback: Getter | None, default: Any, required: bool, label: str, origin: Any,
    ) -> Getter:
        def value(rec: Any, parent: Any) -> Any:
            v = get(rec, parent)
            try:
                for stage in stages:
                    v = stage(v, rec)
                out = coerce(v)
            except CoercionError as exc:
                raise FieldFailure(fname, f"{exc} (from {origin})") from None
            if out is None and fallback is not None:
                out = fallback(rec, parent)
            if out is None:
                if default is not None:
                    return default
                if required:
                    raise FieldFailure(fname, f"required value missing: {label}")
            return out

        return value

    def _value_map(self, fname: str, spec: Mapping[str, Any], where: Node) -> Callable[[Any, Any], Any]:
        raw_map = spec["map"]
        unmapped = spec.get("unmapped", "error")
        if unmapped not in ("error", "keep", "default"):
            raise _fail(where, "unmapped", f"field {fname!r}: `unmapped` is error, keep or default")
        if not isinstance(raw_map, dict):
            raise _fail(where, "map", f"field {fname!r}: `map` must be a mapping")
        by = spec.get("map_by")
        tables: dict[str, dict[str, Any]]
        if by is None:
            tables = {"*": {_key(k): v for k, v in raw_map.items()}}
        else:
            tables = {}
            for sub_key, sub in raw_map.items():
                if not isinstance(sub, dict):
                    raise _fail(where, "map", f"field {fname!r}: with `map_by`, `map` is a map of maps")
                tables[_key(sub_key)] = {_key(k): v for k, v in sub.items()}
        by_get = compile_path(str(by)) if by is not None else None
        source = spec.get("from")

        def apply(v: Any, rec: Any) -> Any:
            if empty(v):
                return None
            table = tables.get(_key(by_get(rec, None)), tables.get("*")) if by_get else tables["*"]
            k = _key(v)
            if table is not None:
                if k in table:
                    return table[k]
                if "*" in table:
                    return table["*"]
            if unmapped == "keep":
                return v
            if unmapped == "default":
                return None
            scope = f" in {by} {by_get(rec, None)!r}" if by_get else ""
            raise CoercionError(f"value {v!r} of {source} has no entry in the value map{scope}")

        self.value_maps[apply] = (tables, None if by is None else str(by))
        return apply

    # --- objects ------------------------------------------------------------------------------------
    def object_plan(self, obj: str, spec: Any, parent_node: Node, child: bool = False) -> ObjectPlan:
        entity = _object_entity(obj, spec, parent_node)
        fields_spec = spec.get("fields")
        if not isinstance(fields_spec, Node):
            raise _fail(spec, "fields", f"object {obj!r}: `fields` must be a mapping")
        plain, money = self._field_plans(obj, entity, fields_spec)
        _check_required(obj, entity, spec, fields_spec)
        plan_ = ObjectPlan(obj, entity, _template(entity, self.system, obj), plain, money)
        _conditions(plan_, spec)
        _child_paths(plan_, obj, spec, child)
        if "with" in spec:
            plan_.sidecars = _sidecars(spec, obj, child)
        for i, child_spec in enumerate(spec.get("children") or []):
            if not isinstance(child_spec, Node):
                raise _fail(spec, "children", f"object {obj!r}: children[{i}] must be a mapping")
            plan_.children.append(self.object_plan(obj, child_spec, spec, child=True))
        plan_.run = _generate_run(plan_, self.value_maps)
        return plan_

    def _field_plans(self, obj: str, entity: str, fields_spec: Node) -> tuple[list[FieldPlan], list[FieldPlan]]:
        """The object's fields compiled, plain and money apart (money fields are set after the others)."""
        types = {n: _expected_type(t) for n, t in model.field_types(model.ENTITIES[entity]).items()}
        plain: list[FieldPlan] = []
        money: list[FieldPlan] = []
        for fname, fspec in fields_spec.items():
            fname = str(fname)
            if fname.startswith("attributes."):
                expected: Any = object
            elif fname in _ENGINE_FIELDS or fname not in types or fname == "attributes":
                raise _fail(fields_spec, fname, f"object {obj!r}: unknown canonical field {fname!r} of {entity} "
                            f"(fields: {', '.join(n for n in types if n not in _ENGINE_FIELDS)}; "
                            "custom fields go to attributes.<name>)")
            else:
                expected = types[fname]
            value, kind, currency, convention, inline, parts = self.value_fn(fname, fspec, fields_spec, expected)
            if fname.startswith("attributes."):
                plan = FieldPlan(fname[len("attributes."):], value, "attr", inline=inline, parts=parts)
            else:
                plan = FieldPlan(fname, value, kind, currency, convention, inline, parts)
            (money if kind in ("money", "money_minor") else plain).append(plan)
        return plain, money


def _object_entity(obj: str, spec: Any, parent_node: Node) -> str:
    """The canonical entity an object maps to, once its keys are known ones."""
    if not isinstance(spec, Node):
        raise _fail(parent_node, obj, f"object {obj!r}: expected a mapping with `entity` and `fields`")
    unknown = set(spec) - _OBJECT_KEYS
    if unknown:
        k = sorted(unknown)[0]
        raise _fail(spec, k, f"object {obj!r}: unknown key {k!r} (known: {', '.join(sorted(_OBJECT_KEYS))})")
    entity = spec.get("entity")
    if entity not in model.ENTITIES:
        raise _fail(spec, "entity", f"object {obj!r}: `entity` must be one of {', '.join(model.ENTITIES)}, "
                    f"got {entity!r}")
    return cast(str, entity)


def _check_required(obj: str, entity: str, spec: Node, fields_spec: Node) -> None:
    """Every canonical field without a default (other than the engine's own) must be mapped."""
    required = [
        f.name for f in dataclasses.fields(model.ENTITIES[entity])
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        and f.name not in _ENGINE_FIELDS
    ]
    for name in required:
        if name not in fields_spec:
            raise _fail(spec, "fields", f"object {obj!r}: required canonical field {entity}.{name} is not mapped")


def _template(entity: str, system: str, obj: str) -> Row:
    """The row every record of the object starts from: the entity's defaults and the source's keys."""
    cls = model.ENTITIES[entity]
    template: Row = {f.name: None for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            template[f.name] = f.default
    template["source_system"] = system
    template["source_object"] = obj
    return template


def _conditions(plan: ObjectPlan, spec: Node) -> None:
    """``when:`` (which records map) and ``deleted_if:`` (which are tombstones), with the tests the
    generated code runs in line."""
    if "when" in spec:
        plan.when = _matcher(spec, "when", spec["when"])
        plan.when_tests = _matcher_tests(spec["when"])
    if "deleted_if" in spec:
        plan.deleted_if = _matcher(spec, "deleted_if", spec["deleted_if"])
        plan.deleted_tests = _matcher_tests(spec["deleted_if"])


def _child_paths(plan: ObjectPlan, obj: str, spec: Node, child: bool) -> None:
    """A child's list (``each:``) and item id (``id:``) paths; its rows' source object names the list."""
    if child:
        if "each" not in spec or "id" not in spec:
            raise _fail(spec, None, f"child of {obj!r}: needs `each:` (the list's path) and `id:` (item id path)")
        plan.each = compile_path(str(spec["each"]))
        plan.child_id = compile_path(str(spec["id"]))
        plan.each_path, plan.id_path = str(spec["each"]), str(spec["id"])
        plan.source_object = f"{obj}.{spec['each']}"
        plan.template["source_object"] = plan.source_object
    elif "each" in spec or "id" in spec:
        raise _fail(spec, "each", f"object {obj!r}: `each`/`id` are for `children` entries")


def _sidecars(spec: Node, obj: str, child: bool) -> dict[str, tuple[str, str | None]]:
    """``with:`` -> key -> (sidecar object, the field (dotted path) holding its id, or None for the same id)."""
    usage = (f"object {obj!r}: `with` maps a key to another source object read under that key — "
             "`{key: object}` (the record with the same id) or `{key: {object: o, id: field}}` (the record whose "
             "id is this record's `field`, a dotted path such as `Sales_Order.id` allowed), e.g. `with: {associations: associations.deals}`")
    side = spec["with"]
    if child or not isinstance(side, Node) or not side:
        raise _fail(spec, "with", usage)
    out: dict[str, tuple[str, str | None]] = {}
    for key, target in side.items():
        if isinstance(target, str) and target != obj:
            out[str(key)] = (target, None)
        elif (isinstance(target, dict) and set(target) == {"object", "id"} and isinstance(target["object"], str)
              and isinstance(target["id"], str) and target["id"] and all(target["id"].split("."))):
            out[str(key)] = (target["object"], target["id"])
        else:
            raise _fail(side, key, usage)
    return out


def compile_mapping(mapping: Node, system: str, *, decimal_separator: str | None = None
                    ) -> dict[str, list[ObjectPlan]]:
    """Validate and compile a whole mapping for one connector instance: source object -> plans.

    ``decimal_separator`` is the source's (ltc.yaml): how amounts sent as text are read."""
    objects = mapping.get("objects")
    if not isinstance(objects, Node) or not objects:
        raise MappingError(f"{mapping.where('objects')}: a mapping needs `objects:` (source object -> entity)")
    unknown = set(mapping) - {"objects", "timezone", "kind", "note"}
    if unknown:
        k = sorted(unknown)[0]
        raise MappingError(f"{mapping.where(k)}: unknown top-level key {k!r} (known: kind, timezone, objects, note)")
    compiler = _Compiler(mapping, system, decimal_separator)
    try:
        compiler.value_fn("timezone", {"const": "2020-01-01", "coerce": "date"}, mapping, date)
    except Exception:
        raise MappingError(f"{mapping.where('timezone')}: unknown timezone {compiler.timezone!r}") from None
    plans: dict[str, list[ObjectPlan]] = {}
    for obj, spec in objects.items():
        specs = spec if isinstance(spec, list) else [spec]
        plans[str(obj)] = [compiler.object_plan(str(obj), s, objects) for s in specs]
    return plans


# --- applying ---------------------------------------------------------------------------------------

def apply_plan(
    plan: ObjectPlan,
    rec: Any,
    source_id: str,
    raw_id: int | None,
    updated_at: datetime | None,
    parent: Any = None,
    out: list[tuple[str, Row]] | None = None,
) -> list[tuple[str, Row]]:
    """Map one record; returns ``(entity, row)`` pairs (the record's row, then its children's)."""
    if out is None:
        out = []
    assert plan.run is not None
    plan.run(rec, parent, source_id, raw_id, updated_at, out)
    return out


def _now() -> datetime:
    from canonical.store import now

    return now()

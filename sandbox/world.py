"""World directories (docs/world.md): read and check a replayable export of a company's systems.

:func:`read_world` reads *everything* first — ``world.yaml``, every JSON Lines file, the bank
statements, ``fx_rates.csv`` — and raises one :class:`~canonical.errors.InputError`
``"<file>:<line>: <what is wrong and what to do>"`` at the first problem, so nothing is served or
loaded from a half-valid world. The emulators are then seeded from :attr:`WorldDir.records`
(``sandbox.run.start_world``).

Records stay in wire form (as the vendor's API returns them); JSON numbers with a fraction are read
as :class:`~decimal.Decimal` so that no amount goes through a float, and ``connectors.http.dumps_exact`` writes
them back with the same digits.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from canonical import db
from canonical.errors import InputError, yaml_problem
from canonical.interpreter import no_gc
from canonical.money import normalize_currency
from connectors.tryton import codec

if TYPE_CHECKING:
    from collections.abc import Callable

    from canonical.forking import Pending

FORMAT = 1
SYSTEMS = ("salesforce", "hubspot", "zoho", "jiandaoyun", "stripe", "tryton", "odoo", "bank")
API_SYSTEMS = ("salesforce", "hubspot", "zoho", "jiandaoyun", "stripe", "tryton", "odoo")
ERPS = ("tryton", "odoo")
YAML_KEYS = ("format", "name", "systems", "erp", "reporting_currency", "as_of", "mappings")

OBJECTS: dict[str, tuple[str, ...]] = {
    "salesforce": ("Account", "Contact", "Lead", "Opportunity", "OpportunityLineItem", "Product2", "Order",
                   "OrderItem", "Quote", "QuoteLineItem", "Contract"),
    "hubspot": ("companies", "contacts", "deals", "line_items", "products", "quotes", "owners", "pipelines"),
    "zoho": ("Leads", "Accounts", "Contacts", "Deals", "Products", "Quotes", "Sales_Orders", "Invoices"),
    "stripe": ("customers", "charges", "refunds", "invoices", "credit_notes", "balance_transactions", "payouts",
               "payment_intents"),
    "tryton": ("party.party", "sale.sale", "sale.line", "account.invoice", "account.invoice.line",
               "account.move.line", "currency.currency.rate", "stock.shipment.out", "stock.move"),
    "odoo": ("res.partner", "sale.order", "sale.order.line", "account.move", "account.move.line",
             "account.payment", "res.currency.rate", "stock.picking", "stock.move"),
}
HUBSPOT_CRM = ("companies", "contacts", "deals", "line_items", "products", "quotes")
# HubSpot associations the emulator serves: associations/<from>_to_<to>.jsonl
HUBSPOT_ASSOCIATIONS = (("deals", "companies"), ("companies", "deals"), ("deals", "contacts"),
                        ("contacts", "deals"), ("deals", "line_items"), ("line_items", "deals"),
                        ("deals", "quotes"), ("quotes", "deals"))
STRIPE_OBJECT = {"customers": "customer", "charges": "charge", "refunds": "refund", "invoices": "invoice",
                 "credit_notes": "credit_note", "balance_transactions": "balance_transaction",
                 "payouts": "payout", "payment_intents": "payment_intent"}
FX_HEADER = ["rate_date", "base", "quote", "rate"]
# Fields the connectors select rows by: a row without one would be silently left out of a sync.
FILTER_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("tryton", "account.invoice"): ("type",),
    ("tryton", "account.invoice.line"): ("invoice",),
    ("odoo", "account.move"): ("move_type",),
    ("odoo", "account.move.line"): ("move_id", "display_type"),
    ("odoo", "account.payment"): ("partner_type",),
}


@dataclass
class WorldDir:
    path: Path
    name: str
    systems: list[str]
    erp: str | None
    reporting_currency: str
    as_of: date | None
    records: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    """system -> object -> records in wire form, file order. HubSpot associations are under the object
    ``associations/<from>_to_<to>``."""
    bank_files: list[Path] = field(default_factory=list)
    fx_rates: list[dict[str, Any]] = field(default_factory=list)  # rate_date (date), base, quote, rate (Decimal)
    mappings: dict[str, Path] = field(default_factory=dict)
    """system -> the world's mapping override file (``mappings: {stripe: mappings/stripe.yaml}``)."""
    lines: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    """system -> object -> record id -> its line in the object's file."""
    jiandaoyun: dict[str, Any] | None = None
    """A Jiandaoyun app (``jiandaoyun/app.yaml``): ``options`` (the source's ``app_id``, ``forms``,
    ``currency``, ``timezone``) and ``forms`` ``[{key, entry_id, name, flow, widgets}]``; the records of
    form ``key`` are ``records["jiandaoyun"][key]``."""

    def drop_records(self) -> None:
        """Forget the records and their line numbers (and the Tryton rows decoded from them): for a
        process whose emulators run in a child that has them already (``sandbox.run.start_world_process``),
        which then holds no copy of its own for the rest of the run."""
        self.forget_records()
        self.lines = {}

    def forget_records(self) -> None:
        """Forget the records (and the Tryton rows decoded from them), keeping their line numbers: what a check's
        problem names (``file:line``) while the checks forked with the records still run."""
        from sandbox.tryton import forget_decoded

        forget_decoded([recs for objects in self.records.values() for recs in objects.values()])
        self.records = {}

    @property
    def api_systems(self) -> list[str]:
        """The systems served by an emulator (every system but ``bank``), in ``systems`` order."""
        return [s for s in self.systems if s in API_SYSTEMS]

    @property
    def bank_folder(self) -> Path | None:
        return self.path / "bank" if "bank" in self.systems else None


def _is_instant(stamp: Any) -> bool:
    """An ISO 8601 instant with its offset (``Z`` or ``+05:30``)."""
    try:
        return isinstance(stamp, str) and datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _fail(where: Path | str, line: int | None, what: str) -> InputError:
    return InputError(f"{where}:{line}: {what}" if line is not None else f"{where}: {what}")


# --- world.yaml ------------------------------------------------------------------------------------

def _key_lines(node: yaml.Node | None) -> dict[str, int]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): v.start_mark.line + 1 for k, v in node.value if isinstance(k, yaml.ScalarNode)}


def _read_manifest(root: Path) -> tuple[dict[str, Any], dict[str, int], Path]:
    path = root / "world.yaml"
    if not path.is_file():
        raise _fail(root, None, "not a world directory: world.yaml is missing (see docs/world.md)")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(yaml_problem(path, exc, default_line=1)) from None
    if not isinstance(data, dict):
        raise _fail(path, 1, "the top level must be a mapping (format, name, systems, erp, reporting_currency, as_of)")
    return data, _key_lines(node), path


def _manifest(root: Path) -> tuple[WorldDir, dict[str, int], Path]:
    data, lines, path = _read_manifest(root)

    def line(key: str) -> int:
        return lines.get(key, 1)

    for key in data:
        if key not in YAML_KEYS:
            raise _fail(path, line(str(key)), f"unknown key {key!r}; known: {', '.join(YAML_KEYS)}")
    if data.get("format", FORMAT) != FORMAT:
        raise _fail(path, line("format"), f"format {data.get('format')!r} is not supported; this version reads "
                                          f"format: {FORMAT}")
    name = data.get("name", root.name)
    if not isinstance(name, str | int) or not str(name).strip():
        raise _fail(path, line("name"), "name must be a non-empty text")
    systems = data.get("systems")
    if not isinstance(systems, list) or not systems or not all(isinstance(s, str) for s in systems):
        raise _fail(path, line("systems"), f"systems must be a non-empty list of: {', '.join(SYSTEMS)}")
    for s in systems:
        if s not in SYSTEMS:
            raise _fail(path, line("systems"), f"unknown system {s!r}; known: {', '.join(SYSTEMS)}")
    if len(set(systems)) != len(systems):
        raise _fail(path, line("systems"), "a system is listed twice in systems")
    erp = data.get("erp")
    if erp in (None, "none", False):
        erp = None
    elif erp not in ERPS:
        raise _fail(path, line("erp"), f"erp must be tryton, odoo or none, got {erp!r}")
    elif erp not in systems:
        raise _fail(path, line("erp"), f"erp {erp!r} is not in systems; add it to systems (with its directory)")
    if "reporting_currency" not in data:
        raise _fail(path, 1, "reporting_currency is missing (an ISO 4217 code such as USD)")
    try:
        currency = normalize_currency(str(data["reporting_currency"]))
    except Exception:
        raise _fail(path, line("reporting_currency"),
                    f"reporting_currency {data['reporting_currency']!r} is not an ISO 4217 currency code") from None
    as_of = data.get("as_of")
    if isinstance(as_of, str):
        try:
            as_of = date.fromisoformat(as_of)
        except ValueError:
            raise _fail(path, line("as_of"), f"as_of {as_of!r} is not a date (YYYY-MM-DD)") from None
    elif as_of is not None and not (isinstance(as_of, date) and not hasattr(as_of, "hour")):
        raise _fail(path, line("as_of"), f"as_of {as_of!r} is not a date (YYYY-MM-DD)")
    world = WorldDir(path=root, name=str(name), systems=list(systems), erp=erp, reporting_currency=currency,
                     as_of=as_of, mappings=_mappings(root, data.get("mappings"), systems, path, line("mappings")))
    return world, lines, path


def _mappings(root: Path, value: Any, systems: list[str], path: Path, line: int) -> dict[str, Path]:
    """``mappings: {<system>: <override file in the world>}``: each file is loaded and compiled now."""
    from mappings.engine import compile_for

    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _fail(path, line, "mappings must map a system to its override file, e.g. "
                                "{stripe: mappings/stripe.yaml}")
    out: dict[str, Path] = {}
    for system, rel in value.items():
        if system not in systems or system not in API_SYSTEMS:
            raise _fail(path, line, f"mappings: {system!r} is not an API system of this world "
                                    f"({', '.join(s for s in systems if s in API_SYSTEMS)})")
        file = (root / rel).resolve()
        if not file.is_relative_to(root.resolve()) or not file.is_file():
            raise _fail(path, line, f"mappings: {system}: {rel} is not a file inside the world directory")
        compile_for(system, system, file)  # a broken override: MappingError naming its file:line
        out[system] = file
    return out


# --- JSON Lines --------------------------------------------------------------------------------------

def _loads(text: str) -> Any:
    """A line's (or a file's) JSON value, exact decimals (:func:`canonical.db.loads_exact`; a bad text raises
    ``json``'s error, which names the column). msgspec makes each distinct key text once for all the records of a
    file (its key cache), not once per record: a world's records take about a third less memory than with a text per
    key (tests/sandbox/test_world.py checks they share them)."""
    return db.loads_exact(text)


# a text that is a date or an ISO instant, and nothing else (a description that starts with one is not)
_DATE_TEXT = re.compile(r"^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.\d+)?)?"
                        r"(?:Z|[+-]\d\d:?\d\d)?)?$")


_TEXT_SEEN: dict[str, str | None] = {}
_TEXT_SEEN_MAX = 200_000
_UNSEEN = object()


def _impossible_text(value: str) -> str | None:
    m = _DATE_TEXT.match(value)
    if m is None:
        return None
    y, mo, d, h, mi, sec = (int(x) if x is not None else 0 for x in m.groups())
    try:
        datetime(y, mo, d, h, mi, sec)
    except ValueError as exc:
        return f"{value!r} is not a valid date ({exc})"
    return None


def _impossible_value(value: Any) -> str | None:
    """Why a value cannot be what it says (a date of February 30, a Tryton tagged value that does
    not decode), or None. A world is checked before anything serves it: the emulators then never
    meet a value they cannot read."""
    if isinstance(value, str):
        known = _TEXT_SEEN.get(value, _UNSEEN)
        if known is not _UNSEEN:  # a world repeats its dates and stamps: each distinct text is checked once
            return known  # type: ignore[return-value]
        why = _impossible_text(value)
        if len(_TEXT_SEEN) >= _TEXT_SEEN_MAX:
            _TEXT_SEEN.clear()
        _TEXT_SEEN[value] = why
        return why
    if isinstance(value, dict):
        if "__class__" not in value:
            bad = _first_impossible(value)
            return None if bad is None else f"{bad[0]}: {bad[1]}"
        try:
            codec._decoded(value)
        except (ArithmeticError, ValueError, TypeError, KeyError, OverflowError) as exc:
            return f"{json.dumps(value, default=str)} is not a valid Tryton {value.get('__class__')} ({'not a number' if isinstance(exc, ArithmeticError) else exc})"
        return None
    if isinstance(value, list):
        return next((why for v in value if type(v) not in _NEVER_IMPOSSIBLE and (why := _impossible_value(v))), None)
    return None


# exact types whose every value is possible (a text can be an impossible date: it is looked at); the
# last ones are a decoded Tryton record's
_NEVER_IMPOSSIBLE = frozenset({int, bool, float, Decimal, type(None), date, datetime, time, timedelta, bytes})


def _first_impossible(values: dict[str, Any]) -> tuple[str, str] | None:
    """``(key, why)`` of the first impossible value of a record (:func:`_impossible_value`), or None.
    A text that does not start with four digits and a dash cannot be a date (``_DATE_TEXT``; an id
    made of digits is not one), nor can a number."""
    for k, v in values.items():
        kind = type(v)
        if kind is str:
            if v[4:5] != "-" or not v[:4].isdigit():
                continue
        elif kind in _NEVER_IMPOSSIBLE:
            continue
        why = _impossible_value(v)
        if why:
            return k, why
    return None


_SF_STAMPS_SEEN: dict[str, bool] = {}  # a world repeats its stamps: each distinct text is parsed once


def _sf_stamp_ok(stamp: str) -> bool:
    ok = _SF_STAMPS_SEEN.get(stamp)
    if ok is None:
        try:
            datetime.fromisoformat(re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", stamp.replace("Z", "+00:00")))
            ok = True
        except ValueError:
            ok = False
        if len(_SF_STAMPS_SEEN) >= _TEXT_SEEN_MAX:
            _SF_STAMPS_SEEN.clear()
        _SF_STAMPS_SEEN[stamp] = ok
    return ok


def _check_record(system: str, obj: str, rec: dict[str, Any], where: Path, n: int,
                  decoded: dict[str, Any] | None = None) -> str:
    """The record's id (as text) after the per-system checks; raises InputError naming file:line.
    ``decoded``: a Tryton record as ``codec.decode`` made it (a tagged value that does not decode
    stays tagged): its values are checked instead of decoding each tagged one again."""
    bad = _first_impossible(rec if decoded is None else decoded)
    if bad is not None and decoded is not None:
        bad = _first_impossible(rec) or bad  # named as the file writes it
    if bad is not None:
        rid = rec.get("Id", rec.get("id"))
        raise _fail(where, n, f"record {rid}: field {bad[0]}: {bad[1]}")
    if obj.startswith("associations/"):
        frm = rec.get("from")
        rid = frm.get("id") if isinstance(frm, dict) else None
        if rid in (None, ""):
            raise _fail(where, n, 'association without its from id: write {"from": {"id": "…"}, "to": [...]}')
        to = rec.get("to")
        if not isinstance(to, list) or not all(isinstance(t, dict) and str(t.get("toObjectId")).isdigit()
                                               for t in to):
            raise _fail(where, n, 'association "to" must be a list of {"toObjectId": <numeric id>, '
                                  '"associationTypes": [...]}')
        if not str(rid).isdigit():
            raise _fail(where, n, f"association from id {rid!r}: a HubSpot id is a number written as a string")
        return str(rid)
    key = "Id" if system == "salesforce" else "_id" if system == "jiandaoyun" else "id"
    rid = rec.get(key)
    if rid in (None, "") or isinstance(rid, bool | dict | list):
        raise _fail(where, n, f"record without its id: every {obj} record needs {key!r}")
    if system == "salesforce":
        attrs = rec.get("attributes")
        kind = attrs.get("type") if isinstance(attrs, dict) else None
        if kind != obj:
            raise _fail(where, n, f"record {rid}: attributes.type is {kind!r}, not {obj!r}; "
                                  f"move it to {kind}.jsonl or fix its attributes" if kind else
                                  f"record {rid}: attributes.type is missing; write "
                                  f'"attributes": {{"type": "{obj}"}}')
        stamp = rec.get("SystemModstamp")
        if not isinstance(stamp, str):
            raise _fail(where, n, f"record {rid}: SystemModstamp is missing (e.g. \"2026-10-01T12:00:00.000+0000\")")
        if not _sf_stamp_ok(stamp):
            raise _fail(where, n, f"record {rid}: SystemModstamp {stamp!r} is not a datetime "
                                  "(e.g. \"2026-10-01T12:00:00.000+0000\")")
    elif system == "hubspot" and obj in HUBSPOT_CRM:
        if not isinstance(rec.get("properties"), dict):
            raise _fail(where, n, f"record {rid}: properties must be an object of property values (strings)")
        for k in ("createdAt", "updatedAt", "archivedAt"):
            if k == "archivedAt" and rec.get(k) is None:
                continue
            if not isinstance(rec.get(k), str):
                raise _fail(where, n, f"record {rid}: {k} is missing (ISO 8601, e.g. \"2026-10-01T12:00:00.000Z\")")
            try:
                datetime.fromisoformat(rec[k].replace("Z", "+00:00"))
            except ValueError:
                raise _fail(where, n, f"record {rid}: {k} is not an ISO 8601 instant: {rec[k]!r}") from None
        if not str(rid).isdigit():
            raise _fail(where, n, f"record {rid!r}: a HubSpot id is a number written as a string")
    elif system == "hubspot" and obj == "pipelines":
        if not isinstance(rec.get("stages"), list):
            raise _fail(where, n, f"pipeline {rid}: stages must be a list")
    elif system == "zoho":
        if not isinstance(rid, str) or not rid.isdigit():
            raise _fail(where, n, f"record {rid!r}: a Zoho id is a number written as a string")
        for k in ("Created_Time", "Modified_Time"):
            stamp = rec.get(k)
            if k == "Created_Time" and stamp is None:
                continue
            if not _is_instant(stamp):
                raise _fail(where, n, f"record {rid}: {k} must be an ISO 8601 instant with its offset "
                                      f"(e.g. \"2026-10-01T17:30:00+05:30\"), got {stamp!r}")
    elif system == "jiandaoyun":
        if not isinstance(rid, str) or not re.fullmatch(r"[0-9a-f]{24}", rid):
            raise _fail(where, n, f"record {rid!r}: a Jiandaoyun data id (_id) is 24 hexadecimal digits")
        for k in ("createTime", "updateTime"):
            stamp = rec.get(k)
            if not _is_instant(stamp):
                raise _fail(where, n, f"record {rid}: {k} must be an ISO 8601 UTC instant "
                                      f"(e.g. \"2026-10-01T09:30:00.000Z\"), got {stamp!r}")
    elif system == "stripe":
        want = STRIPE_OBJECT[obj]
        if rec.get("object") != want:
            raise _fail(where, n, f"record {rid}: object is {rec.get('object')!r}, not {want!r}")
        if not isinstance(rec.get("created"), int) or isinstance(rec.get("created"), bool):
            raise _fail(where, n, f"record {rid}: created must be Unix seconds (an integer)")
    elif system in ("tryton", "odoo"):
        if not isinstance(rid, int):
            raise _fail(where, n, f"record {rid!r}: a {system} id is an integer")
        stamps = ("write_date", "create_date")
        if not any(rec.get(s) not in (None, False) for s in stamps):
            raise _fail(where, n, f"record {rid}: write_date or create_date is required")
        for stamp in stamps:
            value = rec.get(stamp)
            if value in (None, False):
                continue
            if system == "tryton" and not (isinstance(value, dict) and value.get("__class__") == "datetime"):
                raise _fail(where, n, f'record {rid}: {stamp} must be a Tryton datetime {{"__class__": "datetime", '
                                      '"year": …, "month": …, "day": …, "hour": …, …}')
            if system == "odoo" and not (isinstance(value, str)
                                         and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", value)):
                raise _fail(where, n, f"record {rid}: {stamp} must be Odoo's UTC \"YYYY-MM-DD HH:MM:SS\", "
                                      f"got {value!r}")
        for name in FILTER_FIELDS.get((system, obj), ()):
            if name not in rec:
                raise _fail(where, n, f"record {rid}: field {name!r} is missing (the {system} connector selects "
                                      f"{obj} rows by it)")
    return str(rid)


def _read_jsonl(system: str, obj: str, path: Path, lines: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The file's records; a Tryton model's are also decoded here, once, for the emulator and the
    readability check that serve them (``sandbox.tryton.keep_decoded``)."""
    from sandbox.tryton import MODELS, keep_decoded

    out: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] | None = [] if system == "tryton" and obj in MODELS else None
    seen: dict[str, int] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(path, None, f"not UTF-8 text ({exc.reason})") from None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    del text
    for n, line in numbered:
        try:
            rec = _loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(path, n, f"not JSON ({exc.msg} at column {exc.colno}); each line is one JSON object") from None
        if not isinstance(rec, dict):
            raise _fail(path, n, f"a line must be one JSON object, not {type(rec).__name__}")
        row = codec.decode(rec) if rows is not None else None
        rid = _check_record(system, obj, rec, path, n, row)
        if rid in seen:
            raise _fail(path, n, f"duplicate id {rid} (first on line {seen[rid]}); one record per id")
        seen[rid] = n
        out.append(rec)
        if row is not None and rows is not None:
            rows.append(row)
    if lines is not None:
        lines.update(seen)
    if rows is not None:
        keep_decoded(out, rows)
    return out


def _read_system(world: WorldDir, system: str) -> None:
    folder = world.path / system
    if system == "bank":
        _read_bank(world, folder)
        return
    if system == "jiandaoyun":
        _read_jiandaoyun(world, folder)
        return
    known = OBJECTS[system]
    objects: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if system == "hubspot" and entry.name == "associations" and entry.is_dir():
            for assoc in sorted(entry.iterdir()):
                if assoc.name.startswith("."):
                    continue
                m = re.fullmatch(r"([a-z_]+?)_to_([a-z_]+)\.jsonl", assoc.name)
                if not assoc.is_file() or not m or (m.group(1), m.group(2)) not in HUBSPOT_ASSOCIATIONS:
                    pairs = ", ".join(f"{a}_to_{b}.jsonl" for a, b in HUBSPOT_ASSOCIATIONS)
                    raise _fail(assoc, None, f"unknown association file; known: {pairs}")
                key = f"associations/{m.group(1)}_to_{m.group(2)}"
                objects[key] = _read_jsonl(system, key, assoc)
            continue
        obj = entry.name.removesuffix(".jsonl")
        if not entry.is_file() or not entry.name.endswith(".jsonl") or obj not in known:
            raise _fail(entry, None, f"unknown {system} file; a {system} world holds "
                                     f"{', '.join(o + '.jsonl' for o in known)}"
                                     + (" and associations/<from>_to_<to>.jsonl" if system == "hubspot" else ""))
        objects[obj] = _read_jsonl(system, obj, entry, world.lines.setdefault(system, {}).setdefault(obj, {}))
    world.records[system] = objects


def jiandaoyun_options(app: dict[str, Any]) -> dict[str, Any]:
    """A world's ``jiandaoyun/app.yaml`` as the source's ``options`` (app_id, forms, currency,
    timezone; the forms' display ``name`` and ``flow`` are the emulator's)."""
    options: dict[str, Any] = {"app_id": app["app_id"], "forms": {
        str(k): {a: b for a, b in spec.items() if a not in ("name", "flow")} for k, spec in app["forms"].items()}}
    options.update({k: app[k] for k in ("currency", "timezone") if app.get(k)})
    return options


def _read_jiandaoyun(world: WorldDir, folder: Path) -> None:
    """``app.yaml`` (``app_id``, ``forms: {<key>: {entry_id, name, flow, fields, values, lines, entity,
    currency}}``, ``currency``, ``timezone``) and, per form, ``<key>.widgets.json`` (the
    ``/widget/list`` answer) and ``<key>.jsonl`` (its records)."""
    from connectors.jiandaoyun import parse_forms

    app = folder / "app.yaml"
    if not app.is_file():
        raise _fail(folder, None, "app.yaml is missing: app_id and forms (see docs/world.md)")
    try:
        data = yaml.safe_load(app.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(yaml_problem(app, exc, default_line=1)) from None
    if not isinstance(data, dict) or not isinstance(data.get("app_id"), str) or not isinstance(data.get("forms"), dict):
        raise _fail(app, 1, "app.yaml needs app_id (text) and forms (a mapping of form key -> entry_id, fields, ...)")
    bad = next((key for key, spec in data["forms"].items() if not isinstance(spec, dict)), None)
    if bad is not None:
        raise _fail(app, 1, f"forms.{bad} must be a mapping (entry_id, name, fields, ...)")
    options = jiandaoyun_options(data)
    forms_meta: list[dict[str, Any]] = [
        {"key": str(key), "entry_id": str(spec.get("entry_id")), "name": str(spec.get("name") or key),
         "flow": bool(spec.get("flow"))} for key, spec in data["forms"].items()]
    try:
        parse_forms("jiandaoyun", options)
    except Exception as exc:
        raise _fail(app, 1, str(exc)) from None
    known = {m["key"] for m in forms_meta}
    objects: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name == "app.yaml":
            continue
        stem = entry.name.removesuffix(".widgets.json").removesuffix(".jsonl")
        if not entry.is_file() or stem not in known or not entry.name.endswith((".widgets.json", ".jsonl")):
            raise _fail(entry, None, "unknown jiandaoyun file; the folder holds app.yaml and, per form of app.yaml, "
                                     "<form>.widgets.json and <form>.jsonl")
    for meta in forms_meta:
        wfile = folder / f"{meta['key']}.widgets.json"
        try:
            widgets = _loads(wfile.read_text(encoding="utf-8")) if wfile.is_file() else None
        except json.JSONDecodeError as exc:
            raise _fail(wfile, exc.lineno, f"not JSON ({exc.msg})") from None
        if not isinstance(widgets, dict) or not isinstance(widgets.get("widgets"), list):
            raise _fail(wfile, 1 if wfile.is_file() else None,
                        'the widget list is missing or not {"widgets": [{"name", "label", "type"}, ...]}')
        meta["widgets"] = widgets
        rfile = folder / f"{meta['key']}.jsonl"
        objects[meta["key"]] = _read_jsonl("jiandaoyun", meta["key"], rfile,
                                           world.lines.setdefault("jiandaoyun", {}).setdefault(meta["key"], {})) \
            if rfile.is_file() else []
    world.records["jiandaoyun"] = objects
    world.jiandaoyun = {"options": options, "forms": forms_meta}


def jiandaoyun_app(world: WorldDir) -> dict[str, Any]:
    """The emulator's ``world=`` of a Jiandaoyun world: app id and forms with widgets and records."""
    assert world.jiandaoyun is not None
    recs = world.records.get("jiandaoyun", {})
    return {"app_id": world.jiandaoyun["options"]["app_id"],
            "forms": [{"entry_id": m["entry_id"], "name": m["name"], "flow": m["flow"],
                       "widgets": m["widgets"]["widgets"], "records": recs.get(m["key"], [])}
                      for m in world.jiandaoyun["forms"]]}


def _check_jiandaoyun(world: WorldDir) -> None:
    """Every record maps with the mapping generated from app.yaml (labels resolved on the widget lists)."""
    from mappings.engine import compile_for, map_records
    from mappings.jiandaoyun import mapping_for
    from sandbox.world_readable import _stored

    assert world.jiandaoyun is not None
    app = world.path / "jiandaoyun" / "app.yaml"
    widgets = {m["entry_id"]: m["widgets"] for m in world.jiandaoyun["forms"]}
    try:
        mset = compile_for("jiandaoyun", "jiandaoyun", base=mapping_for("jiandaoyun", world.jiandaoyun["options"],
                                                                         widgets))
    except Exception as exc:
        raise _fail(app, 1, str(exc)) from None
    batch = [(None, key, str(rec["_id"]), _stored(rec), None)
             for key, recs in world.records.get("jiandaoyun", {}).items() for rec in recs]
    result = map_records(mset, batch)
    if result.rejected:
        bad = result.rejected[0]
        line = world.lines.get("jiandaoyun", {}).get(bad.object, {}).get(bad.source_id or "")
        raise _fail(world.path / "jiandaoyun" / f"{bad.object}.jsonl", line,
                    f"record {bad.source_id}: the mapping from app.yaml cannot read it "
                    f"({f'field {bad.field}: ' if bad.field else ''}{bad.reason})")


def _read_bank(world: WorldDir, folder: Path) -> None:
    for entry in _bank_entries(folder):
        if not entry.is_file() or entry.suffix.lower() != ".xml":
            raise _fail(entry, None, "unknown bank file; the bank directory holds camt.053 statements (*.xml)")
        _check_statement(entry)
        world.bank_files.append(entry)


def _bank_entries(folder: Path) -> list[Path]:
    return [e for e in sorted(folder.iterdir()) if not e.name.startswith(".")]


def _check_statement(entry: Path) -> tuple[str, str, tuple[str, list[Any]]]:
    """Parse a statement file as the import will (under its file name); raises InputError naming the
    file (its path). Returns ``(file hash, file name, the parse)``: see
    :func:`connectors.statements.offer_parsed`."""
    from connectors.statements import file_hash, parse_bytes

    data = entry.read_bytes()
    try:
        parsed = parse_bytes(data, entry.name)
    except InputError:
        parse_bytes(data, str(entry))  # raises the error naming the file's path
        raise
    if parsed[0] != "camt053":
        raise _fail(entry, 1, "not a camt.053 statement (ISO 20022 XML)")
    return file_hash(data), entry.name, parsed


FORK_BANK_FROM = 1_000_000  # bytes of statements: a bank folder this large is parsed in a forked child


def _start_bank(world: WorldDir, folder: Path) -> Pending[list[tuple[str, str, tuple[str, list[Any]]]]] | None:
    """The bank folder (read last): its files listed here and their parse (the check that each is a camt.053
    statement) started in a forked child when the statements are large, else None (the caller reads the folder
    with :func:`_read_bank`). The child's errors are raised by :meth:`WorldChecks.finish` before any readability
    problem (the order of a read), so it can start before the other systems are read, on the core that is idle
    while this process reads the first one."""
    from canonical.forking import Pending

    entries = _bank_entries(folder)
    if not all(e.is_file() and e.suffix.lower() == ".xml" for e in entries) \
            or sum(e.stat().st_size for e in entries) < FORK_BANK_FROM:
        return None
    world.bank_files.extend(entries)
    return Pending(partial(_check_statements, entries), name="ltc-sandbox")


def _check_statements(entries: list[Path]) -> list[tuple[str, str, tuple[str, list[Any]]]]:
    return [_check_statement(entry) for entry in entries]


def _read_fx(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != FX_HEADER:
            raise _fail(path, 1, f"the header must be {','.join(FX_HEADER)}")
        seen: dict[tuple[date, str, str], int] = {}
        for row in reader:
            n = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) != 4:
                raise _fail(path, n, f"expected 4 columns ({','.join(FX_HEADER)}), got {len(row)}")
            try:
                day = date.fromisoformat(row[0].strip())
            except ValueError:
                raise _fail(path, n, f"rate_date {row[0]!r} is not a date (YYYY-MM-DD)") from None
            try:
                base, quote = normalize_currency(row[1].strip()), normalize_currency(row[2].strip())
            except Exception:
                raise _fail(path, n, f"{row[1]!r}/{row[2]!r}: base and quote must be ISO 4217 codes") from None
            try:
                rate = Decimal(row[3].strip())
            except InvalidOperation:
                raise _fail(path, n, f"rate {row[3]!r} is not a decimal number") from None
            if not rate.is_finite() or rate <= 0:
                raise _fail(path, n, f"rate {row[3]!r} must be a positive decimal")
            key = (day, base, quote)
            if key in seen:
                raise _fail(path, n, f"duplicate rate for {base}/{quote} on {day} (first on line {seen[key]})")
            seen[key] = n
            rows.append({"rate_date": day, "base": base, "quote": quote, "rate": rate})
    return rows


def _check_readable(world: WorldDir, system: str) -> None:
    """Refuse a record the connector and mapping that serve it cannot read (``sandbox.world_readable``)."""
    with no_gc():  # serving, landing and mapping every record: many small dicts, no reference cycles
        _check_readable_records(world, system)


def _check_readable_records(world: WorldDir, system: str) -> None:
    from sandbox.world_readable import first_unreadable

    if system == "jiandaoyun":
        _check_jiandaoyun(world)
        return

    problem = first_unreadable(system, world.records.get(system, {}), world.mappings.get(system))
    if problem is not None:
        raise _unreadable(world, system, problem)


def _unreadable(world: WorldDir, system: str, problem: tuple[str, str, str]) -> InputError:
    obj, rid, what = problem
    where = world.path / system / f"{obj}.jsonl"
    return _fail(where, world.lines.get(system, {}).get(obj, {}).get(rid), f"record {rid}: {what}")


FORK_CHECK_FROM = 5_000  # records: a system this large is checked in a forked child (canonical.forking.Pending)
SPLIT_CHECK_FROM = 40_000
"""Records: a system this large is checked by two forked children, each over a share of its objects. The last
system read is checked after the reading ends, by itself: in one child that check alone was the replay's
critical path (a 20k-chain world: 6 s of Tryton check on one core, the other idle)."""


def _start_check(world: WorldDir, system: str) -> Pending[None] | _SplitCheck:
    """:func:`_check_readable` of a system just read: a large one starts at once in a forked child (two for a
    very large one, :class:`_SplitCheck`): the check serves and maps every record again, CPU work that the
    other core can do while this process reads the next system; a small one runs here when its result is
    asked for."""
    from canonical.forking import Pending, cores, forks
    from sandbox.world_readable import check_parts

    records = world.records.get(system, {})
    size = sum(len(recs) for recs in records.values())
    if size >= SPLIT_CHECK_FROM and system != "jiandaoyun" and forks() and cores() > 1:
        shares = check_parts(system, records, 2)
        if len(shares) > 1:
            return _SplitCheck(world, system, shares)
    return Pending(partial(_check_readable, world, system), fork=size >= FORK_CHECK_FROM, name="ltc-sandbox")


def _check_share(world: WorldDir, system: str, objects: list[str]) -> Any:
    from sandbox.world_readable import unreadable_in

    with no_gc():
        return unreadable_in(system, world.records.get(system, {}), world.mappings.get(system), objects)


class _SplitCheck:
    """One system's readability check in forked children, each over a share of its objects
    (``sandbox.world_readable.check_parts``); :meth:`result` raises the problem the whole check would name
    (the least ranked of the shares' first problems), after every share has answered."""

    def __init__(self, world: WorldDir, system: str, shares: list[list[str]]) -> None:
        from canonical.forking import Pending

        self._world, self._system = world, system
        self._shares = [Pending(partial(_check_share, world, system, share), name="ltc-sandbox") for share in shares]

    def result(self) -> None:
        from canonical.forking import results

        found = [f for f in results(self._shares) if f is not None]
        if found:
            raise _unreadable(self._world, self._system, min(found, key=lambda f: f[0])[1])

    def cancel(self) -> None:
        for share in self._shares:
            share.cancel()


def read_world(path: str | Path) -> WorldDir:
    """Read and check a world directory; raises InputError ``file:line: what to fix`` at the first problem."""
    world, checks = open_world(path)
    checks.finish()
    return world


class WorldChecks:
    """What is left of reading a world after :func:`open_world`: the readability checks running in
    forked children, then ``fx_rates.csv``."""

    def __init__(self, world: WorldDir, *, offer_statements: bool = False) -> None:
        self.world = world
        self._checks: list[Pending[None] | _SplitCheck] = []
        self._bank: Pending[list[tuple[str, str, tuple[str, list[Any]]]]] | None = None
        self._offer = offer_statements

    def finish(self, meanwhile: Callable[[], object] | None = None) -> None:
        """Wait for the checks and read ``fx_rates.csv``; raises what :func:`read_world` would.

        ``meanwhile``: called once the checks that run in this process are done (those of the small systems,
        which read the records here), while the forked ones still run: a caller whose emulators' child has the
        records lets go of this process's copy then (:meth:`WorldDir.forget_records`), off the replay's path (at
        20k chains 1.1 s here, while the last system's checks ran for 3.5 s more). The problem raised is the one
        the checks name first in order, as without it."""
        from canonical.forking import Pending

        try:
            here: dict[int, BaseException | None] = {}  # the checks run here, by place: their problem, if any
            if meanwhile is not None:
                for n, check in enumerate(self._checks):
                    if isinstance(check, Pending) and not check.forked:
                        try:
                            check.result()
                        except Exception as exc:  # raised below, in its turn
                            here[n] = exc
                        else:
                            here[n] = None
                meanwhile()
            if self._bank is not None:  # a statement that does not parse is a reading problem: raised first
                statements = self._bank.result()
                if self._offer:  # the import of the bank folder then does not parse them again
                    from connectors.statements import offer_parsed

                    for digest, name, parsed in statements:
                        offer_parsed(digest, name, parsed)
            for n, check in enumerate(self._checks):  # the first system's problem in order, as if checked one by one
                if n not in here:
                    check.result()
                elif (problem := here[n]) is not None:
                    raise problem
        finally:
            self.cancel()
        fx = self.world.path / "fx_rates.csv"
        if fx.exists():
            self.world.fx_rates = _read_fx(fx)

    def cancel(self) -> None:
        """Stop the checks still running (the world is not to be used)."""
        for check in [self._bank, *self._checks]:
            if check is not None:
                check.cancel()


def open_world(path: str | Path, *, offer_statements: bool = False) -> tuple[WorldDir, WorldChecks]:
    """:func:`read_world` in two steps: read every file (raising at the first problem found while
    reading), the readability checks of the large systems started in forked children; then
    :meth:`WorldChecks.finish`, which raises what :func:`read_world` would. Between the two a
    caller can prepare what needs the records (the emulators' indexes:
    ``sandbox.run.start_world_process``), but nothing may serve or load the world before ``finish()``
    returned; a caller that does not call it calls ``cancel()``. With ``offer_statements``, the bank
    statements parsed by the check are offered to their import (:func:`connectors.statements.offer_parsed`)."""
    root = Path(path)
    if not root.is_dir():
        raise _fail(root, None, "world directory does not exist or is not a directory")
    world, lines, manifest = _manifest(root)
    for s in world.systems:
        if not (root / s).is_dir():
            raise _fail(manifest, lines.get("systems", 1), f"system {s!r} has no directory {root / s}; "
                                                            "create it or remove the system")
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.name in ("world.yaml", "fx_rates.csv"):
            continue
        if entry.is_dir() and entry.name in world.systems:
            continue
        if entry.is_dir() and entry.name == "mappings":  # the mapping overrides world.yaml names
            continue
        if entry.is_dir() and entry.name in SYSTEMS:
            raise _fail(entry, None, f"directory of system {entry.name!r}, which world.yaml's systems does "
                                     "not list; add it to systems or remove the directory")
        raise _fail(entry, None, "unknown file or directory in a world; a world holds world.yaml, "
                                 "fx_rates.csv, one directory per system and mappings/")
    pending = WorldChecks(world, offer_statements=offer_statements)
    try:
        _read_systems(world, pending)
    except BaseException:
        pending.cancel()
        raise
    return world, pending


def _read_systems(world: WorldDir, pending: WorldChecks) -> None:
    """Read every system's files, starting each one's readability check as it is read. The cyclic
    collector is off meanwhile: a world is hundreds of thousands of small acyclic records, and each
    collection would scan all those read so far again (a third of the reading's time)."""
    root = world.path
    with no_gc():
        last = world.systems[-1]
        if last == "bank":  # large statements: parsed in a child from the start, beside this process's reading
            pending._bank = _start_bank(world, root / last)
        for n, s in enumerate(world.systems):
            if s == "bank" and n == len(world.systems) - 1:  # parsed in the child started above, or read here now
                if pending._bank is None:
                    _read_bank(world, root / s)
                continue
            _read_system(world, s)
            if s in world.api_systems:
                pending._checks.append(_start_check(world, s))

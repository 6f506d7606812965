"""Field discovery: find identifier fields in landed raw records that no mapping reads.

:func:`profile_records` looks at the raw payloads of one source object (every scalar at depth one
or two: ``VAT_Number__c``, ``properties.tax_id_cn``, ``metadata.erp_so``) and, for each field the
source's mapping does not read, counts the values that

* validate as a tax id with the official check digits (python-stdnum): an EU or other
  country-prefixed VAT number, a China USCC (统一社会信用代码, 18 characters with its check
  character), a US EIN written ``NN-NNNNNNN`` with an assigned prefix;
* equal (case, spaces and punctuation aside) a deal id, an order number, an invoice number or an
  account's tax id known from *another* system's canonical rows.

Each field becomes a :class:`Finding` with its match counts and the canonical field it should fill
(``tax_id`` of an account; ``deal_ref`` / ``order_ref`` / ``invoice_ref`` of the entities that have
them). :func:`override_text` writes the findings as a mapping override (the format of
``sources.<name>.mapping``, see :mod:`mappings.spec`), ready to paste or to merge with
:func:`write_override`; :func:`override_node` is the same override in memory, which the
application layer applies automatically for the high-confidence findings.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
import yaml

from canonical import model, tables
from canonical.store import Store
from mappings.spec import MappingError, Node, load_file, load_mapping, node_of

SAMPLE = 2000  # newest raw records profiled per source object (a sample: a field is a property of the object)
MIN_VALUES = 2  # a field needs at least this many matching values to be proposed
HIGH_SHARE = 0.8  # tax ids: share of the field's values that validate, for a high-confidence finding
REF_HIGH_SHARE = 0.5  # references: share of the values that match a known identifier
_MAX_TEXT = 64  # longer texts are free text, not identifier fields

# kind of identifier -> the canonical field it fills
REF_TARGETS = {"deal_id": "deal_ref", "order_number": "order_ref", "invoice_number": "invoice_ref"}


@dataclass
class Finding:
    """One unmapped raw field whose values look like (or match) identifiers."""

    system: str
    object: str
    entity: str
    path: str
    kind: str  # tax_id | deal_id | order_number | invoice_number
    target: str  # the canonical field proposed
    values: int  # records with a non-empty value
    matches: int  # values that validate / match a known identifier
    detail: dict[str, int] = field(default_factory=dict)  # tax-id scheme or matched system -> count
    examples: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)  # paths the mapping already reads for ``target``

    @property
    def share(self) -> float:
        return self.matches / self.values if self.values else 0.0

    @property
    def confidence(self) -> str:
        need = HIGH_SHARE if self.kind == "tax_id" else REF_HIGH_SHARE
        return "high" if self.matches >= MIN_VALUES and self.share >= need else "low"

    def reason(self) -> str:
        how = ", ".join(f"{k} {v}" for k, v in sorted(self.detail.items()))
        what = "validate as tax ids" if self.kind == "tax_id" else f"equal a known {self.kind.replace('_', ' ')}"
        return f"{self.matches} of {self.values} values {what} ({how})"

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(confidence=self.confidence, reason=self.reason())
        return out


# --- what a value is ---------------------------------------------------------------------------------

def _compact(value: str) -> str:
    return re.sub(r"[\s.\-/_]", "", unicodedata.normalize("NFKC", value).upper())


def tax_id_scheme(value: Any) -> str | None:
    """The tax-id scheme whose check digits ``value`` passes (``CN USCC``, ``VAT DE``, ``US EIN``), or None."""
    if not isinstance(value, str) or not 8 <= len(value.strip()) <= 24:
        return None
    from stdnum import vatin
    from stdnum.cn import uscc
    from stdnum.us import ein

    text = unicodedata.normalize("NFKC", value).strip()
    compact = _compact(text)
    if len(compact) == 18 and uscc.is_valid(compact):
        return "CN USCC"
    if re.fullmatch(r"[A-Z]{2}[0-9A-Z+*]{2,14}", compact) and not compact[2:].isalpha():
        try:
            if vatin.is_valid(compact):
                return f"VAT {compact[:2]}"
        except Exception:  # a country module that cannot tell: not evidence
            return None
    if re.fullmatch(r"\d{2}-\d{7}", text) and ein.is_valid(text):
        return "US EIN"
    return None


_REF_PUNCT = re.compile(r"[\s\-_./#:]")


def normalize_ref(value: Any) -> str | None:
    """An identifier compared across systems: upper-case, without spaces and punctuation."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = _REF_PUNCT.sub("", text.upper())
    return text if 3 <= len(text) <= _MAX_TEXT else None


def _known_tax_id(text: str, known: Mapping[str, Mapping[str, str]], system: str) -> str | None:
    """``"= <system> tax id"`` when the value is a tax id another system's accounts carry."""
    where = known.get("tax_id", {}).get(_compact(text))
    return f"= {where} tax id" if where is not None and where != system else None


# --- the raw side ------------------------------------------------------------------------------------

def flatten(payload: Any) -> Iterable[tuple[str, Any]]:
    """``(path, value)`` of every scalar at depth one or two (``Name``, ``properties.tax``,
    ``metadata.x``; a Tryton dotted read ``"party."`` as ``party.name``); lists are skipped."""
    if not isinstance(payload, dict):
        return
    for key, value in payload.items():
        if not isinstance(key, str):
            continue
        name = key[:-1] if key.endswith(".") else key
        if isinstance(value, dict):
            if "__class__" in value:  # a Tryton tagged value (a date, a Decimal): not an identifier
                continue
            for sub, inner in value.items():
                if isinstance(sub, str) and isinstance(inner, str | int) and not isinstance(inner, bool):
                    yield f"{name}.{sub}", inner
        elif isinstance(value, str | int) and not isinstance(value, bool):
            yield name, value


def _paths_in(spec: Any, out: set[str]) -> None:
    if isinstance(spec, str):
        out.add(spec)
        return
    if isinstance(spec, dict):
        for key in ("from", "args", "currency_from", "map_by"):
            v = spec.get(key)
            if isinstance(v, str):
                out.add(v)
            elif isinstance(v, list):
                out.update(p for p in v if isinstance(p, str))
        if "or" in spec:
            _paths_in(spec["or"], out)


def read_paths(obj_spec: Any) -> set[str]:
    """Every path an object's mapping reads (its fields and its children's ``each``). ``ref_text`` is
    left out: it is a bag of free text that reference discovery searches by value, not a key the
    mapping reads as one, so a reference field under it is still worth proposing as a key."""
    out: set[str] = set()
    if not isinstance(obj_spec, dict):
        return out
    for name, spec in (obj_spec.get("fields") or {}).items():
        if name == "ref_text":
            continue
        _paths_in(spec, out)
    for key in ("when", "deleted_if"):
        if isinstance(obj_spec.get(key), dict):
            out.update(str(k) for k in obj_spec[key])
    for child in obj_spec.get("children") or []:
        if isinstance(child, dict) and isinstance(child.get("each"), str):
            out.add(child["each"])
    return out


def _is_read(path: str, read: set[str]) -> bool:
    return any(path == r or r.startswith(path + ".") or path.startswith(r + ".") for r in read)


def field_from(obj_spec: Any, target: str) -> list[str]:
    """The paths an object's mapping reads for canonical field ``target`` (empty if unmapped)."""
    spec = (obj_spec.get("fields") or {}).get(target) if isinstance(obj_spec, dict) else None
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, dict):
        src = spec.get("from")
        if isinstance(src, str):
            return [src]
        if isinstance(src, list):
            return [p for p in src if isinstance(p, str)]
    return []


def _entity_fields(entity: str) -> set[str]:
    cls = model.ENTITIES.get(entity)
    return {f.name for f in dataclasses.fields(cls)} if cls is not None else set()


Candidate = tuple[str, str, str | None, str | None]  # (path, text, tax id scheme, normalised reference)


def candidates(obj_spec: Any, payloads: Iterable[Any]) -> list[Candidate]:
    """The values of ``payloads`` the mapping does not read, with what is known of each without the
    store: ``(path, text, tax id scheme or None, normalised reference or None)``. The part of the
    profiling that does not depend on the identifiers already known (:func:`discover` keeps it for a
    second pass over the same sample)."""
    entity = str(obj_spec.get("entity", "")) if isinstance(obj_spec, dict) else ""
    with_tax = "tax_id" in _entity_fields(entity)
    read = read_paths(obj_spec)
    skip: dict[str, bool] = {}  # path -> read by the mapping (a record has few distinct paths)
    out: list[Candidate] = []
    append = out.append
    for payload in payloads:
        for path, value in flatten(payload):
            skipped = skip.get(path)
            if skipped is None:
                skipped = skip[path] = path in ("id", "Id") or _is_read(path, read)
            if skipped:
                continue
            text = str(value).strip()
            if not text or len(text) > _MAX_TEXT:
                continue
            append((path, text, tax_id_scheme(text) if with_tax else None, normalize_ref(value)))
    return out


def profile_records(system: str, obj: str, obj_spec: Any, payloads: Iterable[Any],
                    known: Mapping[str, Mapping[str, str]]) -> list[Finding]:
    """The findings of one source object. ``known``: identifier kind -> {normalised value: system}."""
    return profile_candidates(system, obj, obj_spec, candidates(obj_spec, payloads), known)


def profile_candidates(system: str, obj: str, obj_spec: Any, found: Iterable[Candidate],
                       known: Mapping[str, Mapping[str, str]]) -> list[Finding]:
    """The findings of one source object from its :func:`candidates`."""
    entity = str(obj_spec.get("entity", "")) if isinstance(obj_spec, dict) else ""
    fields = _entity_fields(entity)
    with_tax = "tax_id" in fields
    values: Counter[str] = Counter()
    taxes: dict[str, Counter[str]] = defaultdict(Counter)
    refs: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)  # (path, kind) -> system -> n
    examples: dict[tuple[str, str], list[str]] = defaultdict(list)
    ref_kinds = [(kind, index) for kind, index in known.items() if kind in REF_TARGETS and REF_TARGETS[kind] in fields]
    for path, text, scheme, ref in found:
        values[path] += 1
        if with_tax and (scheme := scheme or _known_tax_id(text, known, system)):
            taxes[path][scheme] += 1
            if len(examples[(path, "tax_id")]) < 3:
                examples[(path, "tax_id")].append(text)
        if not ref_kinds or ref is None:
            continue
        for kind, index in ref_kinds:
            if (where := index.get(ref)) is not None and where != system:
                refs[(path, kind)][where] += 1
                if len(examples[(path, kind)]) < 3:
                    examples[(path, kind)].append(text)
    out: list[Finding] = []
    for path, schemes in taxes.items():
        n = sum(schemes.values())
        if n >= MIN_VALUES:
            out.append(Finding(system, obj, entity, path, "tax_id", "tax_id", values[path], n, dict(schemes),
                               examples[(path, "tax_id")], field_from(obj_spec, "tax_id")))
    for (path, kind), systems in refs.items():
        n = sum(systems.values())
        if n >= MIN_VALUES:
            target = REF_TARGETS[kind]
            out.append(Finding(system, obj, entity, path, kind, target, values[path], n, dict(systems),
                               examples[(path, kind)], field_from(obj_spec, target)))
    out.sort(key=lambda f: (f.object, f.target, -f.share, -f.matches, f.path))
    return out


# --- the store -----------------------------------------------------------------------------------------

_KNOWN = {"deal_id": ("deal", "source_id"), "order_number": ("order", "number"),
          "invoice_number": ("invoice", "number")}


def known_identifiers(store: Store) -> dict[str, dict[str, str]]:
    """Identifier kind (and ``tax_id``) -> {normalised value: the system it belongs to}, from the
    canonical rows (one query per kind: a hash index, looked up per value)."""
    out: dict[str, dict[str, str]] = {}
    with store.engine.connect() as conn:
        for kind, (entity, column) in _KNOWN.items():
            table = tables.table_for(entity)
            rows = conn.execute(sa.select(table.c.source_system, table.c[column])
                                .where(table.c.deleted_at.is_(None), table.c[column].is_not(None)))
            index: dict[str, str] = {}
            for system, value in rows:
                ref = normalize_ref(value)
                if ref is not None:
                    index.setdefault(ref, system)
            out[kind] = index
        acc = tables.table_for("account")
        taxes: dict[str, str] = {}
        for system, value in conn.execute(sa.select(acc.c.source_system, acc.c.tax_id)
                                          .where(acc.c.deleted_at.is_(None), acc.c.tax_id.is_not(None))):
            if len(compact := _compact(str(value))) >= 5:
                taxes.setdefault(compact, system)
        out["tax_id"] = taxes
    return out


def _raw_objects(store: Store, system: str) -> list[str]:
    c = tables.raw_record.c
    with store.engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(sa.select(c.object).where(c.system == system).distinct()))


def _payloads(store: Store, system: str, obj: str, sample: int) -> list[Any]:
    c = tables.raw_record.c
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(sa.cast(c.payload, sa.Text)).where(
            c.system == system, c.object == obj, c.deleted.is_(False)).order_by(c.id.desc()).limit(sample))
        return [orjson.loads(r[0]) for r in rows if r[0] is not None]


def discover(store: Store, sources: Mapping[str, tuple[str, str | None]], only: str | None = None, *,
             sample: int = SAMPLE, generated: Mapping[str, Node] | None = None,
             profiled: dict[tuple[str, str], list[Candidate]] | None = None,
             known: Mapping[str, Mapping[str, str]] | None = None) -> list[Finding]:
    """Findings for every landed system with a mapping (``sources``: name -> (kind, override path);
    ``generated``: name -> the mapping generated from the source's configuration, for the kinds that
    ship none — Jiandaoyun).

    ``profiled``: (system, object) -> its sample's :func:`candidates`, filled on a first call and
    reused by a later one with the same ``sources``, ``generated`` and raw records (only the
    identifiers known have changed, e.g. after a mapping): the sample is read and profiled once.
    ``known``: the identifiers to match (:func:`known_identifiers`) as read earlier, else read now."""
    c = tables.raw_record.c
    with store.engine.connect() as conn:
        systems = sorted(r[0] for r in conn.execute(sa.select(c.system).distinct()))
    out: list[Finding] = []
    for system in systems:
        if only is not None and system != only:
            continue
        objects = _object_specs(system, sources, generated)
        if objects is None:
            continue  # no mapping for it: nothing is mapped, nothing to extend
        for obj in _raw_objects(store, system):
            spec = objects.get(obj)
            if not isinstance(spec, dict):
                continue  # unmapped, or mapped to several entities (Odoo's partners): not extended here
            if known is None:
                known = known_identifiers(store)
            found = profiled.get((system, obj)) if profiled is not None else None
            if found is None:
                found = candidates(spec, _payloads(store, system, obj, sample))
                if profiled is not None:
                    profiled[(system, obj)] = found
            out += profile_candidates(system, obj, spec, found, known)
    return out


def _object_specs(system: str, sources: Mapping[str, tuple[str, str | None]],
                  generated: Mapping[str, Node] | None) -> dict[str, Any] | None:
    """The system's mapping objects (generated, else shipped + override), or None without a mapping."""
    kind, override = sources.get(system, (system, None))
    try:
        base = (generated or {}).get(system)
        mapping = base if base is not None else load_mapping(kind, override)
    except MappingError:
        return None
    return mapping.get("objects") or {}


def sample_candidates(store: Store, system: str, sources: Mapping[str, tuple[str, str | None]], *,
                      profiled: dict[tuple[str, str], list[Candidate]], sample: int = SAMPLE,
                      generated: Mapping[str, Node] | None = None) -> None:
    """The :func:`candidates` of each object of ``system``'s sample, into ``profiled``: the part of
    :func:`discover` that does not depend on the identifiers known, done ahead of it (the pipeline
    does it once a source's sync has ended, while others still sync). Valid for a later
    :func:`discover` with the same ``sources`` and ``generated`` while ``system``'s raw records stay as they are."""
    objects = _object_specs(system, sources, generated)
    if objects is None:
        return  # no mapping for it: nothing to profile
    for obj in _raw_objects(store, system):
        spec = objects.get(obj)
        if isinstance(spec, dict) and (system, obj) not in profiled:
            profiled[(system, obj)] = candidates(spec, _payloads(store, system, obj, sample))


def from_evidence(evidence: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """Findings back from their recorded form (:meth:`Finding.as_dict`)."""
    names = {f.name for f in dataclasses.fields(Finding)}
    return [Finding(**{k: v for k, v in d.items() if k in names}) for d in evidence]


# --- the override --------------------------------------------------------------------------------------

def best(findings: Iterable[Finding], *, high_only: bool = False) -> list[Finding]:
    """One finding per (system, object, target): the best share, then the most matches."""
    chosen: dict[tuple[str, str, str], Finding] = {}
    for f in findings:
        if high_only and f.confidence != "high":
            continue
        key = (f.system, f.object, f.target)
        cur = chosen.get(key)
        if cur is None or (f.share, f.matches) > (cur.share, cur.matches):
            chosen[key] = f
    return [chosen[k] for k in sorted(chosen)]


def _field_spec(f: Finding) -> dict[str, Any]:
    paths = [*f.existing, f.path] if f.path not in f.existing else list(f.existing)
    spec: dict[str, Any] = {"from": paths[0] if len(paths) == 1 else paths}
    if f.target == "tax_id":
        spec["coerce"] = "tax_id"
    return spec


def override_dict(findings: Iterable[Finding]) -> dict[str, dict[str, Any]]:
    """system -> an override ``{objects: {obj: {fields: {...}}}}`` of the best finding per field."""
    out: dict[str, dict[str, Any]] = {}
    for f in best(findings):
        objects = out.setdefault(f.system, {"objects": {}})["objects"]
        objects.setdefault(f.object, {"fields": {}})["fields"][f.target] = _field_spec(f)
    return out


def override_node(findings: Iterable[Finding], system: str) -> Node | None:
    """The override of ``system`` as a mapping :class:`Node` (merged like an override file), or None."""
    data = override_dict(f for f in findings if f.system == system).get(system)
    if data is None:
        return None
    return node_of(data, f"<discovered fields of {system}>")


def override_text(findings: list[Finding], system: str) -> str:
    """A ready-to-paste override file for ``system``, one comment with the evidence per field."""
    chosen = [f for f in best(findings) if f.system == system]
    if not chosen:
        return ""
    lines = [f"# Discovered by `ltc mappings suggest --source {system}`: identifier fields no mapping read.",
             "objects:"]
    for obj in sorted({f.object for f in chosen}):
        lines += [f"  {_yaml_key(obj)}:", "    fields:"]
        for f in (f for f in chosen if f.object == obj):
            lines.append(f"      # {f.path}: {f.reason()}; {f.confidence} confidence; e.g. {', '.join(f.examples)}")
            flow = yaml.safe_dump(_field_spec(f), default_flow_style=True, allow_unicode=True, width=1000,
                                  sort_keys=False).strip()
            lines.append(f"      {f.target}: {flow}")
    return "\n".join(lines) + "\n"


def _yaml_key(key: str) -> str:
    return yaml.safe_dump(key, default_style=None).strip().removesuffix("...").strip()


def write_override(path: str | Path, findings: list[Finding], system: str) -> list[Finding]:
    """Merge the best findings of ``system`` into the override file ``path`` (created if missing);
    fields the file already sets are kept. Returns the findings written."""
    p = Path(path)
    data: dict[str, Any] = {}
    if p.exists():
        data = _plain(load_file(p))  # refuses what is not a mapping file
    objects = data.setdefault("objects", {}) or {}
    data["objects"] = objects
    written: list[Finding] = []
    for f in (f for f in best(findings) if f.system == system):
        obj = objects.setdefault(f.object, {}) or {}
        objects[f.object] = obj
        fields = obj.setdefault("fields", {}) or {}
        obj["fields"] = fields
        if f.target in fields:
            continue
        fields[f.target] = _field_spec(f)
        written.append(f)
    if written:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return written


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


__all__ = ["Finding", "best", "discover", "known_identifiers", "override_node", "override_text",
           "profile_records", "tax_id_scheme", "write_override"]

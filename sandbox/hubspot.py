"""A HubSpot CRM v3/v4 emulator: exactly the subset ltc-hub's connector uses, with HubSpot's shapes.

Served as an ASGI app (``HubSpotEmulator(...).app``) by ``sandbox.server``. Data is generated
deterministically from ``seed`` and ``size`` (number of deals; other objects are proportional) and
lives in memory. Shapes follow reference/api_facts.md §2:

* objects ``{id, properties, createdAt, updatedAt, archived[, archivedAt]}``; every property value a
  string (or null); ids are strings; ``paging.next.after`` on every non-final page, absent on the last;
* ``GET /crm/v3/objects/{type}`` (limit ≤ 100, ``after``, ``properties``/``associations`` repeated or
  comma-separated, ``archived`` parsed case-insensitively), ``GET .../{id}``, ``POST .../batch/read``;
* ``POST /crm/v3/objects/{type}/search``: AND-within-group / OR-across-groups filters, one sort,
  ``limit`` ≤ 200, ``total``, and **400 when paging at or past 10,000 results** (as HubSpot does);
  contacts carry ``lastmodifieddate`` (not ``hs_lastmodifieddate``), so filtering them on the wrong
  property matches nothing — the silent-gap trap HubSpot sets;
* ``POST /crm/v4/associations/{from}/{to}/batch/read`` and ``GET /crm/v4/objects/{from}/{id}/associations/{to}``
  with HubSpot's default association type ids; association edits do not bump ``hs_lastmodifieddate``;
* ``GET /crm/v3/properties/{type}``, ``GET /crm/v3/pipelines/{type}`` (string stage metadata), ``GET /crm/v3/owners/``;
* writes: ``POST /crm/v3/objects/{type}/batch/update`` (``{inputs: [{id, properties}]}``, at most 100
  inputs or 400; a property that does not exist, is read-only or has a value of the wrong type fails the
  whole batch with 400 ``VALIDATION_ERROR``; ids that do not exist (or are archived) and records refused by
  :attr:`HubSpotEmulator.write_faults` come back as **207 Multi-Status** with ``numErrors`` and ``errors``
  ``[{status, category, message, context: {ids}}]`` next to the ``results`` of the others); an update bumps
  ``hs_lastmodifieddate``/``updatedAt``. Properties API: ``GET|POST /crm/v3/properties/{type}/groups``
  and ``POST /crm/v3/properties/{type}`` (201; **409** ``OBJECT_ALREADY_EXISTS`` for an existing name, 400
  for an unknown group or type);
* imports: ``POST /crm/v3/imports`` (multipart/form-data: ``importRequest`` JSON + ``files``; each file's
  ``fileName`` must name an uploaded part, its ``columnMappings`` its header columns in order; CSV, at most
  1,048,576 rows; ``importOperations`` per object type id ``CREATE`` | ``UPDATE`` | ``UPSERT``; only
  ``UPDATE`` by a ``HUBSPOT_OBJECT_ID`` column is emulated) answers ``{id, state: STARTED, ...}``; the
  rows are applied at once, ``GET /crm/v3/imports/{id}`` reads ``PROCESSING`` (:attr:`import_polls`
  times) then ``DONE`` with ``metadata.counters``; ``GET /crm/v3/imports/{id}/errors`` pages the refused
  rows (``errorType``, ``invalidValue``, ``sourceData.rowData`` / ``lineNumber``). A blank cell leaves a
  property as it is (imports never clear a value);
* ``X-HubSpot-RateLimit-Daily[-Remaining]`` on every response and the interval headers
  (``-Max``/``-Remaining``/``-Interval-Milliseconds``) on every non-search response; 429 bodies carry
  ``policyName`` ``TEN_SECONDLY_ROLLING`` | ``SECONDLY`` | ``DAILY`` and no ``Retry-After``.

Switchable faults: ``latency_ms``; ``rate_limits`` (enforce ``burst_max`` per ``burst_interval_ms``
rolling, ``search_per_s`` rolling per second for search, ``daily_limit``; refused requests do not
count); ``error_rate`` (random 500/502/503); ``timeout_rate`` (answer after ``timeout_s``);
``max_url`` (414 beyond); ``other_apps_rps`` (other apps of the portal eat into the burst window:
a 429 storm); late visibility (``visible_at_ms`` on writes); bursts of modifications in one
window (:meth:`burst`); archives; association-only edits.
"""

from __future__ import annotations

import asyncio
import bisect
import csv
import io
import json
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.parser import BytesParser
from email.policy import default as email_default
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BASE_MS = 1767225600000  # 2026-01-01T00:00:00Z: seeded records are modified after this instant
TOKEN = "pat-na1-sandbox-0000"
SEARCH_CAP = 10_000
LIST_MAX = 100
SEARCH_MAX = 200

# (from, to) -> HubSpot-defined association type ids (reference/api_facts.md §2.4); first is primary.
TYPE_IDS: dict[tuple[str, str], tuple[int, ...]] = {
    ("deals", "companies"): (5, 341), ("companies", "deals"): (6, 342),
    ("deals", "contacts"): (3,), ("contacts", "deals"): (4,),
    ("deals", "line_items"): (19,), ("line_items", "deals"): (20,),
    ("deals", "quotes"): (63,), ("quotes", "deals"): (64,),
}
# HubSpot object type ids (imports, schemas): deals 0-3, companies 0-2, contacts 0-1, line items 0-8, products 0-7
OBJECT_TYPE_IDS = {"contacts": "0-1", "companies": "0-2", "deals": "0-3", "products": "0-7", "line_items": "0-8"}
SINGULAR = {"deals": "deal", "companies": "company", "contacts": "contact", "line_items": "line_item",
            "products": "product", "quotes": "quote"}
STAGES = [("appointmentscheduled", "Appointment Scheduled", "0.2", "false"),
          ("qualifiedtobuy", "Qualified To Buy", "0.4", "false"),
          ("presentationscheduled", "Presentation Scheduled", "0.6", "false"),
          ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", "false"),
          ("contractsent", "Contract Sent", "0.9", "false"),
          ("closedwon", "Closed Won", "1.0", "true"),
          ("closedlost", "Closed Lost", "0.0", "true")]
DATETIME_PROPS = {"createdate", "hs_lastmodifieddate", "lastmodifieddate", "closedate", "hs_expiration_date"}
NUMBER_PROPS = {"hs_object_id", "amount", "price", "quantity", "discount", "hs_product_id", "hs_quote_amount"}
STANDARD: dict[str, tuple[str, ...]] = {
    "deals": ("dealname", "amount", "dealstage", "pipeline", "closedate", "deal_currency_code",
              "hubspot_owner_id", "createdate", "hs_lastmodifieddate", "hs_object_id"),
    "companies": ("name", "domain", "country", "hubspot_owner_id", "createdate", "hs_lastmodifieddate",
                  "hs_object_id"),
    "contacts": ("firstname", "lastname", "email", "phone", "createdate", "lastmodifieddate", "hs_object_id"),
    "line_items": ("name", "quantity", "price", "amount", "discount", "hs_product_id", "hs_sku",
                   "createdate", "hs_lastmodifieddate", "hs_object_id"),
    "products": ("name", "price", "hs_sku", "description", "createdate", "hs_lastmodifieddate", "hs_object_id"),
    "quotes": ("hs_title", "hs_status", "hs_expiration_date", "hs_quote_amount", "hs_currency",
               "hs_esign_enabled", "createdate", "hs_lastmodifieddate", "hs_object_id"),
}
DEFAULTS: dict[str, tuple[str, ...]] = {
    "deals": ("dealname", "amount", "dealstage", "pipeline", "closedate", "createdate", "hs_lastmodifieddate",
              "hs_object_id"),
    "contacts": ("firstname", "lastname", "email", "createdate", "lastmodifieddate", "hs_object_id"),
}


_DAYS: dict[int, str] = {}


def iso_ms(ms: int) -> str:
    """HubSpot's instant format: ISO 8601, milliseconds, ``Z`` (hot in the emulator: no strftime)."""
    days, rem = divmod(ms, 86_400_000)
    day = _DAYS.get(days)
    if day is None:
        day = _DAYS[days] = datetime.fromtimestamp(days * 86_400, UTC).strftime("%Y-%m-%d")
    hours, rem = divmod(rem, 3_600_000)
    minutes, rem = divmod(rem, 60_000)
    seconds, millis = divmod(rem, 1000)
    return f"{day}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def _ms(text: str) -> int:
    """An ISO 8601 instant (``...Z`` or with an offset) as epoch milliseconds."""
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def modified_prop(obj: str) -> str:
    return "lastmodifieddate" if obj == "contacts" else "hs_lastmodifieddate"


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _multi(request: Request, key: str) -> list[str]:
    """Repeated (``properties=a&properties=b``, the SDK) or comma-separated (``properties=a,b``) params."""
    out: list[str] = []
    for value in request.query_params.getlist(key):
        out.extend(v for v in value.split(",") if v)
    return out


@dataclass
class Rec:
    id: int
    props: dict[str, str | None]
    created: int
    updated: int
    visible_at: int
    archived: bool = False
    archived_at: int | None = None


@dataclass(frozen=True)
class _RawJSON:
    """A response body already serialised (pages assembled from cached record JSON)."""

    text: str


@dataclass(frozen=True)
class _Status:
    """A response body with a status other than 200 (201 Created, 207 Multi-Status)."""

    status: int
    body: Any


PROPERTY_TYPES = {"string": {"text", "textarea", "html", "phonenumber", "file"}, "number": {"number", "calculation_equation"},
                  "date": {"date"}, "datetime": {"date"}, "bool": {"booleancheckbox"},
                  "enumeration": {"select", "radio", "checkbox", "booleancheckbox"}}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class _Reject(Exception):
    def __init__(self, status: int, body: dict[str, Any]):
        self.status, self.body = status, body


def _error(status: int, message: str, category: str, **extra: Any) -> _Reject:
    return _Reject(status, {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                            "category": category, **extra})


@dataclass
class HubSpotEmulator:
    seed: int = 7
    size: int = 1000
    token: str = TOKEN
    products: int = 20
    owners: int = 10
    companies: int | None = None  # default size // 5
    contacts: int | None = None  # default size // 2
    line_items: bool = True  # one line item per deal
    custom_properties: int = 0
    custom_property_name_len: int = 30
    latency_ms: int = 0
    rate_limits: bool = False
    burst_max: int = 190
    burst_interval_ms: int = 10_000
    search_per_s: int = 5
    daily_limit: int = 1_000_000
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_s: float = 2.0
    max_url: int = 8_192
    other_apps_rps: float = 0.0
    search_cap: int = SEARCH_CAP  # HubSpot: 10,000 (tests shrink it to exercise bisection cheaply)
    assoc_page: int = 500  # associations per record per page (v4 batch/read, then the per-record route)
    oauth: bool = False
    edit_gap_ms: int = 50  # seeded records are modified 1..edit_gap_ms apart (a portal's history spread out)
    clock: Callable[[], float] = time.time
    world: dict[str, list[dict[str, Any]]] | None = field(default=None, repr=False)
    # (object, id) -> (category, message): batch updates of these records are refused (207 errors)
    write_faults: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)
    scopes: set[str] | None = None  # the private app's granted scopes (None: all); writes check theirs
    import_polls: int = 1  # status reads of an import answered PROCESSING before it is DONE
    drop_list_paging: bool = False  # fault: the list endpoint ends after page 1 (no ``paging`` on a full page)
    drop_search_paging: bool = False  # fault: search pages come without ``paging`` (``total`` still right)
    search_results_max: int | None = None  # fault: a search page holds at most this many results, whatever the limit
    objects: dict[str, dict[int, Rec]] = field(init=False, repr=False)
    served: dict[str, int] = field(init=False)
    statuses: dict[int, int] = field(init=False)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._rng = random.Random(self.seed)
        self._fault_rng = random.Random(self.seed + 1)
        self._burst: deque[float] = deque()
        self._search: deque[float] = deque()
        self.daily_used = 0
        self._other_last = self.clock()
        self._json_cache: dict[tuple[str, int], tuple[Any, str]] = {}
        self._updated_index: dict[str, tuple[list[int], list[Rec]]] = {}
        self._window_cache: tuple[Any, list[Rec], list[int]] = (None, [], [])
        self.served = {}
        self.imports: dict[str, dict[str, Any]] = {}
        self.statuses = {}
        self.objects = {t: {} for t in STANDARD}
        self._ids: dict[str, list[int]] = {t: [] for t in STANDARD}
        self._assoc: dict[tuple[str, str], dict[int, set[int]]] = {k: {} for k in TYPE_IDS}
        self._next_id = {"deals": 9_000, "companies": 500, "contacts": 700, "line_items": 60_000, "products": 90,
                         "quotes": 70_000}
        self._custom = [self._custom_name(i) for i in range(self.custom_properties)]
        self._extra: dict[str, list[str]] = {t: [] for t in STANDARD}  # properties only a world names
        self._pipeline_rows: list[dict[str, Any]] | None = None
        # properties and groups created through the properties API: object -> name -> definition
        self._defined: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in STANDARD}
        self._groups: dict[str, dict[str, dict[str, Any]]] = {
            t: {f"{SINGULAR[t]}information": {"name": f"{SINGULAR[t]}information", "archived": False,
                                               "label": f"{SINGULAR[t].replace('_', ' ').title()} information",
                                               "displayOrder": 0}} for t in STANDARD}
        if self.world is None:
            self._generate()
        else:
            self._load_world(self.world)
        self.app = Starlette(routes=[
            Route("/crm/v3/objects/{obj}", self._r(self._list), methods=["GET"]),
            Route("/crm/v3/objects/{obj}/search", self._r(self._search_objects, search=True), methods=["POST"]),
            Route("/crm/v3/objects/{obj}/batch/read", self._r(self._batch_read), methods=["POST"]),
            Route("/crm/v3/objects/{obj}/batch/update", self._r(self._batch_update), methods=["POST"]),
            Route("/crm/v3/objects/{obj}/{oid}", self._r(self._read), methods=["GET"]),
            Route("/crm/v3/properties/{obj}", self._r(self._properties), methods=["GET"]),
            Route("/crm/v3/properties/{obj}", self._r(self._create_property), methods=["POST"]),
            Route("/crm/v3/properties/{obj}/groups", self._r(self._list_groups), methods=["GET"]),
            Route("/crm/v3/properties/{obj}/groups", self._r(self._create_group), methods=["POST"]),
            Route("/crm/v3/pipelines/{obj}", self._r(self._pipelines), methods=["GET"]),
            Route("/crm/v3/owners", self._r(self._owners), methods=["GET"]),
            Route("/crm/v3/owners/", self._r(self._owners), methods=["GET"]),
            Route("/crm/v3/imports", self._r(self._start_import), methods=["POST"]),
            Route("/crm/v3/imports/{iid}", self._r(self._import_status), methods=["GET"]),
            Route("/crm/v3/imports/{iid}/errors", self._r(self._import_errors), methods=["GET"]),
            Route("/crm/v4/associations/{frm}/{to}/batch/read", self._r(self._assoc_batch), methods=["POST"]),
            Route("/crm/v4/objects/{frm}/{oid}/associations/{to}", self._r(self._assoc_one), methods=["GET"]),
        ])

    # --- seeded data ---------------------------------------------------------------------------
    def _custom_name(self, i: int) -> str:
        stem = f"custom_field_{i:04d}_"
        return (stem + "x" * max(0, self.custom_property_name_len - len(stem)))[: max(len(stem), self.custom_property_name_len)]

    def _add(self, obj: str, props: dict[str, str | None], created: int, updated: int,
             visible_at: int | None = None) -> int:
        oid = self._next_id[obj]
        self._next_id[obj] += 1 + (oid % 3 == 0) * 6  # gaps and growing digit counts, like real ids
        rec = Rec(oid, props, created, updated, updated if visible_at is None else visible_at)
        self._stamp(obj, rec)
        self.objects[obj][oid] = rec
        self._ids[obj].append(oid)  # ids only grow: the list stays sorted
        return oid

    def _stamp(self, obj: str, rec: Rec) -> None:
        self._updated_index.pop(obj, None)
        self._window_cache = (None, [], [])
        rec.props["hs_object_id"] = str(rec.id)
        rec.props["createdate"] = iso_ms(rec.created)
        rec.props[modified_prop(obj)] = iso_ms(rec.updated)

    def _generate(self) -> None:
        rng = self._rng
        n = self.size
        t = BASE_MS
        owner_ids = [str(70_000 + i) for i in range(self.owners)]
        self._owner_rows = [
            {"id": oid, "email": f"owner{i}@example.com", "firstName": f"Owner{i}", "lastName": "Sandbox",
             "userId": 1_000 + i, "userIdIncludingInactive": 1_000 + i, "type": "PERSON", "createdAt": iso_ms(BASE_MS), "updatedAt": iso_ms(BASE_MS + i),
             "archived": False, "teams": []}
            for i, oid in enumerate(owner_ids)
        ]
        for i in range(self.products):
            t += rng.randint(1, self.edit_gap_ms)
            self._add("products", {"name": f"Product {i}", "price": f"{rng.randint(10, 5000)}.{rng.randint(0, 99):02d}",
                                   "hs_sku": f"SKU-{i:04d}", "description": f"Sandbox product {i}"}, t - 5000, t)
        product_ids = list(self._ids["products"])
        for i in range(max(1, n // 5 if self.companies is None else self.companies)):
            t += rng.randint(1, self.edit_gap_ms)
            self._add("companies", {"name": f"Company {i} GmbH", "domain": f"company{i}.example.com",
                                    "country": rng.choice(["DE", "US", "FR", "JP", "GB"]),
                                    "hubspot_owner_id": rng.choice(owner_ids)}, t - 9000, t)
        for i in range(max(1, n // 2 if self.contacts is None else self.contacts)):
            t += rng.randint(1, self.edit_gap_ms)
            self._add("contacts", {"firstname": f"First{i}", "lastname": f"Last{i}", "email": f"c{i}@example.com",
                                   "phone": f"+49 30 {i:07d}"}, t - 9000, t)
        companies, contacts = self._ids["companies"], self._ids["contacts"]
        for i in range(n):
            t += rng.randint(1, self.edit_gap_ms)
            cents = rng.randint(10_000, 10_000_000)
            stage = rng.choice(STAGES)[0]
            deal = self._add("deals", {
                "dealname": f"Deal {i}", "amount": f"{cents // 100}.{cents % 100:02d}", "dealstage": stage,
                "pipeline": "default", "closedate": iso_ms(BASE_MS + rng.randint(0, 300) * 86_400_000),
                "deal_currency_code": rng.choice(["EUR", "USD", "JPY"]), "hubspot_owner_id": rng.choice(owner_ids),
            }, t - 20_000, t)
            self._link("deals", deal, "companies", companies[i % len(companies)])
            for _ in range(i % 3):
                self._link("deals", deal, "contacts", rng.choice(contacts))
            if not self.line_items:
                continue
            t += 1
            prod = rng.choice(product_ids)
            qty = rng.randint(1, 20)
            price = self.objects["products"][prod].props["price"] or "0"
            line = self._add("line_items", {
                "name": f"Line of deal {i}", "quantity": str(qty), "price": price,
                "amount": str(Decimal(price) * qty), "discount": "0", "hs_product_id": str(prod),
                "hs_sku": self.objects["products"][prod].props["hs_sku"]}, t - 20_000, t)
            self._link("deals", deal, "line_items", line)

    def _load_world(self, world: dict[str, list[dict[str, Any]]]) -> None:
        """Objects, owners, pipelines and association files of a world directory, kept as given.

        Properties the standard set does not know are served (and listed by ``/crm/v3/properties``)
        as custom properties. Associations are served with HubSpot's default type ids for the pair.
        """
        self._owner_rows = list(world.get("owners", []))
        if "pipelines" in world:
            self._pipeline_rows = list(world["pipelines"])
        for obj in STANDARD:
            for raw in world.get(obj, []):
                props = {k: (None if v is None else str(v)) for k, v in (raw.get("properties") or {}).items()}
                oid = int(raw["id"])
                rec = Rec(oid, props, _ms(raw["createdAt"]), _ms(raw["updatedAt"]), 0,
                          archived=bool(raw.get("archived")),
                          archived_at=_ms(raw["archivedAt"]) if raw.get("archivedAt") else None)
                self._stamp(obj, rec)
                self.objects[obj][oid] = rec
                for name in props:
                    if name not in STANDARD[obj] and name not in self._extra[obj]:
                        self._extra[obj].append(name)
            self._ids[obj] = sorted(self.objects[obj])
            if self._ids[obj]:
                self._next_id[obj] = self._ids[obj][-1] + 1
        for key, rows in world.items():
            if not key.startswith("associations/"):
                continue
            frm, _, to = key.removeprefix("associations/").partition("_to_")
            for row in rows:
                for target in row.get("to") or []:
                    self._link(frm, int(row["from"]["id"]), to, int(target["toObjectId"]))

    # --- mutations (tests and demos drive these directly; each is one consistent step) ----------
    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _link(self, frm: str, a: int, to: str, b: int) -> None:
        self._assoc[(frm, to)].setdefault(a, set()).add(b)
        self._assoc[(to, frm)].setdefault(b, set()).add(a)

    def associate(self, frm: str, a: int, to: str, b: int) -> None:
        """An association-only edit: neither record's ``hs_lastmodifieddate`` moves (as in HubSpot)."""
        with self._lock:
            self._link(frm, a, to, b)

    def dissociate(self, frm: str, a: int, to: str, b: int) -> None:
        with self._lock:
            self._assoc[(frm, to)].get(a, set()).discard(b)
            self._assoc[(to, frm)].get(b, set()).discard(a)

    def associations(self, frm: str, a: int, to: str) -> set[int]:
        with self._lock:
            return set(self._assoc[(frm, to)].get(a, set()))

    def create(self, obj: str, props: dict[str, str | None], *, at_ms: int | None = None,
               visible_at_ms: int | None = None) -> int:
        with self._lock:
            at = self.now_ms() if at_ms is None else at_ms
            return self._add(obj, dict(props), at, at, visible_at_ms)

    def touch(self, obj: str, ids: Iterable[int], *, at_ms: int | None = None, visible_at_ms: int | None = None,
              **props: str | None) -> None:
        """Modify records: new property values and a new ``hs_lastmodifieddate`` (default: now)."""
        with self._lock:
            for oid in ids:
                rec = self.objects[obj][oid]
                rec.props.update(props)
                rec.updated = self.now_ms() if at_ms is None else at_ms
                rec.visible_at = rec.updated if visible_at_ms is None else visible_at_ms
                self._stamp(obj, rec)

    def burst(self, obj: str, n: int, *, within_ms: int = 3_600_000, same_ms_share: float = 0.4) -> list[int]:
        """Modify ``n`` records inside the last ``within_ms``; ``same_ms_share`` of them in ONE millisecond
        (a bulk import), the rest spread over the window. Returns the ids touched."""
        with self._lock:
            ids = [i for i in self._ids[obj] if not self.objects[obj][i].archived][:n]
            end = self.now_ms() - 1_000
            start = end - within_ms
            same = start + within_ms // 2
            rng = random.Random(self.seed + n)
            cut = int(len(ids) * same_ms_share)
            for k, oid in enumerate(ids):
                at = same if k < cut else rng.randint(start, end)
                rec = self.objects[obj][oid]
                rec.props["dealname" if obj == "deals" else "name"] = f"bulk edit {k}"
                rec.updated = rec.visible_at = at
                self._stamp(obj, rec)
            return ids

    def reveal(self, obj: str, ids: Iterable[int]) -> None:
        """The search index catches up: late records become visible (their timestamps do not move)."""
        with self._lock:
            for oid in ids:
                self.objects[obj][oid].visible_at = 0

    def archive(self, obj: str, ids: Iterable[int]) -> None:
        with self._lock:
            for oid in ids:
                rec = self.objects[obj][oid]
                rec.archived, rec.archived_at = True, self.now_ms()
                self._window_cache = (None, [], [])

    def purge(self, obj: str, ids: Iterable[int]) -> None:
        """Permanent deletion (a GDPR delete, or an archived record past HubSpot's 90 days): the
        record is gone from the list, ``archived=true``, search and batch reads alike."""
        gone = set(ids)
        with self._lock:
            for oid in gone:
                self.objects[obj].pop(oid, None)
                self._json_cache.pop((obj, oid), None)
                for (frm, to), edges in self._assoc.items():
                    if frm == obj:
                        edges.pop(oid, None)
                    elif to == obj:
                        for targets in edges.values():
                            targets.discard(oid)
            self._ids[obj] = [i for i in self._ids[obj] if i not in gone]
            self._updated_index.pop(obj, None)
            self._window_cache = (None, [], [])

    def live_ids(self, obj: str) -> list[int]:
        with self._lock:
            return [i for i in self._ids[obj] if not self.objects[obj][i].archived]

    def reset_daily(self) -> None:
        """Midnight in the portal's time zone: the daily allocation starts again."""
        with self._lock:
            self.daily_used = 0

    # --- plumbing: auth, faults, limits, headers -----------------------------------------------
    def _r(self, handler: Callable[[Request], Awaitable[Any]], *, search: bool = False
           ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self._guarded(request, handler, search)
        return endpoint

    async def _guarded(self, request: Request, handler: Callable[[Request], Awaitable[Any]],
                       search: bool) -> Response:
        kind = "search" if search else request.url.path.split("/")[3]
        self.served[kind] = self.served.get(kind, 0) + 1
        status, body = 200, None
        try:
            if self.latency_ms:
                await asyncio.sleep(self.latency_ms / 1000)
            if request.headers.get("authorization") != f"Bearer {self.token}":
                raise _error(401, "Authentication credentials not found. This API supports OAuth 2.0 "
                             "authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                             "INVALID_AUTHENTICATION")
            raw_target = request.scope.get("raw_path", b"") + b"?" + request.scope.get("query_string", b"")
            if len(raw_target) > self.max_url:
                return Response(b"<html><body><h1>414 Request-URI Too Large</h1></body></html>", 414,
                                 media_type="text/html")
            if self.timeout_rate and self._fault_rng.random() < self.timeout_rate:
                await asyncio.sleep(self.timeout_s)
            if self.error_rate and self._fault_rng.random() < self.error_rate:
                code = self._fault_rng.choice([500, 502, 503])
                raise _error(code, "internal error", "INTERNAL_ERROR")
            self._limit(search)
            with self._lock:
                body = await handler(request)
            if isinstance(body, _Status):
                status, body = body.status, body.body
        except _Reject as rej:
            status, body = rej.status, rej.body
        self.statuses[status] = self.statuses.get(status, 0) + 1
        text = body.text if isinstance(body, _RawJSON) else json.dumps(body, separators=(",", ":"))
        return Response(text, status, media_type="application/json",
                        headers=self._headers(search))

    def _limit(self, search: bool) -> None:
        now = self.clock()
        with self._lock:
            window = self._search if search else self._burst
            span = 1.0 if search else self.burst_interval_ms / 1000
            cap = self.search_per_s if search else self.burst_max
            if self.other_apps_rps and not search:  # other apps of the portal share the burst window
                others = int((now - self._other_last) * self.other_apps_rps)
                window.extend([now] * others)
                self._other_last += others / self.other_apps_rps
            while window and window[0] <= now - span:
                window.popleft()
            if self.rate_limits:
                if self.daily_used >= self.daily_limit:
                    raise self._rate_limited("DAILY", "daily")
                if len(window) >= cap:
                    raise self._rate_limited("SECONDLY" if search else "TEN_SECONDLY_ROLLING",
                                             "secondly" if search else "ten_secondly_rolling")
            window.append(now)
            self.daily_used += 1

    @staticmethod
    def _rate_limited(policy: str, word: str) -> _Reject:
        return _Reject(429, {"status": "error", "message": f"You have reached your {word} limit.",
                             "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()),
                             "policyName": policy, "requestId": str(uuid.uuid4())})

    def _headers(self, search: bool) -> dict[str, str]:
        headers: dict[str, str] = {}
        if not self.oauth:  # HubSpot omits the daily headers on OAuth-authorised calls
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, self.daily_limit - self.daily_used))
        if not search:  # the interval headers are not returned on search responses
            headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(self.burst_interval_ms)
            headers["X-HubSpot-RateLimit-Max"] = str(self.burst_max)
            headers["X-HubSpot-RateLimit-Remaining"] = str(max(0, self.burst_max - len(self._burst)))
        return headers

    # --- serialisation ---------------------------------------------------------------------------
    def _type(self, request: Request, key: str = "obj") -> str:
        obj = request.path_params[key]
        if obj not in self.objects:
            raise _error(400, f"Unable to infer object type from: {obj}", "VALIDATION_ERROR")
        return obj

    def _value(self, obj: str, rec: Rec, name: str) -> str | None:
        if name in rec.props:
            return rec.props[name]
        if name.startswith("custom_field_") and name in self._custom_set:
            return f"{name[13:17]}-{rec.id}" if rec.id % 2 else None
        return None

    @property
    def _custom_set(self) -> set[str]:
        cached: set[str] | None = getattr(self, "_custom_cache", None)
        if cached is None:
            cached = self._custom_cache = set(self._custom)
        return cached

    def _known(self, obj: str) -> set[str]:
        return set(STANDARD[obj]) | self._custom_set | set(self._extra[obj]) | set(self._defined[obj])

    def _object(self, obj: str, rec: Rec, props: list[str] | None) -> dict[str, Any]:
        names = props or DEFAULTS.get(obj, ("name", "createdate", "hs_lastmodifieddate", "hs_object_id"))
        known = self._known(obj)
        properties = {n: self._value(obj, rec, n) for n in names if n in known}
        for always in ("hs_object_id", "createdate", modified_prop(obj)):
            properties[always] = rec.props[always]
        out: dict[str, Any] = {"id": str(rec.id), "properties": properties, "createdAt": iso_ms(rec.created),
                               "updatedAt": iso_ms(rec.updated), "archived": rec.archived}
        if rec.archived and rec.archived_at is not None:
            out["archivedAt"] = iso_ms(rec.archived_at)
        return out

    def _object_json(self, obj: str, rec: Rec, props: list[str] | None) -> str:
        """``_object`` serialised, cached per record version and property list (pages are hot)."""
        key = (rec.updated, rec.archived, frozenset(props or ()))
        hit = self._json_cache.get((obj, rec.id))
        if hit is not None and hit[0] == key:
            return hit[1]
        text = _dumps(self._object(obj, rec, props))
        self._json_cache[(obj, rec.id)] = (key, text)
        return text

    def prerender(self) -> None:
        """Serialise every record with its full property list ahead of time, so that a benchmark
        measures the client and the store rather than the emulator standing in for HubSpot's servers."""
        with self._lock:
            for obj, recs in self.objects.items():
                props = sorted(self._known(obj))
                for rec in recs.values():
                    self._object_json(obj, rec, props)

    def _visible(self, rec: Rec, now: int) -> bool:
        return rec.visible_at <= now

    # --- routes ----------------------------------------------------------------------------------
    async def _list(self, request: Request) -> Any:
        obj = self._type(request)
        q = request.query_params
        limit = min(int(q.get("limit") or 10), LIST_MAX)
        archived = _bool(q.get("archived"))
        props = _multi(request, "properties")
        assoc = [a for a in _multi(request, "associations") if (obj, a) in TYPE_IDS]
        ids = self._ids[obj]
        start = bisect.bisect_left(ids, int(q.get("after") or 0))
        now = self.now_ms()
        results: list[Rec] = []
        pos = start
        while pos < len(ids) and len(results) <= limit:
            rec = self.objects[obj][ids[pos]]
            pos += 1
            if rec.archived == archived and self._visible(rec, now):
                results.append(rec)
        paging = ""
        if len(results) > limit:
            nxt = results.pop()
            if not self.drop_list_paging:
                paging = ',"paging":' + _dumps({"next": {"after": str(nxt.id),
                                                         "link": f"{request.url.path}?after={nxt.id}"}})
        parts = []
        for rec in results:
            links = {to: {"results": [{"id": str(t), "type": f"{SINGULAR[obj]}_to_{SINGULAR[to]}"}
                                      for t in sorted(self._assoc[(obj, to)].get(rec.id, ()))]}
                     for to in assoc if self._assoc[(obj, to)].get(rec.id)}
            if links:
                parts.append(_dumps({**self._object(obj, rec, props), "associations": links}))
            else:
                parts.append(self._object_json(obj, rec, props))
        return _RawJSON('{"results":[' + ",".join(parts) + "]" + paging + "}")

    async def _read(self, request: Request) -> Any:
        obj = self._type(request)
        rec = self.objects[obj].get(int(request.path_params["oid"]) if request.path_params["oid"].isdigit() else -1)
        if rec is None or rec.archived != _bool(request.query_params.get("archived")):
            raise _error(404, "Object not found", "OBJECT_NOT_FOUND")
        return self._object(obj, rec, _multi(request, "properties"))

    async def _batch_read(self, request: Request) -> Any:
        obj = self._type(request)
        body = await request.json()
        inputs = body.get("inputs") or []
        if len(inputs) > 100:
            raise _error(400, "Batch input size exceeds 100", "VALIDATION_ERROR")
        stamp = iso_ms(self.now_ms())
        results = [self._object(obj, rec, body.get("properties"))
                   for i in inputs if (rec := self.objects[obj].get(int(i["id"]))) and not rec.archived]
        return {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}

    def _key(self, obj: str, rec: Rec, name: str) -> Any:
        if name == "hs_object_id":
            return rec.id
        if name == "createdate":
            return rec.created
        if name == modified_prop(obj):
            return rec.updated
        value = self._value(obj, rec, name)
        if value is None:
            return None
        if name in DATETIME_PROPS:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        if name in NUMBER_PROPS:
            return Decimal(value)
        return value

    def _by_updated(self, obj: str) -> tuple[list[int], list[Rec]]:
        """Records sorted by last modification (rebuilt after writes): search windows are bisected."""
        cached = self._updated_index.get(obj)
        if cached is None:
            recs = sorted(self.objects[obj].values(), key=lambda r: (r.updated, r.id))
            cached = self._updated_index[obj] = ([r.updated for r in recs], recs)
        return cached

    def _candidates(self, obj: str, groups: list[dict[str, Any]]) -> tuple[list[Rec], bool]:
        """Records a one-group query can match, by id: the modified-date range narrowed by bisection,
        then an ``hs_object_id`` lower bound (keyset paging) applied the same way. The flag says
        whether these bounds were the group's only filters (then no filter needs evaluating)."""
        if len(groups) != 1:
            return [self.objects[obj][i] for i in self._ids[obj]], False
        prop = modified_prop(obj)
        lo, hi = -1, 1 << 62
        id_lo = -1
        consumed = 0
        filters = groups[0].get("filters") or []
        for f in filters:
            op, name = f.get("operator"), f.get("propertyName")
            if name == prop and op in ("GTE", "GT", "LT", "LTE", "EQ"):
                v = self._coerce(name, f.get("value"))
                lo = max(lo, v + (op == "GT")) if op in ("GTE", "GT", "EQ") else lo
                hi = min(hi, v + (op in ("LTE", "EQ"))) if op in ("LT", "LTE", "EQ") else hi
                consumed += 1
            elif name == "hs_object_id" and op in ("GT", "GTE"):
                id_lo = max(id_lo, int(self._coerce(name, f.get("value"))) + (op == "GT"))
                consumed += 1
        key = (obj, lo, hi)
        if self._window_cache[0] != key:
            keys, recs = self._by_updated(obj)
            window = recs[bisect.bisect_left(keys, lo): bisect.bisect_left(keys, hi)]
            window.sort(key=lambda r: r.id)
            self._window_cache = (key, window, [r.id for r in window])
        _, window, ids = self._window_cache
        return window[bisect.bisect_left(ids, id_lo):], consumed == len(filters)

    def _coerce(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        text = str(value)
        try:
            if name in DATETIME_PROPS:
                return int(text) if text.isdigit() else int(
                    datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
            if name in NUMBER_PROPS:
                return Decimal(text)
        except (ValueError, InvalidOperation):
            raise _error(400, f"{text} is not a valid value for {name}", "VALIDATION_ERROR") from None
        return text

    def _predicate(self, obj: str, flt: dict[str, Any]) -> Callable[[Rec], bool]:
        """One filter compiled once per query (its value coerced to the property's type)."""
        name, op = flt.get("propertyName", ""), flt.get("operator", "EQ")
        key = self._key
        if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
            return lambda r: (key(obj, r, name) is not None) == (op == "HAS_PROPERTY")
        if op in ("IN", "NOT_IN"):
            values = {self._coerce(name, v) for v in flt.get("values") or []}
            return lambda r: ((have := key(obj, r, name)) is None and op == "NOT_IN") or (
                have is not None and (have in values) == (op == "IN"))
        want = self._coerce(name, flt.get("value"))
        if op == "BETWEEN":
            high = self._coerce(name, flt.get("highValue"))
            return lambda r: (have := key(obj, r, name)) is not None and bool(want <= have <= high)
        if op == "CONTAINS_TOKEN":
            return lambda r: (have := key(obj, r, name)) is not None and str(want).lower() in str(have).lower()
        ops: dict[str, Callable[[Any, Any], bool]] = {
            "EQ": lambda a, b: a == b, "NEQ": lambda a, b: a != b, "LT": lambda a, b: a < b,
            "LTE": lambda a, b: a <= b, "GT": lambda a, b: a > b, "GTE": lambda a, b: a >= b}
        if op not in ops:
            raise _error(400, f"Unsupported operator {op}", "VALIDATION_ERROR")
        cmp = ops[op]
        return lambda r: ((have := key(obj, r, name)) is None and op == "NEQ") or (have is not None and cmp(have, want))

    async def _search_objects(self, request: Request) -> Any:
        obj = self._type(request)
        body = await request.json()
        limit = int(body.get("limit") or 10)
        after = int(body.get("after") or 0)
        sorts = body.get("sorts") or []
        groups = body.get("filterGroups") or []
        if limit > SEARCH_MAX:
            raise _error(400, f"limit must be at most {SEARCH_MAX}", "VALIDATION_ERROR")
        if len(sorts) > 1:
            raise _error(400, "Only one sort is supported", "VALIDATION_ERROR")
        if len(groups) > 5 or sum(len(g.get("filters") or []) for g in groups) > 25:
            raise _error(400, "Too many filters: at most 5 groups and 25 filters", "VALIDATION_ERROR")
        if after >= self.search_cap:
            raise _error(400, f"There was a problem with the request. Paging past {self.search_cap} results "
                         "is not supported.", "VALIDATION_ERROR")
        now = self.now_ms()
        candidates, exact = self._candidates(obj, groups)
        compiled = [] if exact else [[self._predicate(obj, f) for f in g.get("filters") or []] for g in groups]
        hits = [rec for rec in candidates
                if not rec.archived and rec.visible_at <= now
                and (not compiled or any(all(p(rec) for p in group) for group in compiled))]
        if sorts and not (sorts[0].get("propertyName") == "hs_object_id"
                          and sorts[0].get("direction", "ASCENDING") == "ASCENDING"):  # candidates are by id
            name = sorts[0].get("propertyName", "hs_object_id")
            desc = sorts[0].get("direction", "ASCENDING") == "DESCENDING"
            present = [r for r in hits if self._key(obj, r, name) is not None]
            present.sort(key=lambda r: self._key(obj, r, name), reverse=desc)
            hits = present + [r for r in hits if self._key(obj, r, name) is None]
        page = hits[after: after + min(limit, self.search_results_max or limit)]
        parts = ",".join(self._object_json(obj, r, body.get("properties")) for r in page)
        paging = f',"paging":{{"next":{{"after":"{after + limit}"}}}}' if after + limit < len(hits) else ""
        if self.drop_search_paging:
            paging = ""
        return _RawJSON(f'{{"total":{len(hits)},"results":[{parts}]{paging}}}')

    async def _properties(self, request: Request) -> Any:
        obj = self._type(request)
        stamp = iso_ms(BASE_MS)

        def prop(name: str, custom: bool) -> dict[str, Any]:
            kind = "datetime" if name in DATETIME_PROPS else "number" if name in NUMBER_PROPS else "string"
            return {"name": name, "label": name.replace("_", " ").title(), "type": kind,
                    "fieldType": "date" if kind == "datetime" else "number" if kind == "number" else "text",
                    "groupName": "custom" if custom else f"{SINGULAR[obj]}information", "description": "",
                    "options": [], "displayOrder": -1, "calculated": False, "externalOptions": False,
                    "hasUniqueValue": False, "hidden": False, "hubspotDefined": not custom or None,
                    "formField": custom, "createdAt": stamp, "updatedAt": stamp,
                    "modificationMetadata": {"archivable": custom, "readOnlyDefinition": not custom,
                                             "readOnlyValue": name in DATETIME_PROPS | {"hs_object_id"}}}

        return {"results": [prop(n, False) for n in STANDARD[obj]]
                + [prop(n, True) for n in [*self._custom, *self._extra[obj]]] + list(self._defined[obj].values())}

    def _require(self, scope: str) -> None:
        if self.scopes is not None and scope not in self.scopes:
            raise _error(403, "This app hasn't been granted all required scopes to make this call. Read more about "
                         "required scopes here: https://developers.hubspot.com/scopes.", "MISSING_SCOPES",
                         errors=[{"message": "One or more of the following scopes are required.",
                                  "context": {"requiredGranularScopes": [scope]}}])

    async def _list_groups(self, request: Request) -> Any:
        return {"results": list(self._groups[self._type(request)].values())}

    async def _create_group(self, request: Request) -> Any:
        obj = self._type(request)
        self._require(f"crm.schemas.{obj}.write")
        body = await request.json()
        name, label = body.get("name"), body.get("label")
        if not name or not label:
            raise _error(400, "name and label are required", "VALIDATION_ERROR")
        if name in self._groups[obj]:
            raise _error(409, f"A property group named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
        group = {"name": name, "label": label, "displayOrder": int(body.get("displayOrder", -1)), "archived": False}
        self._groups[obj][name] = group
        return _Status(201, group)

    async def _create_property(self, request: Request) -> Any:
        obj = self._type(request)
        self._require(f"crm.schemas.{obj}.write")
        body = await request.json()
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise _error(400, f"Missing required fields: {', '.join(missing)}", "VALIDATION_ERROR")
        name, ptype, ftype = body["name"], body["type"], body["fieldType"]
        if name in self._known(obj):
            raise _error(409, f"Property named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
        if ptype not in PROPERTY_TYPES or ftype not in PROPERTY_TYPES[ptype]:
            raise _error(400, f"fieldType {ftype!r} is not valid for a property of type {ptype!r}", "VALIDATION_ERROR")
        if body["groupName"] not in self._groups[obj]:
            raise _error(400, f"Property group {body['groupName']!r} does not exist.", "VALIDATION_ERROR")
        stamp = iso_ms(self.now_ms())
        prop = {"name": name, "label": body["label"], "type": ptype, "fieldType": ftype,
                "groupName": body["groupName"], "description": body.get("description", ""), "options": [],
                "displayOrder": int(body.get("displayOrder", -1)), "calculated": False, "externalOptions": False,
                "hasUniqueValue": bool(body.get("hasUniqueValue", False)), "hidden": False, "formField": False,
                "createdAt": stamp, "updatedAt": stamp,
                "modificationMetadata": {"archivable": True, "readOnlyDefinition": False, "readOnlyValue": False}}
        self._defined[obj][name] = prop
        return _Status(201, prop)

    def _value_problem(self, obj: str, name: str, value: Any) -> dict[str, Any] | None:
        """Why HubSpot would refuse this property value (None: it takes it)."""
        def bad(error: str, message: str) -> dict[str, Any]:
            return {"isValid": False, "message": message, "error": error, "name": name}

        if name not in self._known(obj):
            return bad("PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
        if name in DATETIME_PROPS | {"hs_object_id"}:
            return bad("READ_ONLY_VALUE", f'"{name}" is a read only property; its value cannot be set.')
        ptype = self._defined[obj].get(name, {}).get("type") or ("number" if name in NUMBER_PROPS else "string")
        text = "" if value is None else str(value)
        if text == "":
            return None  # an empty string clears the value
        if ptype == "number":
            try:
                Decimal(text)
            except InvalidOperation:
                return bad("INVALID_DECIMAL", f"{text} was not a valid number.")
        if ptype == "date":
            try:
                datetime.strptime(text, "%Y-%m-%d")
            except ValueError:
                if not text.isdigit():
                    return bad("INVALID_DATE", f"{text} is not a valid date (YYYY-MM-DD or midnight UTC in ms)")
        return None

    async def _batch_update(self, request: Request) -> Any:
        obj = self._type(request)
        self._require(f"crm.objects.{obj}.write")
        body = await request.json()
        inputs = body.get("inputs") or []
        if len(inputs) > 100:
            raise _error(400, "Batch input size exceeds 100", "VALIDATION_ERROR")
        problems = [p for i in inputs for n, v in (i.get("properties") or {}).items()
                    if (p := self._value_problem(obj, n, v)) is not None]
        if problems:
            raise _error(400, "Property values were not valid: " + json.dumps(problems), "VALIDATION_ERROR",
                         errors=[{"message": p["message"], "code": p["error"], "context": {"propertyName": [p["name"]]}}
                                 for p in problems])
        now = self.now_ms()
        stamp = iso_ms(now)
        results, missing = [], []
        refused: dict[tuple[str, str], list[str]] = {}
        for item in inputs:
            oid = str(item.get("id", ""))
            rec = self.objects[obj].get(int(oid)) if oid.isdigit() else None
            if rec is None or rec.archived:
                missing.append(oid)
                continue
            fault = self.write_faults.get((obj, rec.id))
            if fault is not None:
                refused.setdefault(fault, []).append(oid)
                continue
            props = {k: "" if v is None else str(v) for k, v in (item.get("properties") or {}).items()}
            rec.props.update(props)
            rec.updated = rec.visible_at = now
            self._stamp(obj, rec)
            results.append(self._object(obj, rec, list(props)))
        out: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}
        errors = []
        if missing:
            errors.append({"status": "error", "category": "OBJECT_NOT_FOUND", "context": {"ids": missing},
                           "message": f"Could not get some {SINGULAR[obj].upper()} objects, they may be deleted or "
                                      "not exist. Check that ids are valid.", "errors": [], "links": {}})
        for (category, message), ids in refused.items():
            errors.append({"status": "error", "category": category, "message": message, "context": {"ids": ids},
                           "errors": [], "links": {}})
        if not errors:
            return out
        return _Status(207, {**out, "numErrors": len(missing) + sum(len(v) for v in refused.values()),
                             "errors": errors})

    # --- imports -------------------------------------------------------------------------------
    async def _start_import(self, request: Request) -> Any:
        self._require("crm.import")
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise _error(415, "Content type must be multipart/form-data", "VALIDATION_ERROR")
        raw = await request.body()
        msg = BytesParser(policy=email_default).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
        fields: dict[str, str] = {}
        uploads: dict[str, bytes] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            got = part.get_payload(decode=True)
            payload = got if isinstance(got, bytes) else b""
            if part.get_filename():
                uploads[str(part.get_filename())] = payload
            elif name:
                fields[str(name)] = payload.decode("utf-8")
        try:
            spec = json.loads(fields["importRequest"])
        except (KeyError, ValueError):
            raise _error(400, "importRequest is missing or is not JSON", "VALIDATION_ERROR") from None
        ops: dict[str, str] = spec.get("importOperations") or {}
        if any(v not in ("CREATE", "UPDATE", "UPSERT") for v in ops.values()):
            raise _error(400, "importOperations: CREATE, UPDATE or UPSERT", "VALIDATION_ERROR")
        files = spec.get("files") or []
        if not files:
            raise _error(400, "files: at least one file is required", "VALIDATION_ERROR")
        iid = str(80_000_000 + len(self.imports))
        errors: list[dict[str, Any]] = []
        counters = {"TOTAL_ROWS": 0, "UPDATED_OBJECTS": 0, "CREATED_OBJECTS": 0}
        now = self.now_ms()
        for f in files:
            page = f.get("fileImportPage") or {}
            content = uploads.get(str(f.get("fileName")))
            if content is None:
                raise _error(400, f"no uploaded file named {f.get('fileName')!r}", "VALIDATION_ERROR")
            if f.get("fileFormat") != "CSV":
                raise _error(400, "only fileFormat CSV is emulated", "VALIDATION_ERROR")
            rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
            header = rows.pop(0) if page.get("hasHeader") and rows else []
            if len(rows) > 1_048_576:
                raise _error(400, "a file holds at most 1,048,576 rows", "VALIDATION_ERROR")
            mappings = page.get("columnMappings") or []
            if header and [m.get("columnName") for m in mappings] != header:
                raise _error(400, "columnMappings must name the file's header columns in order", "VALIDATION_ERROR")
            type_ids = {str(m.get("columnObjectTypeId")) for m in mappings}
            objs = [o for o, t in OBJECT_TYPE_IDS.items() if t in type_ids]
            if len(objs) != 1 or ops.get(OBJECT_TYPE_IDS[objs[0]]) != "UPDATE":
                raise _error(400, "only UPDATE imports of one object per file are emulated", "VALIDATION_ERROR")
            obj = objs[0]
            id_col = [i for i, m in enumerate(mappings) if m.get("columnType") == "HUBSPOT_OBJECT_ID"]
            if len(id_col) != 1:
                raise _error(400, "an UPDATE import needs one HUBSPOT_OBJECT_ID column", "VALIDATION_ERROR")
            props = {i: str(m.get("propertyName")) for i, m in enumerate(mappings) if i != id_col[0]}
            for name in props.values():
                if name not in self._known(obj):
                    raise _error(400, f'Property "{name}" does not exist', "VALIDATION_ERROR")
            for line, row in enumerate(rows, start=2 if header else 1):
                counters["TOTAL_ROWS"] += 1
                oid = row[id_col[0]] if id_col[0] < len(row) else ""
                rec = self.objects[obj].get(int(oid)) if oid.isdigit() else None
                problem: tuple[str, str] | None = None
                values = {props[i]: v for i, v in enumerate(row) if i in props and v != ""}
                if rec is None or rec.archived:
                    problem = ("UNKNOWN_OBJECT_ID", oid)
                elif (fault := self.write_faults.get((obj, rec.id))) is not None:
                    problem = (fault[0], oid)
                elif bad := [p for n, v in values.items() if (p := self._value_problem(obj, n, v)) is not None]:
                    problem = (str(bad[0]["error"]), str(values[bad[0]["name"]]))
                if problem is not None or rec is None:
                    kind, value = problem or ("UNKNOWN_OBJECT_ID", oid)
                    errors.append({"id": str(len(errors) + 1), "createdAt": iso_ms(now), "errorType": kind,
                                   "invalidValue": value, "objectType": SINGULAR[obj].upper(),
                                   "sourceData": {"sourceType": "FILE", "rowData": ",".join(row),
                                                  "lineNumber": line, "fileId": iid}})
                    continue
                rec.props.update(values)
                rec.updated = rec.visible_at = now
                self._stamp(obj, rec)
                counters["UPDATED_OBJECTS"] += 1
        counters["ERRORS"] = len(errors)
        meta = {"id": iid, "importName": spec.get("name") or iid, "createdAt": iso_ms(now), "updatedAt": iso_ms(now),
                "optOutImport": False, "importSource": "API", "importRequestJson": spec,
                "metadata": {"objectLists": [], "fileIds": [iid], "counters": counters}}
        self.imports[iid] = {"meta": meta, "errors": errors, "polls": 0}
        return {**meta, "state": "STARTED"}

    def _import(self, request: Request) -> dict[str, Any]:
        found = self.imports.get(request.path_params["iid"])
        if found is None:
            raise _error(404, f"Import {request.path_params['iid']} not found", "OBJECT_NOT_FOUND")
        return found

    async def _import_status(self, request: Request) -> Any:
        imp = self._import(request)
        imp["polls"] += 1
        done = imp["polls"] > self.import_polls
        return {**imp["meta"], "state": "DONE" if done else "PROCESSING"}

    async def _import_errors(self, request: Request) -> Any:
        imp = self._import(request)
        q = request.query_params
        limit = min(int(q.get("limit") or 100), 500)
        start = int(q.get("after") or 0)
        page = imp["errors"][start:start + limit]
        out: dict[str, Any] = {"results": page}
        if start + limit < len(imp["errors"]):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return out

    async def _pipelines(self, request: Request) -> Any:
        if request.path_params["obj"] != "deals":
            raise _error(400, "pipelines: only deals are emulated", "VALIDATION_ERROR")
        if self._pipeline_rows is not None:
            return {"results": self._pipeline_rows}
        stamp = iso_ms(BASE_MS)
        stages = [{"id": sid, "label": label, "displayOrder": k, "archived": False, "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                   "metadata": {"isClosed": closed, "probability": prob}, "createdAt": stamp, "updatedAt": stamp}
                  for k, (sid, label, prob, closed) in enumerate(STAGES)]
        return {"results": [{"id": "default", "label": "Sales Pipeline", "displayOrder": 0, "archived": False,
                             "createdAt": stamp, "updatedAt": stamp, "stages": stages}]}

    async def _owners(self, request: Request) -> Any:
        q = request.query_params
        if _bool(q.get("archived")):
            return {"results": []}
        limit = min(int(q.get("limit") or 100), 500)
        start = int(q.get("after") or 0)
        page = self._owner_rows[start: start + limit]
        out: dict[str, Any] = {"results": page}
        if start + limit < len(self._owner_rows):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return out

    def _assoc_rows(self, frm: str, to: str, oid: int) -> list[dict[str, Any]]:
        types = TYPE_IDS[(frm, to)]
        return [{"toObjectId": t, "associationTypes": [
            {"category": "HUBSPOT_DEFINED", "typeId": tid, "label": "Primary" if k == 0 and len(types) > 1 else None}
            for k, tid in enumerate(types)]} for t in sorted(self._assoc[(frm, to)].get(oid, ()))]

    def _pair(self, request: Request) -> tuple[str, str]:
        frm, to = request.path_params["frm"], request.path_params["to"]
        if (frm, to) not in TYPE_IDS:
            raise _error(400, f"Unsupported association {frm} -> {to}", "VALIDATION_ERROR")
        return frm, to

    async def _assoc_batch(self, request: Request) -> Any:
        frm, to = self._pair(request)
        body = await request.json()
        inputs = body.get("inputs") or []
        if len(inputs) > 1000:
            raise _error(400, "Batch input size exceeds 1000", "VALIDATION_ERROR")
        stamp = iso_ms(self.now_ms())
        results = []
        for i in inputs:
            rows = self._assoc_rows(frm, to, int(i["id"]))
            if rows:  # a record with more associations than a page: the rest via the per-record route
                item: dict[str, Any] = {"from": {"id": str(i["id"])}, "to": rows[: self.assoc_page]}
                if len(rows) > self.assoc_page:
                    item["paging"] = {"next": {"after": str(self.assoc_page)}}
                results.append(item)
        return {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}

    async def _assoc_one(self, request: Request) -> Any:
        frm, to = self._pair(request)
        rows = self._assoc_rows(frm, to, int(request.path_params["oid"]))
        start = int(request.query_params.get("after") or 0)
        limit = min(int(request.query_params.get("limit") or self.assoc_page), self.assoc_page)
        out: dict[str, Any] = {"results": rows[start: start + limit]}
        if start + limit < len(rows):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return out


def create_app(**kwargs: Any) -> Starlette:
    """The registry's factory: ``create_app(seed=7, size=1000, rate_limits=True, ...)``."""
    return HubSpotEmulator(**kwargs).app


def main() -> None:  # pragma: no cover - the benchmark runs the emulator in its own process
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the HubSpot emulator on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=int, default=1000, help="number of deals")
    parser.add_argument("--rate-limits", action="store_true", help="enforce the burst, search and daily limits")
    parser.add_argument("--burst-max", type=int, default=190)
    parser.add_argument("--search-per-s", type=int, default=5)
    parser.add_argument("--lean", action="store_true", help="deals only (one company and contact, no line items)")
    parser.add_argument("--prerender", action="store_true", help="serialise every record before serving")
    parser.add_argument("--edit-gap-ms", type=int, default=50,
                        help="seeded records are modified up to this far apart (default 50: all within minutes)")
    args = parser.parse_args()
    lean: dict[str, Any] = {"companies": 1, "contacts": 1, "line_items": False, "products": 5} if args.lean else {}
    emulator = HubSpotEmulator(seed=args.seed, size=args.size, rate_limits=args.rate_limits,
                               burst_max=args.burst_max, search_per_s=args.search_per_s,
                               edit_gap_ms=args.edit_gap_ms, **lean)
    if args.prerender:
        emulator.prerender()
    uvicorn.run(emulator.app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":  # pragma: no cover
    main()

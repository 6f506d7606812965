"""Salesforce REST emulator: an ASGI app serving exactly the subset ltc-hub uses, over TLS.

Routes (``vNN.N`` = any API version):

* ``POST /services/oauth2/token``: client credentials (HTTP Basic or form), JWT bearer (RS256, checked
  against the org's connected-app key), username-password (password + security token).
* ``GET /services/data/vNN.N/query[/]`` and ``queryAll[/]`` (``?q=SOQL``, see :mod:`sandbox.soql`),
  ``query/<cursor>-<offset>`` (``nextRecordsUrl``), 2000 rows a batch or ``Sforce-Query-Options:
  batchSize=N`` (200..2000); ``totalSize`` = all matching rows; ``attributes`` on every record.
* ``GET .../sobjects/`` and ``.../sobjects/<Obj>/describe``, ``GET .../limits``.
* Bulk API 2.0 query jobs: ``POST .../jobs/query``, ``GET .../jobs/query/<id>``,
  ``GET .../jobs/query/<id>/results?maxRecords=&locator=`` (CSV, ``Sforce-Locator``,
  ``Sforce-NumberOfRecords``).
* Writes: ``PATCH .../composite/sobjects`` (sObject Collections update: ``{allOrNone, records}``, at most
  200 records or 400 ``EXCEEDED_ID_LIMIT``, every record with ``attributes.type`` and ``id``; 200 with one
  SaveResult ``{id, success, errors: [{statusCode, message, fields}]}`` per record in input order, the
  ``id`` left out of a failed one; ``allOrNone: true`` rolls every record back when one fails) and
  ``PATCH .../sobjects/<Obj>/<Id>`` (204, or the error array). An unknown field fails the whole request
  (400 ``INVALID_FIELD``), a value of the wrong JSON type too (400 ``JSON_PARSER_ERROR``); per record:
  ``FIELD_CUSTOM_VALIDATION_EXCEPTION`` (the org's validation rules), ``UNABLE_TO_LOCK_ROW`` (records in
  ``Org.locked``), ``INVALID_FIELD_FOR_INSERT_UPDATE`` (fields without edit access, field-level
  security), ``STRING_TOO_LONG``, ``ENTITY_IS_DELETED``, ``INVALID_CROSS_REFERENCE_KEY``. A successful
  update bumps ``LastModifiedDate`` and ``SystemModstamp``. Custom fields appear in ``describe`` once
  created (:meth:`Org.create_field`, what an admin does in Setup).
* Bulk API 2.0 ingest (``operation: update``): ``POST .../jobs/ingest`` (state ``Open``), ``PUT
  .../jobs/ingest/<id>/batches`` (the CSV, 201; an empty cell leaves a field alone, ``#N/A`` sets it
  to null), ``PATCH .../jobs/ingest/<id>`` ``{"state": "UploadComplete"}``, ``GET .../jobs/ingest/<id>``
  (``InProgress`` for ``faults.bulk_polls_before_complete`` polls, then ``JobComplete`` with
  ``numberRecordsProcessed``/``numberRecordsFailed``; ``Failed`` with ``errorMessage`` for an unknown
  column), ``GET .../failedResults/`` and ``.../successfulResults/`` (CSV: ``sf__Id``, ``sf__Error`` as
  ``CODE:message:fields --`` or ``sf__Created``, then the uploaded columns). The rows are saved with
  the same rules as the REST updates.

Every data response carries ``Sforce-Limit-Info: api-usage=<used>/<allocation>``; errors are the vendor's
JSON array of ``{"message", "errorCode"}``. The :class:`Org` (``app.state.org``) is the data and the
fault switches; tests mutate it between requests (insert/update/delete, hidden-then-published rows
for late commits, ``faults.*``).
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import random
import re
import secrets
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sandbox.soql import Query, SoqlError, compile_where, lower_bound, parse, sf_datetime, upper_bound

API_VERSION = "59.0"
URI_LIMIT = 16_384

# --- schema -------------------------------------------------------------------------------------

# (name, type, custom, referenceTo)
_SYSTEM = [("Id", "id"), ("IsDeleted", "boolean"), ("CreatedDate", "datetime"), ("LastModifiedDate", "datetime"),
           ("SystemModstamp", "datetime")]
_OBJECTS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "Account": ("001", [("Name", "string"), ("Type", "picklist"), ("Industry", "picklist"),
                        ("BillingCity", "string"), ("BillingCountry", "string"), ("BillingAddress", "address"),
                        ("Phone", "phone"), ("Website", "url"), ("AnnualRevenue", "currency"),
                        ("Region__c", "picklist"), ("Customer_Tier__c", "picklist"), ("ERP_Customer_Id__c", "string")]),
    "Contact": ("003", [("AccountId", "reference"), ("FirstName", "string"), ("LastName", "string"),
                        ("Email", "email"), ("Phone", "phone"), ("Title", "string")]),
    "Lead": ("00Q", [("FirstName", "string"), ("LastName", "string"), ("Company", "string"), ("Email", "email"),
                     ("Status", "picklist"), ("LeadSource", "picklist"), ("IsConverted", "boolean"),
                     ("ConvertedDate", "date"), ("ConvertedAccountId", "reference"),
                     ("ConvertedContactId", "reference"), ("ConvertedOpportunityId", "reference"),
                     ("Region__c", "picklist")]),
    "Product2": ("01t", [("Name", "string"), ("ProductCode", "string"), ("Family", "picklist"),
                         ("IsActive", "boolean")]),
    "Opportunity": ("006", [("AccountId", "reference"), ("Name", "string"), ("StageName", "picklist"),
                            ("Amount", "currency"), ("CloseDate", "date"), ("Probability", "percent"),
                            ("IsClosed", "boolean"), ("IsWon", "boolean"), ("Pricebook2Id", "reference"),
                            ("Region__c", "picklist"), ("ERP_Order_Ref__c", "string")]),
    "OpportunityLineItem": ("00k", [("OpportunityId", "reference"), ("Product2Id", "reference"),
                                    ("ProductCode", "string"), ("Name", "string"), ("Quantity", "double"),
                                    ("UnitPrice", "currency"), ("ListPrice", "currency"),
                                    ("TotalPrice", "currency"), ("Discount", "percent"), ("ServiceDate", "date")]),
    "Contract": ("800", [("AccountId", "reference"), ("ContractNumber", "string"), ("Status", "picklist"),
                         ("StartDate", "date"), ("EndDate", "date"), ("ContractTerm", "int"),
                         ("StatusCode", "picklist"), ("CustomerSignedDate", "date"),
                         ("CompanySignedDate", "date"), ("OwnerId", "reference")]),
    "Order": ("801", [("AccountId", "reference"), ("OpportunityId", "reference"), ("ContractId", "reference"),
                      ("EffectiveDate", "date"), ("Status", "picklist"), ("OrderNumber", "string"),
                      ("TotalAmount", "currency")]),
    "OrderItem": ("802", [("OrderId", "reference"), ("Product2Id", "reference"), ("Quantity", "double"),
                          ("UnitPrice", "currency"), ("TotalPrice", "currency")]),
    "Quote": ("0Q0", [("OpportunityId", "reference"), ("AccountId", "reference"), ("Name", "string"),
                      ("QuoteNumber", "string"), ("Status", "picklist"), ("ExpirationDate", "date"),
                      ("Subtotal", "currency"), ("TotalPrice", "currency"), ("GrandTotal", "currency"),
                      ("Tax", "currency")]),
    "QuoteLineItem": ("0QL", [("QuoteId", "reference"), ("Product2Id", "reference"), ("Description", "string"),
                              ("Quantity", "double"), ("UnitPrice", "currency"), ("ListPrice", "currency"),
                              ("Subtotal", "currency"), ("TotalPrice", "currency"), ("Discount", "percent"),
                              ("ServiceDate", "date")]),
}
_REFERENCE_TO = {"AccountId": "Account", "ConvertedAccountId": "Account", "ConvertedContactId": "Contact",
                 "ConvertedOpportunityId": "Opportunity", "OpportunityId": "Opportunity", "Product2Id": "Product2",
                 "OrderId": "Order", "ContractId": "Contract", "QuoteId": "Quote", "Pricebook2Id": "Pricebook2"}
_COMPOUND = {"address", "location"}
_TEXT = {"string", "picklist", "url", "email", "phone", "textarea", "id", "reference"}
_NUMBER = {"currency", "double", "percent", "int"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
COLLECTION_LIMIT = 200


def _label(name: str) -> str:
    return name.removesuffix("__c").replace("_", " ")


@dataclass
class ValidationRule:
    """An org validation rule: ``fails(record after the update)`` -> the update is refused with
    ``FIELD_CUSTOM_VALIDATION_EXCEPTION`` and ``message`` (on ``fields``, if the rule names them)."""

    obj: str
    fails: Callable[[dict[str, Any]], bool]
    message: str
    fields: tuple[str, ...] = ()


def _field_describe(name: str, ftype: str, *, updateable: bool = True, length: int | None = None) -> dict[str, Any]:
    numeric = ftype in ("currency", "double", "percent")
    return {
        "name": name, "label": _label(name), "type": ftype,
        "custom": name.endswith("__c"), "nillable": name not in ("Id", "IsDeleted", "Name"),
        "createable": ftype != "id" and name not in dict(_SYSTEM) and updateable,
        "updateable": ftype != "id" and name not in dict(_SYSTEM) and updateable,
        "externalId": name == "ERP_Customer_Id__c", "idLookup": name == "Id", "unique": False,
        "calculated": False, "length": length or (255 if ftype in _TEXT else 0),
        "precision": 18 if numeric else 0, "scale": 2 if numeric else 0, "picklistValues": [],
        "referenceTo": [_REFERENCE_TO[name]] if ftype == "reference" and name in _REFERENCE_TO else [],
        "relationshipName": name[:-2] if ftype == "reference" else None, "defaultValue": None,
    }


# --- the org -------------------------------------------------------------------------------------

@dataclass
class Faults:
    """Switchable misbehaviour; change fields at any time (the server reads them per request)."""

    latency_s: float = 0.0
    error_rate: float = 0.0  # share of data requests answered 503 SERVER_UNAVAILABLE
    timeout_rate: float = 0.0  # share of data requests that stall for ``stall_s`` before answering
    stall_s: float = 5.0
    expire_session_once: bool = False  # next data request: 401 INVALID_SESSION_ID, every token revoked
    expire_session_always: bool = False  # every data request is refused with INVALID_SESSION_ID
    bulk_polls_before_complete: int = 1
    late_commit_s: float = 0.0  # writes become visible this long after their SystemModstamp (long transactions)
    drop_next_records_url: bool = False  # a query batch that is not the last says done: false without nextRecordsUrl


@dataclass
class Credentials:
    client_id: str = "ltc-emulator-client"
    client_secret: str = "ltc-emulator-secret"
    username: str = "integration@ltc.example"
    password: str = "emulator-password"
    security_token: str = "SECTOKEN"
    static_token: str = "00Demulator!static-token"  # accepted as-is (direct instance URL + token mode)


class Org:
    """The emulated org: schema, records, API usage, tokens, faults. Thread-safe."""

    def __init__(self, *, seed: int = 1, size: int = 20, daily_limit: int = 15_000, api_used: int = 0,
                 wide_fields: int = 0, multi_currency: bool = False, faults: Faults | None = None,
                 world: dict[str, list[dict[str, Any]]] | None = None):
        self.seed = seed
        self.rng = random.Random(seed)
        self.fault_rng = random.Random(seed + 1)
        self.faults = faults or Faults()
        self.creds = Credentials()
        self.daily_limit = daily_limit
        self.api_used = api_used
        self.lock = threading.RLock()
        self.tokens: set[str] = set()
        self.requests: list[str] = []  # "METHOD path" of every data request (tests assert on it)
        self.counters: dict[str, int] = {}
        self.types: dict[str, dict[str, str]] = {}
        for obj, (_, fields) in _OBJECTS.items():
            extra = [("CurrencyIsoCode", "picklist")] if multi_currency else []
            if obj == "Account":
                extra += [(f"Wide_Attribute_{i:04d}__c", "string") for i in range(wide_fields)]
            self.types[obj] = dict(_SYSTEM + fields + extra)
        self.rows: dict[str, dict[str, dict[str, Any]]] = {obj: {} for obj in _OBJECTS}
        self.hidden: dict[str, set[str]] = {obj: set() for obj in _OBJECTS}
        self.visible_at: dict[str, dict[str, float]] = {obj: {} for obj in _OBJECTS}  # late commits
        self._index: dict[str, list[tuple[str, str]] | None] = {obj: None for obj in _OBJECTS}
        self.cursors: dict[str, tuple[str, list[str], list[str], int]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        # the org's delete log (what getDeleted reads): obj -> Id -> deletedDate (REST datetime text)
        self.delete_log: dict[str, dict[str, str]] = {obj: {} for obj in _OBJECTS}
        self.ingest: dict[str, dict[str, Any]] = {}  # Bulk API 2.0 ingest jobs
        self._jwt_key: Any = None
        self.multi_currency = multi_currency
        self.readonly: dict[str, set[str]] = {obj: set() for obj in _OBJECTS}  # no edit access (FLS)
        self.lengths: dict[tuple[str, str], int] = {}
        self.validation_rules: list[ValidationRule] = []
        self.locked: set[str] = set()  # records another transaction holds: UNABLE_TO_LOCK_ROW
        if world is None:
            self.populate(size)
        else:
            self.load_world(world)

    # -- data ------------------------------------------------------------------------------------

    def new_id(self, obj: str) -> str:
        n = self.counters.get(obj, 0) + 1
        self.counters[obj] = n
        return f"{_OBJECTS[obj][0]}Dn{n:010d}AAA"

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC).replace(microsecond=0)

    def insert(self, obj: str, values: dict[str, Any], *, at: datetime | None = None, visible: bool = True) -> str:
        """A new record stamped ``at`` (default now); ``visible=False`` = committed later (see publish)."""
        with self.lock:
            rid = self.new_id(obj)
            stamp = sf_datetime(at or self.now())
            rec: dict[str, Any] = dict.fromkeys(self.types[obj])
            rec.update({"Id": rid, "IsDeleted": False, "CreatedDate": stamp, "LastModifiedDate": stamp,
                        "SystemModstamp": stamp})
            if self.multi_currency:
                rec["CurrencyIsoCode"] = "USD"
            rec.update(self._check(obj, values))
            self.rows[obj][rid] = rec
            self._visibility(obj, rid, visible)
            self._index[obj] = None
            return rid

    def update(self, obj: str, rid: str, values: dict[str, Any], *, at: datetime | None = None,
               visible: bool = True) -> None:
        with self.lock:
            rec = self.rows[obj][rid]
            rec.update(self._check(obj, values))
            stamp = sf_datetime(at or self.now())
            rec["LastModifiedDate"] = rec["SystemModstamp"] = stamp
            self._visibility(obj, rid, visible)
            self._index[obj] = None

    def delete(self, obj: str, rid: str, *, at: datetime | None = None) -> None:
        """Soft delete (recycle bin): gone from ``query``, ``IsDeleted = true`` in ``queryAll``, and
        written to the delete log that getDeleted reads."""
        self.update(obj, rid, {"IsDeleted": True}, at=at)
        with self.lock:
            self.delete_log[obj][rid] = self.rows[obj][rid]["SystemModstamp"]

    def purge(self, obj: str, rid: str, *, keep_log: bool = True, at: datetime | None = None) -> None:
        """Hard delete (emptied from the recycle bin): gone from ``queryAll`` too. The delete log
        keeps its entry (15 days) unless ``keep_log`` is false (an administrator purged it)."""
        with self.lock:
            if not self.rows[obj][rid]["IsDeleted"]:
                self.delete_log[obj][rid] = sf_datetime(at or self.now())
            del self.rows[obj][rid]
            self.hidden[obj].discard(rid)
            self.visible_at[obj].pop(rid, None)
            self._index[obj] = None
            if not keep_log:
                self.delete_log[obj].pop(rid, None)

    def _visibility(self, obj: str, rid: str, visible: bool) -> None:
        if not visible:
            self.hidden[obj].add(rid)
        elif self.faults.late_commit_s:
            self.visible_at[obj][rid] = time.time() + self.faults.late_commit_s

    def publish(self, obj: str, rid: str | None = None) -> None:
        """Make hidden (not yet committed) records visible, with the stamps they were written with."""
        with self.lock:
            if rid is None:
                self.hidden[obj].clear()
            else:
                self.hidden[obj].discard(rid)

    def create_field(self, obj: str, name: str, ftype: str, *, length: int | None = None,
                     editable: bool = True) -> None:
        """A custom field created in Setup (``describe`` lists it from now on); ``editable=False``: the
        integration user's profile has read access only (field-level security)."""
        with self.lock:
            self.types[obj][name] = ftype
            for rec in self.rows[obj].values():
                rec.setdefault(name, None)
            if length:
                self.lengths[(obj, name)] = length
            (self.readonly[obj].discard if editable else self.readonly[obj].add)(name)

    def describe_field(self, obj: str, name: str) -> dict[str, Any]:
        return _field_describe(name, self.types[obj][name], updateable=name not in self.readonly[obj],
                               length=self.lengths.get((obj, name)))

    def save(self, items: list[tuple[str, str | None, dict[str, Any]]], *, all_or_none: bool = False
             ) -> list[dict[str, Any]]:
        """Update records as the REST API does: one SaveResult per (object, id, values), in order.
        Raises :class:`SoqlError` for what fails the whole request (unknown field, wrong JSON type)."""
        with self.lock:
            for obj, _, values in items:
                if obj not in self.types:
                    raise SoqlError("INVALID_TYPE", f"sObject type '{obj}' is not supported.")
                for name, value in values.items():
                    ftype = self.types[obj].get(name)
                    if ftype is None:
                        raise SoqlError("INVALID_FIELD", f"No such column '{name}' on sobject of type {obj}")
                    if value is not None and not _json_type_ok(ftype, value):
                        raise SoqlError("JSON_PARSER_ERROR", f"Cannot deserialize instance of {ftype} from "
                                                             f"{type(value).__name__} value {value!r} for {name}")
            results = [self._save_one(obj, rid, values) for obj, rid, values in items]
            ok = all(r is None for r in results)
            if all_or_none and not ok:
                rolled = {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back "
                          "because not all records were valid and the request was using AllOrNone header",
                          "fields": []}
                return [{"success": False, "errors": [err or rolled]} for err in results]
            stamp = sf_datetime(self.now())
            out = []
            for (obj, rid, values), err in zip(items, results, strict=True):
                if err is not None:
                    out.append({"success": False, "errors": [err]})
                    continue
                assert rid is not None
                rec = self.rows[obj][rid]
                rec.update(values)
                rec["LastModifiedDate"] = rec["SystemModstamp"] = stamp
                self._index[obj] = None
                out.append({"id": rid, "success": True, "errors": []})
            return out

    def run_ingest(self, job: dict[str, Any]) -> None:
        """Process an uploaded update job row by row (as Salesforce does, each row its own save)."""
        obj = job["object"]
        reader = csv.reader(io.StringIO(job["csv"] or ""))
        columns = next(reader, [])
        job["columns"], job["failed"], job["succeeded"], job["processed"] = columns, [], [], 0
        unknown = [c for c in columns if c not in self.types[obj]]
        if "Id" not in columns or unknown:
            job["error"] = (f"InvalidBatch : Field name not found : {unknown[0]}" if unknown
                            else "InvalidBatch : The Id field is required for an update")
            return
        for row in reader:
            values: dict[str, Any] = {}
            problem = None
            for name, cell in zip(columns, row, strict=False):
                if name == "Id" or cell == "":
                    continue  # an empty cell leaves the field as it is
                try:
                    values[name] = None if cell == "#N/A" else _from_csv(self.types[obj][name], cell)
                except (ValueError, ArithmeticError):
                    problem = f"INVALID_TYPE_ON_FIELD_IN_RECORD:{_label(name)}: value not of required type: {cell}:{name} --"
            rid = row[columns.index("Id")] if len(row) > columns.index("Id") else ""
            job["processed"] += 1
            result = None if problem else self.save([(obj, rid or None, values)])[0]
            if problem or not result or not result["success"]:
                if not problem and result:
                    e = result["errors"][0]
                    problem = f"{e['statusCode']}:{e['message']}:{','.join(e['fields'])} --"
                job["failed"].append(([rid, problem], row))
            else:
                job["succeeded"].append(([rid, "false"], row))

    def _save_one(self, obj: str, rid: str | None, values: dict[str, Any]) -> dict[str, Any] | None:
        """The error of one record's update (None: it would succeed)."""
        def err(code: str, message: str, fields: list[str] | None = None) -> dict[str, Any]:
            return {"statusCode": code, "message": message, "fields": fields or []}

        if not rid:
            return err("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        rec = self.rows[obj].get(rid)
        if rec is None:
            return err("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["Id"])
        if rec["IsDeleted"]:
            return err("ENTITY_IS_DELETED", "entity is deleted")
        denied = sorted(n for n in values if n in self.readonly[obj] or n in dict(_SYSTEM))
        if denied:
            return err("INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: {', '.join(denied)}. "
                       "Please check the security settings of this field and verify that it is read/write for "
                       "your profile or permission set.", denied)
        for name, value in values.items():
            limit = self.lengths.get((obj, name)) or (255 if self.types[obj][name] in _TEXT else None)
            if isinstance(value, str) and limit is not None and len(value) > limit:
                return err("STRING_TOO_LONG", f"{_label(name)}: data value too large: {value[:40]} "
                           f"(max length={limit})", [name])
        if rid in self.locked:
            return err("UNABLE_TO_LOCK_ROW", f"unable to obtain exclusive access to this record or 1 records: {rid}")
        after = {**rec, **values}
        for rule in self.validation_rules:
            if rule.obj == obj and rule.fails(after):
                return err("FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message, list(rule.fields))
        return None

    def _check(self, obj: str, values: dict[str, Any]) -> dict[str, Any]:
        unknown = set(values) - set(self.types[obj])
        if unknown:
            raise KeyError(f"{obj} has no field(s) {sorted(unknown)}")
        return {k: sf_datetime(v) if isinstance(v, datetime) else v.isoformat() if isinstance(v, date) else v
                for k, v in values.items()}

    def index(self, obj: str) -> list[tuple[str, str]]:
        idx = self._index[obj]
        if idx is None:
            idx = self._index[obj] = sorted((r["SystemModstamp"], r["Id"]) for r in self.rows[obj].values())
        return idx

    def populate(self, size: int) -> None:
        """Deterministic data: ``size`` accounts with contacts, leads, opportunities + line items, quotes,
        contracts and orders + items, linked the way a Lead-to-Cash org links them."""
        rng = self.rng
        regions = ["EMEA", "NA", "APAC", "LATAM"]
        stages = [("Prospecting", 10, False, False), ("Negotiation/Review", 80, False, False),
                  ("Closed Won", 100, True, True), ("Closed Lost", 0, True, False)]

        def stamp() -> datetime:
            return T0 + timedelta(seconds=rng.randrange(0, 300 * 86400))

        def money(lo: int, hi: int) -> Decimal:
            return Decimal(rng.randrange(lo * 100, hi * 100)) / 100

        products = []
        for i in range(max(5, min(50, size // 10))):
            products.append(self.insert("Product2", {"Name": f"Product {i}", "ProductCode": f"P-{i:04d}",
                                                     "Family": rng.choice(["Licence", "Service"]),
                                                     "IsActive": True}, at=stamp()))
        for a in range(size):
            region = rng.choice(regions)
            acc = self.insert("Account", {
                "Name": f"Account {a} {rng.choice(['GmbH', 'Ltd', 'Inc', 'SAS'])}", "Type": "Customer",
                "Industry": rng.choice(["Manufacturing", "Retail", "Software"]), "BillingCity": "Berlin",
                "BillingCountry": rng.choice(["DE", "US", "FR", "GB"]), "Phone": f"+49 30 {a:06d}",
                "Website": f"https://acct{a}.example", "AnnualRevenue": money(10_000, 9_000_000),
                "Region__c": region, "Customer_Tier__c": rng.choice(["Gold", "Silver", "Bronze"]),
                "ERP_Customer_Id__c": f"C-{a:06d}"}, at=stamp())
            contacts = [self.insert("Contact", {"AccountId": acc, "FirstName": f"First{a}{c}",
                                                "LastName": f"Last{a}", "Email": f"p{a}.{c}@acct{a}.example",
                                                "Title": "Buyer"}, at=stamp()) for c in range(2)]
            stage, prob, closed, won = rng.choice(stages)
            opp = self.insert("Opportunity", {"AccountId": acc, "Name": f"Deal {a}", "StageName": stage,
                                              "CloseDate": date(2026, 1, 1) + timedelta(days=rng.randrange(330)),
                                              "Probability": Decimal(prob), "IsClosed": closed, "IsWon": won,
                                              "Region__c": region}, at=stamp())
            total = Decimal(0)
            for li in range(2):
                qty, price = Decimal(rng.randrange(1, 20)), money(10, 5_000)
                total += qty * price
                prod = products[(a + li) % len(products)]
                self.insert("OpportunityLineItem", {
                    "OpportunityId": opp, "Product2Id": prod, "ProductCode": f"P-{(a + li) % len(products):04d}",
                    "Name": f"Deal {a} line {li}", "Quantity": qty, "UnitPrice": price, "ListPrice": price,
                    "TotalPrice": qty * price, "Discount": Decimal(0)}, at=stamp())
            self.rows["Opportunity"][opp]["Amount"] = total
            self.insert("Lead", {"FirstName": f"Lead{a}", "LastName": f"Person{a}", "Company": f"Account {a}",
                                 "Email": f"lead{a}@acct{a}.example", "Status": "Closed - Converted",
                                 "LeadSource": "Web", "IsConverted": True, "ConvertedDate": date(2026, 1, 2),
                                 "ConvertedAccountId": acc, "ConvertedContactId": contacts[0],
                                 "ConvertedOpportunityId": opp, "Region__c": region}, at=stamp())
            self.insert("Quote", {"OpportunityId": opp, "AccountId": acc, "Name": f"Quote {a}",
                                  "QuoteNumber": f"{a:08d}", "Status": "Accepted" if won else "Draft",
                                  "ExpirationDate": date(2026, 12, 31), "Subtotal": total, "TotalPrice": total,
                                  "GrandTotal": total}, at=stamp())
            if won:
                con = self.insert("Contract", {"AccountId": acc, "ContractNumber": f"{a:08d}",
                                               "Status": "Activated", "StartDate": date(2026, 1, 1),
                                               "ContractTerm": 12}, at=stamp())
                order = self.insert("Order", {"AccountId": acc, "OpportunityId": opp, "ContractId": con,
                                              "EffectiveDate": date(2026, 2, 1), "Status": "Activated",
                                              "OrderNumber": f"{a:08d}", "TotalAmount": total}, at=stamp())
                self.insert("OrderItem", {"OrderId": order, "Product2Id": products[a % len(products)],
                                          "Quantity": Decimal(1), "UnitPrice": total, "TotalPrice": total},
                            at=stamp())
        self.rng = rng

    def load_world(self, world: dict[str, list[dict[str, Any]]]) -> None:
        """Records of a world directory (object -> REST query records), inserted verbatim.

        Fields the standard schema does not know (custom ``__c`` fields, or standard fields this
        emulator does not model) join the object's schema with a type inferred from their values,
        so ``describe`` lists them and SOQL can select them. ``SystemModstamp`` and ``IsDeleted``
        are kept as given (datetimes normalised to the REST form ``...000+0000``).
        """
        with self.lock:
            for obj, records in world.items():
                if obj not in self.rows:
                    raise KeyError(f"the emulator has no sObject {obj}")
                types = self.types[obj]
                for rec in records:
                    for name, value in rec.items():
                        if name != "attributes" and name not in types:
                            types[name] = _infer_type(name, value)
                stamps = [name for name, ftype in types.items() if ftype == "datetime"]
                blank = dict.fromkeys(types)
                typed_attributes = "attributes" in types
                seen: dict[str, str] = {}  # a world repeats its stamps: each distinct text is normalised once
                for rec in records:
                    row: dict[str, Any] = blank.copy()
                    if typed_attributes:
                        row.update({k: v for k, v in rec.items() if k != "attributes"})
                    else:  # the same row: a key new to the row is added last, and removed
                        row.update(rec)
                        row.pop("attributes", None)
                    for name in stamps:
                        if isinstance(value := row[name], str):
                            stamp = seen.get(value)
                            if stamp is None:
                                stamp = seen[value] = _sf_stamp(value)
                            row[name] = stamp
                    row["IsDeleted"] = bool(row.get("IsDeleted") or False)
                    for stamp in ("CreatedDate", "LastModifiedDate"):
                        row[stamp] = row[stamp] or row["SystemModstamp"]
                    self.rows[obj][str(row["Id"])] = row
                self._index[obj] = None
            for obj, rows in self.rows.items():  # a record inserted later must not reuse an id
                self.counters[obj] = len(rows)

    def total_records(self) -> int:
        return sum(len(r) for r in self.rows.values())

    # -- queries -----------------------------------------------------------------------------------

    def run_query(self, soql: str, *, include_deleted: bool) -> tuple[Query, list[str] | int]:
        """Parse + evaluate: the matching ids in order (or the count for COUNT())."""
        q = parse(soql)
        if q.obj not in self.types:
            raise SoqlError("INVALID_TYPE", f"sObject type '{q.obj}' is not supported. If you are attempting to "
                                            "use a custom object, be sure to append the '__c' after the entity name.")
        types = self.types[q.obj]
        for f in q.fields + [name for name, _ in q.order_by]:
            if f not in types:
                compile_where(_cmp_probe(f), types, q.obj)  # raises the vendor's INVALID_FIELD
        pred = compile_where(q.where, types, q.obj)
        with self.lock:
            rows, hidden = self.rows[q.obj], set(self.hidden[q.obj])
            now = time.time()
            hidden.update(rid for rid, at in self.visible_at[q.obj].items() if at > now)
            keyed = [name for name, _ in q.order_by] in (["SystemModstamp", "Id"], ["SystemModstamp"], [])
            if keyed and not any(desc for _, desc in q.order_by):
                idx = self.index(q.obj)
                lb = lower_bound(q.where, "SystemModstamp")
                ub = upper_bound(q.where, "SystemModstamp")  # a range scan: no row after it can match
                start = bisect_left(idx, (lb, "")) if lb else 0
                out: list[str] = []
                for k in range(start, len(idx)):
                    stamp, rid = idx[k]
                    if ub is not None and stamp > ub:
                        break
                    rec = rows[rid]
                    if rid in hidden or (rec["IsDeleted"] and not include_deleted) or not pred(rec):
                        continue
                    out.append(rid)
                    if q.limit is not None and len(out) >= q.limit and not q.count:
                        break
            else:
                out = [rid for rid, rec in rows.items() if rid not in hidden
                       and (include_deleted or not rec["IsDeleted"]) and pred(rec)]
                for name, desc in reversed(q.order_by):
                    out.sort(key=lambda i, n=name: (rows[i][n] is None, rows[i][n] or ""), reverse=desc)  # type: ignore[misc]
                if q.limit is not None:
                    out = out[: q.limit]
        if q.count:
            return q, len(out) if q.limit is None else min(len(out), q.limit)
        return q, out

    def render(self, obj: str, fields: list[str], ids: list[str], version: str) -> list[dict[str, Any]]:
        rows = self.rows[obj]
        url = f"/services/data/v{version}/sobjects/{obj}/"
        out = []
        for rid in ids:
            rec = rows[rid]
            item: dict[str, Any] = {"attributes": {"type": obj, "url": url + rid}}
            for f in fields:
                item[f] = rec.get(f)
            out.append(item)
        return out

    # -- auth --------------------------------------------------------------------------------------

    def issue_token(self) -> str:
        token = f"00D{self.seed:012d}!{secrets.token_urlsafe(24)}"
        with self.lock:
            self.tokens.add(token)
        return token

    def token_ok(self, token: str) -> bool:
        return token in self.tokens or token == self.creds.static_token

    @property
    def jwt_private_key_pem(self) -> bytes:
        """The connected app's key pair (the org knows the certificate, a test or config holds the key)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        with self.lock:
            if self._jwt_key is None:
                self._jwt_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return bytes(self._jwt_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))

    def verify_jwt(self, assertion: str) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        if self._jwt_key is None:
            return False
        try:
            head, body, sig = assertion.split(".")
            header = json.loads(_b64d(head))
            claims = json.loads(_b64d(body))
            if header.get("alg") != "RS256":
                return False
            self._jwt_key.public_key().verify(_b64d(sig), f"{head}.{body}".encode(), padding.PKCS1v15(),
                                              hashes.SHA256())
        except (ValueError, InvalidSignature):
            return False
        return (claims.get("iss") == self.creds.client_id and claims.get("sub") == self.creds.username
                and int(claims.get("exp", 0)) > time.time() and str(claims.get("aud", "")).startswith("https://"))


_REST_STAMP = re.compile(r"[1-9]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")


def _sf_stamp(text: str) -> str:
    """A datetime as a world may write it (``...Z``, ``+00:00``, ``+0000``) in the REST form."""
    if _REST_STAMP.fullmatch(text):  # the REST form already (as the world writer writes it): itself if valid,
        return text  # and kept as given if not (February 30): what the parse below answers, without it
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    elif len(t) > 5 and t[-5] in "+-" and t[-4:].isdigit():
        t = t[:-2] + ":" + t[-2:]
    try:
        value = datetime.fromisoformat(t)
    except ValueError:
        return text
    return sf_datetime(value if value.tzinfo else value.replace(tzinfo=UTC))


def _sf_iso(text: str) -> str:
    """``2026-01-31T10:00:00.000+0000`` -> ``2026-01-31T10:00:00.000+00:00`` (for fromisoformat)."""
    return text[:-2] + ":" + text[-2:] if len(text) > 5 and text[-5] in "+-" and ":" not in text[-5:] else text


def _minute(text: str) -> datetime:
    """A getDeleted parameter: ISO 8601 with a zone, seconds dropped (Salesforce ignores them)."""
    value = datetime.fromisoformat(_sf_iso(text.strip().replace("Z", "+00:00").replace(" ", "+")))
    if value.tzinfo is None:
        raise ValueError("no time zone")
    return value.astimezone(UTC).replace(second=0, microsecond=0)


def _infer_type(name: str, value: Any) -> str:
    """The describe type of a field only a world names, from one of its values."""
    if name.endswith("Id") and isinstance(value, str) and len(value) in (15, 18):
        return "reference"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "double"
    if isinstance(value, Decimal | float):
        return "currency" if any(w in name for w in ("Amount", "Price", "Revenue", "Total")) else "double"
    if isinstance(value, dict):
        return "address"
    if isinstance(value, str):
        try:
            if len(value) == 10:
                date.fromisoformat(value)
                return "date"
            if len(value) > 18 and value[10] == "T":
                datetime.fromisoformat(value.replace("Z", "+00:00"))
                return "datetime"
        except ValueError:
            pass
    return "string"


def _json_type_ok(ftype: str, value: Any) -> bool:
    """Whether Salesforce's JSON reader takes ``value`` for a field of ``ftype``."""
    if ftype in _NUMBER:
        return isinstance(value, int | Decimal | float) and not isinstance(value, bool)
    if ftype == "boolean":
        return isinstance(value, bool)
    if ftype == "date":
        if not isinstance(value, str):
            return False
        try:
            date.fromisoformat(value)
        except ValueError:
            return False
        return len(value) == 10
    return isinstance(value, str)


def _from_csv(ftype: str, cell: str) -> Any:
    """A Bulk CSV cell typed for a field (CSV has only text)."""
    if ftype in ("currency", "double", "percent"):
        return Decimal(cell)
    if ftype == "int":
        return int(cell)
    if ftype == "boolean":
        if cell.lower() not in ("true", "false"):
            raise ValueError(cell)
        return cell.lower() == "true"
    if ftype == "date":
        date.fromisoformat(cell)
    return cell


def _cmp_probe(name: str) -> Any:
    from sandbox.soql import Cmp

    return Cmp(name, "=", None)


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- HTTP ------------------------------------------------------------------------------------------

def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse([{"message": message, "errorCode": code}], status_code=status, headers=headers)


def _json(body: Any, headers: dict[str, str]) -> Response:
    return Response(orjson.dumps(body, default=_default), media_type="application/json", headers=headers)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)  # a JSON number; repr gives back the same digits (<= 15 significant)
    raise TypeError(type(value).__name__)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return repr(float(value))  # the same digits the JSON API writes
    if isinstance(value, str) and len(value) == 28 and value.endswith("+0000") and value[10] == "T":
        return value[:23] + "Z"  # Bulk 2.0 CSV writes datetimes as 2026-01-31T10:00:00.000Z
    return str(value)


_GRANTS = ("client_credentials", "password", "urn:ietf:params:oauth:grant-type:jwt-bearer")


class _Guarded:
    """What every handler of the emulated API shares: the org, and the guard a data request passes."""

    def __init__(self, org: Org) -> None:
        self.org = org

    async def guard(self, request: Request) -> tuple[Response | None, dict[str, str]]:
        """Auth, quota and faults for one data request; returns (error response or None, headers)."""
        f = self.org.faults
        if f.latency_s:
            await asyncio.sleep(f.latency_s)
        raw = request.url.path + ("?" + request.url.query if request.url.query else "")
        with self.org.lock:
            self.org.requests.append(f"{request.method} {raw}")
            self.org.api_used += 1
            used = self.org.api_used
        headers = {"Sforce-Limit-Info": f"api-usage={used}/{self.org.daily_limit}"}
        refused = self._refused(request, raw, used, headers)
        if refused is None and f.timeout_rate and self.org.fault_rng.random() < f.timeout_rate:
            await asyncio.sleep(f.stall_s)
        return refused, headers

    def _refused(self, request: Request, raw: str, used: int, headers: dict[str, str]) -> Response | None:
        """The answer to a request refused before it is served: URI too long, session expired or
        invalid, the daily limit passed, or an injected server error."""
        f = self.org.faults
        if len(raw) > URI_LIMIT:
            return PlainTextResponse("URI Too Long", status_code=414)
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if f.expire_session_always or f.expire_session_once or not self.org.token_ok(token):
            if f.expire_session_once:
                f.expire_session_once = False
                with self.org.lock:
                    self.org.tokens.clear()
            return _error(401, "INVALID_SESSION_ID", "Session expired or invalid", headers)
        if used > self.org.daily_limit:
            return _error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", headers)
        if f.error_rate and self.org.fault_rng.random() < f.error_rate:
            return _error(503, "SERVER_UNAVAILABLE", "Server is temporarily unavailable", headers)
        return None

    async def guarded_body(self, request: Request) -> tuple[Response | None, dict[str, str], Any]:
        """The request's guard, then its JSON body (amounts as Decimal)."""
        err, headers = await self.guard(request)
        if err:
            return err, headers, None
        err, body = await self.write_body(request, headers)
        return err, headers, body

    async def write_body(self, request: Request, headers: dict[str, str]) -> tuple[Response | None, Any]:
        try:
            return None, json.loads(await request.body(), parse_float=Decimal)
        except ValueError:
            return _error(400, "JSON_PARSER_ERROR", "Unexpected character: the request body is not JSON",
                          headers), None


class _Rest(_Guarded):
    """The REST API: OAuth token, SOQL query and queryMore, describe, getDeleted, limits, sObject writes."""

    async def token(self, request: Request) -> Response:
        """``/services/oauth2/token``: an access token for the client credentials, password or JWT bearer grant."""
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        grant = str(form.get("grant_type", ""))
        if grant not in _GRANTS:
            return JSONResponse({"error": "unsupported_grant_type", "error_description": "grant type not supported"},
                                status_code=400)
        if not self._granted(grant, form, request):
            return JSONResponse({"error": "invalid_grant", "error_description": "authentication failure"},
                                status_code=400)
        base = f"{request.url.scheme}://{request.url.netloc}"
        body = {"access_token": self.org.issue_token(), "instance_url": base, "token_type": "Bearer",
                "id": f"{base}/id/00D{self.org.seed:015d}/005{self.org.seed:015d}", "issued_at": str(int(time.time() * 1000)),
                "signature": base64.b64encode(secrets.token_bytes(32)).decode()}
        if grant != "password":
            body["scope"] = "api"
        return JSONResponse(body)

    def _granted(self, grant: str, form: dict[str, str], request: Request) -> bool:
        """Whether the grant's credentials are the org's (client credentials also by HTTP Basic)."""
        c = self.org.creds
        if grant == "client_credentials":
            cid, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
            basic = request.headers.get("authorization", "")
            if basic.startswith("Basic "):
                cid, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            return (cid, secret) == (c.client_id, c.client_secret)
        if grant == "password":
            return (str(form.get("client_id")), str(form.get("client_secret")), str(form.get("username")),
                    str(form.get("password"))) == (c.client_id, c.client_secret, c.username,
                                                   c.password + c.security_token)
        return self.org.verify_jwt(str(form.get("assertion", "")))

    async def query(self, request: Request) -> Response:
        err, headers = await self.guard(request)
        if err:
            return err
        include_deleted = "queryAll" in request.url.path
        soql = request.query_params.get("q")
        if not soql:
            return _error(400, "MALFORMED_QUERY", "missing query parameter q", headers)
        try:
            q, result = self.org.run_query(soql, include_deleted=include_deleted)
        except SoqlError as exc:
            return _error(400, exc.code, exc.message, headers)
        if isinstance(result, int):
            return _json({"totalSize": result, "done": True, "records": []}, headers)
        batch = _batch_size(request)
        cursor = secrets.token_hex(8)
        with self.org.lock:
            self.org.cursors[cursor] = (q.obj, q.fields, result, batch)
        return self._page(request, cursor, 0, headers)

    def _page(self, request: Request, cursor: str, offset: int, headers: dict[str, str]) -> Response:
        obj, fields, ids, batch = self.org.cursors[cursor]
        chunk = ids[offset:offset + batch]
        with self.org.lock:
            records = self.org.render(obj, fields, chunk, _version_of(request))
        body: dict[str, Any] = {"totalSize": len(ids), "done": offset + batch >= len(ids)}
        if not body["done"] and not self.org.faults.drop_next_records_url:
            body["nextRecordsUrl"] = f"/services/data/v{_version_of(request)}/query/{cursor}-{offset + batch}"
        else:
            self.org.cursors.pop(cursor, None)
        body["records"] = records
        return _json(body, headers)

    async def query_more(self, request: Request) -> Response:
        err, headers = await self.guard(request)
        if err:
            return err
        cursor, _, offset = str(request.path_params["locator"]).rpartition("-")
        if cursor not in self.org.cursors or not offset.isdigit():
            return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator", headers)
        return self._page(request, cursor, int(offset), headers)

    async def guarded_object(self, request: Request) -> tuple[Response | None, dict[str, str], str]:
        """The request's auth check, then the sObject it names (a 404 in Salesforce's shape if unknown)."""
        err, headers = await self.guard(request)
        obj = str(request.path_params["obj"])
        if err is None and obj not in self.org.types:
            err = _error(404, "NOT_FOUND", "The requested resource does not exist", headers)
        return err, headers, obj

    async def describe(self, request: Request) -> Response:
        err, headers, obj = await self.guarded_object(request)
        if err:
            return err
        v = _version_of(request)
        return _json({
            "name": obj, "label": obj, "labelPlural": obj + "s", "custom": False, "keyPrefix": _OBJECTS[obj][0],
            "createable": True, "updateable": True, "deletable": True, "queryable": True,
            "fields": [self.org.describe_field(obj, n) for n in self.org.types[obj]],
            "childRelationships": [], "recordTypeInfos": [],
            "urls": {"sobject": f"/services/data/v{v}/sobjects/{obj}",
                     "describe": f"/services/data/v{v}/sobjects/{obj}/describe"},
        }, headers)

    async def global_describe(self, request: Request) -> Response:
        err, headers = await self.guard(request)
        if err:
            return err
        return _json({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [
            {"name": o, "label": o, "custom": False, "keyPrefix": p, "queryable": True}
            for o, (p, _) in _OBJECTS.items()]}, headers)

    async def get_deleted(self, request: Request) -> Response:
        """``sobjects/<obj>/deleted/?start=&end=``: the delete log between two instants (seconds are
        ignored; start must precede end by more than a minute and lie within the last 30 days;
        entries older than 15 days are gone)."""
        err, headers, obj = await self.guarded_object(request)
        if err:
            return err
        try:
            start = _minute(request.query_params["start"])
            end = _minute(request.query_params["end"])
        except (KeyError, ValueError):
            return _error(400, "MALFORMED_QUERY", "start and end must be ISO 8601 date-times", headers)
        now = self.org.now()
        if end - start <= timedelta(minutes=1):
            return _error(400, "INVALID_REPLICATION_DATE", "startDate must precede endDate by more than one minute",
                          headers)
        if start < now - timedelta(days=30):
            return _error(400, "INVALID_REPLICATION_DATE", "startDate cannot be more than 30 days ago", headers)
        return _json(self._deleted(obj, start, min(end, now.replace(second=0)), now - timedelta(days=15)), headers)

    def _deleted(self, obj: str, start: datetime, end: datetime, floor: datetime) -> dict[str, Any]:
        """The getDeleted answer: the log entries in [start, end] not older than ``floor``."""
        with self.org.lock:
            log = [(rid, when) for rid, when in self.org.delete_log[obj].items()
                   if (at := datetime.fromisoformat(_sf_iso(when))) >= floor and start <= at <= end]
            earliest = min((_sf_iso(w) for w in self.org.delete_log[obj].values()), default=None)
        return {"deletedRecords": [{"id": rid, "deletedDate": when} for rid, when in sorted(log)],
                "earliestDateAvailable": sf_datetime(datetime.fromisoformat(earliest)) if earliest
                else sf_datetime(floor),
                "latestDateCovered": sf_datetime(end)}

    async def limits(self, request: Request) -> Response:
        err, headers = await self.guard(request)
        if err:
            return err
        return _json({"DailyApiRequests": {"Max": self.org.daily_limit, "Remaining": max(0, self.org.daily_limit - self.org.api_used)},
                      "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000 - len(self.org.jobs)}}, headers)

    async def collection_update(self, request: Request) -> Response:
        err, headers, body = await self.guarded_body(request)
        if err:
            return err
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            return _error(400, "JSON_PARSER_ERROR", "records: a list of sObjects is required", headers)
        if len(records) > COLLECTION_LIMIT:
            return _error(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than "
                          f"{COLLECTION_LIMIT} records into this call", headers)
        items = _collection_items(records)
        if items is None:
            return _error(400, "INVALID_TYPE", "Must send a concrete entity type: every record needs "
                          "attributes.type", headers)
        chunks = sum(1 for i, it in enumerate(items) if i == 0 or it[0] != items[i - 1][0])
        if chunks > 10:
            return _error(400, "INVALID_BATCH_REQUEST", "A single request can process up to 10 chunks of "
                          "records of one type", headers)
        try:
            results = self.org.save(items, all_or_none=bool(body.get("allOrNone")))
        except SoqlError as exc:
            return _error(400, exc.code, exc.message, headers)
        return _json(results, headers)

    async def record_update(self, request: Request) -> Response:
        err, headers = await self.guard(request)
        if err:
            return err
        obj, rid = str(request.path_params["obj"]), str(request.path_params["rid"])
        if obj not in self.org.types or rid not in self.org.rows[obj]:
            return _error(404, "NOT_FOUND", "The requested resource does not exist", headers)
        err, body = await self.write_body(request, headers)
        if err:
            return err
        try:
            (result,) = self.org.save([(obj, rid, {k: v for k, v in body.items() if k != "attributes"})])
        except SoqlError as exc:
            return _error(400, exc.code, exc.message, headers)
        if result["success"]:
            return Response(status_code=204, headers=headers)
        e = result["errors"][0]
        return JSONResponse([{"message": e["message"], "errorCode": e["statusCode"], "fields": e["fields"]}],
                            status_code=400, headers=headers)



class _Bulk(_Guarded):
    """Bulk API 2.0: query jobs (snapshot results as CSV) and update ingest jobs."""

    async def create_job(self, request: Request) -> Response:
        err, headers = await self.guard(request)
        if err:
            return err
        try:
            spec = json.loads(await request.body())
        except ValueError:
            return _error(400, "JSON_PARSER_ERROR", "request body is not JSON", headers)
        op = spec.get("operation")
        if op not in ("query", "queryAll") or not spec.get("query"):
            return _error(400, "INVALIDJOB", "operation must be query or queryAll and query is required", headers)
        try:
            q, ids = self.org.run_query(spec["query"], include_deleted=op == "queryAll")
        except SoqlError as exc:
            return _error(400, exc.code, exc.message, headers)
        if isinstance(ids, int):
            return _error(400, "INVALIDJOB", "COUNT() is not supported by Bulk API 2.0 query", headers)
        if not q.order_by:
            ids = sorted(ids)  # PK-chunked: Id order, not SystemModstamp order
        job_id = f"750Dn{len(self.org.jobs) + 1:010d}AAA"
        with self.org.lock:
            # results are a snapshot taken now, rendered as CSV when downloaded
            self.org.jobs[job_id] = {"q": q, "ids": ids, "polls": 0, "snapshot": {i: dict(self.org.rows[q.obj][i]) for i in ids}}
        return _json(self._job_info(job_id, q.obj, op, "UploadComplete", 0), headers)

    def _job_info(self, job_id: str, obj: str, op: str, state: str, n: int) -> dict[str, Any]:
        return {"id": job_id, "operation": op, "object": obj, "createdById": "005000000000000AAA",
                "createdDate": sf_datetime(self.org.now()), "systemModstamp": sf_datetime(self.org.now()), "state": state,
                "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": float(API_VERSION),
                "lineEnding": "LF", "columnDelimiter": "COMMA", "numberRecordsProcessed": n, "retries": 0,
                "totalProcessingTime": 0}

    async def guarded_job(self, request: Request) -> tuple[Response | None, dict[str, str], dict[str, Any]]:
        """The request's auth check, then the job it names (a 404 in Salesforce's shape if unknown)."""
        err, headers = await self.guard(request)
        if err:
            return err, headers, {}
        job = self.org.jobs.get(str(request.path_params["job"]))
        if job is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist", headers), headers, {}
        return None, headers, job

    async def job_status(self, request: Request) -> Response:
        err, headers, job = await self.guarded_job(request)
        if err:
            return err
        job["polls"] += 1
        done = job["polls"] >= self.org.faults.bulk_polls_before_complete
        return _json(self._job_info(str(request.path_params["job"]), job["q"].obj, "query",
                               "JobComplete" if done else "InProgress", len(job["ids"]) if done else 0), headers)

    async def job_results(self, request: Request) -> Response:
        err, headers, job = await self.guarded_job(request)
        if err:
            return err
        max_records = int(request.query_params.get("maxRecords") or 50_000)
        locator = request.query_params.get("locator") or ""
        offset = int(base64.urlsafe_b64decode(locator.encode()).decode()) if locator else 0
        ids = job["ids"][offset:offset + max_records]
        fields = job["q"].fields
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(fields)
        snap = job["snapshot"]
        for rid in ids:
            writer.writerow([_csv_value(snap[rid].get(f)) for f in fields])
        nxt = offset + len(ids)
        headers["Sforce-NumberOfRecords"] = str(len(ids))
        headers["Sforce-Locator"] = base64.urlsafe_b64encode(str(nxt).encode()).decode() if nxt < len(job["ids"]) else "null"
        return Response(buf.getvalue(), media_type="text/csv", headers=headers)

    def _ingest_info(self, job_id: str, job: dict[str, Any], state: str) -> dict[str, Any]:
        info = self._job_info(job_id, job["object"], job["operation"], state, job.get("processed", 0))
        info["contentUrl"] = f"services/data/v{API_VERSION}/jobs/ingest/{job_id}/batches"
        info["numberRecordsFailed"] = len(job.get("failed", []))
        if job.get("error"):
            info["errorMessage"] = job["error"]
        return info

    async def guarded_ingest(self, request: Request) -> tuple[Response | None, dict[str, str], str, dict[str, Any]]:
        err, headers = await self.guard(request)
        if err:
            return err, headers, "", {}
        job_id = str(request.path_params["job"])
        job = self.org.ingest.get(job_id)
        if job is None:
            return _error(404, "NOT_FOUND", "The requested resource does not exist", headers), headers, job_id, {}
        return None, headers, job_id, job

    async def create_ingest(self, request: Request) -> Response:
        err, headers, spec = await self.guarded_body(request)
        if err:
            return err
        obj, op = spec.get("object"), spec.get("operation")
        if obj not in self.org.types:
            return _error(400, "INVALIDJOB", f"Unable to find object: {obj}", headers)
        if op != "update":
            return _error(400, "API_ERROR", f"this emulator runs update ingest jobs only, not {op!r}", headers)
        if spec.get("contentType", "CSV") != "CSV" or spec.get("columnDelimiter", "COMMA") != "COMMA":
            return _error(400, "INVALIDJOB", "contentType CSV with columnDelimiter COMMA only", headers)
        with self.org.lock:
            job_id = f"750In{len(self.org.ingest) + 1:010d}AAA"
            self.org.ingest[job_id] = {"object": obj, "operation": op, "state": "Open", "csv": None, "polls": 0}
        return _json(self._ingest_info(job_id, self.org.ingest[job_id], "Open"), headers)

    async def upload_ingest(self, request: Request) -> Response:
        err, headers, _job_id, job = await self.guarded_ingest(request)
        if err:
            return err
        if job["state"] != "Open" or job["csv"] is not None:
            return _error(409, "INVALIDJOBSTATE", "Job's state does not allow uploading data", headers)
        job["csv"] = (await request.body()).decode("utf-8")
        return Response(status_code=201, headers=headers)

    async def close_ingest(self, request: Request) -> Response:
        err, headers, job_id, job = await self.guarded_ingest(request)
        if err:
            return err
        err, body = await self.write_body(request, headers)
        if err:
            return err
        state = body.get("state")
        if state == "Aborted":
            job["state"] = "Aborted"
        elif state == "UploadComplete" and job["state"] == "Open":
            self.org.run_ingest(job)
            job["state"] = "UploadComplete"
        else:
            return _error(409, "INVALIDJOBSTATE", f"cannot move a job from {job['state']} to {state}", headers)
        return _json(self._ingest_info(job_id, job, job["state"]), headers)

    async def ingest_status(self, request: Request) -> Response:
        err, headers, job_id, job = await self.guarded_ingest(request)
        if err:
            return err
        if job["state"] in ("UploadComplete", "InProgress"):
            job["polls"] += 1
            job["state"] = "JobComplete" if job["polls"] >= self.org.faults.bulk_polls_before_complete else "InProgress"
            if job.get("error"):
                job["state"] = "Failed"
        return _json(self._ingest_info(job_id, job, job["state"]), headers)

    async def ingest_results(self, request: Request) -> Response:
        err, headers, _job_id, job = await self.guarded_ingest(request)
        if err:
            return err
        if job["state"] not in ("JobComplete", "Failed"):
            return _error(400, "INVALIDJOBSTATE", "results are available once the job is complete", headers)
        kind = str(request.path_params["kind"])
        rows = job.get("failed" if kind == "failedResults" else "succeeded", [])
        first = ["sf__Id", "sf__Error"] if kind == "failedResults" else ["sf__Id", "sf__Created"]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(first + job.get("columns", []))
        for extra, row in rows:
            writer.writerow([*extra, *row])
        return Response(buf.getvalue(), media_type="text/csv", headers=headers)



def _collection_items(records: list[Any]) -> list[tuple[str, str | None, dict[str, Any]]] | None:
    """A collection's records as (type, id, fields) to save; None if one has no ``attributes.type``."""
    items = []
    for rec in records:
        obj = (rec.get("attributes") or {}).get("type") if isinstance(rec, dict) else None
        if not obj:
            return None
        rid = rec.get("id") or rec.get("Id")
        items.append((str(obj), str(rid) if rid else None,
                      {k: v for k, v in rec.items() if k not in ("attributes", "id", "Id")}))
    return items


def _version_of(request: Request) -> str:
    return str(request.path_params["version"])


def build_app(org: Org | None = None, **kwargs: Any) -> Starlette:
    """The ASGI app; ``kwargs`` go to :class:`Org` (seed, size, daily_limit, wide_fields, ...)."""
    org = org or Org(**kwargs)
    app = Starlette(routes=_routes(_Rest(org), _Bulk(org)))
    app.state.org = org
    return app


def _routes(rest: _Rest, bulk: _Bulk) -> list[Route]:
    data = "/services/data/v{version}"
    return [
        Route("/services/oauth2/token", rest.token, methods=["POST"]),
        Route(data + "/query", rest.query), Route(data + "/query/", rest.query),
        Route(data + "/queryAll", rest.query), Route(data + "/queryAll/", rest.query),
        Route(data + "/query/{locator}", rest.query_more), Route(data + "/queryAll/{locator}", rest.query_more),
        Route(data + "/sobjects/", rest.global_describe), Route(data + "/sobjects", rest.global_describe),
        Route(data + "/sobjects/{obj}/describe", rest.describe), Route(data + "/sobjects/{obj}/describe/", rest.describe),
        Route(data + "/sobjects/{obj}/deleted", rest.get_deleted), Route(data + "/sobjects/{obj}/deleted/", rest.get_deleted),
        Route(data + "/sobjects/{obj}/{rid}", rest.record_update, methods=["PATCH"]),
        Route(data + "/composite/sobjects", rest.collection_update, methods=["PATCH"]),
        Route(data + "/limits", rest.limits), Route(data + "/limits/", rest.limits),
        Route(data + "/jobs/query", bulk.create_job, methods=["POST"]),
        Route(data + "/jobs/query/{job}", bulk.job_status),
        Route(data + "/jobs/query/{job}/results", bulk.job_results),
        Route(data + "/jobs/ingest", bulk.create_ingest, methods=["POST"]),
        Route(data + "/jobs/ingest/{job}", bulk.ingest_status, methods=["GET"]),
        Route(data + "/jobs/ingest/{job}", bulk.close_ingest, methods=["PATCH"]),
        Route(data + "/jobs/ingest/{job}/batches", bulk.upload_ingest, methods=["PUT"]),
        Route(data + "/jobs/ingest/{job}/{kind:str}", bulk.ingest_results, methods=["GET"]),
        Route(data + "/jobs/ingest/{job}/{kind:str}/", bulk.ingest_results, methods=["GET"]),
    ]


def _batch_size(request: Request) -> int:
    """``Sforce-Query-Options: batchSize=N``: 200..2000 (default 2000)."""
    opts = request.headers.get("sforce-query-options", "")
    for part in opts.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip() == "batchSize" and value.strip().isdigit():
            return max(200, min(2000, int(value)))
    return 2000


def iter_objects() -> Iterator[str]:
    yield from _OBJECTS

"""``push-crm``: the finance status of reconciled chains written back onto CRM deals and accounts.

What each record should show comes from :func:`reports.crm_status.finance_status` (the finance
report's chains, per deal and rolled up per account; ``ltc.app.push_crm`` puts the two together);
the fields are those of :mod:`connectors.crm_fields` (named per source in ltc.yaml). The CRM side is a small protocol,
:class:`CrmTarget`: :class:`SalesforceTarget` and :class:`HubSpotTarget` write through the source's
own connector, so writes share the reads' rate governor, quota guard and retry layer.

**Idempotent and quiet.** ``crm_push_state`` keeps, per CRM record, the values last written and
their content hash. A record whose wanted values hash the same is skipped; otherwise only the fields
whose value changed are sent. A re-run with nothing changed sends no request at all (the field check
and the login happen only when something is to be written). Only our own fields are ever written, so
whatever a person changed on the record stays as it is.

**Per-record failures** (a validation rule, a locked record, field-level security, a deleted record)
are kept with the CRM's message in ``crm_push_state.error`` and reported; the record is tried again on
the next run and never stops the rest. A request refused as a whole (e.g. HTTP 400) fails the records
it carried, with the CRM's message; an exhausted quota stops the run with everything not yet written
left for the next run (exit 3), like a sync.

**Never fights the sync.** Our writes bump ``SystemModstamp`` / ``hs_lastmodifieddate``; the
connectors leave our fields and those stamps out of the raw landing's content hash
(:func:`connectors.crm_fields.own_paths`), so the next incremental sync refreshes the raw payload
without re-mapping the record or re-reconciling anything.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from canonical.errors import ConfigError
from canonical.store import Store, now
from canonical.tables import crm_push_state
from connectors import crm_fields
from connectors.crm_fields import OBJECTS, FinanceField, FinanceStatus, Kind, StatusRecord
from connectors.errors import AuthenticationError, ConnectorError, PermissionDenied, QuotaPaused
from connectors.http import dumps_exact

Wanted = Mapping[str, Sequence[tuple[FinanceField, str]]]  # CRM object -> (field, CRM name)


def wire(kind: Kind, value: Any) -> str | None:
    """A value in the text form stored, hashed and compared (the targets type it for the wire)."""
    if value is None:
        return None
    if kind in ("currency", "number"):
        return format(Decimal(value), "f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def values_hash(values: Mapping[str, str | None]) -> str:
    blob = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


# --- the CRM side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Update:
    """The fields of one CRM record to write (text form; ``kinds`` types them for the wire)."""

    object: str
    record_id: str
    values: Mapping[str, str | None]
    kinds: Mapping[str, Kind]
    # fields set to None here that hold a value we wrote before (a real clear, not just "never set")
    clears: frozenset[str] = frozenset()


@dataclass(frozen=True)
class WriteResult:
    ok: bool
    code: str | None = None
    message: str | None = None


class CrmTarget(Protocol):
    """What push-crm needs from a CRM. Whole-run problems raise (``QuotaPaused``, auth, permission);
    a refused record is a ``WriteResult(ok=False, ...)`` with the CRM's code and message."""

    name: str
    kind: str
    batch_size: int
    mixed_objects: bool  # one request may carry records of several objects
    bulk_threshold: int | None  # more records than this of one object: one bulk job (``write`` takes them all)

    @property
    def requests(self) -> int: ...

    def check_fields(self, wanted: Wanted) -> list[str]: ...

    def create_fields(self, wanted: Wanted) -> list[str]: ...

    def write(self, updates: Sequence[Update]) -> list[WriteResult]: ...

    def close(self) -> None: ...


# What stops the run (everything not yet written is left for the next one); any other refusal of a
# request fails only the records it carried.
_WHOLE_RUN = (QuotaPaused, PermissionDenied, AuthenticationError)


def _one_object(updates: Sequence[Update], what: str) -> str:
    objects = {u.object for u in updates}
    if len(objects) != 1:
        raise ValueError(f"{what} carries records of one object, not {sorted(objects)}")
    return objects.pop()


def _batch_failed(updates: Sequence[Update], exc: ConnectorError) -> list[WriteResult]:
    return [WriteResult(False, exc.code or (f"HTTP {exc.status}" if exc.status else "ERROR"), str(exc))
            for _ in updates]


class SalesforceTarget:
    """Custom fields on Opportunity / Account, written with sObject Collections (``PATCH
    /composite/sobjects``, 200 records a request, ``allOrNone: false``, one SaveResult per record), or
    one ``PATCH /sobjects/<Obj>/<Id>`` per record with ``options.write_api: record`` (peers without
    sObject Collections, such as simple-mockforce). Fields listed in ``options.fields`` are taken as
    existing and editable (like reads, for servers without ``describe``).

    More than ``options.bulk_write_threshold`` (default 2,000) changed records of one object go as one
    Bulk API 2.0 ingest job instead (create, upload the CSV, close, poll, read the failed results: about
    five requests whatever the count; an empty CSV cell leaves a field alone, ``#N/A`` clears it)."""

    kind = "salesforce"
    mixed_objects = True

    def __init__(self, connector: Any, *, api: str = "composite", batch_size: int = 200,
                 bulk_threshold: int | None = 2000):
        if api not in ("composite", "record"):
            raise ConfigError(f"sources.{connector.name}.options.write_api: composite or record, not {api!r}")
        self.connector = connector
        self.name = connector.name
        self.api = api
        self.batch_size = batch_size if api == "composite" else 1
        self.bulk_threshold = bulk_threshold if api == "composite" else None

    @property
    def requests(self) -> int:
        return int(self.connector.session.requests_sent)

    def _fields(self, obj: str) -> dict[str, dict[str, Any]]:
        listed = self.connector.field_overrides.get(obj)
        if listed is not None:
            return {str(n): {"name": n, "updateable": True} for n in listed}
        body = self.connector._call(f"describe {obj}", lambda sf: sf.restful(f"sobjects/{obj}/describe")) or {}
        return {str(f["name"]): f for f in body.get("fields", [])}

    def check_fields(self, wanted: Wanted) -> list[str]:
        missing, readonly = [], []
        for obj, fields in wanted.items():
            have = self._fields(obj)
            for f, name in fields:
                if name not in have:
                    missing.append(f"{obj}.{name} ({f.salesforce_type()})")
                elif not have[name].get("updateable", True):
                    readonly.append(f"{obj}.{name}")
        problems = []
        if missing:
            problems.append(
                f"Salesforce source {self.name} lacks the field(s) push-crm writes: {', '.join(missing)}; create "
                "them in Setup > Object Manager > <object> > Fields & Relationships with these API names and types "
                f"and give the integration user edit access, or name other fields under "
                f"sources.{self.name}.options.finance_fields")
        if readonly:
            problems.append(
                f"the integration user of Salesforce source {self.name} cannot edit {', '.join(readonly)} "
                "(field-level security): grant Edit access in its profile or permission set")
        return problems

    def create_fields(self, wanted: Wanted) -> list[str]:
        return []  # Salesforce custom fields and their field-level security are an admin's job in Setup

    def _typed(self, update: Update) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in update.values.items():
            kind = update.kinds[name]
            out[name] = Decimal(value) if value is not None and kind in ("currency", "number") else value
        return out

    def write(self, updates: Sequence[Update]) -> list[WriteResult]:
        if self.api == "record":
            return [self._write_one(u) for u in updates]
        if self.bulk_threshold is not None and len(updates) > self.bulk_threshold:
            return self._write_bulk(updates)
        body = {"allOrNone": False, "records": [
            {"attributes": {"type": u.object}, "id": u.record_id, **self._typed(u)} for u in updates]}
        try:
            results = self.connector._call(
                f"update of {len(updates)} record(s)",
                lambda sf: sf.restful("composite/sobjects", method="PATCH", data=dumps_exact(body))) or []
        except _WHOLE_RUN:
            raise
        except ConnectorError as exc:
            return _batch_failed(updates, exc)
        out = []
        for i, _ in enumerate(updates):
            r: dict[str, Any] = results[i] if i < len(results) else {"success": False, "errors": [
                {"statusCode": "NO_RESULT", "message": "Salesforce returned no SaveResult for this record"}]}
            if r.get("success"):
                out.append(WriteResult(True))
            else:
                errs: list[dict[str, Any]] = r.get("errors") or [{}]
                out.append(WriteResult(False, str(errs[0].get("statusCode") or "ERROR"),
                                       "; ".join(_sf_error(e) for e in errs)))
        return out

    def _write_bulk(self, updates: Sequence[Update]) -> list[WriteResult]:
        """One Bulk API 2.0 update job for records of one object."""
        obj = _one_object(updates, "a Bulk API 2.0 job")
        columns = sorted({name for u in updates for name in u.values})
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(["Id", *columns])
        for u in updates:
            out.writerow([u.record_id, *("" if n not in u.values else "#N/A" if u.values[n] is None else u.values[n]
                                         for n in columns)])
        c = self.connector
        try:
            job = c._call(f"Bulk 2.0 update job for {obj}", lambda sf: sf.restful("jobs/ingest", method="POST", json={
                "object": obj, "operation": "update", "contentType": "CSV", "columnDelimiter": "COMMA",
                "lineEnding": "LF"}))
            job_id = str(job["id"])
            c._call(f"Bulk 2.0 upload of job {job_id}", lambda sf: sf._call_salesforce(
                "PUT", sf.base_url + f"jobs/ingest/{job_id}/batches", name="bulk2 upload",
                data=buf.getvalue().encode("utf-8"), headers={"Content-Type": "text/csv"}))
            c._call(f"Bulk 2.0 job {job_id}", lambda sf: sf.restful(f"jobs/ingest/{job_id}", method="PATCH",
                                                                    json={"state": "UploadComplete"}))
            info = self._wait(job_id)
            if info.get("state") != "JobComplete":
                reason = f"Bulk 2.0 job {job_id} ended {info.get('state')}: {info.get('errorMessage', 'no message')}"
                return [WriteResult(False, "BULK_JOB_" + str(info.get("state")).upper(), reason) for _ in updates]
            failed: dict[str, WriteResult] = {}
            if int(info.get("numberRecordsFailed") or 0):
                text = c._call(f"Bulk 2.0 failed results of job {job_id}", lambda sf: sf._call_salesforce(
                    "GET", sf.base_url + f"jobs/ingest/{job_id}/failedResults/", name="bulk2 failed",
                    headers={"Accept": "text/csv"})).content.decode("utf-8")
                for row in csv.DictReader(io.StringIO(text)):
                    code, _, rest = str(row.get("sf__Error") or "ERROR").partition(":")
                    failed[str(row.get("Id") or row.get("sf__Id"))] = WriteResult(False, code, f"{code}: {rest}".rstrip(" -:"))
        except _WHOLE_RUN:
            raise
        except ConnectorError as exc:
            return _batch_failed(updates, exc)
        return [failed.get(u.record_id, WriteResult(True)) for u in updates]

    def _wait(self, job_id: str) -> dict[str, Any]:
        c = self.connector
        deadline = time.monotonic() + c.bulk_timeout_s
        wait = c.bulk_poll_s
        while True:
            info: dict[str, Any] = c._call(f"Bulk 2.0 job {job_id}", lambda sf: sf.restful(f"jobs/ingest/{job_id}")) or {}
            if info.get("state") in ("JobComplete", "Failed", "Aborted") or time.monotonic() > deadline:
                return info
            time.sleep(wait)
            wait = min(wait * 2, 5.0)

    def _write_one(self, update: Update) -> WriteResult:
        from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

        def call(sf: Any) -> WriteResult:
            try:
                sf.restful(f"sobjects/{update.object}/{update.record_id}", method="PATCH",
                           data=dumps_exact(self._typed(update)))
            except (SalesforceMalformedRequest, SalesforceResourceNotFound) as exc:
                errs: list[Any] = exc.content if isinstance(exc.content, list) and exc.content else [{}]
                first = errs[0] if isinstance(errs[0], dict) else {}
                return WriteResult(False, str(first.get("errorCode") or exc.status),
                                   "; ".join(_sf_error(e) for e in errs if isinstance(e, dict)) or str(exc.content))
            return WriteResult(True)

        result: WriteResult = self.connector._call(f"update of {update.object} {update.record_id}", call)
        return result

    def close(self) -> None:
        self.connector.close()


def _sf_error(err: Mapping[str, Any]) -> str:
    code = err.get("statusCode") or err.get("errorCode") or "ERROR"
    fields = err.get("fields") or []
    return f"{code}: {err.get('message', '')}" + (f" (fields: {', '.join(fields)})" if fields else "")


_HS_TYPES: dict[str, tuple[str, str]] = {"currency": ("number", "number"), "number": ("number", "number"),
                                         "date": ("date", "date"), "text": ("string", "text"),
                                         "url": ("string", "text")}
_HS_WRITE_SCOPES = ("crm.objects.deals.write, crm.objects.companies.write (and crm.schemas.deals.write, "
                    "crm.schemas.companies.write for --create-properties)")


HUBSPOT_TYPE_IDS = {"deals": "0-3", "companies": "0-2"}  # the object type ids an import names
_HS_IMPORT_DONE = ("DONE", "FAILED", "CANCELED")


class HubSpotTarget:
    """Properties of deals / companies in the group ``ltc``, written with ``POST
    /crm/v3/objects/<type>/batch/update`` (100 a request; 207 Multi-Status names the refused ids).

    More than ``options.import_threshold`` (default 2,000) changed records of one object go as one
    CSV through the imports API instead (``POST /crm/v3/imports``, ``importOperations: UPDATE`` by
    Record ID, then the status polled and the refused rows read from ``/errors``): about four requests
    whatever the count, where batches need one per hundred. An import never clears a property (a blank
    cell is skipped), so records that clear a value go by batch update. Without the ``crm.import``
    scope (403) the run falls back to batch updates and says so; ``import_threshold: null`` turns
    imports off. (A None never written before needs no clearing: its cell stays blank.)"""

    kind = "hubspot"
    mixed_objects = False
    batch_size = 100

    def __init__(self, connector: Any, *, import_threshold: int | None = 2000, poll_s: float = 1.0,
                 timeout_s: float = 3600.0):
        self.connector = connector
        self.name = connector.name
        self.bulk_threshold: int | None = import_threshold
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.notes: list[str] = []

    @property
    def requests(self) -> int:
        return int(self.connector.http.requests_sent)

    def _properties(self, obj: str) -> dict[str, dict[str, Any]]:
        body = self.connector._get(f"/crm/v3/properties/{obj}") or {}
        return {str(p["name"]): p for p in body.get("results") or []}

    def check_fields(self, wanted: Wanted) -> list[str]:
        missing, readonly = [], []
        for obj, fields in wanted.items():
            have = self._properties(obj)
            for _, name in fields:
                if name not in have:
                    missing.append(f"{obj}.{name}")
                elif (have[name].get("modificationMetadata") or {}).get("readOnlyValue"):
                    readonly.append(f"{obj}.{name}")
        problems = []
        if missing:
            problems.append(
                f"HubSpot source {self.name} lacks the properties push-crm writes: {', '.join(missing)}; run "
                f"`ltc push-crm --source {self.name} --create-properties` (scopes {_HS_WRITE_SCOPES}), create them "
                f"in the property group {crm_fields.HUBSPOT_GROUP!r}, or name others under "
                f"sources.{self.name}.options.finance_fields")
        if readonly:
            problems.append(f"HubSpot properties {', '.join(readonly)} are read-only: name writable ones under "
                            f"sources.{self.name}.options.finance_fields")
        return problems

    def _create(self, path: str, body: Mapping[str, Any]) -> bool:
        """POST a definition; False when it exists already (409)."""
        try:
            self.connector._post(path, dict(body))
        except ConnectorError as exc:
            if exc.status == 409:
                return False
            if exc.status == 403:
                raise PermissionDenied(f"hubspot {self.name}: creating {path} was refused (403); grant the "
                                       f"private app the scopes {_HS_WRITE_SCOPES}", status=403) from None
            raise
        return True

    def create_fields(self, wanted: Wanted) -> list[str]:
        created = []
        for obj, fields in wanted.items():
            have = self._properties(obj)
            todo = [(f, n) for f, n in fields if n not in have]
            if not todo:
                continue
            self._create(f"/crm/v3/properties/{obj}/groups",
                         {"name": crm_fields.HUBSPOT_GROUP, "label": "LTC finance status", "displayOrder": -1})
            for f, name in todo:
                ptype, ftype = _HS_TYPES[f.kind]
                if self._create(f"/crm/v3/properties/{obj}", {
                        "name": name, "label": f.label, "type": ptype, "fieldType": ftype,
                        "groupName": crm_fields.HUBSPOT_GROUP, "description": f.description}):
                    created.append(f"{obj}.{name}")
        return created

    def write(self, updates: Sequence[Update]) -> list[WriteResult]:
        if self.bulk_threshold is not None and len(updates) > self.bulk_threshold:
            return self._write_import(updates)
        out: list[WriteResult] = []
        for i in range(0, len(updates), self.batch_size):  # a bulk group when imports are off
            out.extend(self._write_batch(updates[i:i + self.batch_size]))
        return out

    def _write_import(self, updates: Sequence[Update]) -> list[WriteResult]:
        """One UPDATE import of one object's records (records that clear a value go by batch update)."""
        obj = _one_object(updates, "a HubSpot import")
        type_id = HUBSPOT_TYPE_IDS[obj]
        results: dict[int, WriteResult] = {}
        clears = [i for i, u in enumerate(updates) if u.clears]
        for k in range(0, len(clears), self.batch_size):
            chunk = clears[k:k + self.batch_size]
            results.update(zip(chunk, self._write_batch([updates[i] for i in chunk]), strict=True))
        rest = [i for i in range(len(updates)) if i not in results]
        if rest:
            try:
                refused = self._import(obj, type_id, [updates[i] for i in rest])
            except PermissionDenied:
                self.bulk_threshold = None
                self.notes.append(f"hubspot {self.name}: the private app lacks the crm.import scope, so "
                                  f"{len(rest)} {obj} went by batch update (grant crm.import for large runs)")
                batch = [updates[i] for i in rest]
                results.update(zip(rest, self.write(batch), strict=True))
                return [results[i] for i in range(len(updates))]
            except _WHOLE_RUN:
                raise
            except ConnectorError as exc:
                refused = dict.fromkeys((updates[i].record_id for i in rest),
                                        WriteResult(False, exc.code or f"HTTP {exc.status}", str(exc)))
            for i in rest:
                results[i] = refused.get(updates[i].record_id, WriteResult(True))
        return [results[i] for i in range(len(updates))]

    def _import(self, obj: str, type_id: str, updates: Sequence[Update]) -> dict[str, WriteResult]:
        """Start the import, wait for it, and return the refused records by id."""
        columns = sorted({name for u in updates for name in u.values})
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["Record ID", *columns])
        for u in updates:
            writer.writerow([u.record_id, *("" if u.values.get(n) is None else u.values[n] for n in columns)])
        file_name = f"ltc-push-{obj}.csv"
        request = {"name": f"ltc push-crm: {len(updates)} {obj}", "importOperations": {type_id: "UPDATE"},
                   "dateFormat": "YEAR_MONTH_DAY", "files": [{
                       "fileName": file_name, "fileFormat": "CSV", "fileImportPage": {"hasHeader": True, "columnMappings": [
                           {"columnObjectTypeId": type_id, "columnName": "Record ID", "propertyName": "hs_object_id",
                            "columnType": "HUBSPOT_OBJECT_ID"},
                           *({"columnObjectTypeId": type_id, "columnName": c, "propertyName": c} for c in columns)]}}]}
        c = self.connector
        c.governor.check_quota()
        started = c.http.json("POST", "/crm/v3/imports", data={"importRequest": json.dumps(request)},
                              files={"files": (file_name, buf.getvalue().encode("utf-8"), "text/csv")}) or {}
        iid = str(started.get("id"))
        deadline = time.monotonic() + self.timeout_s
        wait = self.poll_s
        info = started
        while info.get("state") not in _HS_IMPORT_DONE and time.monotonic() < deadline:
            time.sleep(wait)
            wait = min(wait * 2, 10.0)
            c.governor.check_quota()
            info = c.http.json("GET", f"/crm/v3/imports/{iid}") or {}
        state = str(info.get("state"))
        if state != "DONE":
            why = f"HubSpot import {iid} ended {state}" if state in _HS_IMPORT_DONE else \
                f"HubSpot import {iid} still {state} after {self.timeout_s:.0f} s (it goes on in HubSpot; the next run checks the values)"
            return {u.record_id: WriteResult(False, "IMPORT_" + state, why) for u in updates}
        refused: dict[str, WriteResult] = {}
        counters = (info.get("metadata") or {}).get("counters") or {}
        if counters.get("ERRORS", 1):  # read the errors unless the counters say there are none
            after: str | None = None
            while True:
                c.governor.check_quota()
                params: dict[str, Any] = {"limit": 500, **({"after": after} if after else {})}
                page = c.http.json("GET", f"/crm/v3/imports/{iid}/errors", params=params) or {}
                for err in page.get("results") or []:
                    row = (err.get("sourceData") or {}).get("rowData") or ""
                    rid = next(csv.reader([row]), [""])[0] if row else str(err.get("invalidValue") or "")
                    kind = str(err.get("errorType") or "IMPORT_ERROR")
                    refused[rid] = WriteResult(False, kind, f"{kind}: {err.get('invalidValue', '')} (import {iid}, "
                                                            f"line {(err.get('sourceData') or {}).get('lineNumber')})")
                after = ((page.get("paging") or {}).get("next") or {}).get("after")
                if not after:
                    break
        return refused

    def _write_batch(self, updates: Sequence[Update]) -> list[WriteResult]:
        obj = _one_object(updates, "a HubSpot batch update")
        body = {"inputs": [{"id": u.record_id, "properties": {k: "" if v is None else v for k, v in u.values.items()}}
                           for u in updates]}
        try:
            result = self.connector._post(f"/crm/v3/objects/{obj}/batch/update", body) or {}
        except PermissionDenied:
            raise PermissionDenied(f"hubspot {self.name}: updating {obj} was refused (403); grant the private "
                                   f"app the scopes {_HS_WRITE_SCOPES}", status=403) from None
        except _WHOLE_RUN:
            raise
        except ConnectorError as exc:
            return _batch_failed(updates, exc)
        refused: dict[str, WriteResult] = {}
        for err in result.get("errors") or []:
            ids = (err.get("context") or {}).get("ids") or []
            msg = str(err.get("message") or "refused")
            details = "; ".join(str(e.get("message")) for e in err.get("errors") or [] if e.get("message"))
            for rid in ids:
                refused[str(rid)] = WriteResult(False, str(err.get("category") or "ERROR"),
                                                msg + (f" ({details})" if details else ""))
        return [refused.get(u.record_id, WriteResult(True)) for u in updates]

    def close(self) -> None:
        self.connector.close()


def make_target(cfg: Any, source: str) -> CrmTarget:
    """The CRM target of ``sources.<source>`` (salesforce or hubspot), on that source's connector."""
    from connectors import registry

    src = cfg.sources.get(source)
    if src is None:
        raise ConfigError(f"push-crm: no source {source!r} in ltc.yaml; configured: {', '.join(cfg.sources) or 'none'}")
    if src.kind not in crm_fields.CRM_KINDS:
        raise ConfigError(f"push-crm: source {source!r} is a {src.kind} source; finance status is written to "
                          "salesforce or hubspot sources")
    crm_fields.names(src.kind, src.options, source)  # configuration errors before any connection
    connector = registry.build(source, src)
    if src.kind == "salesforce":
        threshold = src.options.get("bulk_write_threshold", 2000)
        return SalesforceTarget(connector, api=str(src.options.get("write_api", "composite")),
                                bulk_threshold=None if threshold is None else int(threshold))
    threshold = src.options.get("import_threshold", 2000)
    return HubSpotTarget(connector, import_threshold=None if threshold is None else int(threshold),
                         poll_s=float(src.options.get("import_poll_s", 1.0)))


# --- the run --------------------------------------------------------------------------------------


@dataclass
class ObjectCounts:
    considered: int = 0
    unchanged: int = 0
    to_write: int = 0
    written: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Change:
    record: StatusRecord
    values: dict[str, str | None]  # the changed fields only


@dataclass(frozen=True)
class Failure:
    object: str
    record_id: str
    canonical_id: str
    code: str
    message: str


@dataclass
class CrmPushReport:
    source: str
    kind: str
    dry_run: bool
    as_of: date | None = None
    counts: dict[str, ObjectCounts] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    paused: str | None = None
    requests: int = 0
    run_id: str | None = None

    def count(self, obj: str) -> ObjectCounts:
        return self.counts.setdefault(obj, ObjectCounts())

    def totals(self) -> dict[tuple[str, str], dict[str, Decimal]]:
        """Per (object, currency): invoiced, paid and open of the records to write (or written)."""
        out: dict[tuple[str, str], dict[str, Decimal]] = {}
        for ch in self.changes:
            rec = ch.record
            key = (rec.object, rec.currency or "?")
            sums = out.setdefault(key, {"records": Decimal(0), "invoiced": Decimal(0), "paid": Decimal(0),
                                        "open_balance": Decimal(0)})
            sums["records"] += 1
            for k in ("invoiced", "paid", "open_balance"):
                sums[k] += Decimal(rec.values.get(k) or 0)
        return out

    @property
    def status(self) -> str:
        if self.paused:
            return "paused"
        return "partial" if self.failures else "success"


@dataclass
class _Pending:
    record: StatusRecord
    wanted: dict[str, str | None]
    digest: str
    update: Update


def _load_state(store: Store, system: str) -> dict[tuple[str, str], tuple[str | None, dict[str, Any], str | None]]:
    s = crm_push_state.c
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(s.object, s.record_id, s.content_hash, s.fields, s.error)
                            .where(s.system == system))
        return {(o, r): (h, f or {}, e) for o, r, h, f, e in rows}


def plan(store: Store, source: str, records: Sequence[StatusRecord],
         fields: Mapping[str, Sequence[tuple[FinanceField, str]]], report: CrmPushReport
         ) -> tuple[list[_Pending], list[_Pending]]:
    """The records whose wanted values differ from what was last written (or whose last write failed),
    and those whose stored state only needs catching up (nothing to send: e.g. a field was renamed
    back, or a failed change was reverted)."""
    state = _load_state(store, source)
    kinds_of: dict[str, dict[str, Kind]] = {role: {name: f.kind for f, name in fs} for role, fs in fields.items()}
    pending, quiet = [], []
    for rec in records:
        fs = fields.get(rec.role) or ()
        if not fs:
            continue
        counts = report.count(rec.object)
        counts.considered += 1
        wanted = {name: wire(f.kind, rec.values.get(f.key)) for f, name in fs}
        digest = values_hash(wanted)
        stored_hash, stored, error = state.get((rec.object, rec.record_id), (None, {}, None))
        if stored_hash == digest and error is None:
            counts.unchanged += 1
            continue
        changed = {k: v for k, v in wanted.items() if k not in stored or stored[k] != v}
        clears = frozenset(k for k, v in changed.items() if v is None and stored.get(k) is not None)
        item = _Pending(rec, wanted, digest, Update(rec.object, rec.record_id, changed, kinds_of[rec.role], clears))
        if not changed:
            counts.unchanged += 1
            quiet.append(item)
            continue
        counts.to_write += 1
        report.changes.append(Change(rec, changed))
        pending.append(item)
    return pending, quiet


BULK_JOB_MAX = 50_000  # records per bulk job (well under the 100 MB CSV limit)


def _batches(pending: Sequence[_Pending], target: CrmTarget) -> Iterator[list[_Pending]]:
    """Requests' worth of records: a bulk job per object past the target's threshold, then batches of
    ``batch_size`` (of one object, or mixed where the target allows it)."""
    by_object: dict[str, list[_Pending]] = defaultdict(list)
    for p in sorted(pending, key=lambda p: p.update.object):
        by_object[p.update.object].append(p)
    rest: list[_Pending] = []
    for items in by_object.values():
        if target.bulk_threshold is not None and len(items) > target.bulk_threshold:
            for i in range(0, len(items), BULK_JOB_MAX):
                yield items[i:i + BULK_JOB_MAX]
        elif target.mixed_objects:
            rest.extend(items)
        else:
            for i in range(0, len(items), target.batch_size):
                yield items[i:i + target.batch_size]
    for i in range(0, len(rest), target.batch_size):
        yield rest[i:i + target.batch_size]


def _save(store: Store, source: str, batch: Sequence[_Pending], results: Sequence[WriteResult], run_id: str) -> None:
    at = now()
    ok: list[dict[str, Any]] = [{"system": source, "object": p.record.object, "record_id": p.record.record_id,
           "canonical_id": p.record.canonical_id, "content_hash": p.digest, "fields": p.wanted, "written_at": at,
           "run_id": run_id, "error": None, "error_at": None}
          for p, r in zip(batch, results, strict=True) if r.ok]
    failed: list[dict[str, Any]] = [{"system": source, "object": p.record.object, "record_id": p.record.record_id,
               "canonical_id": p.record.canonical_id, "content_hash": None, "fields": {}, "written_at": None,
               "run_id": run_id, "error": f"{r.code}: {r.message}"[:4000], "error_at": at}
              for p, r in zip(batch, results, strict=True) if not r.ok]
    with store.engine.begin() as conn:
        insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(crm_push_state)
        keys = ["system", "object", "record_id"]
        if ok:
            conn.execute(insert.on_conflict_do_update(index_elements=keys, set_={
                c: insert.excluded[c] for c in ("canonical_id", "content_hash", "fields", "written_at", "run_id",
                                                "error", "error_at")}), ok)
        if failed:  # what was written before stays the reference: only the changed fields go next time
            conn.execute(insert.on_conflict_do_update(index_elements=keys, set_={
                c: insert.excluded[c] for c in ("run_id", "error", "error_at")}), failed)


def push(store: Store, target: CrmTarget, status: FinanceStatus,
         fields: Mapping[str, Sequence[tuple[FinanceField, str]]], *, dry_run: bool = False,
         create_fields: bool = False) -> CrmPushReport:
    """Write every changed record's finance status (see the module doc); ``dry_run`` writes nothing."""
    report = CrmPushReport(source=target.name, kind=target.kind, dry_run=dry_run, as_of=status.as_of,
                           warnings=list(status.warnings))
    objects = OBJECTS[target.kind]  # the CRM object of each role (whatever the canonical source_object says)
    records = [replace(r, object=objects[r.role]) for r in status.records if r.system == target.name]
    pending, quiet = plan(store, target.name, records, fields, report)
    start = target.requests
    try:
        if pending:
            try:
                _check(target, fields, {p.record.role for p in pending}, report, dry_run=dry_run,
                       create=create_fields)
            except QuotaPaused as exc:  # nothing written yet: everything is left for the next run
                report.paused = str(exc)
                return report
        if dry_run or not (pending or quiet):
            return report
        report.run_id = store.begin_run("push-crm", target.name)
        if quiet:
            _save(store, target.name, quiet, [WriteResult(True)] * len(quiet), report.run_id)
        try:
            for batch in _batches(pending, target):
                results = target.write([p.update for p in batch])
                _save(store, target.name, batch, results, report.run_id)
                for p, r in zip(batch, results, strict=True):
                    counts = report.count(p.record.object)
                    if r.ok:
                        counts.written += 1
                    else:
                        counts.failed += 1
                        report.failures.append(Failure(p.record.object, p.record.record_id, p.record.canonical_id,
                                                       r.code or "ERROR", r.message or ""))
        except QuotaPaused as exc:
            report.paused = str(exc)
        except Exception as exc:
            report.requests = target.requests - start
            store.finish_run(report.run_id, "failed", _run_counts(report), f"{type(exc).__name__}: {exc}"[:2000])
            raise
        report.requests = target.requests - start
        store.finish_run(report.run_id, report.status, _run_counts(report),
                         report.paused or ("; ".join(f"{f.record_id}: {f.message}" for f in report.failures)[:2000]
                                           or None))
        return report
    finally:
        report.requests = target.requests - start
        report.warnings.extend(getattr(target, "notes", ()))


def _check(target: CrmTarget, fields: Mapping[str, Sequence[tuple[FinanceField, str]]], roles: set[str],
           report: CrmPushReport, *, dry_run: bool, create: bool) -> None:
    objects = OBJECTS[target.kind]
    wanted = {objects[role]: fields[role] for role in sorted(roles)}
    problems = target.check_fields(wanted)
    if problems and create and not dry_run:
        report.created = target.create_fields(wanted)
        if report.created:
            problems = target.check_fields(wanted)
    if problems:
        if not dry_run:
            raise ConfigError("; ".join(problems))
        report.warnings.extend(problems)


def _run_counts(report: CrmPushReport) -> dict[str, Any]:
    return {obj: vars(c) for obj, c in report.counts.items()} | {"requests": report.requests}

"""Salesforce connector: simple-salesforce over the shared retry layer, SOQL keyset on SystemModstamp.

* **Auth** (picked by which credentials are configured): ``access_token`` (direct instance URL + token),
  JWT bearer (``client_id`` + ``username`` + ``private_key``), username-password (``client_id`` +
  ``client_secret`` + ``username`` + ``password`` [+ ``security_token``]), client credentials
  (``client_id`` + ``client_secret``). simple-salesforce can only send its login flows to
  ``*.salesforce.com``, so the token is fetched here from ``options.login_url`` (default: base_url) and
  simple-salesforce runs in its direct ``session_id`` mode. A 401 ``INVALID_SESSION_ID`` triggers one
  re-login; a second one is an :class:`AuthenticationError`.
* **Reads** use ``queryAll`` (soft-deleted rows come back with ``IsDeleted = true`` -> tombstones),
  ``ORDER BY SystemModstamp, Id`` with the keyset ``SystemModstamp > t OR (SystemModstamp = t AND Id > i)``
  and ``LIMIT page_size``; the engine's lookback re-reads the last minutes so rows that became visible
  after their SystemModstamp are still captured. Numbers are parsed as exact Decimals.
* **Fields** come from ``describe`` (custom ``__c`` included; compound address/location and base64 are
  skipped, their components are plain fields). When a query's URL would pass ``max_url_chars``, the
  field list is split into several queries over the same key range, joined by Id; a row whose
  SystemModstamp differs between the chunk queries changed meanwhile and is left to a later page.
* **Bulk API 2.0** serves an initial load whose row count exceeds ``options.bulk_threshold``: one
  ``queryAll`` job, downloaded ``page_size`` rows at a time with ``Sforce-Locator``; job id and locator
  are checkpointed with each page, so a resumed run continues the same job.
* **Quota**: every response's ``Sforce-Limit-Info`` feeds the governor; at ``options.quota_pause_at``
  (default 80 %) of the daily allocation, or on 403 ``REQUEST_LIMIT_EXCEEDED``, the run pauses with
  state saved (:class:`QuotaPaused`).

``ltc.yaml``::

    sources:
      crm:
        kind: salesforce
        base_url: https://acme.my.salesforce.com      # login + instance URL (or options.login_url)
        credentials: {client_id: {env: SF_CLIENT_ID}, client_secret: {env: SF_CLIENT_SECRET}}
        lookback_minutes: 10
        options: {bulk_threshold: 200000, quota_pause_at: "0.80", objects: [Account, Opportunity],
                  max_url_chars: 15000, batch_size: 2000, ca_file: null, prefetch: true}
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from canonical import db
from canonical.errors import ConfigError
from connectors import crm_fields
from connectors.base import Connector, Keyset, Page, PageAhead, StreamSpec, Window, parse_instant
from connectors.errors import (
    AuthenticationError,
    ConnectorError,
    NotFound,
    PagingBroken,
    PermissionDenied,
    QuotaPaused,
)
from connectors.governor import RateGovernor, governor_for
from connectors.http import RetryingSession, RetryPolicy, redact_url

T = TypeVar("T")

OBJECTS = ("Lead", "Account", "Contact", "Opportunity", "OpportunityLineItem", "Product2", "Order", "OrderItem",
           "Quote", "QuoteLineItem", "Contract")
API_VERSION = "59.0"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_SKIPPED_TYPES = {"address", "location", "base64"}
_NUMERIC = {"currency", "double", "percent"}
_USAGE = re.compile(r"(?:^|[^-])api-usage=(\d+)/(\d+)")


# --- SOQL values ------------------------------------------------------------------------------------

_STRING_ESCAPES = {"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b",
                   "\f": "\\f"}


def soql_literal(value: Any) -> str:
    """A value as a SOQL literal: strings quoted and escaped, dateTimes unquoted UTC ``...Z``, dates
    ``YYYY-MM-DD``, booleans/null bare, numbers exact, sequences ``(a,b)``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} in a SOQL filter")
        v = value.astimezone(UTC)
        frac = f".{v.microsecond // 1000:03d}" if v.microsecond else ""
        return v.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        return "'" + "".join(_STRING_ESCAPES.get(c, c) for c in value) + "'"
    if isinstance(value, list | tuple | set | frozenset):
        return "(" + ",".join(soql_literal(v) for v in value) + ")"
    raise TypeError(f"no SOQL literal for {type(value).__name__}")


def keyset_where(since: datetime | None, resume: tuple[datetime, str] | None,
                 until: datetime | None = None) -> list[str]:
    """The changed-since + keyset conjuncts (rows strictly after ``resume`` in (SystemModstamp, Id)),
    bounded above by ``until`` (the run's start: nothing stamped later moves the cursor)."""
    where = []
    if since is not None and resume is None:  # a resume key was read inside the window: it implies since
        where.append(f"SystemModstamp >= {soql_literal(since)}")
    if until is not None:
        where.append(f"SystemModstamp < {soql_literal(until)}")
    if resume is not None:
        t, i = soql_literal(resume[0]), soql_literal(resume[1])
        # the tie group first: then even a left-to-right evaluator without precedence (simple-mockforce) is right
        where.append(f"((SystemModstamp = {t} AND Id > {i}) OR SystemModstamp > {t})")
    return where


def build_soql(obj: str, fields: Sequence[str], where: Sequence[str] = (), *, order: bool = True,
               limit: int | None = None) -> str:
    soql = f"SELECT {', '.join(fields)} FROM {obj}"
    if where:
        soql += " WHERE " + " AND ".join(where)
    if order:
        soql += " ORDER BY SystemModstamp ASC, Id ASC"
    if limit is not None:
        soql += f" LIMIT {limit}"
    return soql


def chunk_fields(fields: Sequence[str], budget: int, always: Sequence[str] = ("Id", "SystemModstamp")) -> list[list[str]]:
    """Split ``fields`` into lists whose URL-encoded SELECT lists stay under ``budget`` characters;
    each chunk carries the ``always`` fields (join key and version)."""
    rest = [f for f in fields if f not in always]
    chunks: list[list[str]] = []
    cur: list[str] = list(always)
    size = sum(len(f) + 4 for f in cur)
    for f in rest:
        cost = len(f) + 4  # ", " encodes to "%2C+"
        if size + cost > budget and len(cur) > len(always):
            chunks.append(cur)
            cur, size = list(always), sum(len(x) + 4 for x in always)
        cur.append(f)
        size += cost
    chunks.append(cur)
    return chunks


def parse_limit_info(header: str | None) -> tuple[int, int] | None:
    """``api-usage=18/5000`` (ignoring ``per-app-api-usage``) -> (used, allocation)."""
    m = _USAGE.search(header or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


# --- the connector ------------------------------------------------------------------------------------

def _sdk_json(body: bytes) -> Any:
    """A JSON answer parsed as the client below asks for it (``parse_float=Decimal``, plain dicts)."""
    return db.loads_exact(body)


class _Session(RetryingSession):
    """The shared retry session with a default timeout (requests has none)."""

    def __init__(self, *args: Any, timeout: float, verify: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.timeout = timeout
        self.verify = verify

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        # per request: requests lets REQUESTS_CA_BUNDLE override a session-level verify
        kwargs.setdefault("verify", self.verify)
        return super().request(method, url, *args, **kwargs)


class SalesforceConnector(Connector):
    kind = "salesforce"

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None,
        credentials: Mapping[str, str],
        options: Mapping[str, Any] | None = None,
        page_size: int | None = None,
        lookback: timedelta = timedelta(minutes=10),
        governor: RateGovernor | None = None,
        policy: RetryPolicy | None = None,
    ):
        super().__init__(name, lookback=lookback)
        opts = dict(options or {})
        self.options = opts
        self.creds = {k: v for k, v in credentials.items() if v}
        self.mode = self._auth_mode()
        self.login_url = str(opts.get("login_url") or base_url or "https://login.salesforce.com").rstrip("/")
        self.base_url = base_url.rstrip("/") if base_url else None
        self.version = str(opts.get("api_version", API_VERSION)).lstrip("v")
        self.page_size = int(page_size or opts.get("page_size", 2000))
        self.batch_size = opts.get("batch_size")
        self.max_url_chars = int(opts.get("max_url_chars", 15_000))
        self.bulk_threshold = opts.get("bulk_threshold")
        self.bulk_poll_s = float(opts.get("bulk_poll_s", 0.2))
        self.bulk_timeout_s = float(opts.get("bulk_timeout_s", 3600))
        self.completeness = bool(opts.get("completeness", True))
        self.field_overrides: Mapping[str, Sequence[str]] = opts.get("fields") or {}
        objects = opts.get("objects") or OBJECTS
        self.governor = governor or governor_for(
            str(opts.get("tenant", name)), "salesforce",
            lambda: RateGovernor(f"salesforce {name}", capacity=float(opts.get("max_requests_per_s", 25)),
                                 interval_s=1.0, pause_at=Decimal(str(opts.get("quota_pause_at", "0.80")))),
        )
        self.session = _Session("salesforce", governor=self.governor, policy=policy, observe=self._observe,
                                json_loads=_sdk_json, timeout=float(opts.get("timeout_s", 120)), verify=opts.get("ca_file") or True)
        own = crm_fields.own_paths("salesforce", opts, name)  # what push-crm writes: not a business change
        self.streams = tuple(
            StreamSpec(obj, obj, primary_key="Id", cursor_field="SystemModstamp", page_size=self.page_size,
                       paginator=Keyset(), records_path="records", deleted_when=("IsDeleted", True),
                       hash_ignore=own.get(obj, ()))
            for obj in objects
        )
        self._sf: Salesforce | None = None
        self._describe: dict[str, dict[str, str]] = {}
        self.prefetch = bool(opts.get("prefetch", True))
        self._pages: PageAhead[list[dict[str, Any]]] = PageAhead(f"sf-{self.name}")
        self.logins = 0

    # -- auth ------------------------------------------------------------------------------------------

    def _auth_mode(self) -> str:
        c = self.creds
        if c.get("access_token"):
            return "direct"
        if c.get("client_id") and c.get("username") and c.get("private_key"):
            return "jwt"
        if c.get("client_id") and c.get("client_secret") and c.get("username") and c.get("password"):
            return "password"
        if c.get("client_id") and c.get("client_secret"):
            return "client_credentials"
        raise ConfigError(
            f"sources.{self.name}: Salesforce credentials incomplete; give access_token (with base_url = the "
            "instance URL), or client_id + client_secret (client credentials), or client_id + client_secret + "
            "username + password (+ security_token), or client_id + username + private_key (JWT bearer)"
        )

    def _token_request(self) -> dict[str, Any]:
        c = self.creds
        auth: tuple[str, str] | None = None
        if self.mode == "client_credentials":
            data = {"grant_type": "client_credentials"}
            auth = (c["client_id"], c["client_secret"])
        elif self.mode == "password":
            data = {"grant_type": "password", "client_id": c["client_id"], "client_secret": c["client_secret"],
                    "username": c["username"], "password": c["password"] + c.get("security_token", "")}
        else:
            data = {"grant_type": JWT_GRANT, "assertion": self._jwt_assertion()}
        url = f"{self.login_url}/services/oauth2/token"
        response = self.session.post(url, data=data, auth=auth)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            reason = f"{body.get('error')}: {body.get('error_description')}" if isinstance(body, dict) and body.get(
                "error") else f"HTTP {response.status_code}"
            raise AuthenticationError(
                f"{self.name}: Salesforce refused the {self.mode.replace('_', ' ')} login at {redact_url(url)} "
                f"({reason}); check the source's credentials in ltc.yaml", status=response.status_code)
        return body

    def _jwt_assertion(self) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        c = self.creds
        try:
            key = serialization.load_pem_private_key(c["private_key"].encode(), password=None)
        except ValueError:
            raise ConfigError(f"sources.{self.name}: credentials.private_key is not a PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(f"sources.{self.name}: credentials.private_key must be an RSA key (RS256)")
        aud = str(self.options.get("jwt_audience") or self.login_url)
        claims = {"iss": c["client_id"], "sub": c["username"], "aud": aud, "exp": int(time.time()) + 180}

        def b64(raw: bytes) -> str:
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        signing_input = b64(b'{"alg":"RS256"}') + "." + b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64(signature)}"

    def _client(self) -> Salesforce:
        if self._sf is None:
            if self.mode == "direct":
                if not self.base_url:
                    raise ConfigError(f"sources.{self.name}: base_url (the instance URL) is required with access_token")
                instance, token = self.base_url, self.creds["access_token"]
            else:
                body = self._token_request()
                instance, token = str(body.get("instance_url") or self.base_url), str(body["access_token"])
            self.logins += 1
            host = urlsplit(instance).netloc or instance
            self._sf = Salesforce(instance_url=f"https://{host}", session_id=token, session=self.session,
                                  version=self.version, parse_float=Decimal, object_pairs_hook=dict)
        return self._sf

    def _call(self, what: str, fn: Callable[[Salesforce], T], *, guard: bool = True) -> T:
        """One vendor call with quota guard, one re-login on INVALID_SESSION_ID, typed errors."""
        if guard:
            self.governor.check_quota()
        for attempt in (1, 2):
            sf = self._client()
            try:
                return fn(sf)
            except SalesforceExpiredSession:
                self._sf = None
                if attempt == 1 and self.mode != "direct":
                    continue
                raise AuthenticationError(
                    f"{self.name}: Salesforce answered INVALID_SESSION_ID to {what}"
                    + (" again after a fresh login" if self.mode != "direct" else "")
                    + "; check the source's credentials (and the user's session policy) in ltc.yaml", status=401
                ) from None
            except SalesforceRefusedRequest as exc:
                code, message = _first_error(exc)
                if code == "REQUEST_LIMIT_EXCEEDED":
                    raise QuotaPaused(f"{self.name}: Salesforce refused {what}: REQUEST_LIMIT_EXCEEDED ({message}); "
                                      "paused with state saved, the next run resumes", status=403, code=code) from None
                raise PermissionDenied(f"{self.name}: Salesforce refused {what}: {code}: {message}; grant the "
                                       "integration user access to it", status=403, code=code) from None
            except SalesforceMalformedRequest as exc:
                code, message = _first_error(exc)
                raise ConnectorError(f"{self.name}: Salesforce rejected {what}: {code}: {message}", status=400,
                                     code=code) from None
            except SalesforceResourceNotFound as exc:
                code, message = _first_error(exc)
                raise NotFound(f"{self.name}: {what}: {code}: {message}", status=404, code=code) from None
            except SalesforceError as exc:
                code, message = _first_error(exc)
                raise ConnectorError(f"{self.name}: {what} failed with HTTP {exc.status} at {redact_url(exc.url)}: "
                                     f"{code}: {message}", status=exc.status, code=code) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _observe(self, headers: Mapping[str, str]) -> None:
        usage = parse_limit_info(headers.get("Sforce-Limit-Info"))
        if usage is not None:
            self.governor.observe_daily(*usage)

    # -- schema ----------------------------------------------------------------------------------------

    def field_types(self, obj: str) -> dict[str, str]:
        """Queryable fields of ``obj`` (name -> describe type), custom ones included."""
        if obj not in self._describe:
            if obj in self.field_overrides:
                self._describe[obj] = {f: "string" for f in self.field_overrides[obj]}
            else:
                body = self._call(f"describe {obj}", lambda sf: sf.restful(f"sobjects/{obj}/describe"))
                self._describe[obj] = {
                    str(f["name"]): str(f["type"]) for f in (body or {}).get("fields", [])
                    if f.get("type") not in _SKIPPED_TYPES
                }
        return self._describe[obj]

    # -- reading -----------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Sforce-Query-Options": f"batchSize={self.batch_size}"} if self.batch_size else {}

    def query_all(self, soql: str) -> list[dict[str, Any]]:
        """Every row of a ``queryAll`` (following ``nextRecordsUrl``), numbers as Decimal."""
        what = f"queryAll on {soql.split(' FROM ', 1)[-1].split(' ', 1)[0]}"
        body = self._call(what, lambda sf: sf.query(soql, include_deleted=True, headers=self._headers()))
        records: list[dict[str, Any]] = list(body["records"])
        seen: set[str] = set()
        while not body.get("done", True):
            if not body.get("nextRecordsUrl"):
                raise ConnectorError(
                    f"{self.name}: Salesforce answered {what} with done: false but no nextRecordsUrl after "
                    f"{len(records)} of {body.get('totalSize', '?')} rows: the result is cut short; nothing past "
                    "it was read (run again; if it persists, check the org or a proxy between)")
            url = str(body["nextRecordsUrl"])
            if url in seen:  # the same locator again: reading on would never end (and never stop growing)
                raise PagingBroken(
                    f"{self.name} returned the same page token twice ({what}, nextRecordsUrl {url[:120]}): its "
                    "paging is broken; the pages read so far are kept, the stream is not complete")
            seen.add(url)
            body = self._call(what, lambda sf, u=url: sf.query_more(u, identifier_is_url=True,  # type: ignore[misc]
                                                                    headers=self._headers()))
            records.extend(body["records"])
        return records

    def url_length(self, soql: str) -> int:
        return len(f"/services/data/v{self.version}/queryAll/?") + len(urlencode({"q": soql}))

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        obj = stream.object
        fields = list(self.field_types(obj))
        if (window.memo or {}).get("bulk") or (window.resume_key is None and window.since is None
                                               and self._wants_bulk(obj)):
            return self._bulk_page(stream, fields, window)
        where = keyset_where(window.since, window.resume_key, window.until)
        soql = build_soql(obj, fields, where, limit=stream.page_size)
        if self.url_length(soql) > self.max_url_chars:
            return self._chunked_page(stream, fields, where)
        records = self._pages.take(obj, (window.since, window.until, window.resume_key), lambda: self.query_all(soql))
        if self.prefetch and len(records) >= stream.page_size:
            # the next page's keyset is known now: fetch it while the engine commits this one
            try:
                last_ts = parse_instant(records[-1].get("SystemModstamp"))
            except (ValueError, TypeError, ArithmeticError):
                last_ts = None  # the engine quarantines that row; no read-ahead for this page
            if last_ts is not None:
                nxt = (last_ts, str(records[-1].get("Id")))
                soql_next = build_soql(obj, fields, keyset_where(window.since, nxt, window.until),
                                       limit=stream.page_size)
                self._pages.ahead(obj, (window.since, window.until, nxt), partial(self.query_all, soql_next))
        return Page(records)

    def _chunked_page(self, stream: StreamSpec, fields: list[str], where: list[str]) -> Page:
        """A wide object: the keyset query with the first field chunk fixes the page's key range; the
        other chunks are read over that range and joined by Id."""
        obj = stream.object
        overhead = self.url_length(build_soql(obj, [], where, limit=stream.page_size))
        chunks = chunk_fields(fields, max(200, self.max_url_chars - overhead))
        first = self.query_all(build_soql(obj, chunks[0], where, limit=stream.page_size))
        if not first:
            return Page([])
        last_ts, last_id = parse_instant(first[-1]["SystemModstamp"]), str(first[-1]["Id"])
        assert last_ts is not None
        t, i = soql_literal(last_ts), soql_literal(last_id)
        bounded = [*where, f"(SystemModstamp < {t} OR (SystemModstamp = {t} AND Id <= {i}))"]
        merged = {str(r["Id"]): dict(r) for r in first}
        stamps = {rid: r["SystemModstamp"] for rid, r in merged.items()}
        complete = dict.fromkeys(merged, 1)
        for chunk in chunks[1:]:
            for row in self.query_all(build_soql(obj, chunk, bounded)):
                rid = str(row["Id"])
                if rid in merged and row["SystemModstamp"] == stamps[rid]:
                    merged[rid].update({k: v for k, v in row.items() if k != "attributes"})
                    complete[rid] += 1
        rows = [merged[str(r["Id"])] for r in first if complete[str(r["Id"])] == len(chunks)]
        # rows missing from a chunk changed in between: their new SystemModstamp is later, so a later page
        # (or the next run) reads them whole
        return Page(rows, more=len(first) >= stream.page_size)

    def count(self, stream: StreamSpec, window: Window) -> int | None:
        if not self.completeness:
            return None
        where = ["IsDeleted = false", *keyset_where(window.since, None, window.until)]
        soql = build_soql(stream.object, ["COUNT()"], where, order=False)
        body = self._call(f"COUNT() on {stream.object}", lambda sf: sf.query(soql, include_deleted=True))
        return int(body["totalSize"])

    # -- deep completeness ----------------------------------------------------------------------------

    def source_total(self, stream: StreamSpec) -> int | None:
        """Live records of the object (``SELECT COUNT() ... WHERE IsDeleted = false``)."""
        return self.count(stream, Window(since=None))

    def source_ids(self, stream: StreamSpec) -> dict[str, datetime | None] | None:
        """Every live Id with its SystemModstamp: one ``queryAll`` of two fields (2,000 rows a call)."""
        soql = build_soql(stream.object, ["Id", "SystemModstamp"], ["IsDeleted = false"], order=False)
        return {str(r["Id"]): parse_instant(r.get("SystemModstamp")) for r in self.query_all(soql)}

    def fetch_ids(self, stream: StreamSpec, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The full records of these Ids (``queryAll``: a soft-deleted one comes back as a tombstone),
        in as few queries as the URL limit allows; a wide object's field chunks are joined by Id."""
        obj = stream.object
        fields = list(self.field_types(obj))
        out: list[dict[str, Any]] = []
        pending = list(ids)
        while pending:
            take = len(pending)
            while take > 1 and self.url_length(build_soql(obj, ["Id"], [f"Id IN {soql_literal(pending[:take])}"],
                                                          order=False)) > self.max_url_chars // 2:
                take //= 2
            chunk, pending = pending[:take], pending[take:]
            where = [f"Id IN {soql_literal(chunk)}"]
            overhead = self.url_length(build_soql(obj, [], where, order=False))
            merged: dict[str, dict[str, Any]] = {}
            for fchunk in chunk_fields(fields, max(200, self.max_url_chars - overhead)):
                for row in self.query_all(build_soql(obj, fchunk, where, order=False)):
                    rid = str(row["Id"])
                    if rid in merged and merged[rid].get("SystemModstamp") != row.get("SystemModstamp"):
                        merged.pop(rid)  # changed between the chunk queries: the next run reads it whole
                        continue
                    merged.setdefault(rid, {}).update(row)
            out.extend(merged.values())
        return out

    def deleted_since(self, stream: StreamSpec, since: datetime) -> dict[str, datetime]:
        """``GET sobjects/<obj>/deleted/?start=&end=`` (getDeleted): Id -> deletedDate, for as much of
        ``[since, now]`` as the delete log still covers (15 days); {} when the log cannot answer."""
        now_ = datetime.now(UTC).replace(second=0, microsecond=0)
        start = max(since, now_ - timedelta(days=15) + timedelta(minutes=5)).replace(second=0, microsecond=0)
        if now_ - start <= timedelta(minutes=1):
            start = now_ - timedelta(minutes=2)
        params = {"start": start.isoformat(), "end": now_.isoformat()}
        try:
            body = self._call(f"getDeleted on {stream.object}",
                              lambda sf: sf.restful(f"sobjects/{stream.object}/deleted/", params=params)) or {}
        except (ConnectorError, SalesforceError):
            return {}
        out: dict[str, datetime] = {}
        for rec in body.get("deletedRecords") or []:
            when = parse_instant(rec.get("deletedDate"))
            if rec.get("id") and when is not None:
                out[str(rec["id"])] = when
        return out

    def before_stream(self, stream: StreamSpec) -> None:
        share = self.governor.quota_share()
        if share is not None and share >= self.governor.pause_at:
            # the reading that paused an earlier run may be stale (rolling 24 h): ask the org again
            limits = self._call("limits", lambda sf: sf.restful("limits/"), guard=False) or {}
            daily = limits.get("DailyApiRequests") or {}
            if daily.get("Max"):
                self.governor.observe_daily(int(daily["Max"]) - int(daily.get("Remaining", 0)), int(daily["Max"]))
        self.governor.check_quota()

    # -- Bulk API 2.0 --------------------------------------------------------------------------------------

    def _wants_bulk(self, obj: str) -> bool:
        if self.bulk_threshold is None:
            return False
        soql = build_soql(obj, ["COUNT()"], order=False)
        total = int(self._call(f"COUNT() on {obj}", lambda sf: sf.query(soql, include_deleted=True))["totalSize"])
        return total > int(self.bulk_threshold)

    def _bulk_page(self, stream: StreamSpec, fields: list[str], window: Window) -> Page:
        """The next ``page_size`` rows of this object's Bulk 2.0 job. The job id and the ``Sforce-Locator``
        travel in the stream state (``Page.memo``), committed with each page, so an interrupted load goes
        on from the same job in the next run; an expired job (404) is started again (re-read rows are
        deduplicated). Bulk results are unordered (ORDER BY would disable Salesforce's PK chunking), which
        is fine: the high-water mark is the maximum over all pages and the REST keyset is not used
        until the job is done."""
        obj = stream.object
        job = dict((window.memo or {}).get("bulk") or {})
        if not job:
            job = {"id": self._start_bulk_job(obj, fields), "locator": ""}
        try:
            response = self._download(obj, job, stream.page_size)
        except NotFound:
            job = {"id": self._start_bulk_job(obj, fields), "locator": ""}
            response = self._download(obj, job, stream.page_size)
        job["locator"] = response.headers.get("Sforce-Locator") or "null"
        records = self._csv_records(obj, response.content.decode("utf-8"))
        more = job["locator"] != "null" and len(records) > 0
        return Page(records, more=more, memo={"bulk": job} if more else {})

    def _download(self, obj: str, job: Mapping[str, str], max_records: int) -> requests.Response:
        params = {"maxRecords": max_records}
        if job["locator"]:
            params["locator"] = job["locator"]  # type: ignore[assignment]
        path = f"jobs/query/{job['id']}/results"

        def download(sf: Salesforce) -> requests.Response:
            return sf._call_salesforce("GET", sf.base_url + path, name="bulk2 results", params=params,
                                       headers={"Accept": "text/csv"})

        return self._call(f"Bulk 2.0 results of {obj}", download)

    def _start_bulk_job(self, obj: str, fields: list[str]) -> str:
        spec = {"operation": "queryAll", "query": build_soql(obj, fields, order=False), "columnDelimiter": "COMMA",
                "lineEnding": "LF"}
        info = self._call(f"Bulk 2.0 job for {obj}",
                          lambda sf: sf.restful("jobs/query", method="POST", json=spec)) or {}
        job_id = str(info["id"])
        deadline = time.monotonic() + self.bulk_timeout_s
        wait = self.bulk_poll_s
        while True:
            state = self._call(f"Bulk 2.0 job {job_id}", lambda sf: sf.restful(f"jobs/query/{job_id}")) or {}
            if state.get("state") == "JobComplete":
                return job_id
            if state.get("state") in ("Failed", "Aborted"):
                raise ConnectorError(f"{self.name}: Bulk 2.0 query job {job_id} on {obj} ended {state.get('state')}: "
                                     f"{state.get('errorMessage', 'no message')}")
            if time.monotonic() > deadline:
                raise ConnectorError(f"{self.name}: Bulk 2.0 query job {job_id} on {obj} not complete after "
                                     f"{self.bulk_timeout_s:.0f} s; raise options.bulk_timeout_s or lower bulk_threshold")
            time.sleep(wait)
            wait = min(wait * 2, 5.0)

    def _csv_records(self, obj: str, text: str) -> list[dict[str, Any]]:
        """Bulk CSV rows typed like REST JSON (CSV has only strings): booleans, exact numbers, ``+0000``
        datetimes, empty = null, and the REST ``attributes``, so both paths land identical payloads."""
        types = self.field_types(obj)
        url = f"/services/data/v{self.version}/sobjects/{obj}/"
        out: list[dict[str, Any]] = []
        for row in csv.DictReader(io.StringIO(text)):
            rec: dict[str, Any] = {"attributes": {"type": obj, "url": url + row.get("Id", "")}}
            for name, raw in row.items():
                rec[name] = _typed(raw, types.get(name, "string"))
            out.append(rec)
        return out

    def close(self) -> None:
        self._pages.close()
        self.session.close()


def _typed(raw: str, ftype: str) -> Any:
    if raw == "":
        return None
    if ftype == "boolean":
        return raw == "true"
    if ftype == "int":
        return int(raw)
    if ftype in _NUMERIC:
        return Decimal(raw)
    if ftype == "datetime" and raw.endswith("Z"):
        return raw[:-1] + "+0000"
    return raw


def _first_error(exc: SalesforceError) -> tuple[str, str]:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", "UNKNOWN")), str(content[0].get("message", ""))
    return "UNKNOWN", str(content)[:200]


def from_config(name: str, cfg: Any) -> SalesforceConnector:
    """The connector for ``sources.<name>`` of ltc.yaml (``kind: salesforce``)."""
    creds = {key: ref.resolve() for key, ref in cfg.credentials.items()}
    return SalesforceConnector(name, base_url=cfg.base_url, credentials=creds, options=cfg.options,
                               page_size=cfg.page_size, lookback=timedelta(minutes=cfg.lookback_minutes))

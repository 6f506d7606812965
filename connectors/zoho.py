"""Zoho CRM connector (REST API v8; OAuth 2.0 refresh token; the data centres ``com``, ``eu``, ``in``,
``com.au``, ``jp``, ``com.cn``, ``ca``, ``sa``).

Streams, one per module: ``leads``, ``accounts``, ``contacts``, ``deals``, ``products``, ``quotes``,
``sales_orders``, ``invoices`` (raw object = the module's API name, ``Deals``...). Records land as
``GET /crm/v8/{module}`` returns them, with every field the fields metadata API
(``/settings/fields?module=``) lists — custom fields included — and, for the inventory modules, their
line items as the subform arrays ``Quoted_Items`` / ``Ordered_Items`` / ``Invoiced_Items``. Amounts are
parsed as exact decimals (``parse_float=Decimal``).

**Auth.** The refresh token is exchanged at the data centre's accounts server
(``https://accounts.zoho.<dc>/oauth/v2/token``, form ``grant_type=refresh_token``); calls carry
``Authorization: Zoho-oauthtoken <access token>`` against the ``api_domain`` the token answer names
(or ``base_url``). Access tokens live an hour: a ``401 INVALID_TOKEN`` refreshes the token once and
repeats the call. The accounts server answers a bad client or refresh token with HTTP 200 and
``{"error": "invalid_client" | "invalid_code"}``: that is one clear line naming what to fix.

**Incremental reads: a COQL keyset, not If-Modified-Since.** ``Modified_Time`` has second precision,
so many records share a stamp. Two ways to read "changed since":

* ``GET /{module}`` with ``If-Modified-Since: t`` (sorted by ``Modified_Time``) pages by position
  (``page``, then ``page_token``): a record modified while the run pages moves from its position to the
  end, every later record shifts one place forward and the one at the page boundary is never returned
  — a gap. The header is also strictly "after ``t``" at one-second precision, so a run cannot resume
  *inside* a second: either everything stamped ``t`` is read again, or records committed in that
  second after the previous run looked are lost. It cannot express a tie-break.
* COQL ``select id, Modified_Time from M where ((Modified_Time > 't') or ((Modified_Time = 't') and
  (id > i))) and (Modified_Time < 'until') order by Modified_Time, id limit 2000`` is a *keyset*: every
  query is fresh, with no offset, starting strictly after the last (stamp, id) read. A record modified
  mid-run gets a newer stamp and is read again later (or by the next run); no position shifts; records
  that share a second across a page boundary are split by id. ``id`` is a stable bigint. So the
  connector uses the COQL keyset (and never COQL's ``offset``, which shifts like a page and stops at
  100,000). The window's upper bound is the run's start: the engine's high-water mark never passes a
  record this run could not see, and ``[mark − lookback, …)`` next run covers late visibility.

COQL returns lookups as bare ids and no subforms, so it only yields the keys; the bodies are then read
with ``GET /{module}?ids=<≤100>&fields=<≤50>`` (wider modules in several field chunks, merged),
``concurrency`` calls at a time. The next page (its COQL and its bodies) is read in the background while
the engine commits the current one.

**Deletions** come first in every incremental run: ``GET /{module}/deleted?type=all`` (recycle bin and
permanently deleted) with ``If-Modified-Since`` = the window start; each becomes a tombstone dated by
its ``deleted_time``. The deep check (every 24 h) lists every live id with ``GET /{module}?fields=
Modified_Time&sort_by=id`` — ``page`` for the first 2,000 records, ``page_token``
(``info.next_page_token``) beyond — and repairs what the windows missed.

**Limits.** Zoho meters API *credits* per rolling 24 h (``X-RATELIMIT-LIMIT`` / ``-REMAINING`` /
``-RESET`` on every answer; a COQL call with LIMIT 2000 costs 3) and caps *simultaneous* calls per org
and app (5 on the free edition … 25). The governor keeps the daily share (the run pauses with state
saved at ``pause_at`` of the allocation, or at once on a 429 with no credit left); a process-wide
semaphore per tenant keeps in-flight calls at ``concurrency`` (default 5), so the concurrency 429
(``TOO_MANY_REQUESTS``) does not happen from this process; if another app of the org causes one, the
call is retried after ``Retry-After`` or a second.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from canonical import db
from canonical.errors import ConfigError
from connectors.base import AfterCursor, Connector, Page, PageAhead, StreamSpec, Window, parse_instant
from connectors.errors import AuthenticationError, ConnectorError, QuotaPaused, RetryableError
from connectors.governor import RateGovernor, governor_for
from connectors.http import HttpClient, RetryPolicy, not_json, parse_retry_after

# data centre -> (accounts server, API domain)
DATA_CENTRES: dict[str, tuple[str, str]] = {
    "com": ("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "eu": ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    "in": ("https://accounts.zoho.in", "https://www.zohoapis.in"),
    "com.au": ("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    "jp": ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    "com.cn": ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
    "ca": ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    "sa": ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
}
MODULES = ("Leads", "Accounts", "Contacts", "Deals", "Products", "Quotes", "Sales_Orders", "Invoices")
LINE_ITEMS = {"Quotes": "Quoted_Items", "Sales_Orders": "Ordered_Items", "Invoices": "Invoiced_Items"}
API = "/crm/v8"
KEYSET_LIMIT = 2000
IDS_PER_CALL = 100
FIELDS_PER_CALL = 50
LIST_PAGE = 200
DISCRETE_LIMIT = 2000

class FairSlots:
    """A first-come-first-served counting semaphore: at most ``limit`` holders, waiters served in
    arrival order. (A plain semaphore lets a worker that just released a slot take it straight back,
    so the next page's COQL call could wait behind every body call of the current page.)"""

    def __init__(self, limit: int):
        self.free = limit
        self._cond = threading.Condition()
        self._line: deque[object] = deque()

    def __enter__(self) -> FairSlots:
        me = object()
        with self._cond:
            self._line.append(me)
            while self._line[0] is not me or self.free == 0:
                self._cond.wait()
            self._line.popleft()
            self.free -= 1
            self._cond.notify_all()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self.free += 1
            self._cond.notify_all()


_slots: dict[str, FairSlots] = {}
_slots_lock = threading.Lock()


def concurrency_slot(tenant: str, limit: int) -> FairSlots:
    """The process-wide slots of a Zoho org (tenant): at most ``limit`` calls in flight."""
    with _slots_lock:
        slots = _slots.get(tenant)
        if slots is None:
            slots = _slots[tenant] = FairSlots(limit)
        return slots


def coql_time(value: datetime) -> str:
    """A COQL datetime literal: to the second, UTC offset written out (floored: Zoho keeps seconds)."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def keyset_query(module: str, *, since: datetime | None, until: datetime | None,
                 after: tuple[str, str] | None, limit: int) -> str:
    """The COQL keyset query of one page (see the module docstring)."""
    crit: list[str] = []
    if after is not None:
        ts, rid = after
        if not str(rid).isdigit():
            raise ConnectorError(f"zoho: record id {rid!r} is not a Zoho id (digits)")
        crit.append(f"((Modified_Time > '{ts}') or ((Modified_Time = '{ts}') and (id > {rid})))")
    elif since is not None:
        crit.append(f"(Modified_Time >= '{coql_time(since)}')")
    if until is not None:
        crit.append(f"(Modified_Time < '{coql_time(until)}')")
    if not crit:
        crit.append("(id is not null)")
    where = " and ".join(crit)
    return f"select id, Modified_Time from {module} where {where} order by Modified_Time asc, id asc limit {limit}"


def _parse(content: bytes) -> Any:
    return db.loads_exact(content) if content else None


@dataclass
class _Plan:
    """One keyset page in flight: its ids in keyset order, the body calls queued for them, and the
    key the next page starts after (None: the last page)."""

    ids: list[str]
    calls: list[Future[list[dict[str, Any]]]]
    next_after: tuple[str, str] | None

    def collect(self) -> list[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for call in self.calls:
            for row in call.result():
                rid = str(row.get("id"))
                have = merged.get(rid)
                if have is None:
                    merged[rid] = row
                else:  # a wide module: the same record's other field chunk
                    have.update(row)
        return [merged[i] for i in self.ids if i in merged]


class ZohoConnector(Connector):
    kind = "zoho"

    def __init__(
        self,
        name: str,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        dc: str = "com",
        base_url: str | None = None,
        accounts_url: str | None = None,
        tenant: str | None = None,
        lookback: timedelta = timedelta(minutes=10),
        concurrency: int = 5,
        modules: Sequence[str] | None = None,
        streams: Sequence[str] | None = None,
        keyset_limit: int = KEYSET_LIMIT,
        read_ahead: bool = True,
        policy: RetryPolicy | None = None,
        governor: RateGovernor | None = None,
        timeout: float = 60.0,
        verify: Any = True,
    ):
        super().__init__(name, lookback=lookback)
        if dc not in DATA_CENTRES:
            raise ConfigError(f"sources.{name}.options.dc: {dc!r} is not a Zoho data centre; "
                              f"one of {', '.join(DATA_CENTRES)}")
        default_accounts, default_api = DATA_CENTRES[dc]
        self.accounts_url = (accounts_url or default_accounts).rstrip("/")
        self.base_url = base_url.rstrip("/") if base_url else None
        self._default_api = default_api
        self.client_id, self._client_secret, self._refresh_token = client_id, client_secret, refresh_token
        tenant = tenant or name
        self.governor = governor or governor_for(tenant, "zoho", lambda: RateGovernor("zoho", 100, 1.0))
        self.concurrency = max(1, concurrency)
        self.slot = concurrency_slot(f"{tenant}:{self.concurrency}", self.concurrency)
        self.policy = policy or RetryPolicy()
        self.timeout, self.verify = timeout, verify
        self.keyset_limit = keyset_limit
        self.read_ahead = read_ahead
        self.http_429 = 0
        self.token_refreshes = 0
        self._token: str | None = None
        self._token_lock = threading.Lock()
        self._http: HttpClient | None = None
        self._accounts = HttpClient("zoho accounts", self.accounts_url, policy=self.policy, timeout=timeout,
                                    verify=verify)
        self._fields: dict[str, list[str]] = {}
        # twice the slots: a thread parsing a body has given its slot back, another thread takes it (the
        # slot, not the pool, bounds the calls in flight)
        self._pool = ThreadPoolExecutor(max_workers=2 * self.concurrency, thread_name_prefix=f"zoho-{name}")
        self._plans: PageAhead[_Plan] = PageAhead(f"zoho-{name}-ahead")
        wanted = list(modules or MODULES)
        unknown = [m for m in wanted if m not in MODULES]
        if unknown:
            raise ConfigError(f"sources.{name}.options.modules: unknown module(s) {', '.join(unknown)}; "
                              f"known: {', '.join(MODULES)}")
        specs = [StreamSpec(m.lower(), m, cursor_field="Modified_Time", page_size=keyset_limit,
                            paginator=AfterCursor(), options={"kind": "module"}) for m in wanted]
        self.streams = tuple(s for s in specs if streams is None or s.name in streams)

    # --- auth and transport --------------------------------------------------------------------------
    @property
    def requests_sent(self) -> int:
        return self._http.requests_sent if self._http is not None else 0

    def _refresh(self) -> str:
        """A new access token from the accounts server (caller holds the lock)."""
        body = self._accounts.json("POST", "/oauth/v2/token", data={
            "grant_type": "refresh_token", "client_id": self.client_id, "client_secret": self._client_secret,
            "refresh_token": self._refresh_token})
        self.token_refreshes += 1
        if not isinstance(body, Mapping) or body.get("error") or not body.get("access_token"):
            err = body.get("error") if isinstance(body, Mapping) else None
            raise AuthenticationError(
                f"zoho: {self.accounts_url} refused the refresh token ({err or 'no access_token in the answer'}); "
                f"check credentials.client_id, client_secret and refresh_token of source {self.name}, and that "
                "options.dc is the data centre the client was registered in", code=str(err or ""))
        self._token = str(body["access_token"])
        if self._http is None:
            api = self.base_url or str(body.get("api_domain") or self._default_api)
            self._http = HttpClient("zoho", api.rstrip("/"), governor=self.governor, policy=self.policy,
                                    hint=self._hint, observe=self._observe, timeout=self.timeout,
                                    verify=self.verify, headers={"Accept": "application/json"})
        return self._token

    def _access(self, stale: str | None = None) -> tuple[str, HttpClient]:
        with self._token_lock:
            if self._token is None or self._token == stale:
                self._refresh()
            assert self._token is not None and self._http is not None
            return self._token, self._http

    def _call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json_body: Any = None,
              headers: Mapping[str, str] | None = None) -> Any:
        """One API call (the parsed body; None for 204/304), refreshing the token once on INVALID_TOKEN.

        The body is parsed after the concurrency slot is given back (the org's limit counts calls in
        flight, not our parsing); a body that is not JSON is asked for again, twice at most."""
        stale: str | None = None
        refreshed = unreadable = 0
        while True:
            token, http = self._access(stale)
            hdrs = {"Authorization": f"Zoho-oauthtoken {token}", **(headers or {})}
            try:
                with self.slot:
                    response = http.request(method, path, params=params, json=json_body, headers=hdrs)
            except AuthenticationError as exc:
                if exc.code != "INVALID_TOKEN" or refreshed:
                    raise
                refreshed, stale = 1, token
                continue
            try:
                return _parse(response.content)
            except ValueError:
                unreadable += 1
                if unreadable > 2:
                    err = not_json("zoho", response.request.url, response.status_code, response.content,
                                   response.headers.get("content-type"))
                    raise ConnectorError(str(err), status=response.status_code) from None

    def _observe(self, headers: Mapping[str, str]) -> None:
        limit, left = headers.get("X-RATELIMIT-LIMIT"), headers.get("X-RATELIMIT-REMAINING")
        if limit and left is not None and limit.isdigit() and left.isdigit() and int(limit) > 0:
            self.governor.observe_daily(int(limit) - int(left), int(limit))

    def _hint(self, status: int, headers: Mapping[str, str], body: Any) -> str | None:
        info = body if isinstance(body, Mapping) else {}
        code = str(info.get("code") or "")
        message = str(info.get("message") or "")[:300]
        details = info.get("details") or {}
        if status == 429:
            self.http_429 += 1
            if headers.get("X-RATELIMIT-REMAINING") == "0":
                raise QuotaPaused(
                    "zoho: the org's API credits for the rolling 24 h window are used up (429 TOO_MANY_REQUESTS, "
                    "X-RATELIMIT-REMAINING 0); paused with state saved, the next run resumes")
            wait = parse_retry_after(headers.get("Retry-After"))
            raise RetryableError(f"zoho: 429 {code or 'TOO_MANY_REQUESTS'} ({message})", status=429,
                                 retry_after=1.0 if wait is None else wait)
        if status == 401:
            raise AuthenticationError(
                f"zoho: {code or 'unauthorized'} ({message}); check the source's credentials and options.dc",
                status=401, code=code)
        if status == 403 or code in ("OAUTH_SCOPE_MISMATCH", "NO_PERMISSION"):
            return (f"{code}: {message}; grant the client the scopes ZohoCRM.modules.READ, ZohoCRM.coql.READ "
                    "and ZohoCRM.settings.fields.READ")
        return f"{code}: {message} {json.dumps(details, default=str)}".strip() if code else message or None

    def close(self) -> None:
        self._plans.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._accounts.close()
        if self._http is not None:
            self._http.close()

    # --- metadata ---------------------------------------------------------------------------------------
    def fields(self, module: str) -> list[str]:
        """Every field API name of ``module`` (custom fields and line-item subforms included)."""
        names = self._fields.get(module)
        if names is None:
            body = self._call("GET", f"{API}/settings/fields", params={"module": module}) or {}
            names = [str(f["api_name"]) for f in body.get("fields") or [] if f.get("api_name") and
                     f.get("api_name") != "id"]
            if not names:
                raise ConnectorError(f"zoho: the fields metadata of {module} is empty; is the module enabled "
                                     "and visible to the client's user?")
            self._fields[module] = names
        return names

    # --- reading ----------------------------------------------------------------------------------------
    def before_stream(self, stream: StreamSpec) -> None:
        self.governor.check_quota()

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        self.governor.check_quota()
        state: dict[str, Any] = dict(token) if token else {"phase": "deleted" if window.since else "live", "page": 1}
        if state["phase"] == "deleted":
            return self._read_deleted(stream, window, state)
        after = tuple(state["after"]) if state.get("after") else None
        plan = self._plans.take("plan", (stream.name, after, window.since, window.until),
                                lambda: self._plan(stream, window, after))
        if self.read_ahead and plan.next_after is not None:
            # the next page's COQL runs now and its body calls queue behind this page's: the
            # concurrency slots never idle at a page boundary
            frozen = Window(window.since, until=window.until)
            self._plans.ahead("plan", (stream.name, plan.next_after, window.since, window.until),
                              partial(self._plan, stream, frozen, plan.next_after))
        records = plan.collect()
        next_token = {"phase": "live", "after": list(plan.next_after)} if plan.next_after is not None else None
        return Page(records, next_token=next_token)

    def _read_deleted(self, stream: StreamSpec, window: Window, state: dict[str, Any]) -> Page:
        """One page of ``/{module}/deleted?type=all`` since the window start: tombstones."""
        assert window.since is not None
        body = self._call("GET", f"{API}/{stream.object}/deleted",
                          params={"type": "all", "page": state["page"], "per_page": LIST_PAGE},
                          headers={"If-Modified-Since": coql_time(window.since)})
        rows = (body or {}).get("data") or []
        gone = [{**row, "id": str(row["id"]), "Modified_Time": row.get("deleted_time")} for row in rows
                if row.get("id") is not None]
        more = bool(((body or {}).get("info") or {}).get("more_records"))
        nxt = {"phase": "deleted", "page": state["page"] + 1} if more else {"phase": "live", "after": None}
        return Page([], deleted=gone, next_token=nxt)

    def _plan(self, stream: StreamSpec, window: Window, after: tuple[str, str] | None) -> _Plan:
        """The keys of one keyset page (COQL), with the body calls of its records queued."""
        query = keyset_query(stream.object, since=window.since, until=window.until, after=after,
                             limit=self.keyset_limit)
        # the first page of a module needs its fields metadata too: asked for next to the COQL call
        meta = None if stream.object in self._fields else self._pool.submit(self.fields, stream.object)
        body = self._call("POST", f"{API}/coql", json_body={"select_query": query})
        if meta is not None:
            meta.result()
        keys = (body or {}).get("data") or []
        more = bool(((body or {}).get("info") or {}).get("more_records")) and bool(keys)
        ids = [str(k["id"]) for k in keys]
        next_after = (str(keys[-1]["Modified_Time"]), str(keys[-1]["id"])) if more else None
        return _Plan(ids, self._submit(stream.object, ids), next_after)

    def _submit(self, module: str, ids: Sequence[str]) -> list[Future[list[dict[str, Any]]]]:
        """Queue the body calls of ``ids``: by 100 ids and 50 fields a call, run ``concurrency`` at a time."""
        if not ids:
            return []
        names = self.fields(module)
        field_chunks = [names[i:i + FIELDS_PER_CALL] for i in range(0, len(names), FIELDS_PER_CALL)]

        def one(chunk_ids: Sequence[str], chunk_fields: list[str]) -> list[dict[str, Any]]:
            body = self._call("GET", f"{API}/{module}", params={"ids": ",".join(chunk_ids),
                                                              "fields": ",".join(chunk_fields)})
            return list((body or {}).get("data") or [])

        return [self._pool.submit(one, ids[i:i + IDS_PER_CALL], chunk)
                for i in range(0, len(ids), IDS_PER_CALL) for chunk in field_chunks]

    def _fetch(self, module: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The records with these ids, every field, in the order asked (ids the source no longer has
        are left out)."""
        return _Plan(list(ids), self._submit(module, ids), None).collect()

    # --- completeness -----------------------------------------------------------------------------------
    def source_ids(self, stream: StreamSpec) -> dict[str, datetime | None] | None:
        """Every live id with its ``Modified_Time``: ``GET /{module}?fields=Modified_Time&sort_by=id``,
        ``page`` for the first 2,000 records and ``page_token`` beyond (Zoho refuses pages past 2,000)."""
        out: dict[str, datetime | None] = {}
        page, token = 1, None
        while True:
            params: dict[str, Any] = {"fields": "Modified_Time", "per_page": LIST_PAGE, "sort_by": "id",
                                      "sort_order": "asc"}
            if token:
                params["page_token"] = token
            else:
                params["page"] = page
            body = self._call("GET", f"{API}/{stream.object}", params=params) or {}
            for row in body.get("data") or []:
                try:
                    out[str(row["id"])] = parse_instant(row.get("Modified_Time"))
                except (ValueError, TypeError):
                    out[str(row["id"])] = None
            info = body.get("info") or {}
            if not info.get("more_records"):
                return out
            token = info.get("next_page_token")
            page += 1
            if not token and page * LIST_PAGE > DISCRETE_LIMIT:
                raise ConnectorError(f"zoho: {stream.object} listing passed {DISCRETE_LIMIT} records without a "
                                     "next_page_token; cannot page further")

    def fetch_ids(self, stream: StreamSpec, ids: Sequence[str]) -> list[dict[str, Any]]:
        return self._fetch(stream.object, ids)

    def deleted_since(self, stream: StreamSpec, since: datetime) -> dict[str, datetime]:
        out: dict[str, datetime] = {}
        page = 1
        while True:
            body = self._call("GET", f"{API}/{stream.object}/deleted",
                              params={"type": "all", "page": page, "per_page": LIST_PAGE},
                              headers={"If-Modified-Since": coql_time(since)}) or {}
            for row in body.get("data") or []:
                when = parse_instant(row.get("deleted_time"))
                if when is not None and row.get("id") is not None:
                    out[str(row["id"])] = when
            if not (body.get("info") or {}).get("more_records"):
                return out
            page += 1


def from_config(name: str, cfg: Any) -> ZohoConnector:
    """Build from ``ltc.yaml``: ``credentials.client_id``, ``client_secret``, ``refresh_token`` (a Self
    Client or server-based client with scopes ZohoCRM.modules.READ, ZohoCRM.coql.READ,
    ZohoCRM.settings.fields.READ); ``options.dc`` (com, eu, in, com.au, jp, com.cn, ca, sa; default com),
    optional ``base_url`` (API domain), ``options.accounts_url``, ``options.concurrency`` (calls in flight,
    default 5 — the free edition's limit), ``options.modules``, ``options.tenant``."""
    missing = [k for k in ("client_id", "client_secret", "refresh_token") if cfg.credentials.get(k) is None]
    if missing:
        raise ConfigError(f"sources.{name}.credentials: {', '.join(missing)} required (a Zoho OAuth client and "
                          "its refresh token)")
    creds = {k: cfg.credentials[k].resolve() for k in ("client_id", "client_secret", "refresh_token")}
    options = dict(cfg.options or {})
    try:
        concurrency = int(options.get("concurrency", 5))
    except (TypeError, ValueError):
        raise ConfigError(f"sources.{name}.options.concurrency must be a whole number") from None
    return ZohoConnector(
        name, **creds, dc=str(options.get("dc", "com")), base_url=cfg.base_url,
        accounts_url=options.get("accounts_url"), tenant=options.get("tenant"),
        lookback=timedelta(minutes=cfg.lookback_minutes), concurrency=concurrency,
        modules=options.get("modules"), streams=cfg.streams, verify=options.get("ca_file") or True,
    )

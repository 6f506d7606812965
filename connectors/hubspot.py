"""HubSpot CRM connector (private-app token; CRM v3 objects and search, v4 associations).

Streams: ``contacts``, ``companies``, ``deals``, ``line_items``, ``products`` (incremental),
``owners`` and ``deal_pipelines`` (full refresh, pipelines carry their stages) and
``deal_associations`` (a full association sweep, see below). Records land as HubSpot returns them;
every property value is a string, so amounts stay exact strings until the mapping makes them
``Decimal`` (the JSON is parsed with ``parse_float=Decimal`` all the same).

**One run of an object stream** is a small state machine whose position is the page token the sync
engine checkpoints with every page (so an interrupted or paused run resumes at the page it stopped):

1. ``arch`` — list ``archived=true`` (HubSpot keeps archived records ~90 days): tombstones. Read in
   full every run; unchanged tombstones write nothing.
2. ``list`` (first run only, ``since`` is None) — the list endpoint, 100 per page, ordered by id.
3. ``search`` — ``POST /search`` over the window ``[since, until)`` on ``hs_lastmodifieddate``
   (contacts: ``lastmodifieddate``; the other name silently matches nothing there), where ``until`` is
   fixed when the phase starts. After the first-run ``list`` pass the window is a catch-up over
   ``[list start − lookback, until)``: whatever changed while the list was read is read again.

   Inside a window we never page with ``after``: it is an offset, so a record that leaves the window
   mid-read (modified again) shifts the rest and one record is skipped, and HubSpot refuses offsets
   past 10,000 (HTTP 400). Instead every query is a fresh keyset query: ``hs_object_id GT <last id>``
   sorted by ``hs_object_id`` ascending (HubSpot allows one sort only), numeric on both sides. A
   window whose ``total`` exceeds 10,000 is bisected first (left half first) until each query's result
   set is under the cap; a 1 ms window cannot be split and is walked by the id keyset alone, however
   many records share that millisecond. Nothing is skipped (ids are stable), nothing is returned twice
   within a run, and every record seen has a timestamp below ``until``, so the high-water mark the
   engine keeps never passes a change this run could have missed; later changes and records that
   become visible late (search index lag) fall inside the next run's ``[hw − lookback, …)``.

**Associations** (deal→company, deal→contact, deal→line_item) do not bump ``hs_lastmodifieddate``, so
no timestamp cursor can see an association-only edit (airbyte #44554). HubSpot's own change signal for
them is the ``*.associationChange`` webhook, which needs a public HTTPS endpoint the hub would have to
host; a pulling connector cannot use it. ``deal_associations`` therefore reads associations in two ways
and lands one record per deal, object ``associations.deals``, source id = the deal id, payload
``{id, companies: [...], contacts: [...], line_items: [...]}`` (sorted, with type ids); the store's
content-hash diff *is* the association diff (an unchanged deal writes nothing, an added or removed edge
rewrites exactly that deal's record, archived deals become tombstones):

* every run, the deals **modified since the last run** (a search on ``hs_lastmodifieddate`` over
  ``[mark − lookback, run start)``, by id keyset) get their associations re-read with one v4
  ``batch/read`` per target type and 100 deals — a created or edited deal is current at once, and a run
  where nothing changed costs one search request;
* a **full sweep** (every live deal, 4 requests per 100 deals) runs when the last complete one started
  ``association_full_sweep_hours`` ago (default 24) or never ran. That is the bound on staleness: an
  association-only edit is in the store after the first run that starts a full sweep after it, at most
  ``association_full_sweep_hours`` plus one run interval later.

The schedule (``{"full_at", "mark"}``, epoch ms) is kept with the stream's cursor and only moves when a
pass completed. ``line_item_associations`` does the same from the line items' side (object
``associations.line_items``, payload ``{id, deals: [...]}``), because a line item carries no deal property.
The mapping joins these records to their deal / line item by id (``with:`` in hubspot.yaml), and a
changed association record re-maps its deal or line item.

**Limits.** One :class:`RateGovernor` per tenant for the 10-second burst limit, paced *under* the
vendor's rolling window (a token bucket of capacity C and rate r admits C + r·W requests per window W,
so both are chosen to keep that below the limit instead of bouncing off it), and re-paced from
``X-HubSpot-RateLimit-Max``/``-Interval-Milliseconds``; ``-Remaining`` clamps the bucket (other apps
share the portal) and ``-Daily``/``-Daily-Remaining`` feed the daily quota guard. Search has its own
governor (5/s). A 429's ``policyName`` decides: ``TEN_SECONDLY_ROLLING`` and ``SECONDLY`` are retried
after a wait (HubSpot often sends no ``Retry-After``), ``DAILY`` raises :class:`QuotaPaused` — the run
stops with its state saved and the next run resumes.

**Throughput.** Five API pages make one engine page (one transaction and checkpoint per ~500
listed or ~1,000 searched records), and the next engine page is fetched in a background thread while
the engine commits the current one (one request in flight ahead at most, same governor and retries).

**HTTP.** Every call goes through :class:`~connectors.http.HttpClient` (httpx): one retry layer, the
governor before each attempt and the headers after it, on success *and* error responses. The SDK
(hubspot-api-client) talks urllib3 with its own optional retries and exposes headers only through
``*_with_http_info``; wrapping it would mean two transports and exception translation for no gain.
The tests prove the emulator's responses deserialize into the SDK's own models.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from canonical.errors import ConfigError
from connectors import crm_fields
from connectors.base import Connector, Page, PageAhead, StreamSpec, Window, bad_id, last_id
from connectors.errors import AuthenticationError, PagingBroken, QuotaPaused, RetryableError
from connectors.governor import RateGovernor, governor_for
from connectors.http import HttpClient, RetryPolicy, parse_retry_after, warn_once

DEFAULT_BASE_URL = "https://api.hubapi.com"
OBJECTS = ("contacts", "companies", "deals", "line_items", "products", "quotes")
ASSOCIATED = ("companies", "contacts", "line_items")
SEARCH_CAP = 10_000
LIST_PAGE = 100
SEARCH_PAGE = 200


def modified_property(obj: str) -> str:
    """The last-modified property search filters on: ``lastmodifieddate`` on contacts only."""
    return "lastmodifieddate" if obj == "contacts" else "hs_lastmodifieddate"


def _page_key(stream: StreamSpec, window: Window, token: Any) -> tuple[str, datetime | None, str]:
    """What a read-ahead page is known by: the stream, the window's start and the page token."""
    return stream.name, window.since, json.dumps(token, sort_keys=True)


def header_int(headers: Mapping[str, str], name: str, *, least: int = 0) -> int | None:
    """A HubSpot rate-limit header as an integer >= ``least``; None if absent or not such a number
    (then ignored, with a warning once: ``n/a`` or ``0`` must not stop a sync or stall the governor)."""
    raw = headers.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = None
    if value is None or value < least:
        warn_once(f"{name}: {raw[:40]}", f"hubspot: ignoring the header {name}: {raw[:40]!r} (expected an "
                  f"integer of at least {least})")
        return None
    return value


def _ms(value: datetime) -> int:
    return math.floor(value.timestamp() * 1000)


def pace(gov: RateGovernor, limit: int, interval_s: float, *, jitter_s: float = 0.05) -> None:
    """Set ``gov`` so that no rolling window of ``interval_s`` ever sees more than ``limit`` requests.

    A bucket of capacity C refilled at r per second admits at most C + r·(W + jitter) requests in a
    server-side window W (arrival times jitter against send times); keep that under ``limit + 1``
    with half a request to spare, and keep the burst small so the rate is as close to the limit as
    possible: 190/10 s gives C = 3, r ≈ 18.6/s (98 %); 5/s gives C = 1, r ≈ 4.3/s.
    """
    if limit < 1 or not interval_s > 0:
        raise ValueError(f"a rate limit is at least 1 request in a positive interval, not {limit} in {interval_s} s")
    capacity = max(1.0, math.floor(limit * 0.02))
    rate = (limit + 0.5 - capacity) / (interval_s + jitter_s)
    with gov._lock:
        gov.capacity = capacity
        gov.interval_s = capacity / rate
        gov.tokens = min(gov.tokens, capacity)


def paced_governor(name: str, limit: int, interval_s: float) -> RateGovernor:
    gov = RateGovernor(name, capacity=limit, interval_s=interval_s)
    pace(gov, limit, interval_s)
    gov.tokens = gov.capacity
    return gov


def _after(body: Any, after: str | None, what: str) -> str | None:
    """A list page's ``paging.next.after``; the one just sent back again means the paging does not move."""
    paging = body.get("paging") if isinstance(body, Mapping) else None
    nxt = ((paging or {}).get("next") or {}).get("after") if isinstance(paging, Mapping) else None
    if nxt and after is not None and str(nxt) == str(after):
        raise PagingBroken(f"hubspot returned the same page token twice ({what}, after={str(after)[:60]}): its "
                           "paging is broken; the pages read so far are kept, the stream is not complete")
    return str(nxt) if nxt else None


def _id_order(value: str) -> tuple[int, int | str]:
    """HubSpot ids are numbers sent as text: ordered as numbers where they are."""
    return (0, int(value)) if value.isdigit() else (1, value)


class HubSpotConnector(Connector):
    kind = "hubspot"

    def __init__(
        self,
        name: str,
        base_url: str,
        token: str,
        *,
        tenant: str | None = None,
        lookback: timedelta = timedelta(minutes=10),
        properties: Mapping[str, Sequence[str]] | None = None,
        url_budget: int = 6_000,
        policy: RetryPolicy | None = None,
        governor: RateGovernor | None = None,
        search_governor: RateGovernor | None = None,
        timeout: float = 60.0,
        streams: Sequence[str] | None = None,
        verify: Any = True,
        read_ahead: bool = True,
        pages_per_commit: int = 5,
        full_sweep_every: timedelta = timedelta(hours=24),
        options: Mapping[str, Any] | None = None,
    ):
        super().__init__(name, lookback=lookback)
        tenant = tenant or name
        self.governor = governor or governor_for(tenant, "hubspot", lambda: paced_governor("hubspot", 190, 10.0))
        self.search_governor = search_governor or governor_for(
            tenant, "hubspot-search", lambda: paced_governor("hubspot search", 5, 1.0))
        self._paced: tuple[int, float] | None = None
        self.properties_wanted = {k: list(v) for k, v in (properties or {}).items()}
        self.url_budget = url_budget
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.http = HttpClient("hubspot", base_url, headers=headers, governor=self.governor, policy=policy,
                               hint=self._hint, observe=self._observe, timeout=timeout, verify=verify)
        self.search_http = HttpClient("hubspot", base_url, headers=headers, governor=self.search_governor,
                                      policy=policy or RetryPolicy(), hint=self._hint,
                                      observe=self._observe_daily, timeout=timeout, verify=verify)
        self.http_429 = 0
        self.read_ahead = read_ahead
        self.search_cap, self.search_page = SEARCH_CAP, SEARCH_PAGE
        self.pages_per_commit = max(1, pages_per_commit)
        self.full_sweep_every = full_sweep_every
        self.clock = time.time  # the sweep schedule's clock (tests move it)
        self._pages: PageAhead[Page] = PageAhead(f"hubspot-{name}")
        self._props: dict[str, list[str]] = {}
        self.options = dict(options or {})
        own = crm_fields.own_paths("hubspot", self.options, name)  # what push-crm writes: not a business change
        specs = [StreamSpec(obj, obj, cursor_field=f"properties.{modified_property(obj)}", page_size=LIST_PAGE,
                            deleted_when=("archived", True), options={"kind": "object"},
                            hash_ignore=own.get(obj, ())) for obj in OBJECTS]
        specs += [
            StreamSpec("owners", "owners", deleted_when=("archived", True), options={"kind": "owners"}),
            StreamSpec("deal_pipelines", "deal_pipelines", options={"kind": "pipelines"}),
            StreamSpec("deal_associations", "associations.deals", deleted_when=("archived", True),
                       options={"kind": "associations", "from": "deals", "to": ASSOCIATED}),
            # a line item's deal (HubSpot line items carry no deal property): the same sweep from the other side
            StreamSpec("line_item_associations", "associations.line_items", deleted_when=("archived", True),
                       options={"kind": "associations", "from": "line_items", "to": ("deals",)}),
            # a quote's deal: quotes carry no deal property either
            StreamSpec("quote_associations", "associations.quotes", deleted_when=("archived", True),
                       options={"kind": "associations", "from": "quotes", "to": ("deals",)}),
        ]
        self.streams = tuple(s for s in specs if streams is None or s.name in streams)

    @property
    def _full_every_ms(self) -> int:
        return int(self.full_sweep_every.total_seconds() * 1000)

    def close(self) -> None:
        self._pages.close()
        self.http.close()
        self.search_http.close()

    # --- vendor hooks ---------------------------------------------------------------------------
    def _observe(self, headers: Mapping[str, str]) -> None:
        """Feed the burst governor (and the daily guard) from HubSpot's own rate-limit headers."""
        remaining = header_int(headers, "X-HubSpot-RateLimit-Remaining")
        limit = header_int(headers, "X-HubSpot-RateLimit-Max", least=1)
        interval = header_int(headers, "X-HubSpot-RateLimit-Interval-Milliseconds", least=1)
        if limit and interval and (limit, interval / 1000) != self._paced:
            self._paced = (limit, interval / 1000)
            pace(self.governor, *self._paced)
        if remaining is not None:
            self.governor.observe_window(remaining)
        self._observe_daily(headers)

    def _observe_daily(self, headers: Mapping[str, str]) -> None:
        daily = header_int(headers, "X-HubSpot-RateLimit-Daily", least=1)
        left = header_int(headers, "X-HubSpot-RateLimit-Daily-Remaining")
        if daily and left is not None:
            self.governor.observe_daily(max(daily - left, 0), daily)

    def _hint(self, status: int, headers: Mapping[str, str], body: Any) -> str | None:
        info = body if isinstance(body, Mapping) else {}
        message = str(info.get("message") or "")[:300]
        if status == 429:
            self.http_429 += 1
            policy = str(info.get("policyName") or "")
            if policy == "DAILY":
                raise QuotaPaused(
                    "hubspot: the portal's DAILY API limit is reached (429 DAILY); paused with state saved, "
                    "the next run (after midnight in the portal's time zone) resumes"
                )
            retry_after = parse_retry_after(headers.get("Retry-After"))
            if retry_after is not None:
                wait = retry_after
            elif policy == "SECONDLY":
                wait = 1.0
            else:  # TEN_SECONDLY_ROLLING: half the window frees the oldest requests we sent
                wait = int(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds") or 10_000) / 2000
            raise RetryableError(f"hubspot: 429 {policy or 'rate limited'}", status=429, retry_after=wait)
        if status == 401:
            raise AuthenticationError(
                "hubspot: the private-app token was rejected (401); check credentials.token of this source "
                "in ltc.yaml", status=401)
        if status == 403:
            return (f"{message or 'missing scopes'}; grant the private app the scopes crm.objects.contacts.read, "
                    "crm.objects.companies.read, crm.objects.deals.read, crm.objects.line_items.read, "
                    "crm.objects.owners.read and e-commerce (products)")
        if status == 414:
            return "the request URL is too long; lower options.url_budget for this source"
        return message or None

    # --- helpers --------------------------------------------------------------------------------
    def _get(self, path: str, params: Any = None) -> Any:
        self.governor.check_quota()
        return self.http.json("GET", path, params=params)

    def _post(self, path: str, body: Any, *, search: bool = False) -> Any:
        self.governor.check_quota()
        client = self.search_http if search else self.http
        return client.json("POST", path, json=body)

    def properties(self, obj: str) -> list[str]:
        """Property names to read: configured, or every property the properties API lists."""
        if obj not in self._props:
            wanted = self.properties_wanted.get(obj)
            if wanted is None:
                wanted = [p["name"] for p in self._get(f"/crm/v3/properties/{obj}")["results"] if not p.get("hidden")]
            first = ["hs_object_id", modified_property(obj)]
            self._props[obj] = first + [p for p in wanted if p not in first]
        return self._props[obj]

    def property_chunks(self, obj: str) -> list[list[str]]:
        """Properties split so that each chunk's query string stays under ``url_budget`` characters
        (a wide portal's property list in one GET is answered 414)."""
        chunks: list[list[str]] = [[]]
        used = 0
        for name in self.properties(obj):
            cost = len("&properties=") + len(name)
            if chunks[-1] and used + cost > self.url_budget:
                chunks.append([])
                used = 0
            chunks[-1].append(name)
            used += cost
        return chunks

    def _list(self, obj: str, after: str | None, *, archived: bool, props: list[str] | None = None) -> Any:
        params: list[tuple[str, str]] = [("limit", str(LIST_PAGE)), ("archived", "true" if archived else "false")]
        params += [("properties", p) for p in (props or ["hs_object_id", modified_property(obj)])]
        if after:
            params.append(("after", after))
        return self._get(f"/crm/v3/objects/{obj}", params)

    def _list_full(self, obj: str, after: str | None) -> Any:
        """One list page with every property: the first chunk in the GET, the rest by ``batch/read``
        (a POST body has no URL limit), merged by id."""
        first, *rest = self.property_chunks(obj)
        body = self._list(obj, after, archived=False, props=first)
        rest_props = [p for chunk in rest for p in chunk]
        if rest_props and body.get("results"):
            more = self._post(f"/crm/v3/objects/{obj}/batch/read", {
                "properties": rest_props, "inputs": [{"id": r["id"]} for r in body["results"]]})
            extra = {r["id"]: r.get("properties") or {} for r in more.get("results") or []}
            for rec in body["results"]:
                rec["properties"].update(extra.get(rec["id"], {}))
        return body

    # --- pages ----------------------------------------------------------------------------------
    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        """The page at ``token``; the next one is fetched in the background while the engine commits
        this one (one request ahead at most, through the same governor and retry layer)."""
        page = self._pages.take("page", _page_key(stream, window, token),
                                lambda: self._read_page(stream, window, token))
        if self.read_ahead and page.next_token is not None and page.halt is None:
            self._pages.ahead("page", _page_key(stream, window, page.next_token),
                              partial(self._read_page, stream, window, page.next_token))
        return page

    def _read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        kind = stream.options.get("kind")
        if kind == "object":
            # several API pages (100 listed / 200 searched) make one engine page: one transaction
            # and one checkpoint per ~500 records instead of per 100 (SQLite commits dominate)
            page = self._object_page(stream.object, window, token)
            for _ in range(self.pages_per_commit - 1):
                if page.next_token is None or page.halt is not None:
                    break
                more = self._object_page(stream.object, window, page.next_token)
                page = Page(page.records + more.records, next_token=more.next_token, halt=more.halt)
            return page
        if kind == "owners":
            return self._owners_page(token)
        if kind == "pipelines":
            return Page(self._get("/crm/v3/pipelines/deals")["results"])
        if kind == "associations":
            return self._associations_page(token, stream.options["from"], stream.options["to"], window.memo)
        raise AssertionError(f"unknown stream kind {kind!r}")

    def _object_page(self, obj: str, window: Window, token: Any) -> Page:
        state: dict[str, Any] = dict(token) if token else {"p": "arch", "after": None}
        if state["p"] == "arch":
            body = self._list(obj, state["after"], archived=True)
            nxt = _after(body, state["after"], f"/crm/v3/objects/{obj}?archived=true")
            if nxt:
                return Page(body["results"], next_token={"p": "arch", "after": nxt})
            if window.since is None:
                following = {"p": "list", "after": None, "t0": int(time.time() * 1000)}
            else:
                following = self._search_state(_ms(window.since))
            return Page(body["results"], next_token=following)
        if state["p"] == "list":
            body = self._list_full(obj, state["after"])
            nxt = _after(body, state["after"], f"/crm/v3/objects/{obj}")
            if nxt:
                return Page(body["results"], next_token={**state, "after": nxt})
            catch_up = self._search_state(state["t0"] - int(self.lookback.total_seconds() * 1000))
            return Page(body["results"], next_token=catch_up)
        return self._search_page(obj, state)

    @staticmethod
    def _search_state(lo: int) -> dict[str, Any]:
        until = int(time.time() * 1000)
        return {"p": "search", "until": until, "wins": [[lo, until]] if lo < until else [], "last": None,
                "probed": False}

    def _search_body(self, obj: str, lo: int, hi: int, last: str | None, limit: int) -> dict[str, Any]:
        prop = modified_property(obj)
        filters: list[dict[str, Any]] = [{"propertyName": prop, "operator": "GTE", "value": str(lo)},
                                         {"propertyName": prop, "operator": "LT", "value": str(hi)}]
        if last is not None:
            filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": str(last)})
        return {"filterGroups": [{"filters": filters}],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": self.properties(obj), "limit": limit}

    def _search_page(self, obj: str, state: dict[str, Any]) -> Page:
        wins: list[list[int]] = [list(w) for w in state["wins"]]
        if not wins:
            return Page([], next_token=None)
        lo, hi = wins[0]
        body = self._post(f"/crm/v3/objects/{obj}/search", self._search_body(obj, lo, hi, state["last"], self.search_page),
                          search=True)
        total = int(body.get("total") or 0)
        if not state["probed"] and total > self.search_cap and hi - lo > 1:
            mid = lo + (hi - lo) // 2  # over the cap: bisect, left half first; this page is not used
            return Page([], next_token={**state, "wins": [[lo, mid], [mid, hi], *wins[1:]], "last": None})
        results = body.get("results") or []
        if body.get("paging") and results:
            last = last_id(results)
            if last is None:
                raise PagingBroken(f"hubspot search on {obj} returned a page with more to come but no record with "
                                   "an id to continue after: its paging is broken; the stream is not complete")
            if last == state["last"] or (state["last"] is not None and _id_order(last) <= _id_order(state["last"])):
                raise PagingBroken(
                    f"hubspot returned the same page token twice (search on {obj} after hs_object_id "
                    f"{state['last']}): its paging is broken (the hs_object_id GT filter is not applied); the "
                    "pages read so far are kept, the stream is not complete")
            return Page(results, next_token={**state, "last": last, "probed": True})
        if len(results) < total:
            # more match than came, and no paging: a full page goes on by the id keyset (which needs no
            # paging); anything else cannot be trusted to be the end
            last = last_id(results)
            if (last is not None and len(results) >= self.search_page
                    and (state["last"] is None or _id_order(last) > _id_order(state["last"]))):
                return Page(results, next_token={**state, "last": last, "probed": True})
            return Page(results, next_token=state, halt=(
                f"{self.name}: HubSpot search on {obj} returned {len(results)} of {total} results and no paging "
                "to the rest: the window is not complete (its mark does not move; the next run reads it again)"))
        rest = wins[1:]
        nxt = {**state, "wins": rest, "last": None, "probed": False} if rest else None
        return Page(results, next_token=nxt)

    def _owners_page(self, token: Any) -> Page:
        state: dict[str, Any] = dict(token) if token else {"archived": True, "after": None}
        params = {"limit": 100, "archived": "true" if state["archived"] else "false"}
        if state["after"]:
            params["after"] = state["after"]
        body = self._get("/crm/v3/owners/", params)
        nxt = _after(body, state["after"], "/crm/v3/owners/")
        if nxt:
            return Page(body["results"], next_token={**state, "after": nxt})
        return Page(body["results"], next_token={"archived": False, "after": None} if state["archived"] else None)

    def _associations_page(self, token: Any, frm: str, targets: Sequence[str], memo: Any) -> Page:
        """One page of an association stream: the archived pass (tombstones), then either the full sweep
        (every live record, when the last complete one started ``full_sweep_every`` ago or never ran) or
        the sweep of the records modified since the last run (search on the last-modified property). The
        last page hands the engine the new memo ``{"full_at", "mark"}`` (epoch ms), kept with the cursor."""
        now = int(self.clock() * 1000)
        memo = memo if isinstance(memo, dict) else {}
        state: dict[str, Any] = dict(token) if token else {"archived": True, "after": None}
        if state["archived"]:
            body = self._list(frm, state["after"], archived=True, props=["hs_object_id"])
            ids = [r["id"] for r in body.get("results") or []]
            nxt = _after(body, state["after"], f"/crm/v3/objects/{frm}?archived=true")
            if nxt:
                return Page([{"id": i, "archived": True} for i in ids], next_token={**state, "after": nxt})
            full_due = memo.get("full_at") is None or now - int(memo["full_at"]) >= self._full_every_ms
            if full_due or memo.get("mark") is None:
                following: dict[str, Any] = {"archived": False, "after": None, "full": True, "t0": now}
            else:
                since = int(memo["mark"]) - int(self.lookback.total_seconds() * 1000)
                following = {"archived": False, "full": False, "t0": now, "lo": since, "last": None}
            return Page([{"id": i, "archived": True} for i in ids], next_token=following)
        if state["full"]:
            body = self._list(frm, state["after"], archived=False, props=["hs_object_id"])
            ids = [r["id"] for r in body.get("results") or []]
            nxt = _after(body, state["after"], f"/crm/v3/objects/{frm}")
            records = self._associations_of(frm, ids, targets)
            if nxt:
                return Page(records, next_token={**state, "after": nxt})
            return Page(records, next_token=None, memo={"full_at": state["t0"], "mark": state["t0"]})
        # modified since the mark: an id keyset over one search window [lo, t0)
        body = self._post(f"/crm/v3/objects/{frm}/search",
                          {**self._search_body(frm, state["lo"], state["t0"], state["last"], self.search_page),
                           "properties": ["hs_object_id"]}, search=True)
        if state["last"] is None and int(body.get("total") or 0) > self.search_cap:
            # more changed than one search can page through: sweep everything instead
            return Page([], next_token={"archived": False, "after": None, "full": True, "t0": state["t0"]})
        ids = [r["id"] for r in body.get("results") or []]
        records = self._associations_of(frm, ids, targets)
        if body.get("paging") and ids:
            return Page(records, next_token={**state, "last": ids[-1]})
        return Page(records, next_token=None, memo={**memo, "mark": state["t0"]})

    def _associations_of(self, frm: str, ids: Sequence[str], targets: Sequence[str]) -> list[dict[str, Any]]:
        """Each record's associations to every target type: one v4 ``batch/read`` per target and 100 ids."""
        records: dict[str, dict[str, Any]] = {i: {"id": i, **{to: [] for to in targets}} for i in ids}
        for start in range(0, len(ids), LIST_PAGE):
            chunk = ids[start:start + LIST_PAGE]
            for to in targets:
                found = self._post(f"/crm/v4/associations/{frm}/{to}/batch/read",
                                   {"inputs": [{"id": i} for i in chunk]})
                for row in found.get("results") or []:
                    rec = records.get(str(row["from"]["id"]))
                    if rec is None:
                        continue
                    edges = list(row.get("to") or [])
                    after = (row.get("paging") or {}).get("next", {}).get("after")
                    while after:  # more associations than batch/read returns for one record
                        more = self._get(f"/crm/v4/objects/{frm}/{rec['id']}/associations/{to}",
                                         {"after": after, "limit": 500})
                        edges += more.get("results") or []
                        after = _after(more, after, f"/crm/v4/objects/{frm}/{rec['id']}/associations/{to}")
                    rec[to] = sorted(
                        ({"id": str(t["toObjectId"]),
                          "types": sorted(int(a["typeId"]) for a in t.get("associationTypes") or [])}
                         for t in edges), key=lambda e: int(e["id"]))
        return list(records.values())

    def count(self, stream: StreamSpec, window: Window) -> int | None:
        """Live records the source holds changed in [``window.since``, ``window.until``) (search ``total``)."""
        if stream.options.get("kind") != "object":
            return None
        obj = stream.object
        prop = modified_property(obj)
        filters = []
        if window.since is not None:
            filters.append({"propertyName": prop, "operator": "GTE", "value": str(_ms(window.since))})
        if window.until is not None:
            filters.append({"propertyName": prop, "operator": "LT", "value": str(_ms(window.until))})
        body = self._post(f"/crm/v3/objects/{obj}/search",
                          {"filterGroups": [{"filters": filters}] if filters else [], "limit": 1,
                           "properties": ["hs_object_id"]}, search=True)
        return int(body.get("total") or 0)

    # --- deep completeness ------------------------------------------------------------------------
    def source_total(self, stream: StreamSpec) -> int | None:
        """Live records of an object: one search without filters (its ``total``)."""
        return self.count(stream, Window(since=None))

    def source_ids(self, stream: StreamSpec) -> dict[str, datetime | None] | None:
        """Every live id of an object with its last-modified stamp: the list endpoint with two
        properties (100 a call). A hard-deleted record is in neither this nor the archived list."""
        if stream.options.get("kind") != "object":
            return None
        out: dict[str, datetime | None] = {}
        after: str | None = None
        while True:
            body = self._list(stream.object, after, archived=False)
            for rec in body.get("results") or []:
                rid = rec.get("id") if isinstance(rec, Mapping) else None
                if rid is None or rid == "" or bad_id(rid):
                    warn_once(f"hubspot {stream.object} listing id {rid!r}", f"hubspot: the {stream.object} id "
                              f"listing holds a record without a usable id ({str(rec)[:120]}); left out")
                    continue
                try:
                    out[str(rid)] = stream.updated_at(rec)
                except (ValueError, TypeError, ArithmeticError):
                    out[str(rid)] = None
            after = _after(body, after, f"/crm/v3/objects/{stream.object}")
            if not after:
                return out

    def fetch_ids(self, stream: StreamSpec, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The records by id (``batch/read``, 100 a call, every property in the body); archived or
        deleted ids are left out."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(ids), LIST_PAGE):
            body = self._post(f"/crm/v3/objects/{stream.object}/batch/read", {
                "properties": self.properties(stream.object), "inputs": [{"id": x} for x in ids[i:i + LIST_PAGE]]})
            out.extend(body.get("results") or [])
        return out


def from_config(name: str, cfg: Any) -> HubSpotConnector:
    """Build from ``ltc.yaml``: ``credentials.token`` (private-app token), optional ``base_url`` and
    ``options`` (``tenant``, ``properties: {object: [names]}``, ``url_budget``, ``association_full_sweep_hours``:
    the bound on how stale an association-only edit may get, default 24)."""
    ref = cfg.credentials.get("token")
    if ref is None:
        raise ConfigError(f"sources.{name}.credentials.token is required (a HubSpot private-app token)")
    options = dict(cfg.options or {})
    return HubSpotConnector(
        name, cfg.base_url or DEFAULT_BASE_URL, ref.resolve(),
        tenant=options.get("tenant"), lookback=timedelta(minutes=cfg.lookback_minutes),
        properties=options.get("properties"), url_budget=int(options.get("url_budget", 6_000)),
        streams=cfg.streams, options=options, verify=options.get("ca_file") or True,
        full_sweep_every=timedelta(hours=float(options.get("association_full_sweep_hours", 24))),
    )

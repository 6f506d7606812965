"""Stripe: customers, invoices (with all their lines), charges, payment intents, refunds, balance
transactions and payouts, over httpx with a pinned ``Stripe-Version``.

How a stream is read (one :meth:`StripeConnector.read_page` call = one committed page; the phase
and position live in the page token, so an interrupted run resumes where it stopped):

* **Initial load** (no high-water mark): ``created`` windows walked backwards from the run start,
  ``created[gte]/[lt]`` + ``starting_after`` paging, ``limit=100``. After a window, one probe
  (``created[lt]=<window start>&limit=1``) finds the newest older object, so empty months cost
  nothing and the walk stops when nothing older exists. ``options.created_filter: false`` (for
  servers that reject ``created`` on lists, e.g. localstripe) lists everything in one pass.
* **Incremental**: ``/v1/events`` from ``hw - lookback`` to the run start, in time slices read
  oldest slice first; within a slice events are ordered by time and only the newest event per
  object is kept, so an older event never overwrites a newer state. Each event's ``data.object``
  becomes a raw record of the stream whose object type it is; ``*.deleted`` events become
  tombstones. If the mark is older than Stripe's event retention (30 days), the events are gone:
  the ``created`` windows since ``mark - relist_margin_days`` are listed again instead.
* Balance transactions have no events: their incremental run lists ``created`` windows since the
  mark (with ``created_filter: false``, the whole list; unchanged records write nothing).
* **Hot set**: ids of objects seen in a non-terminal state (draft/open invoices, processing
  payment intents, pending charges...) are kept in the stream's memo and re-fetched by id at the
  end of every incremental run, so their final state arrives even when no event says so.

The high-water mark is the run's start instant (``Page.high_water``), not an object's ``created``.
Amounts stay integer minor units as Stripe sends them; an invoice whose embedded ``lines`` list
has more pages gets them all (``/v1/invoices/{id}/lines``) before it is landed.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from canonical.errors import ConfigError
from connectors.base import Connector, Page, StartingAfter, StreamSpec, Window, last_id
from connectors.errors import NotFound, PagingBroken
from connectors.governor import RateGovernor, governor_for
from connectors.http import HttpClient, RetryPolicy

log = logging.getLogger("connectors")

API_VERSION = "2026-10-28.endive"
DEFAULT_BASE_URL = "https://api.stripe.com"
DAY = 86400

# Statuses after which an object can still change without us being told by a list re-read.
HOT_STATUSES: dict[str, tuple[str, ...]] = {
    "invoice": ("draft", "open"),
    "payment_intent": ("requires_payment_method", "requires_confirmation", "requires_action",
                       "processing", "requires_capture"),
    "charge": ("pending",),
    "refund": ("pending", "requires_action"),
    "payout": ("pending", "in_transit"),
    "balance_transaction": ("pending",),
}


def _stream(name: str, obj: str, incremental: str = "events") -> StreamSpec:
    return StreamSpec(name, obj, cursor_field="created", page_size=100, paginator=StartingAfter(),
                      path=f"/v1/{name}", records_path="data", deleted_when=("deleted", True),
                      options={"hot": HOT_STATUSES.get(obj, ()), "incremental": incremental})


STREAMS: tuple[StreamSpec, ...] = (
    _stream("customers", "customer"),
    _stream("invoices", "invoice"),
    _stream("charges", "charge"),
    _stream("payment_intents", "payment_intent"),
    _stream("refunds", "refund"),
    _stream("credit_notes", "credit_note"),
    # Stripe emits no event for a balance transaction: new ones are listed by `created` since the mark.
    _stream("balance_transactions", "balance_transaction", incremental="list"),
    _stream("payouts", "payout"),
)

_KEY = re.compile(r"\b([sprw]k|whsec)_(test_|live_)?[A-Za-z0-9*]+")


def redact_keys(text: str) -> str:
    """Stripe echoes (masked) keys in 401 messages; keep any key-shaped token out of our errors."""
    return _KEY.sub(lambda m: f"{m.group(1)}_…(redacted)", text)


def _epoch(value: Any) -> int | None:
    """Stripe's ``created`` (integer epoch seconds) as an int; None if it is anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(Decimal(str(value)).to_integral_exact())
    except (ArithmeticError, ValueError, TypeError):
        return None


def _next_after(what: str, records: Sequence[Mapping[str, Any]], after: str | None) -> str:
    """The ``starting_after`` for the page after ``records`` (a list answered ``has_more``): the last
    usable id; a page that gives none, or the same one again, means the paging does not move."""
    nxt = last_id(records)
    if not records:
        raise PagingBroken(f"stripe returned an empty page with has_more true for {what}: its paging is "
                           "broken; the pages read so far are kept, the stream is not complete")
    if nxt is None:
        raise PagingBroken(f"stripe returned a page of {what} with has_more true but no record with an id to "
                           "continue after: its paging is broken; the stream is not complete")
    if nxt == after:
        raise PagingBroken(f"stripe returned the same page token twice ({what}, starting_after={after}): its "
                           "paging is broken; the pages read so far are kept, the stream is not complete")
    return nxt


def stripe_hint(status: int, headers: Mapping[str, str], body: Any) -> str | None:
    """Stripe's ``error.message`` with its type, code and param, for the admin."""
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        return None
    text = redact_keys(str(err.get("message") or "no message"))
    extras = [f"{k} {err[k]}" for k in ("type", "code", "param") if err.get(k)]
    out = f"{text} ({', '.join(extras)})" if extras else text
    if status == 400 and "created" in f"{err.get('param') or ''} {text}":
        out += "; if this server does not filter lists by created, set the source's options.created_filter: false"
    return out


def stripe_should_retry(status: int, headers: Mapping[str, str]) -> bool | None:
    """``Stripe-Should-Retry``: ``false`` means never retry, ``true`` means retry (e.g. a 409)."""
    value = (headers.get("Stripe-Should-Retry") or "").strip().lower()
    return {"true": True, "false": False}.get(value)


class StripeConnector(Connector):
    kind = "stripe"

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = API_VERSION,
        lookback: timedelta = timedelta(minutes=10),
        streams: Sequence[str] | None = None,
        page_size: int = 100,
        created_filter: bool = True,
        oldest_first: bool = False,
        window_days: int = 30,
        event_retention_days: int = 30,
        event_slice_hours: int = 24,
        relist_margin_days: int = 30,
        max_slice_events: int = 5000,
        clock: Callable[[], float] = time.time,
        policy: RetryPolicy | None = None,
        governor: RateGovernor | None = None,
        verify: Any = True,
    ):
        super().__init__(name, lookback=lookback)
        if not 1 <= page_size <= 100:
            raise ConfigError(f"{name}: Stripe page_size must be between 1 and 100, got {page_size}")
        unknown = set(streams or ()) - {s.name for s in STREAMS}
        if unknown:
            raise ConfigError(f"{name}: unknown Stripe stream(s) {sorted(unknown)}; "
                              f"known: {', '.join(s.name for s in STREAMS)}")
        self.streams = tuple(s for s in STREAMS if streams is None or s.name in streams)
        self.page_size = page_size
        self.created_filter = created_filter
        self.oldest_first = oldest_first
        self.window_s = window_days * DAY
        self.retention_s = event_retention_days * DAY
        self.slice_s = event_slice_hours * 3600
        self.relist_margin_s = relist_margin_days * DAY
        self.max_slice_events = max_slice_events
        self.clock = clock
        self.http = HttpClient(
            "stripe", base_url,
            headers={"Authorization": f"Bearer {api_key}", "Stripe-Version": api_version},
            governor=governor if governor is not None else governor_for(
                name, "stripe", lambda: RateGovernor(f"stripe:{name}", capacity=25, interval_s=1.0)),
            policy=policy, hint=stripe_hint, should_retry=stripe_should_retry, verify=verify,
        )

    def close(self) -> None:
        self.http.close()

    # --- one page ------------------------------------------------------------------------------

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        token = token or self._start(stream, window)
        phase = token["phase"]
        deleted: list[dict[str, Any]] = []
        if phase == "list":
            records, nxt = self._list_page(stream, token)
        elif phase == "events":
            records, deleted, nxt = self._events_slice(stream, token)
        elif phase == "hot":
            records, deleted, nxt = self._hot_page(stream, token)
        else:
            raise ValueError(f"unknown Stripe page token phase {phase!r}")
        if stream.object == "invoice":
            records = [self._with_all_lines(r) for r in records]
        memo = self._update_hot(stream, window, records, deleted)
        if nxt is None and phase != "hot":
            nxt = self._after_main(window, token)
        # Everything up to the run start is covered once the run completes (the engine only
        # promotes this to the high-water mark then).
        return Page(records, next_token=nxt, deleted=deleted, memo=memo,
                    high_water=(datetime.fromtimestamp(token["until"], tz=UTC), ""))

    def _start(self, stream: StreamSpec, window: Window) -> dict[str, Any]:
        now = int(self.clock())
        if window.since is None:
            return self._list_token(now, floor=None, incremental=False)
        since = int(window.since.timestamp())
        if stream.options.get("incremental") == "list":
            return self._list_token(now, floor=since, incremental=True)
        if since < now - self.retention_s + 3600:  # the events we need may be gone (or about to go)
            return self._list_token(now, floor=since - self.relist_margin_s, incremental=True)
        return {"phase": "events", "until": now, "lo": since, "incremental": True}

    def _list_token(self, until: int, *, floor: int | None, incremental: bool) -> dict[str, Any]:
        hi = until
        lo = hi - self.window_s if floor is None else max(hi - self.window_s, floor)
        return {"phase": "list", "until": until, "hi": hi, "lo": lo, "floor": floor, "after": None,
                "incremental": incremental}

    def _after_main(self, window: Window, token: Mapping[str, Any]) -> dict[str, Any] | None:
        """The main phase is over: re-check the hot set (incremental runs only), else done."""
        hot = self._hot_ids(window)
        if not token.get("incremental") or not hot:
            return None
        return {"phase": "hot", "until": token["until"], "ids": hot, "pos": 0}

    # --- list phase: created windows, newest first ----------------------------------------------

    def _list_params(self, lo: int | None, hi: int | None, after: str | None, limit: int) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if self.created_filter:
            if lo is not None:
                params["created[gte]"] = lo
            if hi is not None:
                params["created[lt]"] = hi
        if after:
            params["starting_after"] = after
        return params

    def _list_page(self, stream: StreamSpec, token: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        body = self.http.json("GET", stream.path,
                              params=self._list_params(token["lo"], token["hi"], token["after"], self.page_size))
        records = list(body.get("data") or [])
        if body.get("has_more"):
            return records, {**token, "after": _next_after(stream.path, records, token["after"])}
        if not self.created_filter:
            return records, None  # one pass over everything
        floor = token["floor"]
        if floor is not None and token["lo"] <= floor:
            return records, None
        # the newest object older than this window tells where the next non-empty window ends
        probe = self.http.json("GET", stream.path, params=self._list_params(None, token["lo"], None, 1))
        older = probe.get("data") or []
        if not older:
            return records, None
        created = _epoch(older[0].get("created")) if isinstance(older[0], Mapping) else None
        if created is None:
            shown = older[0].get("created") if isinstance(older[0], Mapping) else older[0]
            raise PagingBroken(
                f"stripe listed an object with created {str(shown)[:60]!r} (not epoch seconds) before "
                f"created[lt]={token['lo']} on {stream.path}: the walk back through created windows cannot go on; "
                "the pages read so far are kept, the stream is not complete")
        if created >= token["lo"]:
            raise PagingBroken(
                f"stripe returned an object created at {created} for created[lt]={token['lo']} on {stream.path}: "
                "the server ignores the created filter, so the window does not move (its paging is broken); set "
                "the source's options.created_filter: false; the pages read so far are kept")
        hi = created + 1
        lo = hi - self.window_s if floor is None else max(hi - self.window_s, floor)
        return records, {**token, "hi": hi, "lo": lo, "after": None}

    # --- events phase ---------------------------------------------------------------------------

    def _events_slice(self, stream: StreamSpec, token: dict[str, Any]
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
        until = token["until"]
        lo = token["lo"]
        hi = min(lo + self.slice_s, until)
        while True:
            events = self._read_events(lo, hi)
            if events is not None or hi - lo <= 1:
                break
            hi = lo + (hi - lo) // 2  # too busy a slice for one page of memory: halve it
        latest: dict[str, dict[str, Any]] = {}
        # Oldest first, whatever order the server lists in; within one second the server's own
        # order decides, so it must be known: read off the data where two timestamps differ, else
        # the documented newest-first (or ``oldest_first`` for servers such as localstripe).
        events = events or []
        sign = -1 if self._newest_first(events) else 1
        for _, _, event in sorted(((_epoch(e.get("created")) or 0, sign * i, e) for i, e in enumerate(events)),
                                  key=lambda t: (t[0], t[1])):
            obj = (event.get("data") or {}).get("object")
            if isinstance(obj, Mapping) and obj.get("object") == stream.object and obj.get("id"):
                latest[str(obj["id"])] = event
        records: list[dict[str, Any]] = []
        deleted: list[dict[str, Any]] = []
        for event in latest.values():
            obj = dict(event["data"]["object"])
            if str(event.get("type", "")).endswith(".deleted"):
                deleted.append(obj)
            else:
                records.append(obj)
        nxt = {**token, "lo": hi} if hi < until else None
        return records, deleted, nxt

    def _newest_first(self, events: Sequence[Mapping[str, Any]]) -> bool:
        for a, b in itertools.pairwise(events):
            if a.get("created") != b.get("created"):
                return (_epoch(a.get("created")) or 0) > (_epoch(b.get("created")) or 0)
        return not self.oldest_first

    def _read_events(self, lo: int, hi: int) -> list[dict[str, Any]] | None:
        """All events created in [lo, hi); None if there are more than ``max_slice_events``."""
        events: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": self.page_size, "created[gte]": lo, "created[lt]": hi}
            if after:
                params["starting_after"] = after
            body = self.http.json("GET", "/v1/events", params=params)
            data = list(body.get("data") or [])
            events += data
            if len(events) > self.max_slice_events and hi - lo > 1:
                return None
            if not body.get("has_more"):
                return events
            after = _next_after(f"/v1/events [{lo}, {hi})", data, after)

    # --- hot set --------------------------------------------------------------------------------

    @staticmethod
    def _hot_ids(window: Window) -> list[str]:
        memo = window.memo if isinstance(window.memo, Mapping) else {}
        return list(memo.get("hot") or [])

    def _update_hot(self, stream: StreamSpec, window: Window, records: Iterable[Mapping[str, Any]],
                    deleted: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
        hot_statuses = stream.options.get("hot") or ()
        if not hot_statuses:
            return None
        hot = set(self._hot_ids(window))
        before = set(hot)
        for rec in records:
            rid = str(rec.get("id"))
            if rec.get("status") in hot_statuses and not rec.get("deleted"):
                hot.add(rid)
            else:
                hot.discard(rid)
        for rec in deleted:
            hot.discard(str(rec.get("id")))
        if hot == before and window.memo is not None:
            return None
        memo = {"hot": sorted(hot)}
        window.memo = memo  # later pages of this run build on it
        return memo

    def _hot_page(self, stream: StreamSpec, token: dict[str, Any]
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
        pos = token["pos"]
        chunk = token["ids"][pos:pos + self.page_size]
        records: list[dict[str, Any]] = []
        deleted: list[dict[str, Any]] = []
        for oid in chunk:
            try:
                obj = self.http.json("GET", f"{stream.path}/{oid}")
            except NotFound:
                deleted.append({"id": oid, "object": stream.object, "deleted": True})
                continue
            (deleted if obj.get("deleted") else records).append(obj)
        nxt = pos + len(chunk)
        return records, deleted, ({**token, "pos": nxt} if nxt < len(token["ids"]) else None)

    # --- invoice lines --------------------------------------------------------------------------

    def _with_all_lines(self, invoice: dict[str, Any]) -> dict[str, Any]:
        lines = invoice.get("lines")
        if not isinstance(lines, Mapping) or not lines.get("has_more") or not invoice.get("id"):
            return invoice
        data = list(lines.get("data") or [])
        url = f"/v1/invoices/{invoice['id']}/lines"
        after = last_id(data)
        while True:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["starting_after"] = after
            body = self.http.json("GET", url, params=params)
            more = list(body.get("data") or [])
            data += more
            if not body.get("has_more"):
                break
            after = _next_after(url, more, after)
        return {**invoice, "lines": {**lines, "data": data, "has_more": False}}


# --- configuration --------------------------------------------------------------------------------

_OPTIONS: dict[str, type] = {
    "api_version": str, "created_filter": bool, "oldest_first": bool, "window_days": int,
    "event_retention_days": int, "event_slice_hours": int, "relist_margin_days": int, "max_slice_events": int,
}


def from_config(name: str, cfg: Any) -> StripeConnector:
    """A connector from ``ltc.yaml``'s ``sources.<name>`` (kind: stripe).

    ``credentials.api_key`` (a secret key, ``{env: STRIPE_API_KEY}``). ``options``: ``api_version``
    (default: the pinned one); ``created_filter: false`` and ``oldest_first: true`` for servers
    that reject ``created[...]`` on lists or list oldest first (localstripe); ``window_days``,
    ``event_retention_days``, ``event_slice_hours``, ``relist_margin_days``, ``max_slice_events``.
    """
    ref = cfg.credentials.get("api_key")
    if ref is None:
        raise ConfigError(f"sources.{name}.credentials.api_key is required (e.g. {{env: STRIPE_API_KEY}})")
    opts: dict[str, Any] = {}
    for key, value in (cfg.options or {}).items():
        if key == "ca_file":
            opts["verify"] = str(value)
            continue
        want = _OPTIONS.get(key)
        if want is None:
            raise ConfigError(f"sources.{name}.options.{key}: unknown Stripe option; known: "
                              f"{', '.join([*_OPTIONS, 'ca_file'])}")
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ConfigError(f"sources.{name}.options.{key}: expected {want.__name__}, got {value!r}")
        opts[key] = value
    return StripeConnector(
        name, api_key=ref.resolve(), base_url=cfg.base_url or DEFAULT_BASE_URL,
        lookback=timedelta(minutes=cfg.lookback_minutes), streams=cfg.streams,
        page_size=cfg.page_size or 100, **opts,
    )

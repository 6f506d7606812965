"""The connector base: streams as declarations, paginators as strategies, one sync engine.

A connector owns one system's quirks and answers one question: *give me the page of ``stream``
after ``token``, changed since ``since``* (:meth:`Connector.read_page`). Everything else — cursor
state, lookback, dedupe, tombstones, quarantine, checkpoints, completeness, pause on quota — is
done once, here, by :func:`sync_stream`.

Cursor state (stored as JSON in ``stream_state.cursor``, committed with each page)::

    {"hw": ["2026-11-01T12:00:00+00:00", "006A"],   # high-water (timestamp, id) of the last complete run
     "run": {"since": "...", "token": ..., "max": [ts, id]} | null}   # an unfinished run

A run starts at ``hw.ts - lookback`` (inclusive re-read, so records that became visible late are
captured; re-read rows are deduplicated by id and, unchanged, write nothing). After every page the
page token and the running maximum are checkpointed in the same transaction as the records, so an
interrupted run resumes at the page where it stopped. Only a run that reached the last page moves
``hw``; a paused or failed run never advances it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from canonical.locks import stage_lock
from canonical.store import KEEP_CURSOR, RawRecord, Rejected, Store
from connectors.errors import ConnectorError, PagingBroken, QuotaPaused

log = logging.getLogger("connectors")


# --- values ------------------------------------------------------------------------------------

def parse_instant(value: Any) -> datetime | None:
    """An aware UTC datetime from what vendors send: ISO 8601 (``Z``, ``+0000``, ``+00:00``),
    epoch seconds (Stripe) or epoch milliseconds (HubSpot v1), or a datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"instant {value.isoformat()} has no timezone")
        return value.astimezone(UTC)
    if isinstance(value, bool):
        raise ValueError(f"not an instant: {value!r}")
    if isinstance(value, int | Decimal):
        try:
            n = int(value)
            return datetime.fromtimestamp(n / 1000 if abs(n) >= 10**11 else n, tz=UTC)
        except (ArithmeticError, OSError) as exc:  # 1e400, 10**30, NaN: not a time
            raise ValueError(f"instant {value!r} is out of range") from exc
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_instant(int(text))
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        elif len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and ":" not in text[-5:]:
            text = f"{text[:-2]}:{text[-2:]}"  # Salesforce's +0000
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            raise ValueError(f"instant {value!r} has no timezone")
        return parsed.astimezone(UTC)
    raise ValueError(f"not an instant: {value!r}")


def dig(record: Mapping[str, Any], path: str) -> Any:
    """``dig(rec, "properties.hs_lastmodifieddate")``: a dotted path into nested dicts (None if absent)."""
    if type(record) is dict and "." not in path:  # the common case, without the walk
        return record.get(path)
    cur: Any = record
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


# --- requests and paginators ---------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """What a connector sends for one page; paginators only add their token to it."""

    method: str = "GET"
    path: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None

    def with_params(self, **params: Any) -> Request:
        return replace(self, params={**self.params, **{k: v for k, v in params.items() if v is not None}})

    def with_json(self, **body: Any) -> Request:
        return replace(self, json={**(self.json or {}), **body})


class Paginator(Protocol):
    """How a token is put into a request, and read from a response."""

    def apply(self, request: Request, token: Any) -> Request: ...

    def next_token(self, body: Any, records: Sequence[Mapping[str, Any]], page_size: int) -> Any: ...


@dataclass(frozen=True)
class NextLink:
    """The body names the next page's URL (Salesforce ``nextRecordsUrl``); None/absent = last page."""

    path: str = "nextRecordsUrl"
    done_path: str | None = "done"

    def apply(self, request: Request, token: Any) -> Request:
        return request if token is None else Request("GET", str(token))

    def next_token(self, body: Any, records: Sequence[Mapping[str, Any]], page_size: int) -> Any:
        if self.done_path and dig(body, self.done_path) is True:
            return None
        return dig(body, self.path) or None


@dataclass(frozen=True)
class AfterCursor:
    """An opaque cursor in the body (HubSpot ``paging.next.after``), sent back as a param or body field."""

    path: str = "paging.next.after"
    param: str = "after"
    in_body: bool = False

    def apply(self, request: Request, token: Any) -> Request:
        if token is None:
            return request
        return request.with_json(**{self.param: token}) if self.in_body else request.with_params(**{self.param: token})

    def next_token(self, body: Any, records: Sequence[Mapping[str, Any]], page_size: int) -> Any:
        return dig(body, self.path) or None


@dataclass(frozen=True)
class StartingAfter:
    """Stripe: ``starting_after=<last id>`` while ``has_more``."""

    param: str = "starting_after"
    id_field: str = "id"
    more_path: str = "has_more"

    def apply(self, request: Request, token: Any) -> Request:
        return request if token is None else request.with_params(**{self.param: token})

    def next_token(self, body: Any, records: Sequence[Mapping[str, Any]], page_size: int) -> Any:
        if dig(body, self.more_path) is not True:
            return None
        token = last_id(records, self.id_field)
        if token is None:
            raise PagingBroken(f"the source said has_more but its page of {len(records)} record(s) has no "
                               f"usable {self.id_field!r} to continue after: its paging is broken")
        return token


@dataclass(frozen=True)
class LastId:
    """Paging by the last record's id (Jiandaoyun ``data_id``): the source answers in id order, the
    token is the page's last id, a short page is the last one."""

    param: str = "data_id"
    id_field: str = "_id"
    in_body: bool = True

    def apply(self, request: Request, token: Any) -> Request:
        if token is None:
            return request
        return request.with_json(**{self.param: token}) if self.in_body else request.with_params(**{self.param: token})

    def next_token(self, body: Any, records: Sequence[Mapping[str, Any]], page_size: int) -> Any:
        if len(records) < page_size:
            return None
        return records[-1].get(self.id_field)


@dataclass(frozen=True)
class Offset:
    """Offset/limit (Tryton and Odoo ``search_read``): a short page is the last one."""

    param: str = "offset"

    def apply(self, request: Request, token: Any) -> Request:
        return request if token is None else request.with_params(**{self.param: token})

    def next_token(self, body: Any, records: Sequence[Mapping[str, Any]], page_size: int) -> Any:
        if len(records) < page_size:
            return None
        return None if body is None else int(dig(body, "offset") or 0) + len(records)


@dataclass(frozen=True)
class Keyset:
    """(timestamp, id) keyset over a source sorted by both ascending: the token is the last row's key.

    The connector turns the token into ``ts > t OR (ts = t AND id > i)`` in its own query language.
    """

    def apply(self, request: Request, token: Any) -> Request:
        return request

    def next_token(self, body: Any, records: Sequence[Mapping[str, Any]], page_size: int) -> Any:
        return None  # computed by the engine from the records (it knows the cursor fields)


# --- declarations ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamSpec:
    """A stream is a declaration: what to read and how to page through it."""

    name: str
    object: str
    primary_key: str = "id"
    cursor_field: str | None = None  # dotted path; None = full refresh every run
    page_size: int = 100
    paginator: Paginator = field(default_factory=AfterCursor)
    path: str = ""
    records_path: str | None = "results"
    params: Mapping[str, Any] = field(default_factory=dict)
    deleted_when: tuple[str, Any] | None = None  # (dotted path, value) that marks a tombstone
    options: Mapping[str, Any] = field(default_factory=dict)  # connector-specific knobs
    # Dotted paths left out of the content hash: fields only ltc-hub writes (push-crm) and the stamps
    # such a write bumps, so that our own write-back is not landed again as a business change.
    hash_ignore: tuple[str, ...] = ()

    def source_id(self, record: Mapping[str, Any]) -> str | None:
        """The record's id as text; None when it has none or it is not a string or an integer."""
        value = dig(record, self.primary_key)
        return None if value is None or value == "" or bad_id(value) else str(value)

    def updated_at(self, record: Mapping[str, Any]) -> datetime | None:
        return parse_instant(dig(record, self.cursor_field)) if self.cursor_field else None

    def is_deleted(self, record: Mapping[str, Any]) -> bool:
        return self.deleted_when is not None and dig(record, self.deleted_when[0]) == self.deleted_when[1]


@dataclass
class Page:
    records: list[dict[str, Any]]
    next_token: Any = None
    # Records of this page the connector knows are deleted, if it learns of deletes separately.
    deleted: list[dict[str, Any]] = field(default_factory=list)
    # Keyset only: whether rows may follow this page. None = "a full page means more"; a connector that
    # had to drop rows from a page (e.g. changed between the column-chunk queries of a wide object) says so.
    more: bool | None = None
    # A (timestamp, id) position the source guarantees this run has covered (e.g. the end of a
    # change-feed window); folded into the high-water mark like a record's key.
    high_water: tuple[datetime, str] | None = None
    # Connector-owned state carried across runs (e.g. ids to re-check); None = keep the previous.
    memo: Any = None
    # The source answered in a way the connector cannot go on from safely (e.g. fewer results than the
    # total it gave, and no way to the rest): the stream stops after this page, ``incomplete`` with
    # this line; the run is not finished (its mark does not move), and ``next_token`` is where the
    # next run resumes (None: the run's start).
    halt: str | None = None


@dataclass
class Window:
    """The changed-since window of one run: [``since``, ``until``) (None = unbounded).

    ``until`` is the run's start (minus the source's clock skew): a keyset query never reads past
    it, and the high-water mark never passes it. The engine's *future probe* (records stamped ahead
    of our clock) is the one read with ``until`` None.
    """

    since: datetime | None
    resume_key: tuple[datetime, str] | None = None  # keyset position inside the run
    memo: Any = None  # the connector's own state as of the last committed page (see Page.memo)
    until: datetime | None = None


class Connector:
    """Base of every connector. Subclasses declare ``streams`` and implement :meth:`read_page`."""

    kind: ClassVar[str] = ""
    streams: tuple[StreamSpec, ...] = ()

    def __init__(self, name: str, *, lookback: timedelta = timedelta(minutes=10)):
        self.name = name
        self.lookback = lookback
        # how far the source's clock may lag ours: the high-water mark stays this far behind the run start
        self.clock_skew = timedelta(0)
        # how often the id sets of source and store are compared (None: never; see deep_check)
        self.deep_check_every: timedelta | None = timedelta(hours=24)
        # the share of a stream's live records one deep check may tombstone (above DEEP_DELETE_FLOOR
        # records); more looks like a listing cut short, and the check tombstones nothing
        self.deep_delete_max_share = DEEP_DELETE_MAX_SHARE

    def stream(self, name: str) -> StreamSpec:
        for spec in self.streams:
            if spec.name == name:
                return spec
        raise ConnectorError(f"{self.name}: no stream {name!r}; streams: {', '.join(s.name for s in self.streams)}")

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        raise NotImplementedError

    def count(self, stream: StreamSpec, window: Window) -> int | None:
        """Records the source holds for the window (completeness check); None if it cannot say."""
        return None

    def source_ids(self, stream: StreamSpec) -> dict[str, datetime | None] | None:
        """Every live record id of the stream in the source, with its cursor timestamp where cheap
        (the deep completeness check); None if this stream has no cheap id listing."""
        return None

    def source_total(self, stream: StreamSpec) -> int | None:
        """How many live records the stream holds in the source, where one cheap call says (the deep
        check will not tombstone on a listing shorter than this); None if the source cannot say."""
        return None

    def fetch_ids(self, stream: StreamSpec, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The records with these ids, as :meth:`read_page` returns them (ids the source no longer
        has are left out). Needed when :meth:`source_ids` is implemented."""
        raise NotImplementedError

    def deleted_since(self, stream: StreamSpec, since: datetime) -> dict[str, datetime]:
        """Ids the source says were deleted since ``since``, with when (e.g. Salesforce getDeleted);
        used to date the tombstones of the deep check. Empty where the source has no such log."""
        return {}

    def before_stream(self, stream: StreamSpec) -> None:
        """Hook: e.g. check the quota before starting."""

    def bind_store(self, store: Store) -> None:
        """Hook: the store this run lands in (e.g. to find deletes by comparing ids with it)."""

    def close(self) -> None:
        """Release connections."""


# --- the sync engine ------------------------------------------------------------------------------

def _key(ts: datetime | None, sid: str) -> tuple[str, str]:
    return (ts.isoformat(timespec="microseconds") if ts else "", sid)


_NO_TIME = datetime.min.replace(tzinfo=UTC)


def _latest(raws: Sequence[RawRecord]) -> RawRecord:
    """The record with the greatest :func:`_key`, found without formatting every timestamp: the
    stamps are UTC instants (``parse_instant``), whose ``_key`` text orders as they do."""
    return max(raws, key=lambda r: (r.source_updated_at is not None, r.source_updated_at or _NO_TIME, r.source_id))


@dataclass
class StreamResult:
    connector: str
    stream: str
    status: str = "running"  # success | incomplete | paused | failed
    pages: int = 0
    records: int = 0
    written: int = 0
    unchanged: int = 0
    quarantined: int = 0
    deleted: int = 0
    source_count: int | None = None
    store_count: int | None = None
    message: str | None = None
    future: int = 0  # records stamped ahead of our clock: landed, the cursor does not follow them
    deep_landed: int | None = None  # the deep check ran: records it found missing (or stale) and landed
    deep_tombstoned: int | None = None  # ... and records the source no longer has, tombstoned


MAX_ID = 255  # raw_record.source_id


T = TypeVar("T")


class PageAhead(Generic[T]):
    """The next page of a stream, fetched in one worker thread while the engine lands this one: the
    one read-ahead of every paged connector (keyset pages, page tokens, cursors, id batches).

    :meth:`ahead` starts the fetch of the page at ``key`` (a slot holds one); :meth:`take` gives it if
    the engine asks for that key, else drops it (waited for, its answer and error dropped: the client
    then serves one call at a time) and fetches here. A fetch runs the connector's own call, so its
    retries are the client's one retry layer and its error is raised by :meth:`take`. :meth:`settle`
    drops every fetch under way (before a call of another kind); :meth:`close` settles and stops the
    thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._ahead: dict[str, tuple[Any, Future[T]]] = {}

    def take(self, slot: str, key: Any, fetch: Callable[[], T]) -> T:
        ahead = self._ahead.pop(slot, None)
        if ahead is not None and ahead[0] == key:
            return ahead[1].result()
        _drop(ahead)
        return fetch()

    def ahead(self, slot: str, key: Any, fetch: Callable[[], T]) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        _drop(self._ahead.pop(slot, None))
        self._ahead[slot] = (key, self._executor.submit(fetch))

    def settle(self) -> None:
        while self._ahead:
            _drop(self._ahead.popitem()[1])

    def close(self) -> None:
        self.settle()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _drop(ahead: tuple[Any, Future[Any]] | None) -> None:
    if ahead is not None:
        with contextlib.suppress(Exception):
            ahead[1].result()


def bad_id(value: Any) -> str | None:
    """Why a vendor's id value is not an id (only a string or an integer is: not ``true``, ``1e3``
    or an object, which would otherwise become text ids), or None."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return None
    return f"is {type(value).__name__} {str(value)[:80]!r}, not a string or an integer"


def last_id(records: Sequence[Mapping[str, Any]], field: str = "id") -> str | None:
    """The id of the last record that has a usable one (a page token for paging by id; a record
    without one is quarantined by the engine, it does not end the paging)."""
    for rec in reversed(records):
        value = rec.get(field) if isinstance(rec, Mapping) else None
        if value is not None and value != "" and not bad_id(value):
            return str(value)
    return None


def unstorable_id(sid: str) -> str | None:
    """Why a source id cannot be a key in the store (too long, U+0000, a lone surrogate), or None."""
    if len(sid) > MAX_ID:
        return f"longer than {MAX_ID} characters"
    if "\x00" in sid:
        return "contains U+0000"
    if not sid.isascii() and any("\ud800" <= ch <= "\udfff" for ch in sid):
        return "contains a lone UTF-16 surrogate"
    return None


def to_raw(stream: StreamSpec, records: Iterable[Mapping[str, Any]], *, deleted: bool = False
           ) -> tuple[list[RawRecord], list[Rejected]]:
    """Raw records of a page; a record without an id or with an unreadable timestamp is rejected."""
    raws: list[RawRecord] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    for rec in records:
        value = dig(rec, stream.primary_key)
        if value is None or value == "":
            rejected.append(Rejected(stream.object, f"record has no {stream.primary_key!r}", payload=dict(rec),
                                     field=stream.primary_key))
            continue
        problem = bad_id(value)
        if problem is not None:
            rejected.append(Rejected(stream.object, f"record {stream.primary_key!r} {problem}", payload=dict(rec),
                                     field=stream.primary_key))
            continue
        sid = str(value)
        problem = unstorable_id(sid)
        if problem is not None:
            rejected.append(Rejected(stream.object, f"record id {sid[:80]!r}: {problem}", payload=dict(rec),
                                     field=stream.primary_key))
            continue
        if sid in seen:
            rejected.append(Rejected(
                stream.object, f"record id {sid[:80]!r} appears more than once in one page (the source listed "
                "it twice); the first is landed, this one is not", source_id=sid, payload=dict(rec),
                field=stream.primary_key))
            continue
        seen.add(sid)
        try:
            updated = stream.updated_at(rec)
        except (ValueError, TypeError, ArithmeticError) as exc:
            rejected.append(Rejected(stream.object, f"unreadable {stream.cursor_field}: {exc}", source_id=sid,
                                     payload=dict(rec), field=stream.cursor_field))
            continue
        raws.append(RawRecord(stream.object, sid, rec, source_updated_at=updated,
                              deleted=deleted or stream.is_deleted(rec), hash_ignore=stream.hash_ignore))
    return raws, rejected


FUTURE_MARGIN = timedelta(minutes=5)
DEEP_FETCH = 200  # ids per fetch_ids call of the deep check
DEEP_DELETE_MAX_SHARE = 0.1  # default Connector.deep_delete_max_share (ltc.yaml: deep_delete_max_share)
DEEP_DELETE_FLOOR = 20  # a deep check may always tombstone this many records, whatever the share


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _when(value: str | None) -> datetime | None:
    return None if not value else datetime.fromisoformat(value)


def _future_warning(stream: StreamSpec, raw: RawRecord) -> Rejected:
    """The warning for a record stamped ahead of our clock (the same text every run: it is
    quarantined once, and again only when the stamp changes)."""
    return Rejected(
        stream.object,
        f"{stream.cursor_field} {raw.source_updated_at.isoformat() if raw.source_updated_at else '?'} is in the "
        "future: the record is landed, but the sync cursor does not follow it; check the source's clock or "
        "the record",
        source_id=raw.source_id, field=stream.cursor_field, stage="cursor",
    )


def deep_due(connector: Connector, state: Mapping[str, Any], at: datetime) -> bool:
    """Whether the stream's periodic deep check is due (``deep_check_every`` since the last one)."""
    every = connector.deep_check_every
    if every is None:
        return False
    last = _when(state.get("deep_at"))
    return last is None or at - last >= every


@dataclass
class DeepResult:
    source: int  # live records the source lists
    store: int  # live raw records in the store after the check
    landed: int = 0
    tombstoned: int = 0
    quarantined: int = 0
    unresolved: list[str] = field(default_factory=list)  # ids still different after the repair
    refused: str | None = None  # why the check tombstoned nothing (the listing looks cut short)


def deep_check(connector: Connector, stream: StreamSpec, store: Store, *, run_id: str | None = None
               ) -> DeepResult | None:
    """Compare the id sets of source and store for one stream and repair the difference.

    Ids the source has that the store lacks (or holds in an older version: the source's timestamp
    is newer) are fetched by id and landed — records that became visible later than the lookback,
    or that a future stamp kept out of every window. Ids the store holds live that the source no
    longer lists are tombstoned (Salesforce records purged from the recycle bin, HubSpot hard
    deletes, rows deleted in an ERP), dated by the source's delete log where it has one.
    Returns None when the connector has no cheap id listing for this stream.

    A listing cut short (a vendor dropping its paging mid-way) would look like mass deletion, so
    nothing is tombstoned when the source counts more live records than it listed
    (:meth:`Connector.source_total`) or when the deletions would exceed
    ``connector.deep_delete_max_share`` of the stream's live records (and ``DEEP_DELETE_FLOOR``):
    ``refused`` then says why.
    """
    listing = connector.source_ids(stream)
    if listing is None:
        return None
    stored = store.live_stamps(connector.name, stream.object)
    def stale(sid: str, ts: datetime | None) -> bool:
        if sid not in stored:
            return True
        mine = stored[sid]
        return ts is not None and mine is not None and ts > mine

    missing = sorted(sid for sid, ts in listing.items() if stale(sid, ts))
    gone = sorted(sid for sid in stored if sid not in listing)
    result = DeepResult(source=len(listing), store=0)
    for i in range(0, len(missing), DEEP_FETCH):
        chunk = missing[i:i + DEEP_FETCH]
        records = connector.fetch_ids(stream, chunk)
        raws, rejected = to_raw(stream, records)
        returned = {r.source_id for r in raws} | {r.source_id for r in rejected if r.source_id}
        # asked for but not returned: deleted in between; tombstoned below if the store has them
        gone += [sid for sid in chunk if sid not in returned and sid in stored]
        page = store.commit_page(connector.name, stream.name, raws, KEEP_CURSOR, run_id=run_id, rejected=rejected)
        result.landed += page.written
        result.quarantined += len(rejected)
    gone = sorted(set(gone))
    if gone:
        result.refused = _deep_delete_refusal(connector, stream, len(listing), len(gone), len(stored))
    if gone and result.refused is None:
        oldest = min((ts for sid in gone if (ts := stored.get(sid)) is not None), default=None)
        dated = connector.deleted_since(stream, oldest) if oldest is not None else {}
        payloads = store.raw_payloads(connector.name, stream.object, gone)
        now_ = datetime.now(UTC)
        tombs = [RawRecord(stream.object, sid, payloads.get(sid) or {}, source_updated_at=dated.get(sid) or now_,
                           deleted=True) for sid in gone]
        page = store.commit_page(connector.name, stream.name, tombs, KEEP_CURSOR, run_id=run_id)
        result.tombstoned = page.written
    after = store.live_stamps(connector.name, stream.object)
    result.store = len(after)
    held = store.open_quarantine_ids(connector.name, stream.object) if result.quarantined else set()
    result.unresolved = sorted((set(listing) ^ set(after)) - held)[:20]
    if result.landed or result.tombstoned:
        log.warning("%s.%s: deep check: %d missing or stale record(s) landed, %d gone from the source tombstoned",
                    connector.name, stream.name, result.landed, result.tombstoned)
    return result


def _deep_delete_refusal(connector: Connector, stream: StreamSpec, listed: int, gone: int, live: int
                         ) -> str | None:
    """Why a deep check must not tombstone ``gone`` of the ``live`` records the store holds, given a
    listing of ``listed`` ids; None when it may."""
    where = f"{connector.name}.{stream.name}"
    total = connector.source_total(stream)
    if total is not None and listed < total:
        return (f"deep check tombstoned nothing: {gone} of {live} live record(s) of {where} would have been marked "
                f"deleted, but the source counts {total} live records and its id listing held only {listed}: the listing "
                "was cut short; run `ltc sync --deep` again")
    share = connector.deep_delete_max_share
    if gone > DEEP_DELETE_FLOOR and gone > share * live:
        return (f"deep check tombstoned nothing: {gone} of {live} live record(s) of {where} would have been marked "
                f"deleted (more than deep_delete_max_share {share:g}), which looks like an id listing cut short; "
                f"if they really were deleted at the source, set deep_delete_max_share: 1 on sources."
                f"{connector.name} in ltc.yaml for one `ltc sync --deep`")
    return None


def _new_run(connector: Connector, stream: StreamSpec, hw: list[str] | None) -> dict[str, Any]:
    """A run's state from the last complete run's high-water mark: it reads from that mark less the
    connector's lookback (everything, without a mark)."""
    since = None
    if hw and stream.cursor_field:
        since = (datetime.fromisoformat(hw[0]) - connector.lookback).isoformat() if hw[0] else None
    return {"since": since, "token": None, "max": hw}


def _raised_mark(best: list[Any] | None, latest: RawRecord | None, page: Page, cap: tuple[str, str] | None
                 ) -> list[Any] | None:
    """The run's high-water mark raised to the page's latest record and its own high water, never
    past ``cap`` (the run's start)."""
    keys = [_key(latest.source_updated_at, latest.source_id)] if latest is not None else []
    if page.high_water is not None:
        keys.append(_key(*page.high_water))
    for k in keys:
        if cap is not None and k > cap:
            k = cap  # capped: the mark never passes the run's start
        if best is None or tuple(k) > tuple(best):
            best = list(k)
    return best


def _count_page(result: StreamResult, raws: list[RawRecord], res: Any, quarantined: int) -> None:
    result.pages += 1
    result.records += len(raws)
    result.deleted += sum(1 for r in raws if r.deleted)
    result.written += res.written
    result.unchanged += res.unchanged
    result.quarantined += quarantined


def _landable(stream: StreamSpec, page: Page) -> tuple[list[RawRecord], list[Rejected]]:
    """A page's records and the deletes it reports, as raw records and the rejected of both."""
    raws, rejected = to_raw(stream, page.records)
    gone, gone_rejected = to_raw(stream, page.deleted, deleted=True)
    return raws + gone, rejected + gone_rejected


def _future_warnings(stream: StreamSpec, raws: list[RawRecord], future_from: datetime, result: StreamResult
                     ) -> list[Rejected]:
    """Records stamped ahead of our clock, counted and warned about (they land; the cursor does not
    follow them)."""
    future = [r for r in raws if r.source_updated_at is not None and r.source_updated_at > future_from]
    result.future += len(future)
    return [_future_warning(stream, r) for r in future]


def _keyset_next(stream: StreamSpec, page: Page, raws: list[RawRecord], latest: RawRecord | None,
                 window: Window, run: dict[str, Any], *, probe: bool, in_future: bool, future_from: datetime
                 ) -> tuple[Any, bool, bool]:
    """A keyset page's next token, whether the keyset is stuck, and whether the run reads the future.

    The window resumes past the page's latest record; a full page with nothing landable cannot be
    moved past (stuck); once the main window is done, one more pass (the *future probe*) reads what
    is stamped ahead of our clock. The resume key goes into the run's state with the token."""
    token = None
    stuck = False
    more = page.more if page.more is not None else len(page.records) >= stream.page_size
    if more and raws:
        assert latest is not None and latest.source_updated_at is not None
        window.resume_key = (latest.source_updated_at, latest.source_id)
        token = "keyset"
    elif more:
        stuck = True
    elif probe and not in_future:
        in_future = True
        run["phase"] = "future"
        window.since, window.until, window.resume_key = future_from, None, None
        token = "keyset"
    run["resume"] = _key(*window.resume_key) if window.resume_key and token else None
    return token, stuck, in_future


def _page_state(state: Mapping[str, Any], run: dict[str, Any], best: list[Any] | None, window: Window, *,
                done: bool, full_read: bool, started: datetime) -> dict[str, Any]:
    """The stream state committed with a page: the run under way, or (the run done) its high-water
    mark; the connector's memo and the deep check's time carried (a full read counts as one)."""
    new_state: dict[str, Any] = {"hw": best, "run": None} if done else {"hw": state.get("hw"), "run": run}
    if window.memo is not None:
        new_state["memo"] = window.memo
    if state.get("deep_at"):
        new_state["deep_at"] = state["deep_at"]
    if done and full_read:
        new_state["deep_at"] = started.isoformat()  # a full read is as complete as a deep check
    return new_state


def _token_text(token: Any) -> str:
    return json.dumps(token, sort_keys=True, default=str)


def _repeated(seen: set[str], token: Any) -> bool:
    """Whether a page token came back that this run has already read (a paging loop); records it."""
    if token is None:
        return False
    text = _token_text(token)
    if text in seen:
        return True
    seen.add(text)
    return False


def _stopped(result: StreamResult, stuck: bool, empty_pages: list[str]) -> None:
    """The status of a run that stopped before the end: a stuck keyset, or max_pages reached."""
    if stuck:
        result.status = "incomplete"
        result.message = (f"{empty_pages[-1] if empty_pages else 'a full page landed nothing'}; the keyset "
                          "cannot move past these records: fix them at the source (see the quarantine)")
    else:
        result.status = "paused"
        result.message = f"stopped after {result.pages} page(s) (max_pages); the next run resumes"


def sync_stream(
    connector: Connector,
    stream: StreamSpec,
    store: Store,
    *,
    run_id: str,
    full_refresh: bool = False,
    max_pages: int | None = None,
    on_page: Callable[[StreamResult], None] | None = None,
    deep: bool = False,
) -> StreamResult:
    """Pull one stream into the raw landing, page by page, each page committed with its cursor.

    Returns the result; a :class:`QuotaPaused` ends the stream as ``paused`` (state saved, not an
    error); any other connector error marks it ``failed`` and is raised. A run that landed
    everything but cannot vouch for completeness (a gap the deep check could not close, a page of
    which nothing could be landed) ends ``incomplete``. ``deep`` forces the deep check
    (:func:`deep_check`), which otherwise runs every ``connector.deep_check_every``.
    """
    result = StreamResult(connector.name, stream.name)
    store.start_stream(connector.name, stream.name, run_id)
    connector.bind_store(store)
    state: dict[str, Any] = store.get_cursor(connector.name, stream.name) or {}
    if full_refresh:
        state = {}
    run = state.get("run") or _new_run(connector, stream, state.get("hw"))
    # the run's start fixes its upper bound (kept across a resume): the cursor never passes it
    started = _when(run.get("started")) or datetime.now(UTC)
    run["started"] = started.isoformat()
    until = started - connector.clock_skew if stream.cursor_field else None
    future_from = started + FUTURE_MARGIN + connector.clock_skew
    cap = _key(until, "") if until is not None else None
    keyset = isinstance(stream.paginator, Keyset)
    probe = keyset and stream.cursor_field is not None
    main_since = _when(run.get("since"))
    token = run.get("token")
    resume = run.get("resume")
    in_future = run.get("phase") == "future"
    window = Window(
        since=future_from if in_future else main_since,
        until=None if in_future else until,
        resume_key=(datetime.fromisoformat(resume[0]), resume[1]) if resume else None,
        memo=state.get("memo"),
    )
    empty_pages: list[str] = []
    stuck = repeated = False
    tokens: set[str] = {_token_text(token)} if token is not None and not keyset else set()
    halted: str | None = None
    try:
        connector.before_stream(stream)
        while True:
            page = connector.read_page(stream, window, token)
            raws, rejected = _landable(stream, page)
            if page.records and not raws:
                empty_pages.append(f"page {result.pages + 1}: 0 of {len(page.records)} records landed "
                                   f"({rejected[0].reason})")
            warnings = _future_warnings(stream, raws, future_from, result)
            latest = _latest(raws) if raws else None
            best = run["max"] = _raised_mark(run.get("max"), latest, page, cap)
            if keyset:
                token, stuck, in_future = _keyset_next(stream, page, raws, latest, window, run, probe=probe,
                                                       in_future=in_future, future_from=future_from)
            else:
                token = page.next_token
                repeated = _repeated(tokens, token)
            if page.halt is not None:  # the connector ends the window incomplete (its token stays: not a repeat)
                halted, token, repeated = page.halt, page.next_token, False
            run["token"] = token
            last_page = halted is not None or stuck or token is None or (max_pages is not None and result.pages + 1 >= max_pages)
            if page.memo is not None:
                window.memo = page.memo
            new_state = _page_state(state, run, best, window, done=token is None and not stuck and halted is None,
                                    full_read=main_since is None, started=started)
            res = store.commit_page(connector.name, stream.name, raws, new_state, run_id=run_id,
                                    rejected=rejected + warnings)
            _count_page(result, raws, res, len(rejected))
            if on_page is not None:
                on_page(result)
            if repeated:
                raise PagingBroken(f"{connector.name} returned the same page token twice: its paging is broken; "
                                   f"the {result.pages} page(s) read are kept, the stream is not complete "
                                   f"(token {_token_text(token)[:200]})")
            if last_page:
                break
        if halted is not None:
            result.status, result.message = "incomplete", halted
        elif stuck or token is not None:
            _stopped(result, stuck, empty_pages)
        else:
            result.status = "success"
            new_state = _completeness(connector, stream, store, result, Window(main_since, until=until),
                                      new_state, deep=deep, started=started, run_id=run_id)
            if empty_pages and result.status == "success":
                result.status = "incomplete"
                result.message = "; ".join(empty_pages[:3])
    except QuotaPaused as exc:
        result.status = "paused"
        result.message = str(exc)
    except PagingBroken as exc:
        # reading on would never end: what was committed stays, the high-water mark does not move
        result.status = "incomplete"
        result.message = str(exc)
        log.warning("%s.%s: %s", connector.name, stream.name, exc)
    except Exception as exc:
        result.status = "failed"
        result.message = str(exc)[:2000] or type(exc).__name__
        with contextlib.suppress(Exception):  # the database may be what failed: the next start closes it
            store.finish_stream(connector.name, stream.name, "failed", message=result.message)
        raise
    store.finish_stream(
        connector.name, stream.name, result.status,
        source_count=result.source_count, store_count=result.store_count, message=result.message,
    )
    log.info("%s.%s: %s, %d records in %d pages (%d written, %d quarantined)", connector.name, stream.name,
             result.status, result.records, result.pages, result.written, result.quarantined)
    return result


def _completeness(connector: Connector, stream: StreamSpec, store: Store, result: StreamResult, window: Window,
                  state: dict[str, Any], *, deep: bool, started: datetime, run_id: str) -> dict[str, Any]:
    """After a complete run: the per-window count, and the deep check when due, forced, or when
    the count shows a gap. Returns the stream state to keep (with the deep check's time)."""
    result.source_count = connector.count(stream, window)
    gap = False
    if result.source_count is not None:
        result.store_count = store.count_raw_since(connector.name, stream.object, window.since, window.until)
        # records in quarantine are missing knowingly (with their reason), not a gap to look for
        gap = result.store_count < result.source_count and (
            result.store_count + len(store.open_quarantine_ids(connector.name, stream.object)) < result.source_count)
    checked = None
    if deep or gap or deep_due(connector, state, started):
        checked = deep_check(connector, stream, store, run_id=run_id)
    if checked is not None:
        # a refused check is due again next run
        state = {k: v for k, v in state.items() if k != "deep_at"}
        if checked.refused is None:
            state["deep_at"] = started.isoformat()
        store.commit_page(connector.name, stream.name, [], state, run_id=run_id)
        result.deep_landed, result.deep_tombstoned = checked.landed, checked.tombstoned
        result.quarantined += checked.quarantined
        result.source_count, result.store_count = checked.source, checked.store
        if checked.refused is not None:
            result.status = "incomplete"
            result.message = checked.refused
        elif checked.unresolved:
            result.status = "incomplete"
            result.message = (f"completeness: the source lists {checked.source} live records, the store holds "
                              f"{checked.store} after the deep check (e.g. {', '.join(checked.unresolved[:5])})")
        elif checked.landed or checked.tombstoned:
            result.message = (f"deep check repaired the store: {checked.landed} missing or stale record(s) "
                              f"landed, {checked.tombstoned} deleted at the source tombstoned")
    elif gap:
        result.status = "incomplete"
        result.message = (f"completeness: source has {result.source_count}, store has {result.store_count} "
                          "for this window (no id listing to find the difference)")
    return state


def sync(connector: Connector, store: Store, *, streams: Sequence[str] | None = None,
         full_refresh: bool = False, deep: bool = False,
         on_wait: Callable[[str], None] | None = None,
         on_page: Callable[[StreamResult], None] | None = None) -> list[StreamResult]:
    """Pull several streams of one connector in one run (plain Python; flows wrap this per stream).

    Holds the store's ``sync:<source>`` lock: a second sync of the same source waits for the first
    (``on_wait`` gets the line saying so). Rows a killed earlier run left ``running`` are closed as
    ``failed`` first, with the reason. ``on_page`` hears each stream as it starts (status
    ``running``, no page yet), after each committed page, and once more when it ends (its final
    status; ``failed`` with the message when it raised).
    """
    with stage_lock(store.engine, f"sync:{connector.name}", on_wait=on_wait):
        store.close_interrupted("sync", connector.name, streams=True)
        run_id = store.begin_run("sync", connector.name)
        results: list[StreamResult] = []
        status = "success"
        try:
            for spec in connector.streams:
                if streams is not None and spec.name not in streams:
                    continue
                if on_page is not None:
                    on_page(StreamResult(connector.name, spec.name))
                try:
                    result = sync_stream(connector, spec, store, run_id=run_id, full_refresh=full_refresh,
                                         deep=deep, on_page=on_page)
                except Exception as exc:
                    if on_page is not None:
                        on_page(StreamResult(connector.name, spec.name, status="failed",
                                             message=str(exc)[:2000] or type(exc).__name__))
                    raise
                results.append(result)
                if on_page is not None:
                    on_page(result)
                if result.status == "paused":
                    status = "paused"
                    break
                if result.status == "incomplete":
                    status = "incomplete"
        except Exception as exc:
            with contextlib.suppress(Exception):  # the database may be what failed: the next start closes it
                store.finish_run(run_id, "failed", _counts(results), str(exc)[:2000])
            raise
        store.finish_run(run_id, status, _counts(results),
                         next((r.message for r in results if r.status in ("paused", "incomplete")), None))
        return results


def _counts(results: Sequence[StreamResult]) -> dict[str, Any]:
    return {r.stream: {"status": r.status, "records": r.records, "written": r.written,
                       "quarantined": r.quarantined} for r in results}

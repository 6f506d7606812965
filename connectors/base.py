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

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Protocol

from canonical.store import RawRecord, Rejected, Store
from connectors.errors import ConnectorError, QuotaPaused

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
        n = int(value)
        return datetime.fromtimestamp(n / 1000 if abs(n) >= 10**11 else n, tz=UTC)
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
        if not records or dig(body, self.more_path) is not True:
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
        value = dig(record, self.primary_key)
        return None if value is None or value == "" else str(value)

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


@dataclass
class Window:
    """The changed-since window of one run: ``since`` inclusive (None = everything)."""

    since: datetime | None
    resume_key: tuple[datetime, str] | None = None  # keyset position inside the run
    memo: Any = None  # the connector's own state as of the last committed page (see Page.memo)


class Connector:
    """Base of every connector. Subclasses declare ``streams`` and implement :meth:`read_page`."""

    kind: ClassVar[str] = ""
    streams: tuple[StreamSpec, ...] = ()

    def __init__(self, name: str, *, lookback: timedelta = timedelta(minutes=10)):
        self.name = name
        self.lookback = lookback

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

    def before_stream(self, stream: StreamSpec) -> None:
        """Hook: e.g. check the quota before starting."""

    def bind_store(self, store: Store) -> None:
        """Hook: the store this run lands in (e.g. to find deletes by comparing ids with it)."""

    def close(self) -> None:
        """Release connections."""


# --- the sync engine ------------------------------------------------------------------------------

def _key(ts: datetime | None, sid: str) -> tuple[str, str]:
    return (ts.isoformat(timespec="microseconds") if ts else "", sid)


@dataclass
class StreamResult:
    connector: str
    stream: str
    status: str = "running"  # success | paused | failed
    pages: int = 0
    records: int = 0
    written: int = 0
    unchanged: int = 0
    quarantined: int = 0
    deleted: int = 0
    source_count: int | None = None
    store_count: int | None = None
    message: str | None = None


def to_raw(stream: StreamSpec, records: Iterable[Mapping[str, Any]], *, deleted: bool = False
           ) -> tuple[list[RawRecord], list[Rejected]]:
    """Raw records of a page; a record without an id or with an unreadable timestamp is rejected."""
    raws: list[RawRecord] = []
    rejected: list[Rejected] = []
    for rec in records:
        sid = stream.source_id(rec)
        if sid is None:
            rejected.append(Rejected(stream.object, f"record has no {stream.primary_key!r}", payload=dict(rec),
                                     field=stream.primary_key))
            continue
        try:
            updated = stream.updated_at(rec)
        except (ValueError, TypeError) as exc:
            rejected.append(Rejected(stream.object, f"unreadable {stream.cursor_field}: {exc}", source_id=sid,
                                     payload=dict(rec), field=stream.cursor_field))
            continue
        raws.append(RawRecord(stream.object, sid, rec, source_updated_at=updated,
                              deleted=deleted or stream.is_deleted(rec), hash_ignore=stream.hash_ignore))
    return raws, rejected


def sync_stream(
    connector: Connector,
    stream: StreamSpec,
    store: Store,
    *,
    run_id: str,
    full_refresh: bool = False,
    max_pages: int | None = None,
    on_page: Callable[[StreamResult], None] | None = None,
) -> StreamResult:
    """Pull one stream into the raw landing, page by page, each page committed with its cursor.

    Returns the result; a :class:`QuotaPaused` ends the stream as ``paused`` (state saved, not an
    error); any other connector error marks it ``failed`` and is raised.
    """
    result = StreamResult(connector.name, stream.name)
    store.start_stream(connector.name, stream.name, run_id)
    connector.bind_store(store)
    state: dict[str, Any] = store.get_cursor(connector.name, stream.name) or {}
    if full_refresh:
        state = {}
    run: dict[str, Any] | None = state.get("run")
    if run is None:
        hw = state.get("hw")
        since = None
        if hw and stream.cursor_field:
            since = (datetime.fromisoformat(hw[0]) - connector.lookback).isoformat() if hw[0] else None
        run = {"since": since, "token": None, "max": hw}
    token = run.get("token")
    resume = run.get("resume")
    window = Window(
        since=datetime.fromisoformat(run["since"]) if run.get("since") else None,
        resume_key=(datetime.fromisoformat(resume[0]), resume[1]) if resume else None,
        memo=state.get("memo"),
    )
    try:
        connector.before_stream(stream)
        while True:
            page = connector.read_page(stream, window, token)
            raws, rejected = to_raw(stream, page.records)
            gone, gone_rejected = to_raw(stream, page.deleted, deleted=True)
            raws += gone
            rejected += gone_rejected
            best = run.get("max")
            keys = [_key(raw.source_updated_at, raw.source_id) for raw in raws]
            if page.high_water is not None:
                keys.append(_key(*page.high_water))
            for k in keys:
                if best is None or tuple(k) > tuple(best):
                    best = list(k)
            run["max"] = best
            if isinstance(stream.paginator, Keyset):
                token = None
                more = page.more if page.more is not None else len(page.records) >= stream.page_size
                if more and raws:
                    last = max(raws, key=lambda r: _key(r.source_updated_at, r.source_id))
                    assert last.source_updated_at is not None
                    window.resume_key = (last.source_updated_at, last.source_id)
                    token = "keyset"
                run["resume"] = _key(*window.resume_key) if window.resume_key and token else None
            else:
                token = page.next_token
            run["token"] = token
            last_page = token is None or (max_pages is not None and result.pages + 1 >= max_pages)
            new_state = {"hw": best, "run": None} if last_page and token is None else {"hw": state.get("hw"), "run": run}
            if page.memo is not None:
                window.memo = page.memo
            if window.memo is not None:
                new_state["memo"] = window.memo
            res = store.commit_page(connector.name, stream.name, raws, new_state, run_id=run_id, rejected=rejected)
            result.pages += 1
            result.records += len(raws)
            result.deleted += sum(1 for r in raws if r.deleted)
            result.written += res.written
            result.unchanged += res.unchanged
            result.quarantined += res.quarantined
            if on_page is not None:
                on_page(result)
            if last_page:
                break
        if token is not None:
            result.status = "paused"
            result.message = f"stopped after {result.pages} page(s) (max_pages); the next run resumes"
        else:
            result.status = "success"
            result.source_count = connector.count(stream, window)
            if result.source_count is not None:
                result.store_count = store.count_raw_since(connector.name, stream.object, window.since)
                if result.store_count < result.source_count:
                    result.message = (
                        f"completeness: source has {result.source_count}, store has {result.store_count} "
                        "for this window"
                    )
    except QuotaPaused as exc:
        result.status = "paused"
        result.message = str(exc)
    except ConnectorError as exc:
        result.status = "failed"
        result.message = str(exc)
        store.finish_stream(connector.name, stream.name, "failed", message=result.message)
        raise
    store.finish_stream(
        connector.name, stream.name, result.status,
        source_count=result.source_count, store_count=result.store_count, message=result.message,
    )
    log.info("%s.%s: %s, %d records in %d pages (%d written, %d quarantined)", connector.name, stream.name,
             result.status, result.records, result.pages, result.written, result.quarantined)
    return result


def sync(connector: Connector, store: Store, *, streams: Sequence[str] | None = None,
         full_refresh: bool = False) -> list[StreamResult]:
    """Pull several streams of one connector in one run (plain Python; flows wrap this per stream)."""
    run_id = store.begin_run("sync", connector.name)
    results: list[StreamResult] = []
    status = "success"
    try:
        for spec in connector.streams:
            if streams is not None and spec.name not in streams:
                continue
            result = sync_stream(connector, spec, store, run_id=run_id, full_refresh=full_refresh)
            results.append(result)
            if result.status == "paused":
                status = "paused"
                break
    except ConnectorError as exc:
        store.finish_run(run_id, "failed", _counts(results), str(exc))
        raise
    store.finish_run(run_id, status, _counts(results),
                     next((r.message for r in results if r.status == "paused"), None))
    return results


def _counts(results: Sequence[StreamResult]) -> dict[str, Any]:
    return {r.stream: {"status": r.status, "records": r.records, "written": r.written,
                       "quarantined": r.quarantined} for r in results}

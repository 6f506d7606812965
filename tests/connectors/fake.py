"""An in-memory vendor and two connectors over it (keyset- and token-paged), for engine and contract tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import AfterCursor, Connector, Keyset, Page, StreamSpec, Window, parse_instant
from connectors.errors import ConnectorError, QuotaPaused

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@dataclass
class Source:
    """A vendor in memory: rows with (updatedAt, id); optionally failing or pausing at a page."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_at_page: int | None = None
    pause_at_page: int | None = None
    pages_served: int = 0
    windows: list[tuple[datetime | None, datetime | None]] = field(default_factory=list)  # (since, until) read

    def put(self, rid: str, ts: datetime, **extra: Any) -> None:
        self.rows[rid] = {"id": rid, "updatedAt": ts.isoformat().replace("+00:00", "Z"), **extra}

    def visible(self, since: datetime | None, until: datetime | None = None) -> list[dict[str, Any]]:
        def inside(r: dict[str, Any]) -> bool:
            try:
                ts = parse_instant(r["updatedAt"])
            except ValueError:
                return since is None  # an unreadable stamp: only a full read returns it
            assert ts is not None
            return (since is None or ts >= since) and (until is None or ts < until)

        out = [r for r in self.rows.values() if inside(r)]
        return sorted(out, key=lambda r: (str(r["updatedAt"]), r.get("id", "")))


class KeysetConnector(Connector):
    kind = "fake"
    streams = (StreamSpec("deals", "deals", cursor_field="updatedAt", page_size=10, paginator=Keyset(),
                          deleted_when=("archived", True)),)

    def __init__(self, source: Source, **kw: Any):
        super().__init__("fake", **kw)
        self.source = source

    def _tick(self) -> None:
        self.source.pages_served += 1
        if self.source.fail_at_page == self.source.pages_served:
            raise ConnectorError("fake: connection dropped")
        if self.source.pause_at_page == self.source.pages_served:
            raise QuotaPaused("fake: daily quota at 80%")

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        self._tick()
        self.source.windows.append((window.since, window.until))
        rows = self.source.visible(window.since, window.until)
        if window.resume_key is not None:
            ts, rid = window.resume_key
            rows = [r for r in rows if (parse_instant(r["updatedAt"]), r["id"]) > (ts, rid)]
        return Page(rows[: stream.page_size])

    def count(self, stream: StreamSpec, window: Window) -> int | None:
        return len([r for r in self.source.visible(window.since, window.until) if not r.get("archived")])

    def source_ids(self, stream: StreamSpec) -> dict[str, datetime | None] | None:
        out: dict[str, datetime | None] = {}
        for r in self.source.rows.values():
            if r.get("id") and not r.get("archived"):
                try:
                    out[r["id"]] = parse_instant(r["updatedAt"])
                except ValueError:
                    out[r["id"]] = None
        return out

    def fetch_ids(self, stream: StreamSpec, ids: Sequence[str]) -> list[dict[str, Any]]:
        return [dict(self.source.rows[i]) for i in ids if i in self.source.rows]


class TokenConnector(KeysetConnector):
    """The same source paged by an opaque offset token (list endpoints)."""

    streams = (StreamSpec("deals", "deals", cursor_field="updatedAt", page_size=10, paginator=AfterCursor()),)

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        self._tick()
        self.source.windows.append((window.since, window.until))
        rows = self.source.visible(window.since, window.until)
        start = int(token or 0)
        nxt = start + stream.page_size
        return Page(rows[start:nxt], next_token=str(nxt) if nxt < len(rows) else None)


def seeded(n: int) -> Source:
    src = Source()
    for i in range(n):
        src.put(f"d{i:04d}", T0 + timedelta(seconds=i))
    return src

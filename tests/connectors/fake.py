"""An in-memory vendor and two connectors over it (keyset- and token-paged), for engine and contract tests."""

from __future__ import annotations

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

    def put(self, rid: str, ts: datetime, **extra: Any) -> None:
        self.rows[rid] = {"id": rid, "updatedAt": ts.isoformat().replace("+00:00", "Z"), **extra}

    def visible(self, since: datetime | None) -> list[dict[str, Any]]:
        out = [r for r in self.rows.values() if since is None or parse_instant(r["updatedAt"]) >= since]  # type: ignore[operator]
        return sorted(out, key=lambda r: (parse_instant(r["updatedAt"]), r.get("id", "")))


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
        rows = self.source.visible(window.since)
        if window.resume_key is not None:
            ts, rid = window.resume_key
            rows = [r for r in rows if (parse_instant(r["updatedAt"]), r["id"]) > (ts, rid)]
        return Page(rows[: stream.page_size])

    def count(self, stream: StreamSpec, window: Window) -> int | None:
        return len([r for r in self.source.visible(window.since) if not r.get("archived")])


class TokenConnector(KeysetConnector):
    """The same source paged by an opaque offset token (list endpoints)."""

    streams = (StreamSpec("deals", "deals", cursor_field="updatedAt", page_size=10, paginator=AfterCursor()),)

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        self._tick()
        rows = self.source.visible(window.since)
        start = int(token or 0)
        nxt = start + stream.page_size
        return Page(rows[start:nxt], next_token=str(nxt) if nxt < len(rows) else None)


def seeded(n: int) -> Source:
    src = Source()
    for i in range(n):
        src.put(f"d{i:04d}", T0 + timedelta(seconds=i))
    return src

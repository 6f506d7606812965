"""The Tryton connector asks for the next keyset page while the engine lands the current one."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from canonical.store import Store
from canonical.tables import raw_record
from connectors.base import Window, sync, unstorable_id
from connectors.tryton.connector import CURSOR, TrytonConnector, _next_key
from ltc.app import runtime
from ltc.app.demo import world_sources
from sandbox.world import read_world

WORLDS = Path(__file__).resolve().parents[1] / "worlds"
T0 = datetime(2026, 10, 1, tzinfo=UTC)


class FakeClient:
    """search_read over a few sale.sale rows in (last_modified_at, id) order; every call recorded."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.calls: list[list[Any]] = []
        self.second = threading.Event()

    def search_read(self, model: str, domain: list[Any], fields: Any, *, limit: int | None = None,
                    order: Any = None, context: Any = None) -> list[dict[str, Any]]:
        self.calls.append(domain)
        if len(self.calls) >= 2:
            self.second.set()
        after = next((d for d in domain if d[0] == "OR"), None)
        rows = self.rows
        if after is not None:
            ts, last = after[1][2], after[2][1][2]
            rows = [r for r in rows if (r[CURSOR], r["id"]) > (ts, last)]
        return [dict(r) for r in rows[:limit]]

    def close(self) -> None:
        pass


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, CURSOR: T0 + timedelta(minutes=i), "number": f"SO{i}"} for i in range(1, n + 1)]


def test_the_next_page_is_asked_for_before_the_engine_asks() -> None:
    client = FakeClient(_rows(5))
    conn = TrytonConnector("tryton", client, page_size=2)  # type: ignore[arg-type]
    stream = conn.stream("sale.sale")
    window = Window(since=None, until=T0 + timedelta(days=1))
    try:
        first = conn.read_page(stream, window, None)
        assert [r["id"] for r in first.records] == [1, 2]
        # the engine has not asked yet: the page after (ts of id 2, id 2) is on its way already
        assert client.second.wait(5)
        assert client.calls[1][-2] == ["OR", [CURSOR, ">", T0 + timedelta(minutes=2)],
                                       [[CURSOR, "=", T0 + timedelta(minutes=2)], ["id", ">", 2]]]
        window.resume_key = (T0 + timedelta(minutes=2), "2")  # what the engine moves to
        second = conn.read_page(stream, window, "keyset")
        assert [r["id"] for r in second.records] == [3, 4]
        assert client.second.is_set() and len(client.calls) in (2, 3)  # page 2 was not asked for twice
        window.resume_key = (T0 + timedelta(minutes=1), "1")  # another position: the prefetch is dropped
        again = conn.read_page(stream, window, "keyset")
        assert [r["id"] for r in again.records] == [2, 3]
    finally:
        conn.close()


def test_without_prefetch_only_what_the_engine_asks_for_is_sent() -> None:
    client = FakeClient(_rows(5))
    conn = TrytonConnector("tryton", client, page_size=2, prefetch=False)  # type: ignore[arg-type]
    stream = conn.stream("sale.sale")
    conn.read_page(stream, Window(since=None, until=T0 + timedelta(days=1)), None)
    assert not client.second.wait(0.2) and len(client.calls) == 1


def _landed(store: Store) -> set[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        c = raw_record.c
        return {tuple(r) for r in conn.execute(sa.select(c.object, c.source_id, c.content_hash, c.deleted))}


def test_prefetched_sync_lands_the_same_records_and_reads_each_page_once(tmp_path: Path) -> None:
    world = read_world(WORLDS / "tryton")
    landed, reads = [], []
    for prefetch in (False, True):
        store = Store.open(f"sqlite:///{tmp_path / f'p{prefetch}.db'}")
        with world_sources(world) as (cfg, servers):
            emulator = servers["tryton"]._server.config.app.state.tryton  # type: ignore[attr-defined]
            cfg.sources["tryton"].page_size = 1
            cfg.sources["tryton"].options["prefetch"] = prefetch
            connector = runtime.build_connector(cfg, "tryton")
            assert isinstance(connector, TrytonConnector) and connector.prefetch is prefetch
            try:
                results = sync(connector, store)
            finally:
                connector.close()
            assert all(r.status == "success" for r in results), [(r.stream, r.message) for r in results]
            reads.append(sorted(c for c in emulator.calls if c.endswith(".search_read")))
        landed.append(_landed(store))
        store.close()
    assert landed[0] == landed[1] and landed[0]
    assert reads[0] == reads[1]


def _greatest(stream: Any, records: list[dict[str, Any]]) -> tuple[datetime, str] | None:
    """What the engine moves to (the greatest (stamp, id) of the landable records), by reading every record."""
    keys = [(ts, sid) for r in records if (sid := stream.source_id(r)) is not None and not unstorable_id(sid)
            and (ts := stream.updated_at(r)) is not None]
    return max(keys) if keys else None


@pytest.mark.parametrize("seed", range(6))
def test_the_prefetch_key_read_from_the_page_end_is_the_greatest_key(seed: int) -> None:
    """Tied stamps whose ids order differently as text (``9`` after ``10``), records without a stamp first or last,
    ids that cannot be landed: the key found from the end is the engine's."""
    rng = random.Random(seed)
    stream = TrytonConnector("tryton", FakeClient([])).stream("sale.sale")  # type: ignore[arg-type]
    for _ in range(200):
        rows: list[dict[str, Any]] = []
        for i in rng.sample(range(1, 40), rng.randint(1, 12)):
            stamp = None if rng.random() < 0.15 else T0 + timedelta(minutes=rng.randint(0, 3))
            rows.append({"id": i if rng.random() > 0.1 else "", CURSOR: stamp})
        nulls_last = rng.random() < 0.5
        rows.sort(key=lambda r: (r[CURSOR] is None if nulls_last else r[CURSOR] is not None,
                                 r[CURSOR] or T0, r["id"] or 0))
        assert _next_key(stream, rows) == _greatest(stream, rows), rows

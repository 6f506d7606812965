"""The sync stage with forked children (one per source): it lands what the sources synced side by side in
threads land, in the same store, and passes the children's progress events on."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from canonical import tables
from canonical.forking import forks
from canonical.store import Store
from ltc.app import pipeline
from ltc.app.demo import world_sources
from ltc.app.progress import StageProgress, StreamProgress
from sandbox.world import read_world

pytestmark = pytest.mark.skipif(not forks(), reason="no fork here: sources sync in threads")


WORLDS = Path(__file__).resolve().parents[1] / "worlds"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The example worlds of three API systems, as one (fixed records: two syncs land the same)."""
    root = tmp_path_factory.mktemp("forked") / "world"
    root.mkdir()
    for s in ("salesforce", "tryton", "stripe"):
        shutil.copytree(WORLDS / s / s, root / s)
    (root / "world.yaml").write_text("format: 1\nname: three\nsystems: [salesforce, tryton, stripe]\nerp: tryton\n"
                                     "reporting_currency: USD\nas_of: 2026-10-31\n", encoding="utf-8")
    return read_world(root)


def _synced(world: Any, url: str, forked: bool, monkeypatch: pytest.MonkeyPatch
            ) -> tuple[dict[str, Any], dict[Any, Any], list[Any]]:
    monkeypatch.setattr(pipeline, "SYNC_PROCESSES", forked)
    pids: list[int] = []
    real = pipeline._sync_source

    def recording(ctx: Any, name: str, on_progress: Any) -> Any:
        pids.append(os.getpid())  # in a child, this list is the child's copy
        st = real(ctx, name, on_progress)
        st.message = f"pid {os.getpid()}"
        return st

    monkeypatch.setattr(pipeline, "_sync_source", recording)
    events: list[Any] = []
    store = Store.open(url)
    try:
        with world_sources(world) as (cfg, _servers):
            ctx = pipeline.Context(store, cfg, pipeline.PipelineResult(as_of=date(2026, 11, 22)),
                                   on_progress=events.append)
            statuses = pipeline.stage_sync(ctx)
            messages = {n: s.message for n, s in ctx.result.sources.items()}
        raw = tables.raw_record
        with store.engine.connect() as conn:
            landed = {(r.system, r.object, r.source_id): r.payload
                      for r in conn.execute(sa.select(raw.c.system, raw.c.object, raw.c.source_id, raw.c.payload))}
    finally:
        store.close()
    assert (pids == []) == forked  # forked: no source synced in this process
    return {"statuses": statuses, "messages": messages}, landed, events


def test_forked_sync_lands_what_threads_land(world: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads, landed_threads, _ = _synced(world, f"sqlite:///{tmp_path / 'threads.db'}", False, monkeypatch)
    forked, landed_forked, events = _synced(world, f"sqlite:///{tmp_path / 'forked.db'}", True, monkeypatch)
    assert forked["statuses"] == threads["statuses"] and set(forked["statuses"].values()) == {"ok"}
    pids = {m for m in forked["messages"].values()}
    assert len(pids) == len(forked["messages"]) > 1 and f"pid {os.getpid()}" not in pids  # one child per source
    assert landed_forked == landed_threads and len(landed_forked) > 20
    # the children's progress: each source's stage start and end, and its streams' pages
    sources = set(forked["statuses"])
    assert {e.stage for e in events if isinstance(e, StageProgress)} == {f"sync {s}" for s in sources}
    assert {e.source for e in events if isinstance(e, StreamProgress)} == sources


@pytest.mark.parametrize("value", ["off", "0", "False"])
def test_an_admin_turns_the_forked_sync_off(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pipeline.sync_processes()
    monkeypatch.setenv("LTC_SYNC_PROCESSES", value)
    assert not pipeline.sync_processes()
    monkeypatch.setenv("LTC_SYNC_PROCESSES", "on")
    assert pipeline.sync_processes()

"""One pipeline per share of systems: every batch of a system is written under that system's lock, which is
released only once its last batch is committed; a system whose write fails is reported as its error while the
next systems of its share are mapped; the share's first batches are small and grow, and its last one is small."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mapping_fixtures import SYSTEMS, land

from canonical import forking, tables
from canonical.store import Store
from mappings import engine
from mappings.engine import run_mapping


@pytest.fixture(params=["children", "here"])
def events(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A log of lock taken / batch written / lock released, one line each, from this process or its children."""
    if request.param == "children":
        if not forking.forks():
            pytest.skip("no fork here")
        monkeypatch.setattr(engine, "FORK_FROM", 0)
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
        monkeypatch.delenv("LTC_MAP_PROCESSES", raising=False)
    else:
        monkeypatch.setenv("LTC_MAP_PROCESSES", "off")
    log = tmp_path / "events"
    log.touch()

    def say(line: str) -> None:
        with log.open("a") as out:  # appends: one line at a time, whichever process writes it
            out.write(f"{line}\n")

    lock, write = engine.stage_lock, engine._write_batch

    @contextmanager
    def spied_lock(bound: Any, name: str, **kwargs: Any) -> Iterator[None]:
        with lock(bound, name, **kwargs):
            say(f"lock {name}")
            yield
            say(f"unlock {name}")

    def spied_write(store: Store, mset: engine.MappingSet, *args: Any, **kwargs: Any) -> dict[str, int]:
        counts = write(store, mset, *args, **kwargs)
        say(f"write map:{mset.system}")
        return counts

    monkeypatch.setattr(engine, "stage_lock", spied_lock)
    monkeypatch.setattr(engine, "_write_batch", spied_write)
    return log


def _check_locking(log: Path, systems: set[str]) -> None:
    lines = log.read_text().splitlines()
    for system in systems:
        name = f"map:{system}"
        mine = [line.split()[0] for line in lines if line.split()[1] == name]
        # taken once, every batch written while held, released after the last one is committed
        assert mine[0] == "lock" and mine[-1] == "unlock" and set(mine[1:-1]) == {"write"}, (system, mine)


def test_every_batch_is_written_under_its_systems_lock(store: Store, events: Path) -> None:
    for system in SYSTEMS:
        land(store, system)
    counts = run_mapping(store, batch_size=3)
    assert set(counts) == set(SYSTEMS) and all(c["records"] > 0 for c in counts.values())
    _check_locking(events, set(SYSTEMS))
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.raw_pending)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.stage_lock)).scalar_one() == 0


def test_a_system_whose_write_fails_is_its_error_and_the_others_are_mapped(
    store: Store, events: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for system in SYSTEMS:
        land(store, system)
    write = engine._write_batch
    written: dict[str, int] = {}

    def failing(store: Store, mset: engine.MappingSet, *args: Any, **kwargs: Any) -> dict[str, int]:
        written[mset.system] = written.get(mset.system, 0) + 1
        if mset.system == "tryton" and written["tryton"] == 2:  # its first batch is committed, then one fails
            raise RuntimeError("tryton's write broke")
        return write(store, mset, *args, **kwargs)

    monkeypatch.setattr(engine, "_write_batch", failing)
    with pytest.raises(RuntimeError, match="tryton's write broke"):
        run_mapping(store, batch_size=3)
    _check_locking(events, set(SYSTEMS) - {"tryton"})
    lines = events.read_text().splitlines()
    assert lines.count("lock map:tryton") == lines.count("unlock map:tryton") == 1  # released all the same
    with store.engine.connect() as conn:
        left = dict(conn.execute(sa.select(tables.raw_pending.c.system, sa.func.count())
                                 .group_by(tables.raw_pending.c.system)).all())
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.stage_lock)).scalar_one() == 0
    assert set(left) == {"tryton"}  # what it did not write stays pending; every other system is committed


def test_a_shares_first_batches_grow_and_its_last_is_small(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTC_MAP_PROCESSES", "off")
    monkeypatch.setattr(engine, "FIRST_BATCH", 1)
    monkeypatch.setattr(engine, "LAST_BATCH", 1)
    for system in ("camt053", "stripe"):
        land(sqlite_store, system)
    reads: list[tuple[str, int, int]] = []
    read = engine._read_pending

    def spy(store: Store, system: str, after: int, limit: int, objects: Any = None) -> Any:
        batch = read(store, system, after, limit, objects)
        reads.append((system, limit, len(batch)))
        return batch

    monkeypatch.setattr(engine, "_read_pending", spy)
    pending = {name: engine._pending_count(sqlite_store, name) for name in ("camt053", "stripe")}
    assert pending == {"camt053": 5, "stripe": 8}
    counts = run_mapping(sqlite_store, batch_size=4)
    assert {name: c["records"] for name, c in counts.items()} == pending
    assert reads == [
        ("camt053", 1, 1), ("camt053", 2, 2), ("camt053", 3, 2), ("camt053", 4, 0),  # grows up to the batch size
        ("stripe", 4, 4), ("stripe", 3, 3), ("stripe", 4, 1), ("stripe", 4, 0),  # all but one, then the last one
    ]


def test_a_shares_writer_keeps_one_connection_and_takes_a_new_one_after_a_failed_batch(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LTC_MAP_PROCESSES", "off")
    for system in SYSTEMS:
        land(sqlite_store, system)
    write = engine._write_batch
    used: list[tuple[str, sa.Connection]] = []  # every batch's system and connection (kept: ids stay distinct)

    def spied(store: Store, mset: engine.MappingSet, *args: Any, conn: sa.Connection, **kwargs: Any) -> dict[str, int]:
        used.append((mset.system, conn))
        if len({system for system, _conn in used}) == 2 and used[-2][0] != mset.system:  # the 2nd system's 1st batch
            raise RuntimeError("the write broke")
        return write(store, mset, *args, conn=conn, **kwargs)

    monkeypatch.setattr(engine, "_write_batch", spied)
    with pytest.raises(RuntimeError, match="the write broke"):
        run_mapping(sqlite_store, batch_size=3)
    cut = next(i for i, (system, _conn) in enumerate(used) if system != used[0][0])
    before, after = {id(conn) for _s, conn in used[: cut + 1]}, {id(conn) for _s, conn in used[cut + 1:]}
    assert cut > 1 and len(used) > cut + 2 and len({system for system, _conn in used}) > 2
    assert len(before) == 1 and len(after) == 1 and before != after

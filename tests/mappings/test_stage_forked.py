"""The mapping stage maps systems side by side in forked children (one per core, each its share in turn): the same rows,
lineage, quarantine, tombstones and counts as one system after the other in this process; a failing
system's error raised once the others' work is committed; and the cases that stay in this process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mapping_fixtures import SYSTEMS, fixture_records, land

from canonical import forking, model, tables
from canonical.store import RawRecord, Store
from mappings import engine
from mappings.engine import run_mapping
from mappings.spec import MappingError

pytestmark = pytest.mark.skipif(not forking.forks(), reason="no fork here: the stage runs in this process")

_VOLATILE = {"quarantine": {"id", "created_at", "first_seen_at", "last_seen_at", "run_id", "resolved_at"}}


def _snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Canonical tables, lineage, quarantine and raw_pending, every row ordered by all of its columns."""
    names = [tables.table_for(e).name for e in model.ENTITIES] + ["lineage", "quarantine", "raw_pending"]
    out: dict[str, list[tuple[Any, ...]]] = {}
    with store.engine.connect() as conn:
        for name in names:
            table = tables.metadata.tables[name]
            cols = [c for c in table.columns if c.name not in _VOLATILE.get(name, ())]
            out[name] = sorted(tuple(map(str, r)) for r in conn.execute(sa.select(*cols)))
    return out


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two empty, migrated stores on one backend."""
    if request.param == "sqlite":
        urls = [f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"]
    else:
        new = request.getfixturevalue("pg_new_database")
        urls = [new(), new()]
    a, b = Store.open(urls[0]), Store.open(urls[1])
    yield a, b
    a.close()
    b.close()


def _land_world(store: Store) -> None:
    """Every system's fixtures; a record that does not map (quarantine); a deleted one (tombstones)."""
    for system in SYSTEMS:
        land(store, system)
    bad = fixture_records("camt053")[0]
    land(store, "camt053", [RawRecord(bad.object, "STMT-X/BAD/0", {**bad.payload, "amount": "12,34,56"})])
    gone = fixture_records("stripe")[0]
    run_mapping(store, "stripe")  # mapped once, then deleted at the source
    deleted = RawRecord(gone.object, gone.source_id, gone.payload, deleted=True,
                        source_updated_at=datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    store.commit_page("stripe", "all", [deleted], None)


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Fork for any amount of work, on two cores; each system's mapping leaves a file naming its process."""
    where = tmp_path / "mapped"
    where.mkdir()
    monkeypatch.setattr(engine, "FORK_FROM", 0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.delenv("LTC_MAP_PROCESSES", raising=False)
    mapped = engine._map_system

    def spy(store: Store, mset: engine.MappingSet, *args: Any) -> dict[str, int]:
        (where / f"{mset.system}.{os.getpid()}").touch()
        return mapped(store, mset, *args)

    monkeypatch.setattr(engine, "_map_system", spy)
    return where


def _mapped_in(where: Path) -> dict[str, int]:
    return {p.name.split(".")[0]: int(p.name.split(".")[1]) for p in where.iterdir()}


def test_systems_mapped_in_forked_children_give_what_one_process_gives(
    two_stores: tuple[Store, Store], forked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_children, here = two_stores
    monkeypatch.setenv("LTC_MAP_PROCESSES", "off")
    _land_world(in_children)
    _land_world(here)
    monkeypatch.delenv("LTC_MAP_PROCESSES")
    for p in forked.iterdir():
        p.unlink()
    counts = run_mapping(in_children, batch_size=3)
    pids = _mapped_in(forked)
    assert set(pids) == set(SYSTEMS) and os.getpid() not in pids.values()
    assert len(set(pids.values())) == 2  # one child per core, each mapping its share of the systems in turn
    assert counts["camt053"]["quarantined"] >= 1 and counts["stripe"]["tombstoned"] >= 1
    assert list(counts) == sorted(SYSTEMS)  # in systems order, whichever child finished first

    monkeypatch.setenv("LTC_MAP_PROCESSES", "off")
    for p in forked.iterdir():
        p.unlink()
    assert run_mapping(here, batch_size=3) == counts
    assert set(_mapped_in(forked).values()) == {os.getpid()}
    assert _snapshot(in_children) == _snapshot(here)


@pytest.mark.parametrize("where", ["children", "here"])
def test_a_failing_system_is_raised_after_the_others_have_committed(
    store: Store, forked: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    if where == "here":
        monkeypatch.setenv("LTC_MAP_PROCESSES", "off")
    for system in SYSTEMS:
        land(store, system)
    mapped, compiled = engine._map_system, engine.compile_for  # the spy

    def failing(store: Store, mset: engine.MappingSet, *args: Any) -> dict[str, int]:
        if mset.system in ("odoo", "tryton"):
            raise RuntimeError(f"{mset.system} broke")
        return mapped(store, mset, *args)

    def not_loading(system: str, *args: Any, **kwargs: Any) -> engine.MappingSet:
        if system == "stripe":
            raise MappingError("stripe's mapping does not load")
        return compiled(system, *args, **kwargs)

    monkeypatch.setattr(engine, "_map_system", failing)
    monkeypatch.setattr(engine, "compile_for", not_loading)
    with pytest.raises(RuntimeError, match="odoo broke"):  # the first in systems order, not the first to fail
        run_mapping(store)
    with store.engine.connect() as conn:
        left = dict(conn.execute(sa.select(tables.raw_pending.c.system, sa.func.count())
                                 .group_by(tables.raw_pending.c.system)).all())
        lineage_of = {cid.split(":")[0] for (cid,) in conn.execute(sa.select(tables.lineage.c.canonical_id))}
    assert set(left) == {"odoo", "stripe", "tryton"}  # theirs stay pending; the other systems' work is committed
    ok = set(SYSTEMS) - {"odoo", "stripe", "tryton"}
    assert set(_mapped_in(forked)) == ok and lineage_of == ok
    assert (os.getpid() in _mapped_in(forked).values()) == (where == "here")


def test_a_system_without_a_mapping_waits_while_the_others_are_mapped_in_children(
    store: Store, forked: Path
) -> None:
    land(store, "camt053")
    land(store, "stripe")
    store.commit_page("acme", "things", [RawRecord("thing", "1", {"id": "1"})], None)
    counts = run_mapping(store)
    assert counts["acme"] == {"waiting": 1}
    assert list(counts) == ["acme", "camt053", "stripe"]
    assert set(_mapped_in(forked)) == {"camt053", "stripe"} and os.getpid() not in _mapped_in(forked).values()


def test_the_stage_stays_in_this_process_when_forking_does_not_pay_or_cannot_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.delenv("LTC_MAP_PROCESSES", raising=False)
    big = {"odoo": 50_000, "salesforce": 46_000, "tryton": 40_000}
    assert engine._map_workers(big) == 2  # as many as cores
    assert engine._map_workers({"odoo": 50_000}) == 0  # one system
    assert engine._map_workers({"odoo": 50_000, "stripe": 3_000, "camt053": 2_000}) == 0  # little beside the largest
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert engine._map_workers(big) == 0  # one core
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3, 4, 5})
    assert engine._map_workers(big) == 3  # at most one child per system
    monkeypatch.setenv("LTC_MAP_PROCESSES", "off")
    assert engine._map_workers(big) == 0  # an admin's switch
    monkeypatch.delenv("LTC_MAP_PROCESSES")
    monkeypatch.setattr(engine, "forks", lambda: False)
    assert engine._map_workers(big) == 0  # no fork (not Linux)
    monkeypatch.setattr(engine, "forks", lambda: True)
    monkeypatch.setattr(engine, "in_forked_child", lambda: True)
    assert engine._map_workers(big) == 0  # already a forked child (a daemonic one may have none of its own)


def test_systems_are_shared_among_the_children_by_pending_work_largest_first() -> None:
    jobs = [(name, engine.MappingSet(name, name, {})) for name in ("a", "b", "c", "d", "e", "f")]
    pending = {"a": 10, "b": 50, "c": 40, "d": 30, "e": 30, "f": 5}
    shares = [[name for name, _m in share] for share in engine._shares(jobs, pending, 2)]
    assert shares == [["b", "e", "f"], ["c", "d", "a"]]  # 85 and 80, each largest first
    assert [[n for n, _m in s] for s in engine._shares(jobs[:2], pending, 3)] == [["b"], ["a"]]  # no empty share


def test_a_child_maps_the_next_system_of_its_share_after_one_fails_and_a_dead_child_fails_its_share(
    store: Store, forked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for system in SYSTEMS:
        land(store, system)
    pending = {name: engine._pending_count(store, name) for name in SYSTEMS}
    jobs = [(name, engine.compile_for(name)) for name in SYSTEMS]
    shares = engine._shares(jobs, pending, 2)
    first, second = ([name for name, _m in share] for share in shares)
    mapped = engine._map_system

    def failing(store: Store, mset: engine.MappingSet, *args: Any) -> dict[str, int]:
        if mset.system == first[0]:
            raise RuntimeError(f"{mset.system} broke")
        if mset.system == second[0]:
            os._exit(3)  # the whole child dies: nothing of its share comes back
        return mapped(store, mset, *args)

    monkeypatch.setattr(engine, "_map_system", failing)
    outcomes = engine._map_forked(store, jobs, pending, 2, 3, None)
    assert list(outcomes) != [] and set(outcomes) == set(SYSTEMS)
    assert isinstance(outcomes[first[0]], RuntimeError)
    assert all(isinstance(outcomes[n], dict) and outcomes[n]["records"] > 0 for n in first[1:])
    assert all(isinstance(outcomes[n], RuntimeError) and "without an answer" in str(outcomes[n]) for n in second)


def test_a_forked_child_knows_it_is_one() -> None:
    assert not forking.in_forked_child()
    assert forking.Pending(forking.in_forked_child).result() is True


def test_a_lone_system_split_by_source_objects_gives_what_one_process_gives(
    two_stores: tuple[Store, Store], forked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    split, here = two_stores
    for store in (split, here):
        land(store, "tryton")
    monkeypatch.setattr(engine, "SPLIT_FROM", 0)
    if split.engine.dialect.name != "sqlite":  # PostgreSQL writers do not take turns: a system stays in one process
        assert engine._split_parts(split, engine.compile_for("tryton")) is None
        return
    parts = engine._split_parts(split, engine.compile_for("tryton"))
    assert parts is not None and len(parts) == 2 and not set(parts[0]) & set(parts[1])
    mset = engine.compile_for("tryton")
    entities = [set().union(*(mset.entities_of(o) for o in part)) for part in parts]
    assert not entities[0] & entities[1]  # the parts write disjoint canonical rows
    counts = run_mapping(split, batch_size=3)
    pids = {int(p.name.split(".")[1]) for p in forked.iterdir()}
    assert len(pids) == 2 and os.getpid() not in pids  # two children, one part each

    monkeypatch.setenv("LTC_MAP_PROCESSES", "off")
    assert engine._split_parts(here, mset) is None  # an admin's switch
    assert run_mapping(here, batch_size=3) == counts
    assert _snapshot(split) == _snapshot(here)
    with split.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.raw_pending)).scalar_one() == 0


def test_objects_that_share_an_entity_stay_in_one_part(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "SPLIT_FROM", 0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.delenv("LTC_MAP_PROCESSES", raising=False)
    land(store, "tryton")
    mset = engine.compile_for("tryton")
    monkeypatch.setattr(mset, "entities_of", lambda obj: {"same"})  # every object writes one entity
    assert engine._split_parts(store, mset) is None
    monkeypatch.setattr(engine, "SPLIT_FROM", 10**9)
    assert engine._split_parts(store, engine.compile_for("tryton")) is None  # too little to split


@pytest.mark.parametrize("failing", [None, "camt053", "part"])
def test_a_system_with_most_of_the_work_is_split_and_the_others_mapped_beside_its_parts(
    two_stores: tuple[Store, Store], forked: Path, monkeypatch: pytest.MonkeyPatch, failing: str | None
) -> None:
    """A system with more pending records than the others together (tryton, 14 against camt053's 5) is mapped in two
    parts by two children (7 records each), and the smaller system after one of them, the child with less work:
    7 + 5 against 7, where whole systems would leave tryton's 14 to one child. The rows are those of the stage in one
    process. A smaller system that fails, or a part, is raised once the rest is committed."""
    split, here = two_stores
    systems = ("tryton", "camt053")
    for store in (split, here):
        for system in systems:
            land(store, system)
    monkeypatch.setattr(engine, "SPLIT_FROM", 0)
    sqlite = split.engine.dialect.name == "sqlite"
    mapped = engine._map_system
    broken = forked.parent / "broken-part"  # the objects of the part that broke (written in its child)

    def breaking(store: Store, mset: engine.MappingSet, batch_size: int, run_id: str | None, run: Any) -> None:
        (forked / f"{mset.system}.{os.getpid()}.{len(list(forked.iterdir()))}").touch()
        # the part of tryton that holds party.party (or the whole of tryton, where it is not split)
        if failing == mset.system or (failing == "part" and mset.system == "tryton"
                                      and "party.party" in (run.objects or ["party.party"])):
            broken.write_text("\n".join(run.objects or []))
            raise RuntimeError(f"{mset.system} broke")
        mapped(store, mset, batch_size, run_id, run)

    monkeypatch.setattr(engine, "_map_system", breaking)
    if failing is None:
        counts = run_mapping(split, batch_size=3)
    else:
        with pytest.raises(RuntimeError, match="broke"):
            run_mapping(split, batch_size=3)
    where: dict[str, set[int]] = {}
    for p in forked.iterdir():
        where.setdefault(p.name.split(".")[0], set()).add(int(p.name.split(".")[1]))
    assert set(where) == set(systems) and os.getpid() not in set().union(*where.values())
    if sqlite:  # two children map the two parts of tryton; camt053 goes with one of them
        assert len(where["tryton"]) == 2 and where["camt053"] < where["tryton"]
    else:  # PostgreSQL writers do not take turns: no parts, whole systems shared among the children
        assert all(len(pids) == 1 for pids in where.values())

    monkeypatch.setenv("LTC_MAP_PROCESSES", "off")
    monkeypatch.setattr(engine, "_map_system", mapped)
    if failing is None:
        assert run_mapping(here, batch_size=3) == counts
        assert _snapshot(split) == _snapshot(here)
        return
    with split.engine.connect() as conn:
        left = dict(conn.execute(sa.select(tables.raw_pending.c.system, sa.func.count())
                                 .group_by(tables.raw_pending.c.system)).all())
    if failing == "camt053":  # tryton committed, camt053 left pending
        assert set(left) == {"camt053"}
    elif sqlite:  # the broken part's records left pending, the rest committed
        assert set(left) == {"tryton"}
        with split.engine.connect() as conn:
            objects = {r[0] for r in conn.execute(
                sa.select(tables.raw_record.c.object).join(tables.raw_pending,
                                                           tables.raw_pending.c.raw_id == tables.raw_record.c.id))}
        assert objects == set(broken.read_text().split()) and "party.party" in objects
        assert objects < {r.object for r in fixture_records("tryton")}  # the other part committed


def test_a_system_is_not_split_where_whole_systems_leave_less_to_the_busiest_child(
    sqlite_store: Store, forked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """salesforce (17 records, parts of 9 and 8) holds more than half the work beside tryton (14), but its parts with
    tryton dealt onto one of them leave 22 to one child, against 17 with whole systems: whole systems, one child each
    (SQLite: PostgreSQL never splits)."""
    store = sqlite_store
    for system in ("salesforce", "tryton"):
        land(store, system)
    monkeypatch.setattr(engine, "SPLIT_FROM", 0)
    mset = engine.compile_for("salesforce")
    assert [load for _objects, load in engine._split_parts(store, mset, sized=True) or []] == [9, 8]
    counts = run_mapping(store, batch_size=3)
    pids = _mapped_in(forked)
    assert set(pids) == {"salesforce", "tryton"} and len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    assert len(list(forked.iterdir())) == 2  # each system mapped once, whole
    assert counts["salesforce"]["records"] == 17 and counts["tryton"]["records"] == 14


def test_a_part_stops_once_the_process_holding_its_lock_has_ended(
    tmp_path: Path, forked: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child mapping a part of a split system checks, before each batch, that its parent (which holds the system's
    lock) is alive: once the parent is gone (here: ``getppid`` reports another process after the first batch, as it
    does when the parent was killed), the part stops with a reason and leaves the rest pending, instead of mapping on
    beside a new run that took the lock over. The other system in that child is mapped; the next run maps the rest,
    and the rows are those of one run in one process."""
    split, here = (Store.open(f"sqlite:///{tmp_path / name}") for name in ("split.db", "here.db"))  # parts: SQLite
    for store in (split, here):
        for system in ("tryton", "camt053"):
            land(store, system)
    monkeypatch.setattr(engine, "SPLIT_FROM", 0)
    real, calls = os.getppid, [0]

    def parent_gone_after_one_batch() -> int:
        calls[0] += 1  # per child: a forked copy of the count
        return real() if calls[0] <= 2 else 1  # the holder noted, one batch's check, then an orphan's parent

    monkeypatch.setattr(os, "getppid", parent_gone_after_one_batch)
    with pytest.raises(RuntimeError, match=r"mapping tryton: the process that holds its lock \(pid \d+\) has ended"):
        run_mapping(split, batch_size=3)
    with split.engine.connect() as conn:
        left = dict(conn.execute(sa.select(tables.raw_pending.c.system, sa.func.count())
                                 .group_by(tables.raw_pending.c.system)).all())
    assert set(left) == {"tryton"} and 0 < left["tryton"] < 14  # each part mapped its first batch, then stopped
    monkeypatch.setattr(os, "getppid", real)
    run_mapping(split, batch_size=3)
    monkeypatch.setenv("LTC_MAP_PROCESSES", "off")
    run_mapping(here, batch_size=3)
    assert _snapshot(split) == _snapshot(here)
    split.close()
    here.close()

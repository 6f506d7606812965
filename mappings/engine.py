"""The mapping stage: pending raw records -> canonical rows, in bulk.

:func:`run_mapping` is what the flows and ``ltc remap`` call (plain Python, no Prefect):

1. For each system with pending raw rows, the mapping of its *kind* (ltc.yaml ``sources.<name>.kind``;
   with no configuration the system name is the kind) is loaded, merged with the user's override
   (``sources.<name>.mapping``), validated and compiled once.
2. Pending rows are read in id order, in batches. Each batch is mapped in memory; records that fail
   go to quarantine (stage ``map``, with field and reason) and the rest go on.
3. One transaction per batch: bulk upserts per entity (with lineage), tombstones, quarantine, and
   the ``raw_pending`` rows of exactly the versions that were read deleted (a version landed
   meanwhile stays pending). On SQLite the rows are staged on the writer's connection before its turn
   (:meth:`canonical.store.Store.staged_upserts`), and the WAL is checkpointed after the turn, not in it.
4. With fork (Linux) and enough work, systems are mapped side by side in forked children, one per
   core, each mapping its share of the systems in turn (:func:`_map_forked`): a system's rows are keyed by its name, so systems
   never write the same rows; on SQLite the children take turns to write (the store's turn lock). A share (or the
   whole stage in one process) is one pipeline (:func:`_map_share`): its writer thread commits one system's last
   batch while the reader goes on to the next system. A large system that holds more than half the work (a lone one, or one
   beside smaller ones) is mapped by two children, each a part of its source objects that shares no entity with the
   other part (:func:`_split_parts`), the smaller systems after it (:func:`_map_split`), where that leaves the
   busiest child less work than whole systems would (:func:`_split_pays`).
   ``LTC_MAP_PROCESSES=off`` keeps the stage in this process; ``LTC_MAP_PROFILE`` prints where each
   system's time goes.

Tombstones: a raw row with ``deleted = true`` sets ``deleted_at`` on every canonical row it produced
(found through lineage, plus its deterministic id), children included. Children that disappear from
a new version of their parent (a Stripe invoice line removed) are tombstoned the same way.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple, overload

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from canonical import db, tables
from canonical.forking import Pending, cores, fork_lock, forks, in_forked_child, sendable
from canonical.interpreter import no_gc, short_switch_interval
from canonical.locks import stage_lock
from canonical.model import ENTITIES, canonical_id
from canonical.store import Rejected, Store, now, run_statements
from canonical.tables import lineage, quarantine, raw_pending, raw_record
from connectors.statements import DEFAULT_SOURCE as STATEMENT_SOURCE
from mappings.compiler import FieldFailure, ObjectPlan, compile_mapping
from mappings.spec import MappingError, Node, load_file, load_mapping, merge, shipped_path

BATCH = 20000  # records per read + map + write round (fewer commits; the writer overlaps the next read)
_CHUNK = 500


@dataclass
class MappingSet:
    """The compiled mapping of one connector instance."""

    system: str
    kind: str
    plans: dict[str, list[ObjectPlan]]
    _children: dict[str, frozenset[str]] = field(default_factory=dict, repr=False, compare=False)

    def child_entities(self, obj: str) -> frozenset[str]:
        """The entities of the child plans of ``obj`` (lines), at any depth."""
        known = self._children.get(obj)
        if known is None:
            known = self._children[obj] = frozenset(self._child_entities(obj))
        return known

    def _child_entities(self, obj: str) -> set[str]:
        out: set[str] = set()
        stack = list(self.plans.get(obj, []))
        while stack:
            plan = stack.pop()
            for child in plan.children:
                out.add(child.entity)
                stack.append(child)
        return out

    def sidecars(self) -> dict[str, dict[str, tuple[str, str | None]]]:
        """object -> {key: (sidecar object, id field or None)} for the objects mapped ``with:`` another's record."""
        return {obj: plans[0].sidecars for obj, plans in self.plans.items() if plans and plans[0].sidecars}

    def entities_of(self, obj: str) -> set[str]:
        return {p.entity for p in self.plans.get(obj, [])} | self.child_entities(obj)


def compile_for(system: str, kind: str | None = None, override: str | Path | None = None, *,
                decimal_separator: str | None = None, extra: Node | None = None,
                base: Node | None = None) -> MappingSet:
    """Load (shipped + override [+ ``extra``, an override in memory: the discovered identifier
    fields]), validate and compile the mapping for one connector instance. ``base`` replaces the
    shipped file (a mapping generated from configuration: Jiandaoyun's forms)."""
    kind = kind or system
    if base is not None:
        mapping = merge(base, load_file(override)) if override is not None else base
    else:
        mapping = load_mapping(kind, override)
    if extra is not None:
        mapping = merge(mapping, extra)
    return MappingSet(system, kind, compile_mapping(mapping, system, decimal_separator=decimal_separator))


@dataclass(slots=True)
class BatchResult:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    rejected: list[Rejected] = field(default_factory=list)
    ok_raw: list[tuple[str, str]] = field(default_factory=list)  # (object, source_id) mapped fine
    ignored: int = 0
    # records that do not map but say they are deleted (a Stripe `{"id", "deleted": true}` stub):
    # tombstones, not quarantine
    deleted_stubs: list[int | None] = field(default_factory=list)


# Canonical rows that reconciliation cannot use without this amount: quarantined (stage "validate").
_MUST_HAVE = {"payment": "amount", "invoice": "total"}
_MAP_STAGES = ("map", "validate")


def map_records(
    mset: MappingSet, records: Sequence[tuple[int | None, str, str, Any, datetime | None]]
) -> BatchResult:
    """Map ``(raw_id, object, source_id, payload, source_updated_at)`` records in memory."""
    # Mapping allocates many small dicts and no reference cycles: the cyclic collector would only
    # re-scan every live object (the whole batch) again and again.
    with no_gc():
        return _map_records(mset, records)


def _map_records(
    mset: MappingSet, records: Sequence[tuple[int | None, str, str, Any, datetime | None]]
) -> BatchResult:
    result = BatchResult()
    rows = result.rows
    runs_of = {obj: tuple(p.run for p in plans) for obj, plans in mset.plans.items()}
    checked = {obj: not _MUST_HAVE.keys().isdisjoint(mset.entities_of(obj)) for obj in mset.plans}
    ok_append = result.ok_raw.append
    ignored = 0
    for raw_id, obj, source_id, payload, updated in records:
        runs = runs_of.get(obj)
        if runs is None:
            ignored += 1
            continue
        out: list[tuple[str, dict[str, Any]]] = []
        try:
            for run in runs:
                run(payload, None, source_id, raw_id, updated, out)  # type: ignore[misc]
        except FieldFailure as exc:
            plans = mset.plans[obj]
            if any(p.deleted_if is not None and p.deleted_if(payload) for p in plans):
                result.deleted_stubs.append(raw_id)
                continue
            result.rejected.append(
                Rejected(obj, exc.reason, source_id=source_id, payload=payload, field=exc.field, stage="map")
            )
            continue
        except Exception as exc:  # a vendor shape the mapping did not foresee: quarantine, go on
            result.rejected.append(
                Rejected(obj, f"{type(exc).__name__}: {exc}", source_id=source_id, payload=payload, stage="map")
            )
            continue
        missing = _missing_amount(out) if checked[obj] else None
        if missing is not None:  # reconciliation cannot allocate cash to or from an amount it does not know
            result.rejected.append(Rejected(obj, f"a {missing[0]} without its {missing[1]} cannot be reconciled",
                                            source_id=source_id, payload=payload, field=missing[1], stage="validate"))
            continue
        for entity, row in out:
            rows[entity].append(row)
        ok_append((obj, source_id))
    result.ignored = ignored
    return result


def _missing_amount(out: list[tuple[str, dict[str, Any]]]) -> tuple[str, str] | None:
    """The first (entity, field) of ``out`` whose :data:`_MUST_HAVE` amount is missing (a live row)."""
    for entity, row in out:
        f = _MUST_HAVE.get(entity)
        if f is not None and row.get(f) is None and row.get("deleted_at") is None:
            return entity, f
    return None


# --- the stage -----------------------------------------------------------------------------------------

# Systems whose kind is known without configuration: bank statements land under ``bank`` by default
# (``ltc import-statement``), and camt.053 and MT940 entries share one shape and one mapping.
IMPLIED_KINDS = {STATEMENT_SOURCE: "camt053"}


def _source_kinds(config: Any) -> dict[str, tuple[str, str | None]]:
    """system name -> (kind, override mapping path) from ltc.yaml's sources."""
    kinds: dict[str, tuple[str, str | None]] = {name: (kind, None) for name, kind in IMPLIED_KINDS.items()}
    if config is not None:
        kinds.update({name: (src.kind, src.mapping) for name, src in config.sources.items()})
    return kinds


# Source kinds whose mapping is generated from the source's configuration, not shipped as a file.
GENERATED_KINDS = frozenset({"jiandaoyun"})


def generated_mapping(system: str, kind: str, src: Any, store: Store) -> Node | None:
    """The mapping generated from ``src`` (ltc.yaml's source) for the kinds that have no shipped
    file (Jiandaoyun: forms and widgets are configuration), else None."""
    if kind not in GENERATED_KINDS or src is None:
        return None
    from mappings.jiandaoyun import mapping_for_source

    return mapping_for_source(system, src, store)


def _pending_count(store: Store, system: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(
            sa.select(sa.func.count()).select_from(raw_pending).where(raw_pending.c.system == system)
        ).scalar_one())


def _pending_systems(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(raw_pending.c.system).distinct())
        return sorted(r[0] for r in rows)


def mark_pending(store: Store, system: str | None = None) -> int:
    """Make raw rows pending again (``ltc remap``): the next mapping run rebuilds their canonical rows."""
    c = raw_record.c
    rows = sa.select(c.system, c.id, c.content_hash)
    if system is not None:
        rows = rows.where(c.system == system)
    with store.engine.begin() as conn:
        return _set_pending(conn, rows)


def _set_pending(conn: Connection, rows: sa.Select[Any]) -> int:
    """Make the raw rows that ``rows`` selects (system, id, content hash) pending, in one statement."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(raw_pending)
    # ``WHERE true``: SQLite's parser needs a WHERE to tell an upsert's ON from a join's
    stmt = insert.from_select(["system", "raw_id", "content_hash"], rows.where(sa.true()))
    stmt = stmt.on_conflict_do_update(index_elements=["system", "raw_id"],
                                      set_={"content_hash": stmt.excluded.content_hash})
    return int(conn.execute(stmt).rowcount or 0)


def run_mapping(
    store: Store,
    system: str | None = None,
    kind: str | None = None,
    *,
    config: Any = None,
    override: str | Path | None = None,
    batch_size: int = BATCH,
    run_id: str | None = None,
    extra: Mapping[str, Node] | None = None,
    only: Collection[str] | None = None,
    skip: Collection[str] = (),
    turn: Any = None,
) -> dict[str, dict[str, int]]:
    """Map every pending raw row (of ``system``, or of all systems) into canonical rows.

    ``config`` is the :class:`ltc.app.config.Config` of ltc.yaml (sources name -> kind and override
    path), which the application layer loads and passes; without one a system's name is its kind; ``kind`` and
    ``override`` force them for a single ``system``. Returns per-system counts: ``records``, ``mapped``,
    ``quarantined``, ``tombstoned``, ``ignored`` (objects without a mapping) and rows per entity.

    Without ``system``, a system whose kind has no mapping (not in ltc.yaml, and its name is not a
    shipped kind) is left pending, counted as ``waiting`` — its raw rows stay, nothing is lost — so
    one unknown source does not stop the others; naming it in ``system`` raises the reason instead.
    ``extra``: system -> an override in memory merged last (:mod:`mappings.discover`'s fields).
    Without ``system``: ``only`` maps just those of the pending systems, and ``skip`` leaves those out (systems
    that :func:`map_ahead` maps). ``turn``: the SQLite writers' lock to share with forked children, when other
    processes (a :func:`map_ahead` child) write meanwhile.

    Systems are mapped side by side in forked children where that pays (:func:`_map_workers`). Either
    way every system is mapped; a system that fails (its mapping does not load, or its stage raises)
    is raised once the others' work is committed: the first in ``systems`` order.
    """
    sources = _source_kinds(config)
    systems = [system] if system is not None else [
        name for name in _pending_systems(store) if (only is None or name in only) and name not in skip]
    outcomes: dict[str, dict[str, int] | BaseException] = {}
    jobs: list[tuple[str, MappingSet]] = []
    for name in systems:
        src_kind, src_override = sources.get(name, (name, None))
        use_kind, use_override = kind or src_kind, override or src_override
        src = config.sources.get(name) if config is not None else None
        try:
            base = generated_mapping(name, use_kind, src, store)
            if system is None and base is None and use_override is None and not shipped_path(use_kind).exists():
                outcomes[name] = {"waiting": _pending_count(store, name)}
                continue
            mset = compile_for(name, use_kind, use_override,
                               decimal_separator=getattr(src, "decimal_separator", None),
                               extra=(extra or {}).get(name), base=base)
        except Exception as exc:  # a mapping that does not load: raised below, after the other systems
            outcomes[name] = exc
            continue
        jobs.append((name, mset))
    pending = {name: _pending_count(store, name) for name, _mset in jobs} if len(jobs) > 1 else {}
    workers = _map_workers(pending)
    lead = _lead(jobs, pending) if system is None else None
    parts = _split_parts(store, lead[1], sized=True) if lead is not None else None
    others = [job for job in jobs if lead is None or job[0] != lead[0]]
    if lead is not None and parts is not None and _split_pays(lead, parts, others, pending, workers):
        # one system holds more than half the work: split by its source objects, the others shared onto the parts
        name, mset = lead
        try:
            outcomes.update(_map_split(store, mset, parts, batch_size, run_id, turn, others, pending))
        except Exception as exc:  # as below: raised once every other system's outcome is in
            outcomes.update((n, exc) for n, _mset in jobs if n not in outcomes)
        jobs = []
    if jobs and workers > 1:
        outcomes.update(_map_forked(store, jobs, pending, workers, batch_size, run_id, turn))
    elif jobs:  # as in children: a system that fails does not stop the others
        outcomes.update(_map_share(store, jobs, batch_size, run_id, pending))
    counts: dict[str, dict[str, int]] = {}
    for name in systems:  # the first failure in systems order, once every other system's work is committed
        outcome = outcomes[name]
        if isinstance(outcome, BaseException):
            raise outcome
        counts[name] = outcome
    return counts


MAP_PROCESSES = True  # with fork (Linux): systems mapped side by side in forked children, one per core
FORK_FROM = 10_000  # pending records beyond the largest system's: less is not worth a fork


def _map_workers(pending: Mapping[str, int]) -> int:
    """How many forked children map systems side by side: as many as this process may use cores, at most one
    per system, or 0 (all in this process) for one system, little work beside the largest system's, where fork
    is not available, in a process that is itself a forked child, or with ``LTC_MAP_PROCESSES=off``."""
    if not map_processes() or len(pending) < 2 or sum(pending.values()) - max(pending.values()) < FORK_FROM:
        return 0
    n_cores = cores()
    return min(n_cores, len(pending)) if n_cores > 1 else 0


def map_processes() -> bool:
    """Whether mapping may run in forked children at all: fork is available, this process is not itself a
    forked child, and neither ``MAP_PROCESSES`` nor ``LTC_MAP_PROCESSES=off`` says no (the pipeline asks too,
    before it maps a source while the others sync)."""
    env = os.environ.get("LTC_MAP_PROCESSES", "").strip().lower()
    return MAP_PROCESSES and env not in ("0", "off", "false", "no") and forks() and not in_forked_child()


def _map_forked(store: Store, jobs: list[tuple[str, MappingSet]], pending: Mapping[str, int], workers: int,
                batch_size: int, run_id: str | None, turn: Any = None) -> dict[str, dict[str, int] | BaseException]:
    """The systems shared among ``workers`` forked children (:func:`_shares`), each child mapping its share
    one system after the other through one pipeline (:func:`_map_share`: locks, reads, mapping and writes; canonical
    rows are keyed by their source system, so systems mapped side by side write disjoint rows). One child
    per core, not per system: each child grows one heap, not one per system. On SQLite the children take
    turns to write through one lock they share (the store's turn lock, made a process lock). Every system
    runs to its end; a failure is returned as its exception."""
    if turn is None and store.engine.dialect.name == "sqlite":
        turn = fork_lock()
    shares = _shares(jobs, pending, workers)
    running = [(share, Pending(partial(_map_child, store, share, pending, batch_size, run_id, turn),
                               name=f"ltc-map-{share[0][0]}")) for share in shares]
    outcomes: dict[str, dict[str, int] | BaseException] = {}
    try:
        for share, call in running:
            try:
                outcomes.update(call.result())
            except BaseException as exc:  # the child died (or could not send its answer): its whole share
                outcomes.update((name, exc) for name, _mset in share if name not in outcomes)
    finally:
        for _share, call in running:  # interrupted here (KeyboardInterrupt): the children are stopped
            call.cancel()
    return outcomes


def _shares(jobs: Sequence[tuple[str, MappingSet]], pending: Mapping[str, int], workers: int,
            loads: Sequence[int] | None = None) -> list[list[tuple[str, MappingSet]]]:
    """``jobs`` in at most ``workers`` shares of about the same pending work: the largest system first, each
    onto the share with the least so far (the first among equals); a share maps its systems largest first.
    ``loads``: the work each share has already (:func:`_map_split`'s parts), every share kept, empty or not."""
    shares: list[list[tuple[str, MappingSet]]] = [[] for _ in range(workers)]
    sums = list(loads) if loads is not None else [0] * workers
    for job in sorted(jobs, key=lambda job: -pending.get(job[0], 0)):  # stable: systems order among equals
        least = sums.index(min(sums))
        shares[least].append(job)
        sums[least] += pending.get(job[0], 0)
    return shares if loads is not None else [share for share in shares if share]


SPLIT_FROM = 50_000  # pending records of a system from which its objects may be mapped in two children


def _lead(jobs: Sequence[tuple[str, MappingSet]], pending: Mapping[str, int]) -> tuple[str, MappingSet] | None:
    """The system to split by source objects (:func:`_split_parts`): a lone one, or one with more pending records
    than all the others together (whole systems shared among children would leave it alone on one core, the stage's
    wall clock its own)."""
    if len(jobs) == 1:
        return jobs[0]
    if not jobs:
        return None
    total = sum(pending.get(name, 0) for name, _mset in jobs)
    name, mset = max(jobs, key=lambda job: pending.get(job[0], 0))
    return (name, mset) if 2 * pending.get(name, 0) > total else None


def _split_pays(lead: tuple[str, MappingSet], parts: Sequence[tuple[list[str], int]],
                others: Sequence[tuple[str, MappingSet]], pending: Mapping[str, int], workers: int) -> bool:
    """Whether the ``lead`` system's parts, with the ``others`` dealt onto them, leave less work to the busiest child
    than whole systems would (shared among ``workers`` children, or all in this process): a smaller system nearly
    as large as the split one, put beside a part, can make the split the slower way."""
    def busiest(shares: Sequence[Sequence[tuple[str, MappingSet]]], loads: Sequence[int]) -> int:
        return max(load + sum(pending.get(name, 0) for name, _mset in share) for load, share in zip(loads, shares,
                                                                                                    strict=True))

    loads = [load for _objects, load in parts]
    split = busiest(_shares(others, pending, len(parts), loads), loads)
    if workers > 1:  # whole systems shared among the children as _map_forked would (several pending: all counted)
        return split < busiest(_shares([lead, *others], pending, workers, [0] * workers), [0] * workers)
    return split < sum(loads) + sum(pending.get(name, 0) for name, _mset in others)


@overload
def _split_parts(store: Store, mset: MappingSet) -> list[list[str]] | None: ...


@overload
def _split_parts(store: Store, mset: MappingSet, *, sized: Literal[True]) -> list[tuple[list[str], int]] | None: ...


def _split_parts(store: Store, mset: MappingSet, *, sized: bool = False) -> Any:
    """A system's pending source objects in two parts of about the same work for two forked children (``sized``: with
    each part's pending records), or None (not worth it, or not possible: PostgreSQL, no fork, in a forked child,
    one core, ``LTC_MAP_PROCESSES=off``). Objects that map to a common entity stay in one part: the parts then write
    disjoint canonical rows (an entity's ids come from its source system and record, so two objects of different
    entities never meet), and each part keeps its records' raw-id order, so that nothing depends on how the two
    interleave."""
    if not map_processes() or store.engine.dialect.name != "sqlite" or cores() < 2:
        return None
    with store.engine.connect() as conn:
        sizes: dict[str, int] = dict(conn.exec_driver_sql(
            "SELECT r.object, count(*) FROM raw_pending p JOIN raw_record r ON r.id = p.raw_id "
            "WHERE p.system = ? GROUP BY r.object", (mset.system,)).fetchall())
    if sum(sizes.values()) < SPLIT_FROM or len(sizes) < 2:
        return None
    groups: list[tuple[set[str], set[str]]] = []  # (objects, their entities and sidecar objects), joined when they meet
    for obj in sorted(sizes):
        # an object mapped with sidecar records stays with them too: a sidecar may be an object mapped itself
        touches = mset.entities_of(obj) | {side for side, _id in mset.sidecars().get(obj, {}).values()} | {obj}
        met = [g for g in groups if g[1] & touches]
        for g in met:
            groups.remove(g)
        groups.append(({obj, *(o for g in met for o in g[0])}, touches.union(*(g[1] for g in met))))
    if len(groups) < 2:
        return None
    parts: list[list[str]] = [[], []]
    loads = [0, 0]
    for objs, _touch in sorted(groups, key=lambda g: (-sum(sizes[o] for o in g[0]), sorted(g[0]))):
        least = loads.index(min(loads))
        parts[least] += sorted(objs)
        loads[least] += sum(sizes[o] for o in objs)
    if sized:
        return [(sorted(p), load) for p, load in zip(parts, loads, strict=True)]
    return [sorted(p) for p in parts]


def _map_split(store: Store, mset: MappingSet, parts: Sequence[tuple[list[str], int]], batch_size: int,
               run_id: str | None, turn: Any, others: Sequence[tuple[str, MappingSet]] = (),
               pending: Mapping[str, int] | None = None) -> dict[str, dict[str, int] | BaseException]:
    """One system mapped by two forked children, each the pending records of its part of the source objects
    (:func:`_split_parts`, with their pending records), under this process's hold of the system's lock; their counts
    added up. ``others``: systems mapped whole by the same children after their part, each onto the child with the
    least work so far (``pending``: their records), under their own locks. The outcome of every system: its counts,
    or its exception (the split system's: the first part's that failed; a child that died, every system of its)."""
    with stage_lock(store.engine, f"map:{mset.system}"):
        sidecars = mset.sidecars()
        if sidecars:  # once, before the parts read what is pending
            _mark_sidecar_changes(store, mset.system, sidecars)
        if turn is None:
            turn = fork_lock()
        shares = _shares(others, pending or {}, len(parts), [load for _objects, load in parts])
        # each child's pending counts: its part's records for the split system (its last batch sized by them)
        calls = [Pending(partial(_map_part, store, mset, objects, share, batch_size, run_id, turn,
                                 {**(pending or {}), mset.system: load}),
                         name=f"ltc-map-{mset.system}-{i}") for i, ((objects, load), share) in
                 enumerate(zip(parts, shares, strict=True))]
        counts: dict[str, int] = defaultdict(int)
        outcomes: dict[str, dict[str, int] | BaseException] = {}
        try:
            for call, share in zip(calls, shares, strict=True):
                try:
                    got = call.result()
                except Exception as exc:  # the child died (or could not answer): its part and its share
                    got = {name: exc for name in (mset.system, *(n for n, _mset in share))}
                for name, outcome in got.items():
                    if name != mset.system:
                        outcomes[name] = outcome
                    elif isinstance(outcome, BaseException):
                        outcomes.setdefault(name, outcome)
                    elif not isinstance(outcomes.get(name), BaseException):
                        for key, value in outcome.items():
                            counts[key] += value
        finally:
            for call in calls:  # interrupted here (KeyboardInterrupt): the children are stopped
                call.cancel()
    outcomes.setdefault(mset.system, dict(counts))
    return outcomes


def _map_part(store: Store, mset: MappingSet, objects: Sequence[str], others: Sequence[tuple[str, MappingSet]],
              batch_size: int, run_id: str | None, turn: Any,
              pending: Mapping[str, int] | None = None) -> dict[str, dict[str, int] | BaseException]:
    """A forked child of :func:`_map_split`: the pending records of ``objects`` (under the lock its parent holds),
    then the ``others`` whole (each under its own lock), through one pipeline of its own; each system's outcome."""
    with store.forked_child(turn):
        outcomes = _map_share(store, [(mset.system, mset), *others], batch_size, run_id, pending,
                              parts={mset.system: objects})
    return {name: sendable(out) if isinstance(out, BaseException) else out for name, out in outcomes.items()}


def _map_child(store: Store, share: Sequence[tuple[str, MappingSet]], pending: Mapping[str, int], batch_size: int,
               run_id: str | None,
               turn: Any) -> dict[str, dict[str, int] | BaseException]:
    """A forked child: its share of the systems, one after the other, on new connections (the parent's stay
    untouched). A system that fails does not stop the next; its exception is sent back as its outcome."""
    with store.forked_child(turn):
        outcomes = _map_share(store, share, batch_size, run_id, pending)
    return {name: sendable(out) if isinstance(out, BaseException) else out for name, out in outcomes.items()}


def map_ahead(store: Store, systems: Collection[str], *, config: Any = None, extra: Mapping[str, Node] | None = None,
              turn: Any = None) -> Pending[dict[str, dict[str, int]]]:
    """:func:`run_mapping` of the pending records of ``systems`` (only) in a forked child, started now and
    answered by the :class:`~canonical.forking.Pending` returned: the pipeline maps a source whose sync has
    ended while others still sync. ``turn``: the SQLite writers' lock the child shares with the processes
    that write meanwhile (the sync's children, and this process, which must take it too). Where fork is not
    available, the mapping runs here when its result is asked for."""
    chosen = frozenset(systems)
    return Pending(partial(_map_ahead_child, store, chosen, config, extra, turn),
                   name=f"ltc-map-ahead-{'-'.join(sorted(chosen))}")


def _map_ahead_child(store: Store, systems: frozenset[str], config: Any, extra: Mapping[str, Node] | None,
                     turn: Any) -> dict[str, dict[str, int]]:
    # not forked (no fork here): this process's own store as it is
    with store.forked_child(turn) if in_forked_child() else nullcontext():
        return run_mapping(store, config=config, extra=extra, only=systems)


class _Raw(NamedTuple):
    """A pending raw row that tombstones (deleted, or a deleted stub): what :func:`_tombstone` reads."""

    id: int
    object: str
    source_id: str
    source_updated_at: datetime | None
    fetched_at: datetime | None


_PENDING_SQL = {
    # along raw_pending's key (system, raw_id): in id order, no sort, no other rows; the content hash
    # is raw_pending's, the version that made the row pending (what clearing it deletes)
    "sqlite": "SELECT r.id, r.object, r.source_id, r.payload, r.source_updated_at, r.deleted, p.content_hash, "
              "r.fetched_at FROM raw_pending p JOIN raw_record r ON r.id = p.raw_id "
              "WHERE p.system = ? AND p.raw_id > ? ORDER BY p.raw_id LIMIT ?",
    # PostgreSQL: the batch's keys first (a join under the LIMIT may be planned as a sort of the wide rows)
    "postgresql": "SELECT r.id, r.object, r.source_id, r.payload::text, r.source_updated_at, r.deleted, p.content_hash, "
                  "r.fetched_at FROM (SELECT raw_id, content_hash FROM raw_pending WHERE system = %s AND raw_id > %s "
                  "ORDER BY raw_id LIMIT %s) AS p JOIN raw_record r ON r.id = p.raw_id ORDER BY p.raw_id",
}


def _instant(value: Any) -> datetime | None:
    """A stored instant: SQLite's naive UTC text, or PostgreSQL's aware datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _instants(values: Sequence[Any]) -> list[datetime | None]:
    """:func:`_instant` of a column, each distinct value parsed once (a page lands with one ``fetched_at``)."""
    parsed = {v: _instant(v) for v in dict.fromkeys(values)}
    return list(map(parsed.__getitem__, values))


@dataclass(slots=True)
class _Pending:
    """A batch of pending raw rows, by column: ``live`` as :func:`map_records` takes them, ``dead``
    (``deleted = true``) as :func:`_tombstone` takes them."""

    ids: Sequence[int]
    hashes: Sequence[str]
    live: list[tuple[int, str, str, Any, datetime | None]]
    dead: list[_Raw]
    fetched: Sequence[Any]  # as stored: parsed only for the rows that tombstone

    def __len__(self) -> int:
        return len(self.ids)

    def raws(self, raw_ids: set[int | None]) -> list[_Raw]:
        """The live rows of these ids, as tombstones (Stripe's deleted stubs)."""
        at = {rid: i for i, rid in enumerate(self.ids)}
        out = []
        for rid, obj, sid, _payload, updated in self.live:
            if rid in raw_ids:
                out.append(_Raw(rid, obj, sid, updated, _instant(self.fetched[at[rid]])))
        return out


def _read_pending(store: Store, system: str, after: int, limit: int,
                  objects: Sequence[str] | None = None) -> _Pending:
    """A batch of pending raw rows at the driver level, by column: the JSON parsed by orjson in one
    ``map``, each distinct timestamp once, not through SQLAlchemy's per-value result processing.
    ``objects``: of these source objects only (SQLite; :func:`_map_split`)."""
    with store.engine.connect() as conn:
        if objects is None:
            rows = conn.exec_driver_sql(_PENDING_SQL[conn.dialect.name], (system, after, limit)).fetchall()
        else:
            sql = _PENDING_SQL["sqlite"].replace(
                " ORDER BY", f" AND r.object IN ({', '.join('?' for _ in objects)}) ORDER BY")
            rows = conn.exec_driver_sql(sql, (system, after, *objects, limit)).fetchall()
    if not rows:
        return _Pending((), (), [], [], ())
    ids, objects, sids, texts, updated, deleted, hashes, fetched = zip(*rows, strict=True)
    payloads = list(map(orjson.loads, texts))
    stamps = _instants(updated)
    if not any(deleted):
        return _Pending(ids, hashes, list(zip(ids, objects, sids, payloads, stamps, strict=True)), [], fetched)
    live, dead = [], []
    for i, rid in enumerate(ids):
        if deleted[i]:
            dead.append(_Raw(rid, objects[i], sids[i], stamps[i], _instant(fetched[i])))
        else:
            live.append((rid, objects[i], sids[i], payloads[i], stamps[i]))
    return _Pending(ids, hashes, live, dead, fetched)


# The writer thread's statements run without the GIL, and it takes the GIL back after each one; while
# the mapping thread runs Python it gets it only when the interpreter asks that thread to switch (every
# 5 ms by default), which would leave the writer idle most of the time. A shorter interval during the
# stage lets the two overlap (one switch per statement of a few hundred rows: no measurable cost). On
# SQLite only: on PostgreSQL the writer sends a few statements per batch and waits on the server.
_SWITCH_INTERVAL = 0.0005


class _Clocks:
    """Where one system's stage goes (``LTC_MAP_PROFILE``, printed on stderr): wall and thread CPU seconds per
    step, of the reading-and-mapping thread (read, map, hand-over: waiting for the writer) and of the writer
    (idle: waiting for a batch, params: the upserts prepared, on SQLite their rows staged, turn: waiting for the
    write lock, write: the transaction, checkpoint: SQLite's WAL copied into the database after it)."""

    def __init__(self, system: str) -> None:
        self.system = system
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.start = time.perf_counter()

    def step(self, name: str, wall0: float, cpu0: float) -> tuple[float, float]:
        wall1, cpu1 = time.perf_counter(), time.thread_time()
        self.wall[name] += wall1 - wall0
        self.cpu[name] += cpu1 - cpu0
        return wall1, cpu1

    def report(self, records: int) -> None:
        steps = " ".join(f"{k}={self.wall[k]:.2f}/{self.cpu[k]:.2f}" for k in self.wall)
        print(f"map-profile {self.system} pid={os.getpid()} records={records} "
              f"wall={time.perf_counter() - self.start:.2f} {steps} (wall/cpu s)", file=sys.stderr, flush=True)


# A share's first batches are small and grow (the writer, slower per record, starts on the first while the reader
# reads and maps a larger next one), up to the batch size. Its last one too (where the pending count says which
# it is): the reader, done, waits only for a small write.
FIRST_BATCH = LAST_BATCH = 2000
_RAMP = 1.5


class _Run:
    """One system's mapping in a share's pipeline: its lock (held from before its first read until its last batch
    is committed), its counts (added by the writer as batches commit), and its failure (the reader's, else the
    writer's first)."""

    def __init__(self, mset: MappingSet, profile: bool, objects: Sequence[str] | None = None) -> None:
        self.mset = mset
        self.objects = objects  # only these source objects' records (a part of the system, :func:`_map_split`)
        # a part's: the process that holds the system's lock for it (its parent, :func:`_map_split`)
        self.holder: int | None = None
        self.lock = ExitStack()
        self.counts: dict[str, int] = defaultdict(int)
        self.clocks = _Clocks(mset.system if objects is None else f"{mset.system}[{','.join(objects)}]") \
            if profile else None
        self.error: BaseException | None = None  # the reader's
        self.failed: list[BaseException] = []  # the writer's (the reader stops at its next batch)
        self.pipeline: _Pipeline | None = None
        self.last: int | None = None  # the share's last system: its pending count (when it was counted)

    def outcome(self) -> dict[str, int] | BaseException:
        if self.error is not None:
            return self.error
        return self.failed[0] if self.failed else dict(self.counts)


_Batch = tuple[_Pending, list[tuple[Any, ...]], list[_Raw], BatchResult]


class _Pipeline:
    """A share's writer thread, with its own connection (SQLite's and psycopg's statement work runs without the
    GIL, the mapping is Python): it writes batch k while the reader reads and maps batch k+1, across the share's
    systems, so the pipeline fills and drains once per share, not once per system. The writer keeps one
    connection for the whole share (a new one only after a failed batch): SQLite prepares each staging and
    copy statement once per connection, and a pooled connection per batch made every connection of the pool
    prepare them all again. Items are
    ``(run, batch)``, ``(run, None)``: that system's batches were all handed over (its lock is released once they
    are committed), and ``None``: the share is done."""

    def __init__(self, store: Store, run_id: str | None, batch_size: int) -> None:
        self.store = store
        self.run_id = run_id
        self.batch_size = batch_size
        self.items: queue.Queue[tuple[_Run, _Batch | None] | None] = queue.Queue(maxsize=1)
        self.ramp: int | None = FIRST_BATCH  # the next batch's size while the pipeline fills, then None
        self.conn: Connection | None = None  # the writer's, opened at its first batch, closed when it ends
        self.thread = threading.Thread(target=self._write, name="map-writer", daemon=True)

    def __enter__(self) -> _Pipeline:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.items.put(None)
        self.thread.join()

    def put(self, run: _Run, batch: _Batch | None) -> None:
        if batch is not None and self.ramp is not None:
            self.ramp = max(self.ramp + 1, int(self.ramp * _RAMP))
            if self.ramp >= self.batch_size:
                self.ramp = None
        self.items.put((run, batch))

    def _write(self) -> None:
        try:
            self._write_all()
        finally:
            self._drop_connection()

    def _drop_connection(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with suppress(Exception):  # a lost connection: the batch's error is the one that counts
                conn.close()

    def _write_one(self, run: _Run, batch: _Batch) -> dict[str, int]:
        """One batch on the writer's connection (opened again after a failed batch, so that a retry after a lost
        connection gets a new one)."""
        if self.conn is None:
            self.conn = self.store.engine.connect()
        try:
            return _write_batch(self.store, run.mset, self.run_id, *batch, conn=self.conn, clocks=run.clocks)
        except BaseException:
            self._drop_connection()
            raise

    def _write_all(self) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        while (item := self.items.get()) is not None:
            run, batch = item
            if run.clocks is not None:
                wall, cpu = run.clocks.step("idle", wall, cpu)
            if batch is None:
                self._finish(run)
            elif not run.failed:  # after a failure: drain (the reader stops at its next batch)
                try:
                    # one batch is one transaction: if the database connection is lost it is written again
                    # (what it writes is idempotent, and pending flags say what is left)
                    batch_counts = db.reconnecting(partial(self._write_one, run, batch),
                                                   what=f"mapping {run.mset.system}")
                except BaseException as exc:  # the system's outcome
                    run.failed.append(exc)
                else:
                    for key, value in batch_counts.items():
                        run.counts[key] += value
            wall, cpu = time.perf_counter(), time.thread_time()

    @staticmethod
    def _finish(run: _Run) -> None:
        """Every batch of ``run`` is committed (or failed): its lock goes, the next mapping of it may start."""
        try:
            run.lock.close()
        except BaseException as exc:
            run.failed.append(exc)
        if run.clocks is not None and run.error is None and not run.failed:
            run.clocks.report(run.counts.get("records", 0))


def _map_share(store: Store, jobs: Sequence[tuple[str, MappingSet]], batch_size: int, run_id: str | None,
               pending: Mapping[str, int] | None = None,
               parts: Mapping[str, Sequence[str]] | None = None) -> dict[str, dict[str, int] | BaseException]:
    """Map ``jobs`` one system after the other through one pipeline (:class:`_Pipeline`): the reader goes on to
    the next system while the writer commits the last batch of the one before. Each system is mapped under its
    lock (one mapping of a system at a time: a second waits, two would race on pending flags); a system that
    fails is returned as its exception and the next is mapped all the same. ``parts``: system -> the source objects
    of its part (:func:`_map_part`) for a system mapped in parts, whose lock the parent holds and whose sidecar
    records it marked."""
    runs: list[_Run] = []
    profile = "LTC_MAP_PROFILE" in os.environ
    start, cpu = time.perf_counter(), time.process_time()
    # SQLite: the writer's many statements each take the GIL back (PostgreSQL's few wait on the server)
    short_switches = short_switch_interval(_SWITCH_INTERVAL) if store.engine.dialect.name == "sqlite" else nullcontext()
    with no_gc(), short_switches, _Pipeline(store, run_id, batch_size) as pipeline:
        for _name, mset in jobs:
            objects = (parts or {}).get(mset.system)
            run = _Run(mset, profile, objects)
            run.pipeline = pipeline
            if objects is not None:
                run.holder = os.getppid()
            if mset is jobs[-1][1] and pending:
                run.last = pending.get(mset.system)
            runs.append(run)
            try:
                if objects is None:
                    run.lock.enter_context(stage_lock(store.engine, f"map:{mset.system}"))
                _map_system(store, mset, batch_size, run_id, run)
            except Exception as exc:  # the other systems are mapped all the same
                run.error = exc
            finally:  # its lock is released once the writer has committed what it was handed
                pipeline.put(run, None)
    if profile:  # the share's whole: the reader's waits for the writer and the writer's for the reader
        waits = " ".join(f"{k}={sum(r.clocks.wall[k] for r in runs if r.clocks):.2f}" for k in ("handover", "idle"))
        print(f"map-profile share pid={os.getpid()} systems={len(runs)} wall={time.perf_counter() - start:.2f} "
              f"cpu={time.process_time() - cpu:.2f} {waits} (s)", file=sys.stderr, flush=True)
    return {run.mset.system: run.outcome() for run in runs}


def _map_system(store: Store, mset: MappingSet, batch_size: int, run_id: str | None, run: _Run) -> None:
    """Read and map one system's pending rows in batches, each handed to the share's writer (one transaction per
    batch), under the system's lock (:func:`_map_share`). Stops at a batch the writer failed to write."""
    pipeline = run.pipeline
    assert pipeline is not None
    clocks = run.clocks
    wall, cpu = time.perf_counter(), time.thread_time()
    sidecars = mset.sidecars()
    if sidecars and run.objects is None:
        _mark_sidecar_changes(store, mset.system, sidecars)
    last_id, read = 0, 0
    while not run.failed:
        if run.holder is not None and os.getppid() != run.holder:
            # the parent died (killed): the lock it held for this part is gone, and a new run may take it over and map
            # the same records; what this part handed over is written, the rest is left to that run
            raise RuntimeError(f"mapping {mset.system}: the process that holds its lock (pid {run.holder}) has ended; "
                               "the records not yet mapped stay pending for the next run")
        limit = min(pipeline.ramp or batch_size, batch_size)
        if run.last is not None and LAST_BATCH < run.last - read <= batch_size:  # all but a small last batch
            limit = min(limit, run.last - read - LAST_BATCH)
        batch = db.reconnecting(partial(_read_pending, store, mset.system, last_id, limit, run.objects),
                                what=f"mapping {mset.system}")
        if not batch:
            break
        last_id, read = batch.ids[-1], read + len(batch)
        live, dead = batch.live, batch.dead
        if sidecars:
            live = _with_sidecars(store, mset.system, sidecars, live)
        if clocks is not None:
            wall, cpu = clocks.step("read", wall, cpu)
        result = map_records(mset, live)
        if result.deleted_stubs:
            dead = dead + batch.raws(set(result.deleted_stubs))
        if clocks is not None:
            wall, cpu = clocks.step("map", wall, cpu)
        pipeline.put(run, (batch, live, dead, result))
        if clocks is not None:
            wall, cpu = clocks.step("handover", wall, cpu)


def _write_batch(store: Store, mset: MappingSet, run_id: str | None, batch: _Pending,
                 live: list[tuple[Any, ...]], dead: list[_Raw], result: BatchResult, *, conn: Connection,
                 clocks: _Clocks | None = None) -> dict[str, int]:
    """One batch's transaction on ``conn`` (outside any transaction; in the store's writers' turn: other systems'
    children write the same SQLite file): canonical upserts with lineage, tombstones, quarantine, pending
    cleared. Returns its counts (only once it is committed, so a retried batch is counted once)."""
    counts: dict[str, int] = defaultdict(int)
    wall, cpu = time.perf_counter(), time.thread_time()
    # the upserts are prepared before the turn (on SQLite, their rows staged): other writers wait only for
    # the statements that write the store
    upserts = store.staged_upserts(conn, result.rows)
    if clocks is not None:
        wall, cpu = clocks.step("params", wall, cpu)
    # SQLite: no WAL checkpoint at the commit, in the turn; one after it, while the next writer writes
    with db.no_autocheckpoint(conn), store.write_turn(), conn.begin():
        if clocks is not None:
            wall, cpu = clocks.step("turn", wall, cpu)
        run_statements(conn, upserts)
        _tombstone_dropped_children(conn, mset, live, result)
        counts["tombstoned"] += _tombstone(conn, mset, dead)
        if result.rejected or _has_open_quarantine(conn, mset.system):
            seen = set(result.ok_raw) | {(r.object, r.source_id) for r in dead}
            seen |= {(r.object, r.source_id or "") for r in result.rejected}
            _resolve_quarantine(conn, mset.system, seen)
        store.add_quarantine(conn, mset.system, result.rejected, run_id)
        _clear_pending(conn, mset.system, batch.ids, batch.hashes)
    if clocks is not None:
        wall, cpu = clocks.step("write", wall, cpu)
    db.passive_checkpoint(conn)
    if clocks is not None:
        clocks.step("checkpoint", wall, cpu)
    for entity, rows in result.rows.items():
        counts[entity] += len(rows)
    counts["records"] += len(batch)
    counts["mapped"] += len(result.ok_raw)
    counts["quarantined"] += len(result.rejected)
    counts["ignored"] += result.ignored
    return counts


Sidecars = dict[str, dict[str, tuple[str, str | None]]]


def _mark_sidecar_changes(store: Store, system: str, sidecars: Sidecars) -> None:
    """A pending sidecar record (a changed association sweep, a balance transaction landed after its
    charge) makes the records that read it pending again."""
    c, p = raw_record.c, raw_pending.c
    side_rec = raw_record.alias("side")
    with store.write_turn(), store.engine.begin() as conn:
        for obj, sides in sidecars.items():
            for side, id_field in set(sides.values()):
                pending_side = (sa.select(side_rec.c.source_id)
                                .join(raw_pending, sa.and_(p.system == side_rec.c.system, p.raw_id == side_rec.c.id))
                                .where(p.system == system, side_rec.c.object == side))
                if conn.execute(pending_side.limit(1)).first() is None:
                    continue
                key = (c.source_id if id_field is None else c.payload[id_field].as_string() if "." not in id_field
                       else c.payload[tuple(id_field.split("."))].as_string())
                not_pending = ~sa.exists().where(p.system == c.system, p.raw_id == c.id)
                _set_pending(conn, sa.select(c.system, c.id, c.content_hash)
                             .where(c.system == system, c.object == obj, not_pending,
                                    key.in_(pending_side.scalar_subquery())))


def _with_sidecars(store: Store, system: str, sidecars: Sidecars, live: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Each record of an object mapped ``with:`` gets its sidecar records under their keys."""
    c = raw_record.c

    def ref(payload: Any, sid: str, id_field: str | None) -> str | None:
        if id_field is None:
            return sid
        value: Any = payload
        for part in id_field.split("."):  # a dotted path: a lookup's id (Zoho's {"name", "id"})
            value = value.get(part) if isinstance(value, dict) else None
        return value if isinstance(value, str) and value else None  # an expanded object needs no look-up

    wanted: dict[str, set[str]] = defaultdict(set)  # sidecar object -> its source ids
    for _rid, obj, sid, payload, _upd in live:
        for side, id_field in sidecars.get(obj, {}).values():
            rid = ref(payload, sid, id_field)
            if rid is not None:
                wanted[side].add(rid)
    found: dict[tuple[str, str], Any] = {}
    with store.engine.connect() as conn:
        for side, sids in wanted.items():
            for chunk in _chunks(sorted(sids)):
                rows = conn.execute(sa.select(c.source_id, c.payload).where(
                    c.system == system, c.object == side, c.deleted.is_(False), c.source_id.in_(chunk)))
                found.update(((side, sid), payload) for sid, payload in rows)
    out = []
    for rid, obj, sid, payload, upd in live:
        sides = sidecars.get(obj)
        if sides and isinstance(payload, dict):  # with no sidecar record, the payload's own key stays
            extra = {}
            for key, (side, id_field) in sides.items():
                target = ref(payload, sid, id_field)
                if target is not None and (side, target) in found:
                    extra[key] = found[(side, target)]
            if extra:
                payload = {**payload, **extra}
        out.append((rid, obj, sid, payload, upd))
    return out


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _clear_pending(conn: Connection, system: str, ids: Sequence[int], hashes: Sequence[str]) -> None:
    """Delete the ``raw_pending`` rows of the versions read (same id AND same content hash), in one statement."""
    if not ids:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "DELETE FROM raw_pending p USING unnest(%s::bigint[], %s::text[]) AS v(id, h) "
            "WHERE p.system = %s AND p.raw_id = v.id AND p.content_hash = v.h",
            (list(ids), list(hashes), system),
        )
        return
    conn.exec_driver_sql(  # SQLite: the versions as one JSON object {id: hash}, each found by its key
        "DELETE FROM raw_pending WHERE system = ? "
        "AND (raw_id, content_hash) IN (SELECT CAST(key AS INTEGER), value FROM json_each(?))",
        (system, orjson.dumps(dict(zip(ids, hashes, strict=True)), option=orjson.OPT_NON_STR_KEYS).decode()),
    )


def _has_open_quarantine(conn: Connection, system: str) -> bool:
    q = quarantine.c
    return conn.execute(sa.select(q.id).where(q.stage.in_(_MAP_STAGES), q.system == system, q.resolved_at.is_(None))
                        .limit(1)).first() is not None


def _resolve_quarantine(conn: Connection, system: str, keys: set[tuple[str, str]]) -> None:
    """Close earlier open map-stage quarantine entries of these records (they are mapped again now)."""
    q = quarantine.c
    if not _has_open_quarantine(conn, system):  # the usual case: nothing of this system waits in quarantine
        return
    by_object: dict[str, list[str]] = defaultdict(list)
    for obj, sid in keys:
        by_object[obj].append(sid)
    ts = now()
    for obj, sids in by_object.items():
        for chunk in _chunks(sids):
            conn.execute(
                quarantine.update()
                .where(q.stage.in_(_MAP_STAGES), q.system == system, q.object == obj, q.resolved_at.is_(None),
                       q.source_id.in_(chunk))
                .values(resolved_at=ts)
            )


def _tombstone(conn: Connection, mset: MappingSet, dead: Sequence[Any]) -> int:
    """Set ``deleted_at`` on every canonical row the deleted raw rows produced."""
    if not dead:
        return 0
    total = 0
    raw_ids = [r.id for r in dead]
    when = {r.id: r.source_updated_at or r.fetched_at or now() for r in dead}
    by_entity: dict[str, dict[str, Any]] = defaultdict(dict)  # entity -> canonical id -> deleted_at
    for r in dead:
        for plan in mset.plans.get(r.object, []):
            by_entity[plan.entity][canonical_id(mset.system, plan.entity, r.source_id)] = when[r.id]
    for chunk in _chunks(raw_ids):
        rows = conn.execute(
            sa.select(lineage.c.entity, lineage.c.canonical_id, lineage.c.raw_id).where(lineage.c.raw_id.in_(chunk))
        )
        for entity, cid, rid in rows:
            if entity in ENTITIES:
                by_entity[entity][cid] = when[rid]
    for entity, ids in by_entity.items():
        total += _set_deleted(conn, entity, ids)
    return total


def _set_deleted(conn: Connection, entity: str, ids: dict[str, Any]) -> int:
    if not ids:
        return 0
    table = tables.table_for(entity)
    stmt = (
        table.update()
        .where(table.c.id == sa.bindparam("cid"), table.c.deleted_at.is_(None))
        .values(deleted_at=sa.bindparam("ts"))
    )
    result = conn.execute(stmt, [{"cid": cid, "ts": ts} for cid, ts in ids.items()])
    return int(result.rowcount or 0)


def _tombstone_dropped_children(
    conn: Connection, mset: MappingSet, live: Sequence[tuple[Any, ...]], result: BatchResult
) -> None:
    """Children in lineage of a re-mapped parent but absent from its new version get ``deleted_at``."""
    with_children = {obj for obj in mset.plans if mset.child_entities(obj)}
    if not with_children:
        return
    parents: dict[str, list[int]] = defaultdict(list)  # child entity -> raw ids of parents mapped now
    ok = set(result.ok_raw)
    for raw_id, obj, sid, _payload, _upd in live:
        if obj in with_children and (obj, sid) in ok:
            for entity in mset.child_entities(obj):
                parents[entity].append(raw_id)
    ts = now()
    for entity, raw_ids in parents.items():
        produced = {r["id"] for r in result.rows.get(entity, ())}
        found = _lineage_of(conn, entity, raw_ids)
        _set_deleted(conn, entity, {cid: ts for cid in found if cid not in produced})


def _lineage_of(conn: Connection, entity: str, raw_ids: Sequence[int]) -> list[str]:
    """The canonical ids of ``entity`` in lineage of these raw rows, in one statement."""
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            "SELECT canonical_id FROM lineage WHERE entity = %s AND raw_id = ANY(%s::bigint[])", (entity, list(raw_ids))
        )
    else:
        rows = conn.exec_driver_sql(
            "SELECT canonical_id FROM lineage WHERE entity = ? AND raw_id IN (SELECT value FROM json_each(?))",
            (entity, orjson.dumps(list(raw_ids)).decode()),
        )
    return [cid for (cid,) in rows]


__all__ = ["MappingError", "MappingSet", "compile_for", "map_records", "mark_pending", "run_mapping"]

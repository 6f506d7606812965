"""Identifier fields found in the landed data, applied without hand-written configuration.

``ltc mappings suggest`` prints :func:`suggest`'s findings as an override; ``--write`` accepts them
(:func:`accept`). The pipeline maps through :func:`map_with_discovery`: the high-confidence
findings (a Salesforce ``VAT_Number__c`` whose values pass the VAT check digits, a Stripe metadata
key whose values are the CRM's deal ids) are merged over each source's mapping as an automatic
override, after the shipped mapping and the operator's own override (which stay first: a
discovered path is only ever a fallback). Which field was applied, and why, is recorded as a
``discover`` run (``ltc status`` shows the latest) and returned in the run summary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from canonical.forking import Pending
from canonical.store import Store
from canonical.tables import raw_pending
from canonical.tables import run as run_table
from ltc.app.config import Config
from mappings.discover import (
    Candidate,
    Finding,
    best,
    discover,
    from_evidence,
    known_identifiers,
    override_node,
    sample_candidates,
    write_override,
)
from mappings.engine import IMPLIED_KINDS, map_ahead, mark_pending, run_mapping
from mappings.spec import Node

RUN_KIND = "discover"


def source_kinds(cfg: Config | None) -> dict[str, tuple[str, str | None]]:
    """system name -> (mapping kind, override path), as the mapping stage resolves them."""
    out: dict[str, tuple[str, str | None]] = {name: (kind, None) for name, kind in IMPLIED_KINDS.items()}
    if cfg is not None:
        out.update({name: (src.kind, src.mapping) for name, src in cfg.sources.items()})
    return out


def generated_mappings(store: Store, cfg: Config | None) -> dict[str, Node]:
    """The mappings generated from configuration (Jiandaoyun sources whose forms' widget lists are
    landed), so that discovery extends them like a shipped file."""
    from canonical.errors import ConfigError
    from mappings.engine import GENERATED_KINDS, generated_mapping

    out: dict[str, Node] = {}
    for name, src in (cfg.sources.items() if cfg is not None else ()):
        if src.kind not in GENERATED_KINDS:
            continue
        try:
            node = generated_mapping(name, src.kind, src, store)
        except ConfigError:
            continue  # not synced yet (no widget lists) or misconfigured: the mapping stage says so
        if node is not None:
            out[name] = node
    return out


def suggest(store: Store, cfg: Config | None, source: str | None = None) -> list[Finding]:
    """Every finding (high and low confidence) of the landed raw records, of ``source`` or all."""
    return discover(store, source_kinds(cfg), source, generated=generated_mappings(store, cfg))


def suggest_jiandaoyun(source: str, src: Any) -> str:
    """``ltc mappings suggest --source <jiandaoyun source>``: the forms configuration proposed from the
    app's forms, widget labels and sample values (:mod:`mappings.jiandaoyun_suggest`), as text to paste."""
    from connectors.jiandaoyun import from_config
    from mappings.jiandaoyun_suggest import proposal_text, propose

    conn = from_config(source, src, forms_required=False)
    try:
        forms = conn.survey()
    finally:
        conn.close()
    proposals = propose(forms)
    chosen = {p.survey.entry_id for p in proposals}
    return proposal_text(source, conn.app_id, proposals, [f for f in forms if f.entry_id not in chosen])


def accept(store: Store, cfg: Config | None, source: str, path: str | Path) -> list[Finding]:
    """Merge the best findings of ``source`` into the override file ``path``; the fields written."""
    return write_override(path, suggest(store, cfg, source), source)


def _key(f: Finding) -> tuple[str, str, str, str]:
    return (f.system, f.object, f.target, f.path)


def last_applied(store: Store) -> list[dict[str, Any]]:
    """The identifier fields the latest pipeline run applied (with their evidence)."""
    with store.engine.connect() as conn:
        counts = conn.execute(sa.select(run_table.c.counts).where(run_table.c.kind == RUN_KIND)
                              .order_by(run_table.c.started_at.desc()).limit(1)).scalar()
    fields = counts.get("fields") if isinstance(counts, dict) else None
    return list(fields) if isinstance(fields, list) else []


def applied_overrides(store: Store) -> dict[str, Node]:
    """The overrides of the fields the latest run applied: ``ltc remap`` maps with them too."""
    return _overrides(from_evidence(last_applied(store)))


def _overrides(findings: list[Finding]) -> dict[str, Node]:
    out: dict[str, Node] = {}
    for system in sorted({f.system for f in findings}):
        node = override_node(findings, system)
        if node is not None:
            out[system] = node
    return out


def _changed_systems(before: set[tuple[str, str, str, str]], after: set[tuple[str, str, str, str]]) -> set[str]:
    return {k[0] for k in before ^ after}


def sample_early(store: Store, cfg: Config, source: str, profiled: dict[tuple[str, str], list[Candidate]]) -> None:
    """Profile the discovery sample of ``source`` into ``profiled`` now (its sync has ended: its raw
    records stay as they are), for :func:`map_with_discovery` to reuse."""
    generated = {source: node} if (node := generated_mappings(store, cfg).get(source)) is not None else None
    sample_candidates(store, source, source_kinds(cfg), profiled=profiled, generated=generated)


@dataclass
class MapAhead:
    """Sources mapped while the last sources still sync (:meth:`start`, each in a forked child), so that the
    map stage (:func:`map_with_discovery`) has only the others left, and maps them as if every source had
    waited for it: the first discovery pass of a source mapped ahead matches its sample against the
    identifiers known before this run mapped anything (read once, at the first :meth:`start`, before any
    source is mapped: the sync only lands raw records), exactly as the map stage's pass does for the
    others; the second pass, after all are mapped, is the map stage's as before."""

    store: Store
    cfg: Config
    profiled: dict[tuple[str, str], list[Candidate]]
    turn: Any = None  # the SQLite writers' lock shared with the sync's children, which this process takes too
    known: dict[str, dict[str, str]] | None = None  # identifiers known before this run mapped anything
    started: list[str] = field(default_factory=list)
    _running: dict[str, Pending[dict[str, dict[str, int]]]] = field(default_factory=dict)
    own_turn: Any = None  # this process's own writers' lock, put back once the children are done

    def start(self, source: str) -> bool:
        """Map ``source`` (its sync has ended; its raw records stay as they are) in a forked child, with the
        fields the map stage's first discovery pass would apply to it. False (nothing started) when the
        source has nothing pending."""
        store, cfg = self.store, self.cfg
        if not _pending_in(store, source):
            return False  # nothing landed: left to the map stage, which decides as before
        if not self.started and cfg.discover_fields:  # the first: the state before this run maps anything
            self.known = known_identifiers(store)
        extra = None
        if cfg.discover_fields:
            generated = {source: node} if (node := generated_mappings(store, cfg).get(source)) is not None else None
            first = best(discover(store, source_kinds(cfg), source, generated=generated, profiled=self.profiled,
                                  known=self.known), high_only=True)
            previous = {_key(f) for f in from_evidence(last_applied(store)) if f.system == source}
            if _changed_systems(previous, {_key(f) for f in first}):
                with store.write_turn():
                    mark_pending(store, source)
            extra = _overrides(first)
        self.started.append(source)
        self._running[source] = map_ahead(store, [source], config=cfg, extra=extra, turn=self.turn)
        return True

    def finish(self) -> dict[str, dict[str, int] | BaseException]:
        """Wait for the mappings started: counts per system (a failure as its exception); this process then
        takes its own writers' turns again."""
        out: dict[str, dict[str, int] | BaseException] = {}
        try:
            for source, call in self._running.items():
                try:
                    out.update(call.result())
                except Exception as exc:  # raised by the map stage, once the other systems are mapped
                    out[source] = exc
        finally:
            self.cancel()
        return out

    def cancel(self) -> None:
        """Stop the children still mapping (the pipeline ended before its map stage); nothing to do after
        :meth:`finish`."""
        for call in self._running.values():
            call.cancel()
        self._running.clear()
        if self.own_turn is not None:
            self.store.use_turn(self.own_turn)
            self.own_turn = None


def _pending_in(store: Store, system: str) -> bool:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(raw_pending.c.raw_id).where(raw_pending.c.system == system)
                            .limit(1)).first() is not None


def _with_ahead(ahead: MapAhead | None, rest: Callable[[], dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """``rest()`` (the mapping of the systems not mapped ahead), then the counts of those mapped ahead once
    their children are done, in system order; a failure of either is raised once both are done."""
    if ahead is None or not ahead.started:
        return rest()
    try:
        counts = rest()
    finally:
        done = ahead.finish()
    for outcome in done.values():
        if isinstance(outcome, BaseException):
            raise outcome
    counts.update({k: v for k, v in done.items() if not isinstance(v, BaseException)})
    return dict(sorted(counts.items()))


def map_with_discovery(store: Store, cfg: Config, *, enabled: bool = True,
                       profiled: dict[tuple[str, str], list[Candidate]] | None = None,
                       ahead: MapAhead | None = None) -> tuple[dict[str, dict[str, int]], list[dict[str, Any]]]:
    """Map the pending raw records with the discovered identifier fields applied.

    Discovery runs before the mapping (on the raw records and the identifiers already known) and
    again after it (the rows just mapped are new identifiers to match): when the second finds
    other fields, the systems concerned are mapped again. A change from the fields the previous run
    applied marks that system's raw records pending (its rows are rebuilt with the new fields).
    Returns the mapping counts per system and the applied fields with their evidence.
    ``profiled``: the samples already profiled (:func:`sample_early`); the others are added to it.
    ``ahead``: the sources already being mapped (:class:`MapAhead`); the others are mapped beside them."""
    skip = set(ahead.started) if ahead is not None else set()
    turn = ahead.turn if ahead is not None else None
    if not enabled:
        return _with_ahead(ahead, lambda: run_mapping(store, config=cfg, skip=skip, turn=turn)), []
    applied = last_applied(store)
    if not skip and not _anything_pending(store):  # nothing landed since: the fields stand as the last run found them
        return run_mapping(store, config=cfg, extra=_overrides(from_evidence(applied))), applied
    sources = source_kinds(cfg)
    generated = generated_mappings(store, cfg)
    previous = {(d["system"], d["object"], d["target"], d["path"]) for d in applied}
    profiled = {} if profiled is None else profiled  # the raw sample, read and profiled once
    known = ahead.known if skip and ahead is not None else None  # as before the sources mapped ahead
    first = best(discover(store, sources, generated=generated, profiled=profiled, known=known), high_only=True)
    for system in _changed_systems(previous, {_key(f) for f in first}) - skip:  # those ahead: marked already
        with store.write_turn():
            mark_pending(store, system)
    extra = _overrides(first)
    counts = _with_ahead(ahead, lambda: run_mapping(store, config=cfg, extra=extra, skip=skip, turn=turn))
    second = best(discover(store, sources, generated=generated, profiled=profiled), high_only=True)
    again = _changed_systems({_key(f) for f in first}, {_key(f) for f in second})
    for system in again:
        mark_pending(store, system)
    if again:
        for system, c in run_mapping(store, config=cfg, extra=_overrides(second)).items():
            counts[system] = c  # the second mapping of a system is the one that stands
    evidence = [f.as_dict() for f in second]
    run_id = store.begin_run(RUN_KIND, None)
    store.finish_run(run_id, "success", counts={"fields": evidence},
                     message="; ".join(f"{d['system']}.{d['object']}.{d['path']} -> {d['target']}: {d['reason']}"
                                       for d in evidence) or None)
    return counts, evidence


def _anything_pending(store: Store) -> bool:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(raw_pending.c.raw_id).limit(1)).first() is not None


def describe(evidence: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per applied field, for the run summary and ``ltc status``."""
    return [f"{d['system']} {d['object']}.{d['path']} -> {d['target']} ({d['reason']})" for d in evidence]

"""The sandbox's forked work (canonical.forking.Pending): a large world's readability checks and its emulators run
in children of the replaying process; what they answer, and the errors they raise, are the ones the
same work gives in this process."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from canonical import tables
from canonical.errors import InputError
from canonical.forking import Pending, forks, in_children
from canonical.store import Store
from connectors.base import sync
from ltc.app import runtime
from ltc.app.demo import world_sources
from sandbox import world as world_module
from sandbox.world import read_world
from tests.sandbox.edits import edit_line

WORLDS = Path(__file__).parent.parent / "worlds"
pytestmark = pytest.mark.skipif(not forks(), reason="no fork here: everything runs in this process")


def _pid() -> int:
    return os.getpid()


def _fail(kind: type[Exception], text: str) -> None:
    raise kind(text)


def test_calls_run_in_children_and_answer_in_order() -> None:
    pids = in_children([_pid, _pid, _pid])
    assert len(set(pids)) == 3 and os.getpid() not in pids


def test_the_first_error_in_order_is_raised_whichever_child_ends_first() -> None:
    from functools import partial

    with pytest.raises(ValueError, match="first"):
        in_children([_pid, partial(_fail, ValueError, "first"), partial(_fail, KeyError, "second")])
    # a small call is not forked: it runs here, when its result is asked for
    assert Pending(_pid, fork=False).result() == os.getpid()


def _world_dir(tmp_path: Path, systems: tuple[str, ...], *, name: str = "all", currency: str = "USD") -> Path:
    """A world of these test systems (copied from tests/worlds), Tryton its ERP."""
    root = tmp_path / name
    root.mkdir()
    for s in systems:
        shutil.copytree(WORLDS / s / s, root / s)
    (root / "world.yaml").write_text(f"format: 1\nname: {name}\nsystems: [{', '.join(systems)}]\nerp: tryton\n"
                                     f"reporting_currency: {currency}\nas_of: 2026-10-31\n", encoding="utf-8")
    return root


def _both(tmp_path: Path, systems: list[str]) -> Path:
    """A world of the tryton and stripe example worlds, each with one record neither can read."""
    root = _world_dir(tmp_path, tuple(systems), name="both", currency="EUR")
    for path, line, change in ((root / "tryton" / "account.invoice.jsonl", 1,
                                lambda rec: rec.__setitem__("currency.code", rec.pop("currency.")["code"])),
                               (root / "stripe" / "invoices.jsonl", 2, lambda rec: rec.pop("currency"))):
        rows = path.read_text(encoding="utf-8").splitlines()
        rec = json.loads(rows[line - 1])
        change(rec)
        rows[line - 1] = json.dumps(rec)
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("systems", [["tryton", "stripe"], ["stripe", "tryton"]])
def test_forked_checks_refuse_with_the_error_the_checks_here_give(tmp_path: Path, systems: list[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = _both(tmp_path, systems)
    with pytest.raises(InputError) as here:
        read_world(root)
    monkeypatch.setattr(world_module, "FORK_CHECK_FROM", 0)  # every system checked in a child
    with pytest.raises(InputError) as forked:
        read_world(root)
    assert str(forked.value) == str(here.value)
    assert f"{systems[0]}/" in str(forked.value)  # the first system's problem, in systems order


def _landed(world: Any, store: Store, process: bool, hand_over: bool = False) -> dict[tuple[str, str], Any]:
    with world_sources(world, process=process, hand_over=hand_over) as (cfg, servers):
        if hand_over:  # this process let go of its copy: the child serves its own
            assert world.records == {} and world.lines == {}
        assert all(srv.url.startswith(("http://", "https://")) for srv in servers.values())
        for name in runtime.source_names(cfg):
            connector = runtime.build_connector(cfg, name)
            try:
                assert all(r.status == "success" for r in sync(connector, store))
            finally:
                connector.close()
    raw = tables.raw_record
    with store.engine.connect() as conn:
        return {(r.object, r.source_id): r.payload for r in conn.execute(sa.select(raw.c.object, raw.c.source_id,
                                                                                   raw.c.payload))}


def _landed_here_and_forked(tmp_path: Path, here_world: Any, forked_world: Any,
                            hand_over: bool = False) -> tuple[Any, Any]:
    """What ``here_world`` lands served from this process, and ``forked_world`` served from a forked one."""
    here = Store.open(f"sqlite:///{tmp_path / 'here.db'}")
    there = Store.open(f"sqlite:///{tmp_path / 'there.db'}")
    try:
        return (_landed(here_world, here, process=False),
                _landed(forked_world, there, process=True, hand_over=hand_over))
    finally:
        here.close()
        there.close()


def test_a_world_served_from_a_forked_process_lands_what_it_lands_served_here(tmp_path: Path) -> None:
    world = read_world(_world_dir(tmp_path, ("salesforce", "tryton", "stripe")))
    served_here, served_there = _landed_here_and_forked(tmp_path, world, world)
    assert served_there == served_here and len(served_here) > 20


def test_a_world_handed_over_to_the_forked_process_is_dropped_here_and_served_there_all_the_same(
        tmp_path: Path) -> None:
    from sandbox import tryton

    root = _world_dir(tmp_path, ("salesforce", "tryton", "stripe"))
    plain = read_world(root)
    world = read_world(root)  # read last: its Tryton rows are kept
    kept = list(world.records["tryton"].values())
    assert kept and all(tryton._DECODED[id(recs)][0] is recs for recs in kept)
    served_here, served_there = _landed_here_and_forked(tmp_path, plain, world, hand_over=True)
    assert served_there == served_here and len(served_here) > 20
    assert not any(hit[0] is recs for hit in tryton._DECODED.values() for recs in kept)  # nor their rows


def test_tryton_rows_decoded_before_the_check_forks_serve_what_rows_decoded_by_each_child_serve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from sandbox import tryton

    root = _world_dir(tmp_path, ("salesforce", "tryton"))
    plain = read_world(root)  # small: checked here
    monkeypatch.setattr(world_module, "FORK_CHECK_FROM", 0)  # checked in children: Tryton decoded here as read
    assert gc.isenabled()
    early = read_world(root)
    assert gc.isenabled()  # the collector is on again after the decode and the checks
    for recs in early.records["tryton"].values():  # the emulators' child inherits the rows decoded here
        assert tryton._DECODED[id(recs)][0] is recs
    served_plain, served_early = _landed_here_and_forked(tmp_path, plain, early)
    assert served_early == served_plain and len(served_plain) > 10


def test_tryton_records_are_decoded_once_as_read_and_those_rows_are_served(tmp_path: Path) -> None:
    from connectors.tryton import codec
    from sandbox import tryton

    world = read_world(_world_dir(tmp_path, ("tryton",)))
    assert world.records["tryton"]
    for recs in world.records["tryton"].values():
        rows = tryton._DECODED[id(recs)][2]  # kept by the reader: the emulator does not decode them again
        assert tryton._decoded_rows(recs) == rows
        for rec, row in zip(recs, rows, strict=True):
            decoded = codec.decode(rec)
            assert row == {**decoded, tryton.CURSOR: decoded.get("write_date") or decoded.get("create_date")}


def test_the_emulators_serve_only_once_ready_returned_and_not_at_all_if_it_raises(tmp_path: Path) -> None:
    import httpx

    from sandbox.run import start_world_process

    world = read_world(WORLDS / "stripe")
    calls: list[str] = []

    def ready() -> None:
        calls.append("ready")

    servers = start_world_process(world, ready)
    try:
        assert calls == ["ready"]
        answer = httpx.get(servers["stripe"].url + "/v1/customers",
                           headers={"Authorization": "Bearer sk_test_ltc_demo"}, timeout=10)
        assert answer.status_code == 200
    finally:
        for srv in servers.values():
            srv.stop()

    def refuse() -> None:
        raise InputError("world.yaml:1: not checked")

    with pytest.raises(InputError, match="not checked"):
        start_world_process(world, refuse)


def _bad_currency(rec: dict[str, Any]) -> None:  # read, then rejected by the mapping
    rec["currency."] = {"id": 2, "code": "ZZZ"}


def _unrequested(rec: dict[str, Any]) -> None:  # a field the connector never requests
    rec["vat_code"] = "X"


@pytest.mark.parametrize(("problems", "winner"), [
    # a record the mapping rejects in an early stream, a field never requested in a later one: the field is named
    ([("sale.line", _bad_currency), ("account.invoice", _unrequested)], "account.invoice"),
    # two rejected records: the one of the stream the connector syncs first
    ([("account.invoice.line", _bad_currency), ("sale.sale", _bad_currency)], "sale.sale"),
    ([("sale.line", _bad_currency), ("account.invoice", _bad_currency)], "sale.line"),
    # a currency on a stock move is a field the connector never requests there: named before the rejected sale
    ([("sale.sale", _bad_currency), ("stock.move", _bad_currency)], "stock.move"),
    # two fields never requested: the first stream's
    ([("sale.line", _unrequested), ("account.invoice", _unrequested)], "sale.line"),
])
def test_a_check_split_across_children_names_the_problem_the_whole_check_names(
        tmp_path: Path, problems: list[tuple[str, Any]], winner: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.world_readable import check_parts

    root = _world_dir(tmp_path, ("tryton",))
    for obj, change in problems:
        edit_line(root / "tryton" / f"{obj}.jsonl", 1, change)
    with pytest.raises(InputError) as here:
        read_world(root)
    assert f"/tryton/{winner}.jsonl:1: " in str(here.value)
    monkeypatch.setattr(world_module, "FORK_CHECK_FROM", 0)
    monkeypatch.setattr(world_module, "SPLIT_CHECK_FROM", 0)  # checked by two children, a share of streams each
    world, checks = world_module.open_world(root)
    assert [type(c).__name__ for c in checks._checks] == ["_SplitCheck"]
    shares = check_parts("tryton", world.records["tryton"], 2)
    assert sorted(shares[0] + shares[1]) == sorted(world.records["tryton"])
    (first, _), (second, _) = problems
    assert (first in shares[0]) != (second in shares[0])  # the two problems are in different children
    with pytest.raises(InputError) as split:
        checks.finish()
    assert str(split.value) == str(here.value)
    assert all(p._process is None for c in checks._checks for p in c._shares)  # every child released


def test_a_split_check_of_a_readable_world_passes_and_files_are_shared_out_by_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.world_readable import check_parts

    root = _world_dir(tmp_path, ("stripe", "tryton"))
    monkeypatch.setattr(world_module, "FORK_CHECK_FROM", 0)
    monkeypatch.setattr(world_module, "SPLIT_CHECK_FROM", 0)
    world = read_world(root)
    records = world.records["stripe"]
    shares = check_parts("stripe", records, 2)
    sizes = sorted(sum(len(records[o]) for o in share) for share in shares)
    assert sorted(o for share in shares for o in share) == sorted(records)
    biggest = max(len(r) for r in records.values())
    assert sizes[1] - sizes[0] <= biggest  # greedy: never more than the largest file apart
    edit_line(root / "stripe" / "invoices.jsonl", 2, lambda rec: rec.pop("currency"))
    edit_line(root / "stripe" / "charges.jsonl", 1, lambda rec: rec.pop("currency"))
    monkeypatch.setattr(world_module, "SPLIT_CHECK_FROM", 10**12)
    with pytest.raises(InputError) as whole:
        read_world(root)
    monkeypatch.setattr(world_module, "SPLIT_CHECK_FROM", 0)
    with pytest.raises(InputError) as split:
        read_world(root)
    assert str(split.value) == str(whole.value)

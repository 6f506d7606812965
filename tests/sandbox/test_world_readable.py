"""read_world refuses records the connector and the mapping that serve them cannot read (file:line)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from canonical.errors import InputError
from sandbox.world import read_world
from tests.sandbox.edits import edit_line

WORLDS = Path(__file__).parent.parent / "worlds"


def _copy(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(WORLDS / name, tmp_path / name))


def test_the_shipped_example_worlds_are_readable() -> None:
    for world in sorted(p.parent for p in WORLDS.glob("*/world.yaml")):
        read_world(world)


def test_a_dotted_read_written_flat_is_refused(tmp_path: Path) -> None:
    world = _copy(tmp_path, "tryton")
    inv = world / "tryton" / "account.invoice.jsonl"

    def flat(rec: dict[str, Any]) -> None:
        rec["currency.code"] = rec.pop("currency.")["code"]

    edit_line(inv, 1, flat)
    with pytest.raises(InputError) as err:
        read_world(world)
    msg = str(err.value)
    assert msg.startswith(f"{inv}:1: record 31: field 'currency.code' is never requested by the tryton connector")
    assert '{"currency.": {"code": …}}' in msg


def test_a_field_the_connector_never_requests_is_refused(tmp_path: Path) -> None:
    world = _copy(tmp_path, "tryton")
    inv = world / "tryton" / "account.invoice.jsonl"
    edit_line(inv, 1, lambda rec: rec.update(due_date={"__class__": "date", "year": 2026, "month": 10, "day": 31}))
    with pytest.raises(InputError, match=r"account\.invoice\.jsonl:1: record 31: field 'due_date' is never requested"):
        read_world(world)


def test_a_record_the_mapping_would_quarantine_is_refused(tmp_path: Path) -> None:
    world = _copy(tmp_path, "stripe")
    inv = world / "stripe" / "invoices.jsonl"

    def no_currency(rec: dict[str, Any]) -> None:
        del rec["currency"]

    edit_line(inv, 2, no_currency)
    with pytest.raises(InputError) as err:
        read_world(world)
    assert str(err.value).startswith(f"{inv}:2: record in_1QAcmeInv0002: the stripe mapping cannot read it "
                                     "(field currency: required value missing")
    # the world's own mapping override makes it readable (and ltc demo --world uses it)
    (world / "mappings").mkdir()
    (world / "mappings" / "stripe.yaml").write_text(
        "objects:\n  invoice:\n    fields:\n      currency: {from: currency, default: eur}\n", encoding="utf-8")
    (world / "world.yaml").write_text((world / "world.yaml").read_text(encoding="utf-8")
                                      + "mappings:\n  stripe: mappings/stripe.yaml\n", encoding="utf-8")
    assert read_world(world).mappings == {"stripe": (world / "mappings" / "stripe.yaml").resolve()}


def test_a_bad_world_mapping_is_one_line_exit_2(tmp_path: Path) -> None:
    world = _copy(tmp_path, "stripe")
    (world / "world.yaml").write_text((world / "world.yaml").read_text(encoding="utf-8")
                                      + "mappings:\n  stripe: nowhere.yaml\n", encoding="utf-8")
    env = {**{k: v for k, v in os.environ.items() if k != "LTC_CONFIG"},
           "LTC_DATABASE_URL": f"sqlite:///{tmp_path / 'ltc.db'}"}
    res = subprocess.run([sys.executable, "-c", "from ltc.cli import main; main()", "demo", "--world", str(world),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120, env=env,
                         cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    errors = [line for line in res.stderr.splitlines() if line != "ltc demo: starting"]
    assert len(errors) == 1 and "world.yaml:" in errors[0] and "nowhere.yaml is not a file" in errors[0]


def test_demo_world_maps_with_the_worlds_override(tmp_path: Path, sqlite_store: Any) -> None:
    import sqlalchemy as sa

    from canonical import tables
    from connectors.base import sync
    from ltc.app import runtime
    from ltc.app.demo import world_sources
    from mappings.engine import run_mapping

    world = _copy(tmp_path, "stripe")
    (world / "mappings").mkdir()
    (world / "mappings" / "stripe.yaml").write_text(
        "objects:\n  invoice:\n    fields:\n      attributes.billing: customer_email\n", encoding="utf-8")
    (world / "world.yaml").write_text((world / "world.yaml").read_text(encoding="utf-8")
                                      + "mappings:\n  stripe: mappings/stripe.yaml\n", encoding="utf-8")
    with world_sources(read_world(world)) as (cfg, _servers):
        assert cfg.sources["stripe"].mapping == str((world / "mappings" / "stripe.yaml").resolve())
        sync(runtime.build_connector(cfg, "stripe"), sqlite_store)
        run_mapping(sqlite_store, config=cfg)
    inv = tables.table_for("invoice")
    with sqlite_store.engine.connect() as conn:
        attrs = dict(conn.execute(sa.select(inv.c.source_id, inv.c.attributes)).all())
    assert attrs["in_1QAcmeInv0001"]["billing"] == "billing@acme-robotics.example"


def test_stripe_invoice_lines_without_a_currency_are_refused(tmp_path: Path) -> None:
    world = _copy(tmp_path, "stripe")
    inv = world / "stripe" / "invoices.jsonl"

    def lines_without_currency(rec: dict[str, Any]) -> None:
        for line in rec["lines"]["data"]:
            line.pop("currency", None)
            (line.get("price") or {}).pop("currency", None)

    edit_line(inv, 1, lines_without_currency)
    with pytest.raises(InputError, match=r"invoices\.jsonl:1: record in_1QAcmeInv0001: the stripe mapping cannot read "
                                         r"it \(field unit_price: amount without a currency"):
        read_world(world)


def test_payloads_are_landed_in_chunks_exactly_as_one_by_one() -> None:
    from datetime import date
    from decimal import Decimal

    from sandbox.world_readable import _stored

    hostile = [{"id": 1, "amount": Decimal("12.30"), "on": date(2026, 3, 1)},
               {"id": 2 ** 70, "name": "nul\u0000here", "z": 1, "a": [1, {"b": None}]},
               {"id": 3, "name": "lone \ud800 surrogate"}, {"id": 4, "nested": {"k": "\\u0000 not a nul"}}]
    assert _stored(hostile) == [_stored(p) for p in hostile]
    assert _stored(hostile)[1]["name"] == "nul\ufffdhere" and _stored(hostile)[1]["id"] == str(2 ** 70)


@pytest.mark.parametrize("chunk", [1, 2, 10_000])
def test_the_first_unreadable_record_is_named_whatever_the_chunk(tmp_path: Path, chunk: int,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import sandbox.world_readable

    monkeypatch.setattr(sandbox.world_readable, "_CHUNK", chunk)  # the check stops at the first chunk with one
    world = _copy(tmp_path, "stripe")
    inv = world / "stripe" / "invoices.jsonl"
    edit_line(inv, 2, lambda rec: rec.pop("currency"))
    with pytest.raises(InputError) as err:
        read_world(world)
    assert str(err.value).startswith(f"{inv}:2: record in_1QAcmeInv0002: the stripe mapping cannot read it ")
    edit_line(inv, 1, lambda rec: rec.pop("currency"))  # two in different chunks (of 1): the first is named
    with pytest.raises(InputError) as err:
        read_world(world)
    assert str(err.value).startswith(f"{inv}:1: record in_1QAcmeInv0001: the stripe mapping cannot read it ")


@pytest.mark.parametrize("how", ["here", "forked", "split"])
def test_records_let_go_while_the_checks_run_keep_the_problem_and_its_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """``finish(meanwhile=...)``, as a replay whose emulators' child holds the records calls it: this process's copy
    of the records is let go while the forked checks still run; the problem and its file:line are the same."""
    import sandbox.world as world_module
    from sandbox.world import open_world

    monkeypatch.setattr(world_module, "FORK_CHECK_FROM", 10**9 if how == "here" else 0)
    monkeypatch.setattr(world_module, "SPLIT_CHECK_FROM", 0 if how == "split" else 10**9)
    world = _copy(tmp_path, "tryton")
    inv = world / "tryton" / "account.invoice.jsonl"
    edit_line(inv, 1, lambda rec: rec.update(due_date={"__class__": "date", "year": 2026, "month": 10, "day": 31}))
    read, checks = open_world(world)
    held: list[int] = []

    def meanwhile() -> None:
        held.append(sum(len(recs) for objects in read.records.values() for recs in objects.values()))
        read.forget_records()

    with pytest.raises(InputError, match=r"account\.invoice\.jsonl:1: record 31: field 'due_date' is never requested"):
        checks.finish(meanwhile=meanwhile)
    assert held and held[0] > 0 and read.records == {} and read.lines  # the lines kept for the message


def test_records_let_go_after_the_checks_run_here_and_before_the_forked_ones_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks that run here (they read the records) come before ``meanwhile``; the problem raised is still the
    first system's, a forked check's, though the later system checked here failed first."""
    import sandbox.world as world_module
    from sandbox.world import open_world

    both = _copy(tmp_path, "salesforce")
    shutil.copytree(WORLDS / "tryton" / "tryton", both / "tryton")
    manifest = both / "world.yaml"
    manifest.write_text(manifest.read_text().replace("systems: [salesforce]", "systems: [salesforce, tryton]"))
    events: list[str] = []

    def check(world: Any, system: str) -> None:
        events.append(f"{system} checked with {len(world.records.get(system, {}))} objects")
        raise InputError(f"{system} is unreadable")

    start = world_module._start_check

    def start_check(world: Any, system: str) -> Any:  # Salesforce in a child, Tryton here
        monkeypatch.setattr(world_module, "FORK_CHECK_FROM", 0 if system == "salesforce" else 10**9)
        return start(world, system)

    monkeypatch.setattr(world_module, "_check_readable", check)
    monkeypatch.setattr(world_module, "_start_check", start_check)
    read, checks = open_world(both)
    with pytest.raises(InputError, match="salesforce is unreadable"):
        checks.finish(meanwhile=lambda: events.append("meanwhile"))
    assert events[0].startswith("tryton checked with") and not events[0].endswith(" 0 objects")
    assert events[1:] == ["meanwhile"]
    monkeypatch.setattr(world_module, "_check_readable", lambda *_a: None)  # readable: finish returns
    read, checks = open_world(both)
    checks.finish(meanwhile=read.forget_records)
    assert read.records == {} and set(read.lines) == {"salesforce", "tryton"}

"""Impossible values in a world are one file:line error before any emulator starts; in a sync they
are landed and quarantined by the mapping, never a crashed page (issue 13)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from canonical.errors import InputError
from canonical.store import RawRecord, Store
from connectors.tryton import codec
from mappings.engine import run_mapping
from sandbox.world import read_world

WORLDS = Path(__file__).resolve().parents[1] / "worlds"


def _poisoned(tmp_path: Path, system: str, file: str, edit: dict[str, object]) -> tuple[Path, int]:
    world = tmp_path / system
    shutil.copytree(WORLDS / system, world)
    path = world / system / file
    lines = path.read_text().splitlines()
    rec = json.loads(lines[0])
    rec.update(edit)
    lines[0] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    return world, 1


def test_a_tryton_february_30_in_a_world_is_a_file_line_error(tmp_path: Path) -> None:
    world, line = _poisoned(tmp_path, "tryton", "sale.sale.jsonl",
                            {"sale_date": {"__class__": "date", "year": 2026, "month": 2, "day": 30}})
    with pytest.raises(InputError) as err:
        read_world(world)
    assert f"sale.sale.jsonl:{line}: record 7: field sale_date:" in str(err.value)
    assert "day is out of range" in str(err.value)


def test_an_impossible_salesforce_date_in_a_world_is_a_file_line_error(tmp_path: Path) -> None:
    world, line = _poisoned(tmp_path, "salesforce", "Opportunity.jsonl", {"CloseDate": "2026-02-30"})
    with pytest.raises(InputError, match=rf"Opportunity.jsonl:{line}: record .*: field CloseDate: '2026-02-30'"):
        read_world(world)


def test_a_tryton_february_30_in_a_sync_is_landed_and_quarantined(store: Store) -> None:
    body = json.dumps({"id": 1, "result": [{"id": 7, "number": "SO-7", "sale_date": {
        "__class__": "date", "year": 2026, "month": 2, "day": 30}, "total_amount": {"__class__": "Decimal",
                                                                                       "decimal": "10.00"}}]})
    [row] = codec.loads(body.encode())["result"]  # decoding the page does not fail on one value
    assert row["sale_date"] == {"__class__": "date", "year": 2026, "month": 2, "day": 30}
    store.commit_page("erp", "sale.sale", [RawRecord("sale.sale", "7", row)], None)
    run_mapping(store, "erp", "tryton")
    [q] = [q for q in store.quarantined() if q["stage"] == "map"]
    assert q["source_id"] == "7" and "day is out of range for month" in q["reason"]


def test_impossible_values_nested_or_escaped_in_a_world_are_file_line_errors(tmp_path: Path) -> None:
    world, line = _poisoned(tmp_path, "stripe", "customers.jsonl", {"metadata": {"due": "2026-02-30"}})
    with pytest.raises(InputError, match=rf"customers.jsonl:{line}: record .*: field metadata: due: '2026-02-30'"):
        read_world(world)
    world, line = _poisoned(tmp_path / "b", "stripe", "customers.jsonl", {"metadata": {"2026-02-30": "key"}})
    read_world(world)  # a key that looks like a date is no value
    world, line = _poisoned(tmp_path / "c", "stripe", "customers.jsonl", {"description": "2026\u00a0-02-30"})
    read_world(world)
    world, line = _poisoned(tmp_path / "d", "salesforce", "Account.jsonl", {"Due__c": "2026-02-30\u00e9"})
    read_world(world)
    path = world / "salesforce" / "Account.jsonl"  # an escape: the text is a date only once decoded
    path.write_text(path.read_text().replace('"2026-02-30\\u00e9"', '"2026\\u002d02-30"', 1))
    with pytest.raises(InputError, match=r"Account.jsonl:1: record .*: field Due__c: '2026-02-30' is not a valid"):
        read_world(world)
    world, line = _poisoned(tmp_path / "e", "tryton", "sale.sale.jsonl",
                            {"reference": "2026-02-30", "sale_date": {"__class__": "date", "year": 2026, "month": 2,
                                                                      "day": 3}})
    with pytest.raises(InputError, match=r"sale.sale.jsonl:1: record 7: field reference: '2026-02-30'"):
        read_world(world)

"""World directories: the reader, and every kind of bad input as one ``file:line`` error before anything
is served (docs/world.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from canonical.errors import InputError
from sandbox.world import read_world

WORLDS = Path(__file__).resolve().parents[1] / "worlds"


def copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(WORLDS / name, target)
    return target


def append(path: Path, line: str) -> int:
    """Append one line; returns its line number."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, line]) + "\n")
    return len(lines) + 1


def error(path: Path) -> str:
    with pytest.raises(InputError) as info:
        read_world(path)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", ["salesforce", "hubspot", "stripe", "tryton", "odoo", "bank"])
def test_every_shipped_world_reads(name: str) -> None:
    world = read_world(WORLDS / name)
    assert world.systems == [name]
    assert world.path == WORLDS / name
    assert world.name == f"{name}-small"


def test_reader_keeps_wire_form_file_order_and_exact_numbers() -> None:
    world = read_world(WORLDS / "salesforce")
    assert (world.erp, world.reporting_currency, world.as_of) == (None, "USD", date(2026, 10, 31))
    opps = world.records["salesforce"]["Opportunity"]
    assert [o["Id"] for o in opps] == ["006Dn00000O1p2qAAA", "006Dn00000O7r8sAAA", "006Dn00000O9z9zAAA"]
    assert opps[0]["Amount"] == Decimal("48250.50") and isinstance(opps[0]["Amount"], Decimal)
    assert opps[0]["attributes"]["type"] == "Opportunity" and opps[2]["IsDeleted"] is True
    assert opps[0]["Deal_Desk_Approved__c"] is True
    hub = read_world(WORLDS / "hubspot").records["hubspot"]
    assert hub["associations/deals_to_companies"][0]["from"] == {"id": "9001"}
    assert [p["id"] for p in hub["pipelines"]] == ["default"]


def test_bank_world_lists_statements_and_fx_rates() -> None:
    world = read_world(WORLDS / "bank")
    assert [p.name for p in world.bank_files] == ["2026-10-31.xml"]
    assert world.bank_folder == WORLDS / "bank" / "bank"
    assert world.api_systems == []
    assert world.fx_rates == [
        {"rate_date": date(2026, 10, 20), "base": "EUR", "quote": "USD", "rate": Decimal("1.0842")},
        {"rate_date": date(2026, 10, 31), "base": "EUR", "quote": "USD", "rate": Decimal("1.0791")}]


# --- bad JSON Lines files ------------------------------------------------------------------------------

def test_line_that_is_not_json(tmp_path: Path) -> None:
    world = copy("salesforce", tmp_path)
    f = world / "salesforce" / "Opportunity.jsonl"
    n = append(f, '{"Id": "006Dn00000O0000AAA", ')
    assert error(world).startswith(f"{f}:{n}: not JSON")


def test_line_that_is_json_but_not_an_object(tmp_path: Path) -> None:
    world = copy("stripe", tmp_path)
    f = world / "stripe" / "charges.jsonl"
    n = append(f, '["ch_1"]')
    assert error(world) == f"{f}:{n}: a line must be one JSON object, not list"


def test_records_share_their_key_texts_and_equal_each_line_decoded_alone() -> None:
    from sandbox.world import _loads

    world = read_world(WORLDS / "salesforce")
    f = WORLDS / "salesforce" / "salesforce" / "Opportunity.jsonl"
    opps = world.records["salesforce"]["Opportunity"]
    assert opps == [_loads(line) for line in f.read_text().splitlines() if line.strip()]
    first, second = (list(o) for o in opps[:2])
    assert first[0] == second[0] and first[0] is second[0]  # one key text for every record


@pytest.mark.parametrize("lines", [
    ['{"object": "charge", "id": "ch_x", "created": 1, "a": [{}', '{}]}'],  # one value over two lines
    ['{"object": "charge", "id": "ch_x", "created": 1, "a": [{}', '{}]}, {"b": 1}'],  # and a line of two
    ['{"object": "charge", "id": "ch_x", "created": 1}, {"object": "charge", "id": "ch_y", "created": 2}'],
    ['{"object": "charge", "id": "ch_x", "created": 1, "note": "NaN"}', '{"x": NaN'],  # the text NaN
])
def test_lines_that_decode_only_together_name_their_first_line(tmp_path: Path, lines: list[str]) -> None:
    world = copy("stripe", tmp_path)
    f = world / "stripe" / "charges.jsonl"
    n = append(f, lines[0])
    for line in lines[1:]:
        append(f, line)
    assert error(world).startswith(f"{f}:{n if 'NaN' not in lines[0] else n + 1}: not JSON")


@pytest.mark.parametrize(("name", "file", "record", "key"), [
    ("salesforce", "Account.jsonl", {"attributes": {"type": "Account"}, "Name": "No id",
                                     "SystemModstamp": "2026-01-01T00:00:00.000+0000"}, "'Id'"),
    ("hubspot", "deals.jsonl", {"properties": {}, "createdAt": "2026-01-01T00:00:00Z"}, "'id'"),
    ("stripe", "customers.jsonl", {"object": "customer", "id": "", "created": 1}, "'id'"),
    ("tryton", "sale.sale.jsonl", {"number": "SO-1"}, "'id'"),
    ("odoo", "res.partner.jsonl", {"name": "No id", "write_date": "2026-01-01 00:00:00"}, "'id'"),
])
def test_record_without_its_id(tmp_path: Path, name: str, file: str, record: dict[str, object], key: str) -> None:
    world = copy(name, tmp_path)
    f = world / name / file
    n = append(f, json.dumps(record))
    assert error(world).startswith(f"{f}:{n}: record without its id") and key in error(world)


def test_salesforce_attributes_type_must_be_the_files_object(tmp_path: Path) -> None:
    world = copy("salesforce", tmp_path)
    f = world / "salesforce" / "Account.jsonl"
    n = append(f, json.dumps({"attributes": {"type": "Contact"}, "Id": "003Dn00000Z9z9zAAA",
                              "SystemModstamp": "2026-01-01T00:00:00.000+0000"}))
    msg = error(world)
    assert msg.startswith(f"{f}:{n}: record 003Dn00000Z9z9zAAA: attributes.type is 'Contact', not 'Account'")


def test_salesforce_record_without_attributes(tmp_path: Path) -> None:
    world = copy("salesforce", tmp_path)
    f = world / "salesforce" / "Contact.jsonl"
    n = append(f, json.dumps({"Id": "003Dn00000Z9z9zAAA", "SystemModstamp": "2026-01-01T00:00:00.000+0000"}))
    assert error(world).startswith(f"{f}:{n}: record 003Dn00000Z9z9zAAA: attributes.type is missing")


def test_duplicate_id_in_one_file_names_both_lines(tmp_path: Path) -> None:
    world = copy("tryton", tmp_path)
    f = world / "tryton" / "party.party.jsonl"
    first = f.read_text().splitlines()[0]
    n = append(f, first)
    assert error(world) == f"{f}:{n}: duplicate id 12 (first on line 1); one record per id"


def test_duplicate_association_source_in_one_file(tmp_path: Path) -> None:
    world = copy("hubspot", tmp_path)
    f = world / "hubspot" / "associations" / "deals_to_companies.jsonl"
    n = append(f, '{"from": {"id": "9001"}, "to": [{"toObjectId": 5008, "associationTypes": []}]}')
    assert error(world).startswith(f"{f}:{n}: duplicate id 9001")


@pytest.mark.parametrize(("name", "file", "record", "what"), [
    ("stripe", "charges.jsonl", {"id": "ch_x", "object": "refund", "created": 1}, "object is 'refund', not 'charge'"),
    ("stripe", "charges.jsonl", {"id": "ch_x", "object": "charge", "created": "2026-01-01"}, "created must be Unix"),
    ("tryton", "sale.line.jsonl", {"id": "21b", "create_date": None}, "a tryton id is an integer"),
    ("odoo", "sale.order.jsonl", {"id": 99, "write_date": False}, "write_date or create_date is required"),
    ("hubspot", "deals.jsonl", {"id": "x1", "properties": {}, "createdAt": "2026-01-01T00:00:00Z",
                                "updatedAt": "2026-01-01T00:00:00Z"}, "a HubSpot id is a number"),
    ("hubspot", "deals.jsonl", {"id": "1", "properties": {}, "createdAt": "2026-01-01T00:00:00Z",
                                "updatedAt": "yesterday"}, "updatedAt is not an ISO 8601 instant"),
    ("salesforce", "Lead.jsonl", {"attributes": {"type": "Lead"}, "Id": "00QDn00000X1x1xAAA"},
     "SystemModstamp is missing"),
    ("salesforce", "Lead.jsonl", {"attributes": {"type": "Lead"}, "Id": "00QDn00000X1x1xAAA",
                                  "SystemModstamp": "yesterday"}, "SystemModstamp 'yesterday' is not a datetime"),
    ("hubspot", "associations/deals_to_companies.jsonl", {"from": {"id": "9002"}, "to": [{"toObjectId": "abc"}]},
     "toObjectId"),
    ("tryton", "sale.sale.jsonl", {"id": 99, "create_date": "2026-10-01T00:00:00"}, "must be a Tryton datetime"),
    ("odoo", "sale.order.jsonl", {"id": 99, "write_date": "2026-10-01T00:00:00Z"}, "must be Odoo's UTC"),
    ("tryton", "account.invoice.jsonl", {"id": 99, "create_date": {"__class__": "datetime", "year": 2026,
                                                                   "month": 1, "day": 1}},
     "field 'type' is missing (the tryton connector selects account.invoice rows by it)"),
    ("odoo", "account.move.line.jsonl", {"id": 99, "write_date": "2026-01-01 00:00:00", "move_id": [41, "X"]},
     "field 'display_type' is missing"),
])
def test_records_the_emulator_could_not_serve(tmp_path: Path, name: str, file: str, record: dict[str, object],
                                              what: str) -> None:
    world = copy(name, tmp_path)
    f = world / name / file
    n = append(f, json.dumps(record))
    msg = error(world)
    assert msg.startswith(f"{f}:{n}: ") and what in msg


# --- unknown files and directories -------------------------------------------------------------------

def test_unknown_object_file(tmp_path: Path) -> None:
    world = copy("salesforce", tmp_path)
    (world / "salesforce" / "Acount.jsonl").write_text("")
    msg = error(world)
    assert msg.startswith(f"{world / 'salesforce' / 'Acount.jsonl'}: unknown salesforce file") and "Account.jsonl" in msg


def test_unknown_file_at_the_top(tmp_path: Path) -> None:
    world = copy("stripe", tmp_path)
    (world / "notes.txt").write_text("x")
    assert error(world).startswith(f"{world / 'notes.txt'}: unknown file or directory in a world")


def test_unknown_association_file(tmp_path: Path) -> None:
    world = copy("hubspot", tmp_path)
    (world / "hubspot" / "associations" / "deals_to_owners.jsonl").write_text("")
    assert "unknown association file" in error(world)


def test_unknown_bank_file_and_bad_statement(tmp_path: Path) -> None:
    world = copy("bank", tmp_path)
    (world / "bank" / "2026-11.sta").write_text(":20:X\n")
    assert error(world).startswith(f"{world / 'bank' / '2026-11.sta'}: unknown bank file")
    (world / "bank" / "2026-11.sta").unlink()
    (world / "bank" / "broken.xml").write_text("<Document><BkToCstmrStmt>")
    assert "broken.xml" in error(world)


def test_hidden_files_are_ignored(tmp_path: Path) -> None:
    world = copy("odoo", tmp_path)
    (world / ".DS_Store").write_text("x")
    (world / "odoo" / ".gitkeep").write_text("")
    assert read_world(world).records["odoo"]["res.partner"]


# --- world.yaml ------------------------------------------------------------------------------------

def manifest(tmp_path: Path, text: str, systems: tuple[str, ...] = ("stripe",)) -> Path:
    world = tmp_path / "w"
    world.mkdir()
    for s in systems:
        (world / s).mkdir()
    (world / "world.yaml").write_text(text)
    return world


def test_unknown_key(tmp_path: Path) -> None:
    world = manifest(tmp_path, "format: 1\nsystems: [stripe]\nreporting_currency: USD\nerp_system: odoo\n")
    assert error(world) == (f"{world / 'world.yaml'}:4: unknown key 'erp_system'; known: format, name, systems, "
                            "erp, reporting_currency, as_of, mappings")


def test_system_without_directory(tmp_path: Path) -> None:
    world = manifest(tmp_path, "format: 1\nname: x\nsystems: [stripe, odoo]\nerp: odoo\nreporting_currency: USD\n")
    assert error(world).startswith(f"{world / 'world.yaml'}:3: system 'odoo' has no directory")


def test_directory_of_a_system_not_listed(tmp_path: Path) -> None:
    world = manifest(tmp_path, "format: 1\nsystems: [stripe]\nreporting_currency: USD\n", ("stripe", "hubspot"))
    assert error(world).startswith(f"{world / 'hubspot'}: directory of system 'hubspot', which world.yaml's "
                                   "systems does not list")


def test_erp_not_in_systems(tmp_path: Path) -> None:
    world = manifest(tmp_path, "format: 1\nsystems: [stripe]\nerp: tryton\nreporting_currency: USD\n")
    assert error(world) == (f"{world / 'world.yaml'}:3: erp 'tryton' is not in systems; add it to systems "
                            "(with its directory)")


@pytest.mark.parametrize(("text", "line", "what"), [
    ("format: 1\nsystems: [stripe]\nreporting_currency: DOLLARS\n", 3, "is not an ISO 4217 currency code"),
    ("format: 1\nsystems: [stripe]\n", 1, "reporting_currency is missing"),
    ("format: 2\nsystems: [stripe]\nreporting_currency: USD\n", 1, "format 2 is not supported"),
    ("format: 1\nsystems: [stripe, sap]\nreporting_currency: USD\n", 2, "unknown system 'sap'"),
    ("format: 1\nsystems: stripe\nreporting_currency: USD\n", 2, "systems must be a non-empty list"),
    ("format: 1\nsystems: [stripe]\nerp: sap\nreporting_currency: USD\n", 3, "erp must be tryton, odoo or none"),
    ("format: 1\nsystems: [stripe]\nreporting_currency: USD\nas_of: 31.10.2026\n", 4, "is not a date"),
    ("format: 1\nsystems: [stripe\nreporting_currency: USD\n", 3, "not valid YAML"),
    ("- stripe\n", 1, "the top level must be a mapping"),
])
def test_bad_manifest(tmp_path: Path, text: str, line: int, what: str) -> None:
    world = manifest(tmp_path, text)
    msg = error(world)
    assert msg.startswith(f"{world / 'world.yaml'}:{line}: ") and what in msg


def test_not_a_world(tmp_path: Path) -> None:
    assert error(tmp_path) == f"{tmp_path}: not a world directory: world.yaml is missing (see docs/world.md)"
    assert error(tmp_path / "nope") == f"{tmp_path / 'nope'}: world directory does not exist or is not a directory"


@pytest.mark.parametrize(("row", "what"), [
    ("2026-10-32,EUR,USD,1.08", "rate_date '2026-10-32' is not a date"),
    ("2026-10-30,EUR,XXY,1.08", "base and quote must be ISO 4217 codes"),
    ("2026-10-30,EUR,USD,1,08", "expected 4 columns"),
    ("2026-10-30,EUR,USD,-1", "must be a positive decimal"),
    ("2026-10-20,EUR,USD,1.09", "duplicate rate for EUR/USD on 2026-10-20 (first on line 2)"),
])
def test_bad_fx_rate_row(tmp_path: Path, row: str, what: str) -> None:
    world = copy("bank", tmp_path)
    n = append(world / "fx_rates.csv", row)
    msg = error(world)
    assert msg.startswith(f"{world / 'fx_rates.csv'}:{n}: ") and what in msg


def test_fx_header(tmp_path: Path) -> None:
    world = copy("bank", tmp_path)
    (world / "fx_rates.csv").write_text("date,from,to,rate\n")
    assert error(world) == f"{world / 'fx_rates.csv'}:1: the header must be rate_date,base,quote,rate"


# --- nothing is served from a bad world ---------------------------------------------------------------

def test_cli_refuses_a_bad_world_in_one_line_and_starts_nothing(tmp_path: Path) -> None:
    world = copy("salesforce", tmp_path)
    f = world / "salesforce" / "Product2.jsonl"  # the last file read: everything before it was valid
    n = append(f, "not json")
    proc = subprocess.run([sys.executable, "-c", "from ltc.cli import main; main()", "sandbox", "start",
                           "--world", str(world)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {f}:{n}: not JSON (Expecting value at column 1); "
                                                "each line is one JSON object"]
    assert not (tmp_path / ".ltc" / "sandbox.json").exists() and not (tmp_path / ".ltc").exists()


def test_cli_serves_a_world_and_status_names_each_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import httpx

    from canonical.errors import ConfigError
    from ltc.cli import sandbox as sandbox_cmd

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="--kind and --world do not go together"):
        sandbox_cmd.start(kind=["stripe"], seed=7, size=10, world=str(WORLDS / "odoo"))
    started = subprocess.run([sys.executable, "-c", "from ltc.cli import main; main()", "sandbox", "start",
                              "--world", str(WORLDS / "odoo")], capture_output=True, text=True, timeout=90)
    try:
        assert started.returncode == 0, started.stderr
        capsys.readouterr()
        sandbox_cmd.status()
        status = capsys.readouterr().out
        assert f"world odoo-small ({WORLDS / 'odoo'})" in status
        [line] = [ln for ln in status.splitlines() if ln.startswith("odoo ")]
        url = line.split()[1]
        assert url.startswith("http://127.0.0.1:")
        answer = httpx.post(f"{url}/jsonrpc", json={"jsonrpc": "2.0", "id": 1, "method": "call", "params": {
            "service": "common", "method": "version", "args": []}}).json()
        assert answer["result"]["server_version"].startswith("18")
    finally:
        sandbox_cmd.stop()
    assert "sandbox stopped" in capsys.readouterr().out
    assert not (tmp_path / ".ltc" / "sandbox.json").exists()


def test_large_bank_statements_are_parsed_in_a_child_with_the_same_errors(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import sandbox.world as world_module
    from sandbox.world import open_world

    monkeypatch.setattr(world_module, "FORK_BANK_FROM", 0)  # every bank folder is "large"
    world = copy("bank", tmp_path)
    from connectors import statements

    read, checks = open_world(world, offer_statements=True)
    assert [p.name for p in read.bank_files] == ["2026-10-31.xml"]
    checks.finish()
    assert read.fx_rates  # read by finish()
    data = (world / "bank" / "2026-10-31.xml").read_bytes()
    offered = {(statements.file_hash(data), "2026-10-31.xml"): statements.parse_bytes(data, "2026-10-31.xml")}
    assert offered == statements._PARSED  # for the import to use
    statements.forget_parsed()
    (world / "bank" / "broken.xml").write_text("<Document><BkToCstmrStmt>")
    deferred = error(world)
    monkeypatch.setattr(world_module, "FORK_BANK_FROM", 10**12)
    assert error(world) == deferred and "broken.xml" in deferred
    # a bad statement is a reading problem: raised before a readability problem of a system read earlier
    both = copy("salesforce", tmp_path / "both")
    shutil.copytree(world / "bank", both / "bank")
    manifest = both / "world.yaml"
    manifest.write_text(manifest.read_text().replace("systems: [salesforce]", "systems: [salesforce, bank]"))
    monkeypatch.setattr(world_module, "FORK_BANK_FROM", 0)
    monkeypatch.setattr(world_module, "FORK_CHECK_FROM", 0)
    monkeypatch.setattr(world_module, "_check_readable",
                        lambda *_a: (_ for _ in ()).throw(InputError("unreadable record")))
    assert "broken.xml" in error(both)
    (both / "bank" / "broken.xml").unlink()
    assert error(both) == "unreadable record"


def test_large_bank_statements_start_parsing_before_the_first_system_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The statements' forked parse does not wait for the other systems' reading (the other core is idle
    while the first one is read); its errors still come after every reading problem."""
    import sandbox.world as world_module
    from sandbox.world import open_world

    both = copy("salesforce", tmp_path / "both")
    shutil.copytree(copy("bank", tmp_path) / "bank", both / "bank")
    manifest = both / "world.yaml"
    manifest.write_text(manifest.read_text().replace("systems: [salesforce]", "systems: [salesforce, bank]"))
    monkeypatch.setattr(world_module, "FORK_BANK_FROM", 0)
    seen: list[list[str]] = []
    read_system = world_module._read_system

    def spy(world: world_module.WorldDir, system: str) -> None:
        seen.append([p.name for p in world.bank_files])
        read_system(world, system)

    monkeypatch.setattr(world_module, "_read_system", spy)
    read, checks = open_world(both)
    checks.finish()
    assert seen == [["2026-10-31.xml"]] and [p.name for p in read.bank_files] == ["2026-10-31.xml"]
    (both / "bank" / "broken.xml").write_text("<Document><BkToCstmrStmt>")
    with (both / "salesforce" / "Account.jsonl").open("a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    assert "Account.jsonl" in error(both)  # the reading problem first, as when the bank is parsed last


def test_open_world_cancel_stops_the_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sandbox.world as world_module
    from sandbox.world import open_world

    monkeypatch.setattr(world_module, "FORK_CHECK_FROM", 0)  # every system checked in a child
    _world, checks = open_world(copy("salesforce", tmp_path))
    checks.cancel()
    checks.cancel()  # twice is harmless
    assert all(p._process is None for p in checks._checks)

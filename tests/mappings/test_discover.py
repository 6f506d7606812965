"""Field discovery: identifier fields no mapping reads are found, proposed, accepted and applied."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from canonical import tables
from canonical.store import RawRecord, Store
from ltc.app.config import Config, SourceConfig
from ltc.app.discovery import last_applied, map_with_discovery, suggest
from mappings.discover import override_text, tax_id_scheme, write_override
from mappings.engine import compile_for, map_records

VATS = ["DE136695976", "GB980780684", "FR40303265045", "NL004495445B01"]
USCC = "91110000600037341L"


@pytest.mark.parametrize(("value", "scheme"), [
    (USCC, "CN USCC"), ("91110000600037341X", None),  # wrong check character
    ("DE136695976", "VAT DE"), ("DE136695977", None), ("de 136 695 976", "VAT DE"),
    ("04-2103594", "US EIN"), ("042103594", None),  # an EIN is written NN-NNNNNNN
    ("TX00000012", None), ("SO-00012", None), ("Acme Corporation", None), (None, None),
])
def test_tax_id_schemes_use_the_check_digits(value: Any, scheme: str | None) -> None:
    assert tax_id_scheme(value) == scheme


def _account(i: int, tax: str | None) -> RawRecord:
    rec = {"attributes": {"type": "Account"}, "Id": f"0010000000000{i:02d}AAA", "Name": f"Company {i}",
           "IsDeleted": False, "SystemModstamp": "2026-03-01T10:15:00.000+0000", "VAT_Number__c": tax,
           "Customer_Code__c": f"C{i:04d}"}
    return RawRecord("Account", rec["Id"], rec)


def _opp(i: int) -> RawRecord:
    rec = {"attributes": {"type": "Opportunity"}, "Id": f"0060000000000{i:02d}AAA", "Name": f"Deal {i}",
           "StageName": "Closed Won", "Amount": 100, "CloseDate": "2026-03-01", "IsDeleted": False,
           "SystemModstamp": "2026-03-01T10:15:00.000+0000"}
    return RawRecord("Opportunity", rec["Id"], rec)


def _invoice(i: int, crm_ref: str) -> RawRecord:
    rec = {"id": f"in_{i:04d}", "object": "invoice", "number": f"INV-{i:04d}", "customer": "cus_1",
           "currency": "usd", "total": 10000, "created": 1774915200, "status": "open",
           "metadata": {"crm_opp": crm_ref, "note": "thanks"}, "lines": {"data": []}}
    return RawRecord("invoice", rec["id"], rec)


@pytest.fixture
def landed(sqlite_store: Store) -> Store:
    sqlite_store.commit_page("crm", "Account", [_account(i, [*VATS, USCC][i % 5]) for i in range(5)]
                             + [_account(9, None)], None)
    sqlite_store.commit_page("crm", "Opportunity", [_opp(i) for i in range(4)], None)
    sqlite_store.commit_page("stripe", "invoice", [_invoice(i, f"0060000000000{i:02d}AAA") for i in range(3)]
                             + [_invoice(7, "not a deal")], None)
    return sqlite_store


CFG = Config(sources={"crm": SourceConfig(kind="salesforce"), "stripe": SourceConfig(kind="stripe")})


def test_suggest_finds_a_tax_id_custom_field_and_a_reference_key(landed: Store) -> None:
    map_with_discovery(landed, CFG, enabled=False)  # the deals are known identifiers once mapped
    found = {(f.system, f.object, f.path): f for f in suggest(landed, CFG)}
    vat = found[("crm", "Account", "VAT_Number__c")]
    assert (vat.target, vat.values, vat.matches, vat.confidence) == ("tax_id", 5, 5, "high")
    assert vat.detail == {"CN USCC": 1, "VAT DE": 1, "VAT FR": 1, "VAT GB": 1, "VAT NL": 1}
    ref = found[("stripe", "invoice", "metadata.crm_opp")]
    assert (ref.kind, ref.target, ref.matches, ref.values, ref.detail) == ("deal_id", "deal_ref", 3, 4, {"crm": 3})
    assert ref.existing == ["metadata.deal_id"]  # the shipped key stays first
    assert ("crm", "Account", "Customer_Code__c") not in found  # not an identifier of anything
    assert not any(f.path in ("Name", "metadata.note") for f in found.values())
    text = override_text(list(found.values()), "stripe")
    assert "deal_ref: {from: [metadata.deal_id, metadata.crm_opp]}" in text and "3 of 4 values" in text


def test_the_pipeline_applies_high_confidence_fields_and_records_why(landed: Store) -> None:
    counts, evidence = map_with_discovery(landed, CFG)
    assert counts["crm"]["account"] == 6
    assert {(d["system"], d["path"], d["target"]) for d in evidence} == {
        ("crm", "VAT_Number__c", "tax_id"), ("stripe", "metadata.crm_opp", "deal_ref")}
    assert last_applied(landed) == evidence
    acc, inv = tables.table_for("account"), tables.table_for("invoice")
    with landed.engine.connect() as conn:
        taxes = dict(conn.execute(sa.select(acc.c.source_id, acc.c.tax_id)).all())
        refs = dict(conn.execute(sa.select(inv.c.source_id, inv.c.deal_ref)).all())
    assert taxes["001000000000000AAA"] == "DE136695976" and taxes["001000000000004AAA"] == USCC
    assert taxes["001000000000009AAA"] is None
    assert refs["in_0001"] == "006000000000001AAA" and refs["in_0007"] == "not a deal"
    # a second run with nothing new maps nothing again
    again, evidence2 = map_with_discovery(landed, CFG)
    assert evidence2 == evidence and all(c.get("records", 0) == 0 for c in again.values())


def _count_sample_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The (system, object) of each discovery sample read from the store from now on."""
    from mappings import discover as discover_module

    read: list[tuple[str, str]] = []
    payloads = discover_module._payloads

    def counted(store: Store, system: str, obj: str, sample: int) -> list[Any]:
        read.append((system, obj))
        return payloads(store, system, obj, sample)

    monkeypatch.setattr(discover_module, "_payloads", counted)
    return read


def test_a_sample_profiled_once_its_sync_ended_is_reused_and_finds_the_same(
        landed: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from ltc.app.discovery import sample_early

    profiled: dict[tuple[str, str], list[Any]] = {}
    sample_early(landed, CFG, "crm", profiled)  # crm's sync ended; the others may still be syncing
    assert {key[0] for key in profiled} == {"crm"} and ("crm", "Account") in profiled
    read = _count_sample_reads(monkeypatch)
    _counts, evidence = map_with_discovery(landed, CFG, profiled=profiled)
    assert {s for s, _ in read} == {"stripe"}  # crm's sample was not read again
    assert {(d["system"], d["path"], d["target"]) for d in evidence} == {
        ("crm", "VAT_Number__c", "tax_id"), ("stripe", "metadata.crm_opp", "deal_ref")}


def test_write_override_is_a_valid_mapping_override(landed: Store, tmp_path: Path) -> None:
    map_with_discovery(landed, CFG, enabled=False)
    path = tmp_path / "crm.yaml"
    path.write_text("objects:\n  Account:\n    fields:\n      attributes.code: Customer_Code__c\n", encoding="utf-8")
    written = write_override(path, suggest(landed, CFG, "crm"), "crm")
    assert [(f.object, f.target, f.path) for f in written] == [("Account", "tax_id", "VAT_Number__c")]
    mset = compile_for("crm", "salesforce", path)
    rec = _account(1, "gb 980 780 684")
    rows = map_records(mset, [(1, "Account", rec.source_id, rec.payload, None)]).rows["account"]
    assert rows[0]["tax_id"] == "GB980780684" and rows[0]["attributes"]["code"] == "C0001"
    assert write_override(path, suggest(landed, CFG, "crm"), "crm") == []  # the field is set: kept


LTC = [sys.executable, "-c", "from ltc.cli import main; main()"]


def test_cli_suggest_and_write(landed: Store, tmp_path: Path) -> None:
    url = landed.engine.url.render_as_string(hide_password=False)
    (tmp_path / "ltc.yaml").write_text("sources:\n  crm:\n    kind: salesforce\n  stripe:\n    kind: stripe\n",
                                       encoding="utf-8")
    env = {**{k: v for k, v in os.environ.items() if k not in ("LTC_CONFIG",)}, "LTC_DATABASE_URL": url,
           "COLUMNS": "200"}
    res = subprocess.run([*LTC, "mappings", "suggest", "--source", "crm"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "VAT_Number__c" in res.stdout and "tax_id: {from: VAT_Number__c, coerce: tax_id}" in res.stdout
    res = subprocess.run([*LTC, "mappings", "suggest", "--write", "x.yaml"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "--write needs --source" in res.stderr
    res = subprocess.run([*LTC, "mappings", "suggest", "--source", "crm", "--write", "crm.yaml"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "VAT_Number__c" in (tmp_path / "crm.yaml").read_text(encoding="utf-8")


def test_remap_keeps_the_discovered_fields(landed: Store) -> None:
    from ltc.app.pipeline import remap

    map_with_discovery(landed, CFG)
    remap(landed, CFG, "crm")
    acc = tables.table_for("account")
    with landed.engine.connect() as conn:
        taxes = dict(conn.execute(sa.select(acc.c.source_id, acc.c.tax_id)).all())
    assert taxes["001000000000001AAA"] == "GB980780684"


def test_a_hubspot_custom_property_with_uscc_values() -> None:
    from mappings.discover import profile_records
    from mappings.spec import load_mapping

    spec = load_mapping("hubspot")["objects"]["companies"]
    good = [USCC, "91350211M000100Y46", "91440300MA5FXXXX0X"]  # the last: a wrong check character
    payloads = [{"id": str(i), "properties": {"name": f"公司{i}", "tax_id_cn": v, "phone": "+86 755 1234 5678"}}
                for i, v in enumerate(good)]
    [f] = profile_records("hubspot", "companies", spec, payloads, {})
    assert (f.path, f.target, f.values, f.detail) == ("properties.tax_id_cn", "tax_id", 3, {"CN USCC": 2})
    assert f.confidence == "low"  # 2 of 3 pass the check character: not applied without a person


def test_a_tax_id_field_is_also_found_by_the_values_another_system_holds(sqlite_store: Store) -> None:
    # tax ids without check digits of any scheme, equal to the ERP's (Tryton parties carry them)
    erp = [RawRecord("party.party", str(i), {"id": i, "name": f"Company {i}", "tax_identifier.": {"code": f"TX-{i:06d}"},
                                            "create_date": "2026-01-01T00:00:00"}) for i in range(1, 5)]
    sqlite_store.commit_page("tryton", "party.party", erp, None)
    sqlite_store.commit_page("crm", "Account", [_account(i, f"tx{i:06d}") for i in range(1, 4)], None)
    cfg = Config(sources={"crm": SourceConfig(kind="salesforce"), "tryton": SourceConfig(kind="tryton")})
    map_with_discovery(sqlite_store, cfg, enabled=False)
    [f] = [f for f in suggest(sqlite_store, cfg, "crm") if f.target == "tax_id"]
    assert (f.path, f.matches, f.values, f.detail, f.confidence) == (
        "VAT_Number__c", 3, 3, {"= tryton tax id": 3}, "high")


def test_the_pipeline_reads_each_sample_once_and_still_finds_what_the_mapping_made_known(
        landed: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from mappings import discover as discover_module

    read = _count_sample_reads(monkeypatch)
    _counts, evidence = map_with_discovery(landed, CFG)
    assert sorted(read) == sorted(set(read)) and ("stripe", "invoice") in read  # discovery ran twice, read once
    # the deals became known by the first mapping only: the second pass found their key in the cached sample
    assert ("stripe", "metadata.crm_opp", "deal_ref") in {(d["system"], d["path"], d["target"]) for d in evidence}
    # and the cached pass finds what a fresh discovery finds
    fresh = {(f.system, f.object, f.path, f.matches, f.values) for f in suggest(landed, CFG)}
    profiled: dict[tuple[str, str], list[Any]] = {}
    from ltc.app.discovery import generated_mappings, source_kinds
    sources, generated = source_kinds(CFG), generated_mappings(landed, CFG)
    discover_module.discover(landed, sources, generated=generated, profiled=profiled)
    cached = {(f.system, f.object, f.path, f.matches, f.values)
              for f in discover_module.discover(landed, sources, generated=generated, profiled=profiled)}
    assert cached == fresh and profiled

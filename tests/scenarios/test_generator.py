"""The independent world generator (sandbox.scenarios): readable worlds, conventions that vary by
seed, a truth whose records exist in the world's files, and a clean world on request."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from sandbox.scenarios import CODES, make_world
from sandbox.scenarios.build import SHIP_CODES
from sandbox.world import read_world

SEEDS = (1, 2, 3, 4, 5, 6, 14)  # 3 and 14: cash booked in the ERP (Tryton, Odoo); 5: Zoho CRM


def _ids(world_dir: Path) -> set[tuple[str, str, str]]:
    """(system, object, source id) of every record in the world's files."""
    out: set[tuple[str, str, str]] = set()
    w = read_world(world_dir)
    for system, objects in w.records.items():
        for obj, rows in objects.items():
            for row in rows:
                rid = row.get("Id", row.get("id"))
                out.add((system, obj, str(rid)))
    for f in (world_dir / "bank").glob("*.xml"):
        out.update(("bank", "camt053", ref) for ref in re.findall(r"<AcctSvcrRef>([^<]+)</AcctSvcrRef>", f.read_text()))
    return out


_OBJECT_FILE = {"Opportunity": "Opportunity", "Account": "Account", "deals": "deals", "companies": "companies",
                "sale.sale": "sale.sale", "sale.order": "sale.order", "account.invoice": "account.invoice",
                "account.move": "account.move", "party.party": "party.party", "res.partner": "res.partner",
                "invoices": "invoices", "charges": "charges", "camt053": "camt053",
                "account.move.line": "account.move.line", "account.payment": "account.payment",
                "Deals": "Deals", "Accounts": "Accounts"}


@pytest.mark.parametrize("seed", SEEDS)
def test_world_reads_and_truth_records_exist(tmp_path: Path, seed: int) -> None:
    truth = make_world(tmp_path / "w", chains=100, seed=seed)
    assert not list(tmp_path.joinpath("w").glob("*.json")), "the truth must not be inside the world directory"
    ids = _ids(tmp_path / "w")
    assert truth["breaks"]
    for b in truth["breaks"]:
        assert b["code"] in CODES
        assert b["records"], b
        for r in b["records"]:
            assert (r["system"], _OBJECT_FILE[r["object"]], r["id"]) in ids, (b["code"], r)


@pytest.mark.parametrize("seed", [3, 4])  # 3: shipments not synced; 4: Odoo pickings synced
def test_every_code_is_planted_at_size(tmp_path: Path, seed: int) -> None:
    truth = make_world(tmp_path / "w", chains=400, seed=seed)
    expected = set(CODES) - (set() if truth["conventions"]["ships"] else set(SHIP_CODES))
    assert set(Counter(b["code"] for b in truth["breaks"])) == expected


@pytest.mark.parametrize(("seed", "system", "obj", "origin"), [(2, "tryton", "stock.shipment.out", "origins"),
                                                               (4, "odoo", "stock.picking", "origin")])
def test_a_company_that_ships_writes_its_outgoing_shipments(tmp_path: Path, seed: int, system: str, obj: str,
                                                            origin: str) -> None:
    truth = make_world(tmp_path / "w", chains=200, seed=seed)
    assert truth["conventions"]["ships"]
    w = read_world(tmp_path / "w")
    ships = w.records[system][obj]
    numbers = {o["number"] if system == "tryton" else o["name"]
               for o in w.records[system]["sale.sale" if system == "tryton" else "sale.order"]}
    assert ships and {s[origin] for s in ships} <= numbers
    done = [s for s in ships if s["state"] == "done"]
    assert done and len(done) < len(ships)  # some orders have not shipped yet
    assert all((s["effective_date"] if system == "tryton" else s["date_done"]) for s in done)
    assert w.records[system]["stock.move"]
    planted = {b["code"] for b in truth["breaks"]}
    assert {"DELIVERED_NOT_INVOICED", "INVOICED_NOT_DELIVERED"} <= planted


def test_conventions_vary_by_seed_and_show_in_the_files(tmp_path: Path) -> None:
    seen: dict[str, set[str]] = {"stripe_deal_key": set(), "stripe_order_key": set(), "crm_tax_field": set(),
                                 "remittance": set(), "crm": set(), "erp": set()}
    stripe_keys_in_files: set[str] = set()
    tax_fields_in_files: set[str] = set()
    for seed in range(1, 9):
        d = tmp_path / f"w{seed}"
        truth = make_world(d, chains=60, seed=seed)
        conv = truth["conventions"]
        for k in seen:
            seen[k].add(str(conv[k]))
        w = read_world(d)
        for inv in w.records.get("stripe", {}).get("invoices", []):
            stripe_keys_in_files.update(inv["metadata"])
        if conv["crm"] == "salesforce":
            tax_fields_in_files.update(k for k in w.records["salesforce"]["Account"][0] if k.endswith("__c"))
        elif conv["crm"] == "zoho":
            tax_fields_in_files.update(k for k in w.records["zoho"]["Accounts"][0] if k == conv["crm_tax_field"])
        else:
            tax_fields_in_files.update(k for k in w.records["hubspot"]["companies"][0]["properties"]
                                       if k == conv["crm_tax_field"])
    for k, values in seen.items():
        assert len(values) > 1, f"{k} is the same for every seed: {values}"
    assert len(stripe_keys_in_files) > 2
    assert len(tax_fields_in_files) > 1


def test_no_breaks_means_an_empty_truth_and_a_readable_world(tmp_path: Path) -> None:
    truth = make_world(tmp_path / "w", chains=100, seed=4, breaks=False)
    assert truth["breaks"] == []
    read_world(tmp_path / "w")


def test_same_seed_same_world(tmp_path: Path) -> None:
    def digest(d: Path) -> str:
        h = hashlib.sha256()
        for f in sorted(p for p in d.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(d)).encode() + f.read_bytes())
        return h.hexdigest()

    t1 = make_world(tmp_path / "a", chains=80, seed=9)
    t2 = make_world(tmp_path / "b", chains=80, seed=9)
    assert json.dumps(t1, sort_keys=True) == json.dumps(t2, sort_keys=True)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    make_world(tmp_path / "c", chains=80, seed=10)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


@pytest.mark.parametrize(("seed", "obj", "link"), [(3, "account.move.line", "invoice_payment"),
                                                   (14, "account.payment", "reconciled_invoice_ids")])
def test_cash_booked_in_the_erp_names_its_invoice_by_id(tmp_path: Path, seed: int, obj: str, link: str) -> None:
    truth = make_world(tmp_path / "w", chains=100, seed=seed)
    erp = truth["conventions"]["erp"]
    assert truth["conventions"]["cash"] == "erp"
    w = read_world(tmp_path / "w")
    invoices = {r["id"] for r in w.records[erp]["account.invoice" if erp == "tryton" else "account.move"]}
    pays = w.records[erp][obj]
    linked = [r[link] for r in pays if r[link]]
    assert len(linked) > len(pays) // 2
    for ref in linked:
        assert all(i in invoices for i in (ref if isinstance(ref, list) else [ref]))


def test_planted_ambiguous_transfer_carries_no_reference(tmp_path: Path) -> None:
    """The planted AMBIGUOUS_MATCH is "one transfer, no reference, two open invoices of that amount": the
    bank line must really have no remittance (a payer who names the invoice is no ambiguity)."""
    truth = make_world(tmp_path / "w", chains=400, seed=2)  # seed 2: cash arrives by bank
    refs = {r["id"] for b in truth["breaks"] if b["code"] == "AMBIGUOUS_MATCH" for r in b["records"]
            if r["system"] == "bank"}
    assert refs
    entries = {m.group(1): m.group(0) for f in (tmp_path / "w" / "bank").glob("*.xml")
               for m in re.finditer(r"<Ntry>.*?<AcctSvcrRef>([^<]+)</AcctSvcrRef>.*?</Ntry>", f.read_text())}
    for ref in refs:
        assert "<RmtInf>" not in entries[ref] and "<EndToEndId>NOTPROVIDED</EndToEndId>" in entries[ref], ref


def test_a_zoho_crm_company_writes_zoho_v8_records(tmp_path: Path) -> None:
    truth = make_world(tmp_path / "w", chains=60, seed=5)
    conv = truth["conventions"]
    assert conv["crm"] == "zoho"
    w = read_world(tmp_path / "w")
    deals, accounts = w.records["zoho"]["Deals"], w.records["zoho"]["Accounts"]
    assert deals and accounts
    ids = {a["id"] for a in accounts}
    for d in deals:
        assert d["id"].isdigit() and len(d["id"]) == 19
        assert set(d["Account_Name"]) == {"name", "id"} and d["Account_Name"]["id"] in ids
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}", d["Modified_Time"])
    assert any(conv["crm_tax_field"] in a for a in accounts)
    text = (tmp_path / "w" / "zoho" / "Deals.jsonl").read_text()
    assert re.search(r'"Amount": \d+(\.\d+)?[,}]', text), "Zoho amounts are JSON numbers"

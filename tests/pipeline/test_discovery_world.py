"""A world whose references and tax ids live under keys of the company's own choosing reconciles like
the one with the shipped keys: the pipeline discovers the fields and records why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from canonical import tables
from canonical.store import Store
from ltc.app.demo import generate_world, replay_world

pytestmark = pytest.mark.slow


def _rewrite(path: Path, change: Any) -> None:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    path.write_text("".join(json.dumps(change(r)) + "\n" for r in rows), encoding="utf-8")


def _own_keys(charge: dict[str, Any]) -> dict[str, Any]:
    meta = charge.get("metadata") or {}
    renamed = {"deal_id": "sf_opportunity", "invoice_number": "erp_invoice"}
    charge["metadata"] = {renamed.get(k, k): v for k, v in meta.items()}
    return charge


def test_renamed_reference_keys_and_a_custom_tax_field_are_discovered(tmp_path: Path) -> None:
    shipped = generate_world(tmp_path / "shipped", chains=40, seed=11)
    own = Path(shutil.copytree(shipped, tmp_path / "own"))
    _rewrite(own / "stripe" / "charges.jsonl", _own_keys)
    parties = [json.loads(line) for line in (own / "tryton" / "party.party.jsonl").read_text().splitlines()]
    tax_by_crm = {}
    for p in parties:
        ids = {i["code"] for i in p.get("identifiers.") or [] if i["code"].startswith("CRM-")}
        if p.get("tax_identifier.") and ids:
            tax_by_crm[ids.pop().removeprefix("CRM-")] = p["tax_identifier."]["code"]
    assert len(tax_by_crm) >= 5

    def vat(acc: dict[str, Any]) -> dict[str, Any]:
        acc["Tax_Registration__c"] = tax_by_crm.get(acc["Id"])
        return acc

    _rewrite(own / "salesforce" / "Account.jsonl", vat)

    a, b = Store.open(f"sqlite:///{tmp_path / 'a.db'}"), Store.open(f"sqlite:///{tmp_path / 'b.db'}")
    base = replay_world(a, shipped, tmp_path / "ra", echo=lambda _s: None)
    mine = replay_world(b, own, tmp_path / "rb", echo=lambda _s: None)
    found = {(d["system"], d["object"], d["path"], d["target"]) for d in mine["discovered"]}
    assert ("stripe", "charge", "metadata.sf_opportunity", "deal_ref") in found
    assert ("stripe", "charge", "metadata.erp_invoice", "invoice_ref") in found
    assert ("salesforce", "Account", "Tax_Registration__c", "tax_id") in found
    assert mine["reconcile"]["exceptions"] == base["reconcile"]["exceptions"]
    pay = tables.table_for("payment")
    refs = []
    for store in (a, b):
        with store.engine.connect() as conn:
            refs.append(dict(conn.execute(sa.select(pay.c.source_id, sa.func.coalesce(pay.c.invoice_ref, "") + "|"
                                                    + sa.func.coalesce(pay.c.deal_ref, ""))).all()))
    assert refs[0] == refs[1] and sum(v != "|" for v in refs[1].values()) >= 5  # the references are read
    acc = tables.table_for("account")
    with b.engine.connect() as conn:
        taxes = dict(conn.execute(sa.select(acc.c.source_id, acc.c.tax_id)
                                  .where(acc.c.source_system == "salesforce")).all())
    assert {k: v for k, v in taxes.items() if k in tax_by_crm} == {k: v.replace("-", "") for k, v in tax_by_crm.items()}

"""The scenario generator with Zoho CRM as the CRM: ids rewritten, files valid, every planted break found."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from canonical.store import Store
from ltc.app.demo import replay_world
from reconcile.codes import fingerprint
from reconcile.tables import recon_exception
from sandbox.scenario import generate
from sandbox.world import read_world
from sandbox.world_writer import as_zoho, write_world


def test_as_zoho_rewrites_every_crm_id_and_the_truth() -> None:
    world = as_zoho(generate(60, seed=3))
    for name, df in world.tables.items():
        for col, dtype in df.schema.items():
            if dtype == pl.String:
                assert not df[col].str.contains("salesforce").any(), f"{name}.{col}"
    deals = world.tables["deal"]
    assert deals["id"].str.starts_with("zoho:deal:57257676").all()
    assert deals["source_id"].str.contains(r"^\d+$").all()
    assert world.tables["deal_line"].is_empty()
    assert "LINE_MISMATCH" not in world.truth["code"].to_list()
    for code, keys, fp in world.truth.iter_rows():
        assert fp == fingerprint(code, keys)


@pytest.mark.slow
def test_a_generated_zoho_world_replays_with_every_break_found(tmp_path: Path) -> None:
    world = as_zoho(generate(120, seed=11))
    path = write_world(world, tmp_path / "world", crm="zoho")
    read = read_world(path)
    assert read.systems[0] == "zoho" and set(read.records["zoho"]) == {"Accounts", "Deals", "Leads"}
    store = Store.open(f"sqlite:///{tmp_path / 'ltc.db'}")
    try:
        replay_world(store, path, tmp_path / "reports", echo=lambda _line: None)
        with store.engine.connect() as conn:
            found = {r[0] for r in conn.execute(sa.select(recon_exception.c.fingerprint))}
    finally:
        store.close()
    truth = set(world.truth["fingerprint"].to_list())
    assert truth and found == truth

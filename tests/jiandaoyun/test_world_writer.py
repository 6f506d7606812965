"""A generated world with Jiandaoyun as its CRM (sandbox.world_writer crm="jiandaoyun"): ids and truth
rewritten, widget names and labels chosen by the seed, every planted break found on replay."""

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
from sandbox.world_writer import as_jiandaoyun, jiandaoyun_records, write_world


def test_as_jiandaoyun_rewrites_every_crm_id_and_the_truth() -> None:
    world = as_jiandaoyun(generate(60, seed=3))
    deals = world.tables["deal"]
    assert deals["id"].str.contains(r"^jiandaoyun:deal:66e3a6[0-9a-f]{18}$").all()
    assert world.tables["deal_line"]["id"].str.contains(r"^jiandaoyun:deal_line:66e3a7[0-9a-f]{18}$").all()
    for name, df in world.tables.items():
        for col, dtype in df.schema.items():
            if dtype == pl.String:
                assert not df[col].cast(str).str.contains("salesforce").any(), (name, col)
    assert "QUOTE_MISMATCH" not in world.truth["code"].to_list()
    for code, keys, fp in world.truth.iter_rows():
        assert fp == fingerprint(code, keys)


def test_labels_and_widget_names_vary_by_seed() -> None:
    def labels(seed: int) -> tuple[dict[str, str], set[str]]:
        app, widgets, _ = jiandaoyun_records(as_jiandaoyun(generate(10, seed=seed)))
        names = {w["name"] for wl in widgets.values() for w in wl["widgets"]}
        assert all(n.startswith("_widget_") and len(n) == len("_widget_") + 13 for n in names)
        return {f"{k}.{f}": v for k, spec in app["forms"].items() for f, v in spec["fields"].items()}, names

    seen = [labels(seed) for seed in (1, 2, 3, 4)]
    assert len({tuple(sorted(lab.items())) for lab, _ in seen}) > 1  # labels differ between seeds
    assert len({frozenset(n) for _, n in seen}) == 4  # widget names differ between seeds
    assert labels(2) == seen[1]  # and are the seed's own


@pytest.mark.slow
def test_a_generated_jiandaoyun_world_replays_with_every_break_found(tmp_path: Path) -> None:
    world = as_jiandaoyun(generate(120, seed=11))
    path = write_world(world, tmp_path / "world", crm="jiandaoyun")
    read = read_world(path)
    assert read.systems[0] == "jiandaoyun"
    assert set(read.records["jiandaoyun"]) == {"customers", "opportunities", "contracts"}
    store = Store.open(f"sqlite:///{tmp_path / 'ltc.db'}")
    try:
        replay_world(store, path, tmp_path / "reports", echo=lambda _line: None)
        with store.engine.connect() as conn:
            found = {r[0] for r in conn.execute(sa.select(recon_exception.c.fingerprint))}
            lines = conn.execute(sa.text("select count(*) from deal_line")).scalar_one()
    finally:
        store.close()
    assert lines == world.tables["deal_line"].height  # the 产品明细 sub-form rows
    truth = set(world.truth["fingerprint"].to_list())
    assert truth and found == truth


def test_the_independent_generator_emits_a_jiandaoyun_crm(tmp_path: Path) -> None:
    """sandbox.scenarios with crm="jiandaoyun": the seed's company keeps its forms in Jiandaoyun; the
    world replays, and the tax-id widget the app.yaml does not name is found by its values."""
    from sandbox.scenarios import make_world

    truth = make_world(tmp_path / "world", chains=40, seed=3, crm="jiandaoyun")
    assert truth["conventions"]["crm"] == "jiandaoyun"
    read = read_world(tmp_path / "world")
    assert read.jiandaoyun is not None and read.systems[0] == "jiandaoyun"
    tax_label = truth["conventions"]["crm_tax_field"]
    customers = next(m for m in read.jiandaoyun["forms"] if m["key"] == "customers")
    [tax_widget] = [w["name"] for w in customers["widgets"]["widgets"] if w["label"] == tax_label]
    assert tax_label not in read.jiandaoyun["options"]["forms"]["customers"]["fields"].values()
    store = Store.open(f"sqlite:///{tmp_path / 'ltc.db'}")
    try:
        summary = replay_world(store, tmp_path / "world", tmp_path / "reports", echo=lambda _line: None)
    finally:
        store.close()
    found = {(d["system"], d["object"], d["path"], d["target"]) for d in summary["discovered"]}
    assert ("jiandaoyun", "customers", tax_widget, "tax_id") in found
    planted = {r["system"] for b in truth["breaks"] for r in b["records"]}
    assert "jiandaoyun" in planted

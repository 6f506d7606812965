"""Round trip: generate a world, write it as vendor files, replay it through the emulators, and get
the store and the exceptions of the direct run (World.load + reconcile)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import sqlalchemy as sa

from canonical import tables as ct
from canonical.errors import ConfigError
from canonical.store import Store
from ltc.app.config import Config
from ltc.app.demo import replay_world
from reconcile.engine import run_reconciliation
from reconcile.frames import load_frames
from reconcile.tables import recon_exception
from sandbox.scenario import PLANTED, World, generate
from sandbox.world import read_world
from sandbox.world_writer import write_world

TABLES = ("deal", "deal_line", "order", "order_line", "invoice", "payment", "account", "lead")
MONEY = {"deal": ["amount"], "deal_line": ["amount", "unit_price", "quantity"], "order": ["total"],
         "order_line": ["amount", "unit_price", "quantity"], "invoice": ["total"], "payment": ["amount"]}
# Columns where the vendor files carry something else than the generator's canonical row, on purpose:
DIFFERENT = {
    ("order", "deal_ref"),  # the generator pads some with spaces ("noise"); the mapping trims text
    ("payment", "fee"),  # a bank line has no fee (null, not 0), nor a refund; charges: checked below
    ("payment", "settlement_ref"),  # the vendor's own ids (balance transaction, bank reference)
    ("payment", "status"),  # the vendor's status text (camt "book")
    ("payment", "account_id"),  # a Stripe refund names its charge, not the customer
    ("account", "tax_id"),  # Salesforce accounts have no tax id field; Tryton's is normalized
    # candidate reference text for discovery: what the vendor records carry (metadata values, sale
    # reference, remittance lines), which the generator's canonical tables do not model
    ("order", "ref_text"), ("invoice", "ref_text"), ("payment", "ref_text"),
}


# per ERP: the file of sales orders and the object of invoices
ERP_OBJECTS = {"tryton": ("sale.sale", "account.invoice"), "odoo": ("sale.order", "account.move")}


@pytest.fixture(scope="module", params=["tryton", "odoo"])
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    erp = request.param
    tmp = tmp_path_factory.mktemp(f"world-{erp}")
    world = generate(150, seed=11, erp=erp)
    direct = Store.open(f"sqlite:///{tmp / 'direct.db'}")
    world.load(direct)
    direct_result = run_reconciliation(direct, Config(), world.as_of)
    write_world(world, tmp / "w")
    replay = Store.open(f"sqlite:///{tmp / 'replay.db'}")
    summary = replay_world(replay, tmp / "w", tmp / "reports", echo=lambda _m: None)
    return {"world": world, "direct": direct, "replay": replay, "direct_result": direct_result,
            "summary": summary, "tmp": tmp, "erp": erp}


def _frame(store: Store, name: str) -> pl.DataFrame:
    return getattr(load_frames(store), name).sort("id")


def test_the_written_world_reads_back_whole(runs: dict[str, Any]) -> None:
    wd = read_world(runs["tmp"] / "w")
    world: World = runs["world"]
    erp = runs["erp"]
    orders, invoices = ERP_OBJECTS[erp]
    assert wd.systems == ["salesforce", erp, "stripe", "bank"] and wd.erp == erp
    assert wd.as_of == world.as_of and wd.reporting_currency == "USD"
    assert len(wd.records["salesforce"]["Opportunity"]) == world.tables["deal"].height
    assert len(wd.records[erp][orders]) == world.tables["order"].height
    assert all(isinstance(r["id"], int) for r in wd.records[erp][invoices])  # ERP ids are integers
    charge = wd.records["stripe"]["charges"][0]
    assert isinstance(charge["amount"], int) and charge["currency"].islower()  # minor units, Stripe's casing
    assert len(wd.fx_rates) == world.tables["fx_rate"].height
    assert len(wd.bank_files) == world.tables["payment"].filter(pl.col("id").str.starts_with("bank:"))[
        "currency"].n_unique()


def test_replay_store_equals_the_direct_run(runs: dict[str, Any]) -> None:
    for name in TABLES:
        a, b = _frame(runs["direct"], name), _frame(runs["replay"], name)
        assert a["id"].to_list() == b["id"].to_list(), name  # same canonical ids, same count
        for col in a.columns:
            if (name, col) in DIFFERENT or col == "source_id":
                continue
            left, right = a[col], b[col]
            if name == "invoice" and col == "total":
                right = right.abs()  # a Tryton credit note's total is negative
            diff = (left.cast(pl.String).fill_null("-") != right.cast(pl.String).fill_null("-"))
            assert not diff.any(), f"{name}.{col}: {a['id'][int(diff.arg_max() or 0)]}: {left[int(diff.arg_max() or 0)]} " \
                                   f"vs {right[int(diff.arg_max() or 0)]}"
        for col in MONEY.get(name, []):
            sa_, sb = a[col].cast(pl.Decimal(38, 4)).sum(), b[col].cast(pl.Decimal(38, 4)).abs().sum() \
                if (name, col) == ("invoice", "total") else b[col].cast(pl.Decimal(38, 4)).sum()
            assert Decimal(str(sa_)) == Decimal(str(sb)), f"{name}.{col} sums differ"


def test_stripe_fees_come_through_the_balance_transaction(runs: dict[str, Any]) -> None:
    def fees(store: Store) -> dict[str, Any]:
        df = _frame(store, "payment").filter(pl.col("id").str.starts_with("stripe:payment:ch_"))
        return dict(zip(df["id"].to_list(), df["fee"].cast(pl.String).to_list(), strict=True))

    direct = fees(runs["direct"])
    assert direct and fees(runs["replay"]) == direct


def test_identity_links_the_customers_the_generator_says(runs: dict[str, Any]) -> None:
    world: World = runs["world"]
    want: dict[str, set[str]] = defaultdict(set)
    for r in world.tables["cross_ref"].iter_rows(named=True):
        want[r["cluster_id"]].add(r["member_id"])
    with runs["replay"].engine.connect() as conn:
        got: dict[str, set[str]] = defaultdict(set)
        for cluster, member in conn.execute(sa.select(ct.cross_ref.c.cluster_id, ct.cross_ref.c.member_id)
                                            .where(ct.cross_ref.c.entity == "account")):
            got[cluster].add(member)
    assert got == want


def test_replay_finds_the_exceptions_of_the_direct_run(runs: dict[str, Any]) -> None:
    def found(store: Store) -> set[tuple[str, str]]:
        with store.engine.connect() as conn:
            return set(conn.execute(sa.select(recon_exception.c.code, recon_exception.c.fingerprint)).all())

    direct, replay = found(runs["direct"]), found(runs["replay"])
    assert replay == direct
    truth = {(c, f) for c, f in runs["world"].truth.select("code", "fingerprint").iter_rows()}
    assert truth <= replay and {c for c, _ in replay} == set(PLANTED)
    assert runs["summary"]["as_of"] == runs["world"].as_of.isoformat()


def test_exceptions_list_json_names_the_vendor_records(runs: dict[str, Any]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LTC_CONFIG"}
    env["LTC_DATABASE_URL"] = f"sqlite:///{runs['tmp'] / 'replay.db'}"
    res = subprocess.run([sys.executable, "-c", "from ltc.cli import main; main()", "exceptions", "list", "--json"],
                         capture_output=True, text=True, env=env, cwd=runs["tmp"], timeout=60)
    assert res.returncode == 0, res.stderr
    items = json.loads(res.stdout)
    by_code = {i["code"]: i for i in items}
    assert set(by_code) == set(PLANTED)
    unapplied = by_code["UNAPPLIED_PAYMENT"]
    assert unapplied["records"] == [{"system": "bank", "object": "camt053.entry", "id": unapplied["source_ids"][0],
                                     "entity": "payment", "canonical_id": unapplied["subject_ids"][0]}]
    dup = by_code["DUPLICATE_INVOICE"]
    assert {(r["system"], r["object"]) for r in dup["records"]} == {(runs["erp"], ERP_OBJECTS[runs["erp"]][1])}
    assert all(str(int(r["id"])) == r["id"] for r in dup["records"])  # the ERP's integer ids
    won = by_code["WON_NOT_ORDERED"]
    assert won["records"][0]["system"] == "salesforce" and won["records"][0]["object"] == "Opportunity"
    for item in items:
        if item["amount_at_risk"] is not None:
            Decimal(item["amount_at_risk"])  # decimal strings, never floats
            assert isinstance(item["amount_at_risk"], str) and item["reporting_currency"] == "USD"
    with runs["replay"].engine.connect() as conn:
        stored = dict(conn.execute(sa.select(recon_exception.c.fingerprint, recon_exception.c.amount_reporting)).all())
    assert {i["fingerprint"]: (Decimal(i["amount_reporting"]) if i["amount_reporting"] else None) for i in items} == \
        {fp: (Decimal(v) if v is not None else None) for fp, v in stored.items()}


def test_a_store_replays_one_world_and_refuses_to_mix_in_another(tmp_path: Path) -> None:

    worlds = Path(__file__).resolve().parent.parent / "worlds"
    store = Store.open(f"sqlite:///{tmp_path / 'demo.db'}")
    first = replay_world(store, worlds / "stripe", tmp_path / "r", echo=lambda _l: None)
    again = replay_world(store, worlds / "stripe", tmp_path / "r", echo=lambda _l: None)  # same world: fine
    assert again["mapping"].get("records", 0) == 0  # the same world again: nothing changed, nothing to remap
    assert first["mapping"]["records"] > 0 and first["reports"] == again["reports"]
    before = store.table_counts()
    with pytest.raises(ConfigError, match=r"holds the world stripe-small .*rm \.ltc/ltc\.db"):
        replay_world(store, worlds / "salesforce", tmp_path / "r", echo=lambda _l: None)
    assert store.table_counts() == before  # nothing of the other world landed

"""The mapping generated from a Jiandaoyun source's forms configuration, on the example world's
records; and the world replayed end to end through the main job (``ltc demo --world``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from canonical.errors import ConfigError
from canonical.store import Store
from mappings.engine import compile_for, map_records
from mappings.jiandaoyun import mapping_for
from sandbox.world import WorldDir, read_world
from tests.mappings.mapping_fixtures import as_stored

WORLD = Path(__file__).resolve().parent.parent / "worlds" / "jiandaoyun"
Rows = dict[str, dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def world() -> WorldDir:
    return read_world(WORLD)


def _map(world: WorldDir, options: dict[str, Any]) -> Rows:
    assert world.jiandaoyun is not None
    widgets = {m["entry_id"]: m["widgets"] for m in world.jiandaoyun["forms"]}
    mset = compile_for("jdy", "jiandaoyun", base=mapping_for("jdy", options, widgets))
    records = [(i, key, rec["_id"], as_stored(rec), None)
               for key, recs in world.records["jiandaoyun"].items() for i, rec in enumerate(recs)]
    result = map_records(mset, records)
    assert result.rejected == []
    return {e: {r["source_id"]: r for r in rs} for e, rs in result.rows.items()}


@pytest.fixture(scope="module")
def rows(world: WorldDir) -> Rows:
    assert world.jiandaoyun is not None
    return _map(world, world.jiandaoyun["options"])


def test_customers_by_label(rows: Rows) -> None:
    acc = rows["account"]["66e3a1000000000000000101"]
    assert acc["id"] == "jdy:account:66e3a1000000000000000101"
    assert (acc["name"], acc["tax_id"], acc["owner"], acc["currency"]) == (
        "上海华信科技有限公司", "91310000MA1FL4T22D", "王芳", "CNY")  # a member widget is read by its name
    assert acc["source_updated_at"] == datetime(2026, 9, 1, 1, 0, tzinfo=UTC)


def test_opportunities_stage_dates_and_sub_form_lines(rows: Rows) -> None:
    won = rows["deal"]["66e3a2000000000000000201"]
    assert (won["stage"], won["source_stage"]) == ("closed_won", "赢单")
    assert won["amount"] == Decimal("49200.00") and isinstance(won["amount"], Decimal)  # by widget name
    assert won["account_id"] == "jdy:account:66e3a1000000000000000101"  # the 关联数据 widget's data id
    assert won["close_date"] == date(2026, 9, 15)  # 16:00Z is Beijing midnight of the 15th
    assert rows["deal"]["66e3a2000000000000000202"]["stage"] == "closed_lost"
    assert rows["deal"]["66e3a2000000000000000203"]["stage"] == "qualification"  # the form's own value
    lines = {k: r for k, r in rows["deal_line"].items() if r["deal_id"] == won["id"]}
    assert set(lines) == {"66e3a2000000000000000211", "66e3a2000000000000000212"}
    gateway = lines["66e3a2000000000000000211"]
    assert (gateway["product_name"], gateway["quantity"], gateway["unit_price"], gateway["amount"]) == (
        "智能网关", Decimal("3"), Decimal("12800.00"), Decimal("38400.00"))
    assert sum(r["amount"] for r in lines.values()) == won["amount"]


def test_contract_and_collections(rows: Rows) -> None:
    con = rows["contract"]["66e3a3000000000000000301"]
    assert (con["number"], con["status"], con["source_status"]) == ("HT20260915001", "activated", "执行中")
    assert con["deal_id"] == "jdy:deal:66e3a2000000000000000201" and con["value"] == Decimal("49200.00")
    assert con["signed_date"] == date(2026, 9, 16) and con["attributes"]["flow_state"] == 1
    pays = rows["payment"]
    assert sorted(p["payment_date"] for p in pays.values()) == [date(2026, 9, 30), date(2026, 10, 20)]
    assert {p["deal_ref"] for p in pays.values()} == {"66e3a2000000000000000201"}
    assert sum(p["amount"] for p in pays.values()) == con["value"]
    assert {p["currency"] for p in pays.values()} == {"CNY"}


def test_widget_names_and_labels_map_alike(world: WorldDir, rows: Rows) -> None:
    """The same form configured by widget names instead of labels gives the same rows."""
    assert world.jiandaoyun is not None
    options = world.jiandaoyun["options"]
    by_name = {**options, "forms": {**options["forms"], "customers": {
        **options["forms"]["customers"],
        "fields": {"name": "_widget_1615357357351", "tax_id": "_widget_1615357357352", "owner": "_widget_1615357357353"}}}}
    assert _map(world, by_name)["account"] == rows["account"]


def test_a_missing_label_names_the_config_key(world: WorldDir) -> None:
    assert world.jiandaoyun is not None
    options = world.jiandaoyun["options"]
    bad = {**options, "forms": {**options["forms"], "contracts": {
        **options["forms"]["contracts"], "fields": {"number": "合同号码"}}}}
    widgets = {m["entry_id"]: m["widgets"] for m in world.jiandaoyun["forms"]}
    with pytest.raises(ConfigError, match=r"forms\.contracts\.fields\.number: no widget named or labelled '合同号码'"):
        mapping_for("jdy", bad, widgets)


def test_world_replays_end_to_end(tmp_path: Path) -> None:
    """``ltc demo --world tests/worlds/jiandaoyun``: served by the emulator, synced, mapped: the CRM's
    contract and its collections reach the canonical tables."""
    import sqlalchemy as sa

    from ltc.app.demo import replay_world

    store = Store.open(f"sqlite:///{tmp_path / 'ltc.db'}")
    try:
        summary = replay_world(store, WORLD, tmp_path / "reports", echo=lambda _line: None)
        assert store.count_raw("jiandaoyun") == 8 + 4  # the records and the four forms' widget lists
        with store.engine.connect() as conn:
            contracts = conn.execute(sa.text("select number, value, deal_id from contract")).all()
            payments = conn.execute(sa.text("select amount, payment_date from payment order by payment_date")).all()
            lines = conn.execute(sa.text("select count(*) from deal_line")).scalar_one()
        assert [(n, Decimal(str(v)), d) for n, v, d in contracts] == [
            ("HT20260915001", Decimal("49200.00"), "jiandaoyun:deal:66e3a2000000000000000201")]
        assert [Decimal(str(a)) for a, _ in payments] == [Decimal("24600.00"), Decimal("24600.00")]
        assert lines == 2
        assert summary["mapping"].get("quarantined", 0) == 0
        assert (tmp_path / "reports" / "report.html").exists()
    finally:
        store.close()

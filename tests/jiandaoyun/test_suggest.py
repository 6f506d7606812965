"""``ltc mappings suggest --source jdy``: the forms configuration proposed from the app's widget
labels and values, on apps whose labels vary by seed; the proposal, used as configuration, maps."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from canonical.store import Store
from connectors.base import sync
from connectors.http import RetryPolicy
from connectors.jiandaoyun import JiandaoyunConnector, parse_forms
from mappings.engine import compile_for, map_records
from mappings.jiandaoyun import mapping_for, stored_widgets
from mappings.jiandaoyun_suggest import FormSurvey, options_of, propose
from sandbox.jiandaoyun import API_KEY, JdyEmulator
from sandbox.server import RunningServer

Start = Callable[..., tuple[JdyEmulator, RunningServer]]


def _connector(srv: RunningServer, emu: JdyEmulator, forms: list) -> JiandaoyunConnector:  # type: ignore[type-arg]
    return JiandaoyunConnector("jdy", api_key=API_KEY, app_id=emu.app_id, forms=forms, base_url=srv.url,
                               rate_per_s=10_000, tenant=f"t-{uuid.uuid4().hex[:8]}",
                               policy=RetryPolicy(base_s=0.01, max_backoff_s=0.05, max_wait_s=0.05))


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_proposal_finds_each_form_and_widget(jdy: Start, seed: int) -> None:
    emu, srv = jdy(seed=seed, size=40)
    conn = _connector(srv, emu, [])
    forms = conn.survey()
    conn.close()
    proposals = {p.key: p for p in propose(forms)}
    assert {k: p.survey.entry_id for k, p in proposals.items()} == emu.roles

    def name_of(role: str, label: str) -> str:
        widgets = {w["label"]: w["name"] for w in emu.form(role).widgets}
        return widgets[label]

    opp = proposals["opportunities"]
    want = emu.labels["opportunities"]
    assert {f: name_of("opportunities", label) for f, label in opp.fields.items()} == {
        "name": want["name"], "account_id": want["customer"], "amount": want["amount"], "stage": want["stage"],
        "close_date": want["close_date"]}
    pay = proposals["collections"]
    assert name_of("collections", pay.fields["amount"]) == emu.labels["collections"]["amount"]
    assert name_of("collections", pay.fields["payment_date"]) == emu.labels["collections"]["date"]
    assert "tax_id" in proposals["customers"].fields  # its values pass the USCC check digits
    assert "values fit" in proposals["customers"].evidence["tax_id"]
    con = proposals["contracts"]
    assert con.entity == "contract" and con.lines is None and con.notes  # a contract has no lines
    assert name_of("contracts", con.fields["value"]) == emu.labels["contracts"]["amount"]


def test_values_decide_between_look_alike_labels() -> None:
    """Two number widgets labelled like an amount: the one whose values are numbers is chosen; a
    text widget labelled 客户 holding names is not a customer link (its values are not data ids)."""
    widgets = [{"name": "_widget_1", "label": "商机名称", "type": "text"},
               {"name": "_widget_2", "label": "客户", "type": "linkdata"},
               {"name": "_widget_3", "label": "预计金额", "type": "number"},
               {"name": "_widget_4", "label": "销售阶段", "type": "combo"}]
    records = [{"_widget_1": "A", "_widget_2": "上海华信", "_widget_3": 10, "_widget_4": "赢单"},
               {"_widget_1": "B", "_widget_2": "杭州远航", "_widget_3": 20, "_widget_4": "输单"}]
    [p] = propose([FormSurvey("e" * 24, "商机管理", widgets, records)])
    assert p.key == "opportunities" and "account_id" not in p.fields
    assert (p.fields["amount"], p.fields["stage"]) == ("预计金额", "销售阶段")


def test_the_proposal_as_configuration_syncs_and_maps(jdy: Start, sqlite_store: Store) -> None:
    emu, srv = jdy(seed=5, size=30)
    survey = _connector(srv, emu, [])
    options = {"app_id": emu.app_id, **options_of(propose(survey.survey()))}
    survey.close()
    conn = _connector(srv, emu, parse_forms("jdy", options))
    assert all(r.status == "success" for r in sync(conn, sqlite_store))
    conn.close()
    mset = compile_for("jdy", "jiandaoyun", base=mapping_for("jdy", options, stored_widgets(sqlite_store, "jdy")))
    import orjson
    import sqlalchemy as sa

    from canonical.tables import raw_record as rr

    with sqlite_store.engine.connect() as c:
        rows = c.execute(sa.select(rr.c.id, rr.c.object, rr.c.source_id, sa.cast(rr.c.payload, sa.Text))).all()
    result = map_records(mset, [(r[0], r[1], r[2], orjson.loads(r[3]), None) for r in rows])
    assert result.rejected == []
    counts = {e: len(v) for e, v in result.rows.items()}
    assert counts["deal"] == 30 and counts["account"] == 10
    assert counts["contract"] == len(emu.form("contracts").records)
    assert counts["payment"] == len(emu.form("collections").records)


def test_cli_suggest_prints_the_forms_block(jdy: Start, tmp_path: Path) -> None:
    emu, srv = jdy(seed=7, size=20)
    (tmp_path / "ltc.yaml").write_text(
        f"sources:\n  jdy:\n    kind: jiandaoyun\n    base_url: {srv.url}\n"
        f"    credentials: {{api_key: {{env: JDY_API_KEY}}}}\n    options: {{app_id: {emu.app_id}}}\n",
        encoding="utf-8")
    env = {**{k: v for k, v in os.environ.items() if k != "LTC_CONFIG"}, "JDY_API_KEY": API_KEY, "COLUMNS": "200",
           "LTC_DATABASE_URL": f"sqlite:///{tmp_path / 'ltc.db'}"}
    res = subprocess.run([sys.executable, "-c", "from ltc.cli import main; main()", "mappings", "suggest",
                          "--source", "jdy"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    proposal = yaml.safe_load(res.stdout)
    assert proposal["app_id"] == emu.app_id
    assert {k: v["entry_id"] for k, v in proposal["forms"].items()} == emu.roles
    parse_forms("jdy", proposal)  # a valid forms block
    assert API_KEY not in res.stdout + res.stderr

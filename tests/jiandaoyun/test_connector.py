"""The Jiandaoyun connector against the emulator: data_id paging, updateTime incremental, deletes by
id-set comparison, the frequency limit, errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from canonical.errors import ConfigError
from canonical.store import Store
from connectors.base import sync
from connectors.errors import AuthenticationError, ConnectorError
from connectors.jiandaoyun import FormConfig, JiandaoyunConnector, from_config
from ltc.app.config import SourceConfig
from sandbox.jiandaoyun import API_KEY, JdyEmulator
from sandbox.server import RunningServer
from tests.jiandaoyun.conftest import make_connector

Start = Callable[..., tuple[JdyEmulator, RunningServer]]


def _run(conn: Any, store: Store, **kwargs: Any) -> list[Any]:
    """The form streams' results (the widget lists are read too, always)."""
    return [r for r in sync(conn, store, **kwargs) if r.stream != "widgets"]


def _post(srv: RunningServer, path: str, body: dict[str, Any], key: str = API_KEY) -> httpx.Response:
    return httpx.post(f"{srv.url}/api/v5/app/entry/{path}", json=body, headers={"Authorization": f"Bearer {key}"})


def test_emulator_shapes_limits_and_errors(jdy: Start) -> None:
    emu, srv = jdy(size=30, roles=["opportunities"])
    entry = emu.roles["opportunities"]
    ids = emu.form("opportunities").order
    first = _post(srv, "data/list", {"app_id": emu.app_id, "entry_id": entry, "limit": 7}).json()["data"]
    assert [r["_id"] for r in first] == ids[:7]  # always in data id order
    nxt = _post(srv, "data/list", {"app_id": emu.app_id, "entry_id": entry, "limit": 7,
                                   "data_id": first[-1]["_id"]}).json()["data"]
    assert [r["_id"] for r in nxt] == ids[7:14]
    for key in ("_id", "appId", "entryId", "creator", "createTime", "updateTime"):
        assert key in first[0]
    # limit is 1-100; unknown app / form; bad key: {code, msg}
    for limit in (0, 101, "50"):
        bad = _post(srv, "data/list", {"app_id": emu.app_id, "entry_id": entry, "limit": limit})
        assert bad.status_code == 400 and bad.json()["code"] == 1 and "limit" in bad.json()["msg"]
    assert _post(srv, "data/list", {"app_id": "nope", "entry_id": entry}).json()["msg"].startswith("The app")
    assert _post(srv, "data/list", {"app_id": emu.app_id, "entry_id": "nope"}).json()["msg"].startswith("The form")
    denied = _post(srv, "data/list", {"app_id": emu.app_id, "entry_id": entry}, key="wrong")
    assert denied.status_code == 401 and set(denied.json()) == {"code", "msg"}
    widgets = _post(srv, "widget/list", {"app_id": emu.app_id, "entry_id": entry}).json()
    assert all(w["name"].startswith("_widget_") and w["label"] for w in widgets["widgets"])
    assert {"updateTime", "createTime"} <= {w["name"] for w in widgets["sysWidgets"]}
    # more than 30 calls in one second: 429 with code 8303
    emu.rate_per_s = 30
    emu.clock = lambda: 1_800_000_000.5
    answers = [_post(srv, "data/list", {"app_id": emu.app_id, "entry_id": entry, "limit": 1}) for _ in range(32)]
    assert [a.status_code for a in answers].count(429) == 2
    assert answers[-1].json() == {"code": 8303, "msg": "超出请求频率限制"}


def test_paging_by_data_id_across_pages(jdy: Start, sqlite_store: Store) -> None:
    emu, srv = jdy(size=250, roles=["opportunities"])
    conn = make_connector(srv, emu, limit=40)
    results = {r.stream: r for r in sync(conn, sqlite_store)}
    opp = results["opportunities"]
    # 7 API pages (6 full pages of 40, one of 10), committed 5 at a time: 2 checkpoints
    assert opp.status == "success" and opp.records == 250 and opp.pages == 2
    assert set(sqlite_store.live_stamps("jdy", "opportunities")) == set(emu.form("opportunities").order)
    lists = [b for p, b in emu.requests if p.endswith("/data/list")]
    assert len(lists) == 7 and lists[0].get("data_id") is None and lists[0]["limit"] == 40
    # each next page asks after the previous page's last id
    assert [b.get("data_id") for b in lists[1:7]] == [emu.form("opportunities").order[i * 40 - 1] for i in range(1, 7)]
    assert results["widgets"].records == 1
    conn.close()


def test_incremental_by_update_time_filter(jdy: Start, sqlite_store: Store) -> None:
    emu, srv = jdy(size=60, roles=["opportunities"])
    conn = make_connector(srv, emu, streams=["opportunities"])
    assert [s.name for s in conn.streams] == ["widgets", "opportunities"]  # the widget lists always come along
    assert _run(conn, sqlite_store)[0].records == 60
    form = emu.form("opportunities")
    changed = form.order[10]
    amount = emu.labels["opportunities"]["amount"]
    emu.modify("opportunities", changed, **{amount: 99})
    new = emu.add("opportunities", {amount: 5})
    before = len(emu.requests)
    [again] = _run(conn, sqlite_store)
    assert again.status == "success" and {again.records} == {2}
    body = emu.requests[before][1]
    [cond] = body["filter"]["cond"]
    assert cond["field"] == "updateTime" and cond["method"] == "range"
    since, until = (datetime.fromisoformat(v.replace("Z", "+00:00")) for v in cond["value"])
    assert since < datetime.now(UTC) and until <= datetime.now(UTC) and until - since < timedelta(minutes=15)
    stamps = sqlite_store.live_stamps("jdy", "opportunities")
    assert new["_id"] in stamps and len(stamps) == 61
    payload = sqlite_store.raw_payloads("jdy", "opportunities", [changed])[changed]
    assert payload[amount] == 99
    conn.close()


def test_sub_form_rows_land_with_their_ids(jdy: Start, sqlite_store: Store) -> None:
    emu, srv = jdy(size=20, roles=["customers", "opportunities", "contracts"])
    conn = make_connector(srv, emu, streams=["contracts"])
    assert _run(conn, sqlite_store)[0].status == "success"
    items = emu.labels["contracts"]["items"]
    some = next(iter(emu.form("contracts").records))
    landed = sqlite_store.raw_payloads("jdy", "contracts", [some])[some]
    rows = landed[items]
    assert rows and all(len(r["_id"]) == 24 for r in rows)
    conn.close()


def test_deletes_become_tombstones_by_id_set_comparison(jdy: Start, sqlite_store: Store) -> None:
    emu, srv = jdy(size=30, roles=["opportunities"])
    conn = make_connector(srv, emu, streams=["opportunities"])
    _run(conn, sqlite_store)
    gone = emu.form("opportunities").order[3]
    emu.delete("opportunities", gone)
    [plain] = _run(conn, sqlite_store)  # an incremental window cannot see a delete
    assert gone in sqlite_store.live_stamps("jdy", "opportunities") and plain.deep_tombstoned is None
    [deep] = _run(conn, sqlite_store, deep=True)
    assert deep.status == "success" and deep.deep_tombstoned == 1
    assert gone not in sqlite_store.live_stamps("jdy", "opportunities")
    assert len(sqlite_store.live_stamps("jdy", "opportunities")) == 29
    conn.close()


def test_deep_check_fetches_a_record_the_windows_missed(jdy: Start, sqlite_store: Store) -> None:
    emu, srv = jdy(size=10, roles=["opportunities"])
    conn = make_connector(srv, emu, streams=["opportunities"])
    _run(conn, sqlite_store)
    # a record stamped long before the window (imported with its original times): only the deep check finds it
    late = emu.add("opportunities", {}, when=datetime(2025, 1, 1, tzinfo=UTC))
    [deep] = _run(conn, sqlite_store, deep=True)
    assert deep.deep_landed == 1 and late["_id"] in sqlite_store.live_stamps("jdy", "opportunities")
    assert any(p.endswith("/data/get") for p, _ in emu.requests)
    conn.close()


@pytest.mark.parametrize("status", [429, 400])
def test_frequency_limit_is_retried_through_the_governor(jdy: Start, sqlite_store: Store, status: int) -> None:
    emu, srv = jdy(size=300, roles=["opportunities"], limit_status=status)
    emu.rate_per_s = 3  # a tiny limit, so that the connector (paced at 10,000/s here) meets it
    conn = make_connector(srv, emu, streams=["opportunities"], limit=10)  # 31 calls
    [res] = _run(conn, sqlite_store)
    assert res.status == "success" and res.records == 300
    assert emu.http_429 >= 1 and conn.http_429 == emu.http_429
    assert conn.governor.waited_s > 0  # the bucket was emptied after each refusal
    conn.close()


def test_governor_paces_under_the_limit(jdy: Start, sqlite_store: Store) -> None:
    emu, srv = jdy(size=500, roles=["opportunities"])
    emu.rate_per_s = 30
    conn = make_connector(srv, emu, streams=["opportunities"], rate_per_s=30, limit=10)
    [res] = _run(conn, sqlite_store)
    assert res.status == "success" and res.records == 500
    assert emu.http_429 == 0  # 51 calls at 30/s: paced, never refused
    conn.close()


def test_auth_error_names_the_credential(jdy: Start, sqlite_store: Store) -> None:
    emu, srv = jdy(size=5, roles=["opportunities"])
    conn = make_connector(srv, emu, api_key="revoked-key")
    with pytest.raises(AuthenticationError) as err:
        _run(conn, sqlite_store)
    text = str(err.value)
    assert "credentials.api_key" in text and "revoked-key" not in text and "\n" not in text
    conn.close()


def test_unknown_form_names_the_entry_id(jdy: Start, sqlite_store: Store) -> None:
    emu, srv = jdy(size=5, roles=["opportunities"])
    conn = make_connector(srv, emu, forms=[FormConfig("opportunities", "0" * 24, "deal", {"name": "商机名称"})])
    with pytest.raises(ConnectorError, match=r"forms\.opportunities\.entry_id"):
        _run(conn, sqlite_store)
    conn.close()
    other = JiandaoyunConnector("jdy", api_key=API_KEY, app_id="0" * 24, base_url=srv.url, rate_per_s=10_000,
                                forms=[FormConfig("opportunities", emu.roles["opportunities"], "deal", {"name": "x"})])
    with pytest.raises(ConnectorError, match=r"check sources\.jdy\.options\.app_id") as err:
        _run(other, sqlite_store)
    assert "limit" not in str(err.value)
    other.close()


def test_a_label_the_form_lacks_is_one_config_line(jdy: Start, sqlite_store: Store) -> None:
    emu, srv = jdy(size=5, roles=["opportunities"])
    conn = make_connector(srv, emu, forms=[FormConfig("opportunities", emu.roles["opportunities"], "deal",
                                                      {"name": "不存在的字段"})])
    with pytest.raises(ConfigError) as err:
        _run(conn, sqlite_store)
    assert "forms.opportunities.fields.name" in str(err.value) and "不存在的字段" in str(err.value)
    conn.close()


@pytest.mark.parametrize(("options", "expect"), [
    ({"forms": {"customers": {"entry_id": "e1", "fields": {"name": "客户名称"}}}}, "options.app_id is required"),
    ({"app_id": "a"}, "options.forms is required"),
    ({"app_id": "a", "forms": {"customers": {"fields": {"name": "x"}}}}, "forms.customers.entry_id is required"),
    ({"app_id": "a", "forms": {"things": {"entry_id": "e", "fields": {"name": "x"}}}}, "not a canonical entity"),
    ({"app_id": "a", "forms": {"customers": {"entry_id": "e", "fields": {"amount": "x"}}}}, "account has no field"),
    ({"app_id": "a", "forms": {"contracts": {"entry_id": "e", "fields": {"number": "x"},
                                             "lines": {"widget": "w", "fields": {}}}}}, "contract has no lines"),
    ({"app_id": "a", "forms": {}, "colour": 1}, "unknown Jiandaoyun option"),
    ({"app_id": "a", "forms": {"widgets": {"entry_id": "e", "entity": "deal", "fields": {"name": "x"}}}}, "is reserved"),
])
def test_bad_config_is_one_line(options: dict[str, Any], expect: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JDY_KEY", "k")
    src = SourceConfig(kind="jiandaoyun", credentials={"api_key": {"env": "JDY_KEY"}}, options=options)  # type: ignore[dict-item]
    with pytest.raises(ConfigError) as err:
        from_config("jdy", src)
    assert expect in str(err.value) and "\n" not in str(err.value)


def test_config_check_lists_a_bad_forms_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ltc.app.config import load_config
    from ltc.app.config_check import check_config

    monkeypatch.setenv("JDY_API_KEY", "k")
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("sources:\n  jdy:\n    kind: jdy\n    credentials: {api_key: {env: JDY_API_KEY}}\n"
                   "    options:\n      app_id: 6650f1c2a3b4c5d6e7f80001\n"
                   "      forms: {opportunities: {entry_id: e1, fields: {amount: 商机金额, colour: 颜色}}}\n",
                   encoding="utf-8")
    assert load_config(cfg).sources["jdy"].kind == "jiandaoyun"  # `jdy` is the kind's short name
    problems = check_config(cfg).problems
    assert len(problems) == 1 and "forms.opportunities.fields.colour: deal has no field 'colour'" in problems[0]
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(", colour: 颜色", ""), encoding="utf-8")
    assert check_config(cfg).problems == []


def test_an_interrupted_run_resumes_at_its_checkpoint(jdy: Start, sqlite_store: Store) -> None:
    """The read-ahead worker runs ahead of the checkpoints; a run stopped after one committed page
    resumes after that page's last id (nothing read twice into the store, nothing skipped)."""
    from connectors.base import sync_stream

    emu, srv = jdy(size=230, roles=["opportunities"])
    conn = make_connector(srv, emu, streams=["opportunities"], limit=20, pages_per_commit=2)
    spec = conn.stream("opportunities")
    first = sync_stream(conn, spec, sqlite_store, run_id="r1", max_pages=1)
    assert first.status == "paused" and first.records == 40
    conn.close()
    conn = make_connector(srv, emu, streams=["opportunities"], limit=20, pages_per_commit=2)
    before = len(emu.requests)
    rest = sync_stream(conn, conn.stream("opportunities"), sqlite_store, run_id="r2")
    assert rest.status == "success" and rest.records == 190
    resumed = next(b for p, b in emu.requests[before:] if p.endswith("/data/list"))
    assert resumed["data_id"] == emu.form("opportunities").order[39]
    assert set(sqlite_store.live_stamps("jdy", "opportunities")) == set(emu.form("opportunities").order)
    conn.close()

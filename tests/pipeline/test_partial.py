"""Partial data is never complete: a paused or failed source still lets the pipeline reconcile what it can,
but the exceptions the missing source could explain are marked partial (the new ones held back), the
report carries a banner naming the source and since when, the last complete report is kept beside it,
and ``ltc run`` exits 3 (paused) or 1 (failed). One dead source never stops the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from canonical.store import Store
from ltc.app.config import Config, SourceConfig
from ltc.app.demo import world_sources
from ltc.app.pipeline import EXPLAINED_BY, LAST_COMPLETE, run_pipeline
from reconcile.tables import recon_exception
from sandbox.run import WORLD_ACCESS
from sandbox.scenario import generate
from sandbox.world import read_world
from sandbox.world_writer import write_world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_world(generate(20, seed=3, erp="tryton"), tmp_path_factory.mktemp("partial") / "w")


def _yaml(cfg: Config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
    return path


def _evidence(url: str) -> dict[str, Any]:
    store = Store.open(url)
    with store.engine.connect() as conn:
        out = {fp: ev for fp, ev in conn.execute(sa.select(recon_exception.c.fingerprint, recon_exception.c.evidence)
                                                 .where(recon_exception.c.status == "open"))}
    store.close()
    return out


def test_complete_then_paused_then_failed(world_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ltc.cli.commands import app

    world = read_world(world_path)
    reports = tmp_path / "reports"
    full_url = f"sqlite:///{tmp_path / 'full.db'}"

    # 1. complete: the report is marked complete, nothing kept aside
    with world_sources(world) as (cfg, _servers):
        cfg.reports_dir = str(reports)
        done = run_pipeline(Store.open(full_url), cfg, world.as_of)
    assert done.status == "completed" and done.exit_code == 0 and not done.partial and not done.banners()
    assert [s.name for s in done.stages] == ["sync", "import", "fx", "map", "identity", "reconcile", "report",
                                             "notify"]
    assert "Partial data" not in (reports / "report.html").read_text()
    assert len(done.new_fingerprints) == sum(done.exceptions.values()) > 0  # a first run: every open one is new
    assert done.fx["loaded"] > 0 and done.fx["stale"] == [] and done.fx["errors"] == []  # the world's fx_rates.csv
    complete_html = (reports / "report.html").read_text()
    assert not (reports / LAST_COMPLETE).exists()

    # 2. `ltc run` on a fresh store with Salesforce out of API quota: exit 3, CRM-explainable exceptions held back
    monkeypatch.setitem(WORLD_ACCESS["salesforce"], "app", {"daily_limit": 3})
    paused_url = f"sqlite:///{tmp_path / 'paused.db'}"
    with world_sources(world) as (cfg, _servers):
        cfg.reports_dir = str(reports)
        monkeypatch.setenv("LTC_DATABASE_URL", paused_url)
        out = CliRunner().invoke(app, ["run", "--config", str(_yaml(cfg, tmp_path / "ltc.yaml")),
                                       "--as-of", world.as_of.isoformat() if world.as_of else ""])
    assert out.exit_code == 3, out.output
    assert "PARTIAL: Source salesforce (salesforce) paused" in out.output
    html = (reports / "report.html").read_text()
    assert "Partial data: this report is not complete." in html and "Source salesforce (salesforce) paused" in html
    assert "it has never synced completely" in html  # a fresh store: no complete sync to date it from
    assert (reports / LAST_COMPLETE / "report.html").read_text() == complete_html  # kept, not overwritten
    assert f'href="{LAST_COMPLETE}/report.html"' in html
    marks = {fp: ev["partial"] for fp, ev in _evidence(paused_url).items() if "partial" in ev}
    assert marks and all(m["sources"][0]["name"] == "salesforce" for m in marks.values())
    store = Store.open(paused_url)
    with store.engine.connect() as conn:
        codes = {fp: code for fp, code in conn.execute(sa.select(recon_exception.c.fingerprint, recon_exception.c.code)
                                                       .where(recon_exception.c.status == "open"))}
    assert "ORDER_WITHOUT_DEAL" in {codes[fp] for fp in marks}  # the 300: explained by the missing CRM
    assert all(codes[fp] in EXPLAINED_BY["crm"] for fp in marks)
    assert all(codes[fp] not in EXPLAINED_BY["crm"] for fp in set(codes) - set(marks))

    # 3. the full store, Salesforce paused again, plus a source that is down: failed (exit 2: an unreachable
    #    URL is the operator's to fix), the others went on
    with world_sources(world) as (cfg, _servers):
        cfg.reports_dir = str(reports)
        cfg.sources["dead"] = SourceConfig(kind="stripe", base_url="http://127.0.0.1:9",
                                           credentials=cfg.sources["stripe"].credentials)
        res = run_pipeline(Store.open(full_url), cfg, world.as_of)
    assert res.status == "failed" and res.exit_code == 2 and res.sources["dead"].exit_code == 2
    assert {n: s.status for n, s in res.sources.items()} == {
        "salesforce": "paused", "tryton": "ok", "stripe": "ok", "dead": "failed", "bank": "ok"}
    sf = res.sources["salesforce"]
    assert sf.since is not None and f"since {sf.since:%Y-%m-%d %H:%M} UTC" in res.reason()
    assert res.stage("reconcile") is not None and res.stage("report") is not None  # it reconciled what it could
    assert not res.held_back and not res.new_fingerprints  # all open before: marked partial, none new
    assert (reports / LAST_COMPLETE / "report.html").read_text() == complete_html  # still the complete one
    assert res.previous_report == str(reports / LAST_COMPLETE / "report.html")


def test_reconcile_keeps_the_world_as_of(world_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store replayed from a world keeps the world's as-of: `ltc reconcile` without --as-of reopens nothing."""
    from ltc.app.demo import replay_world
    from ltc.cli.commands import app

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    summary = replay_world(Store.open(url), world_path, tmp_path / "r", echo=lambda _l: None)
    world = read_world(world_path)
    assert summary["as_of"] == world.as_of.isoformat() if world.as_of else False
    monkeypatch.setenv("LTC_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(app, ["reconcile"])
    assert out.exit_code == 0, out.output
    assert f"as of {world.as_of.isoformat() if world.as_of else ''}" in out.output
    assert "lifecycle: new=0 reopened=0" in out.output

"""The main job as a Prefect flow: sync subflows, then map/resolve/reconcile, with a summary artifact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from canonical.store import Store
from sandbox.server import RunningServer, serve
from sandbox.stripe import StripeEmulator, create_app

pytestmark = pytest.mark.prefect
KEY = "sk_test_flow_0123456789abcdef"


@pytest.fixture
def stripe_server() -> Iterator[RunningServer]:
    with serve(create_app(emulator=StripeEmulator(seed=5, size=6, api_key=KEY))) as server:
        yield server


def test_pipeline_flow_runs_every_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       stripe_server: RunningServer, prefect_harness: None) -> None:
    from prefect.artifacts import Artifact

    from flows.pipeline import pipeline

    db_url = f"sqlite:///{tmp_path / 'ltc.db'}"
    monkeypatch.setenv("LTC_DATABASE_URL", db_url)
    monkeypatch.setenv("LTC_TEST_STRIPE_KEY", KEY)
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text(
        "sources:\n"
        f"  payments: {{kind: stripe, base_url: '{stripe_server.url}',\n"
        "             credentials: {api_key: {env: LTC_TEST_STRIPE_KEY}}}\n"
    )
    out = pipeline(str(cfg))
    assert out["synced"] == ["payments"]
    assert out["mapping"]["mapped"] > 0 and out["mapping"].get("quarantined", 0) == 0
    assert out["reconcile"]["rows"]["invoice"] > 0
    store = Store.open(db_url)
    assert store.table_counts()["invoice"] == out["reconcile"]["rows"]["invoice"]
    artifact = Artifact.get("ltc-pipeline")
    assert artifact is not None and "reconcile" in str(artifact.data)
    assert KEY not in str(artifact.data)
    # the finance report lands in reports_dir (relative to ltc.yaml), its exceptions table in the UI
    reports = tmp_path / ".ltc" / "reports"
    assert out["report"] == str(reports / "report.html") and (reports / "report.html").exists()
    table = Artifact.get("ltc-exceptions")
    assert table is not None and "| code | count | amount at risk | owners |" in str(table.data)
    csv_codes = {line.split(",")[1] for line in (reports / "exceptions.csv").read_text().splitlines()[1:]}
    assert csv_codes  # a Stripe-only store has invoices no order explains, at least
    assert all(f"| {code} |" in str(table.data) for code in csv_codes)


def test_a_paused_source_never_ends_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              prefect_harness: None) -> None:
    """Salesforce out of API quota: the flow still reconciles, then ends Failed named Paused with the reason."""
    import yaml
    from prefect.artifacts import Artifact

    from flows.pipeline import pipeline
    from ltc.app.demo import world_sources
    from sandbox.run import WORLD_ACCESS
    from sandbox.scenario import generate
    from sandbox.world import read_world
    from sandbox.world_writer import write_world

    world = read_world(write_world(generate(15, seed=4, erp="odoo"), tmp_path / "w"))
    monkeypatch.setitem(WORLD_ACCESS["salesforce"], "app", {"daily_limit": 3})
    monkeypatch.setenv("LTC_DATABASE_URL", f"sqlite:///{tmp_path / 'ltc.db'}")
    with world_sources(world) as (cfg, _servers):
        cfg.reports_dir = str(tmp_path / "reports")
        path = tmp_path / "ltc.yaml"
        path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True)))
        state = pipeline(str(path), as_of=world.as_of, return_state=True)
    assert state.is_failed() and state.name == "Paused"
    assert "salesforce" in (state.message or "") and "paused" in (state.message or "")
    artifact = Artifact.get("ltc-pipeline")
    assert artifact is not None and f"as of {world.as_of}" in str(artifact.data)
    assert "Partial" in str(artifact.data) and "- **reconcile** —" in str(artifact.data)


def test_pipeline_flow_is_not_completed_over_the_quarantine_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 prefect_harness: None) -> None:
    from canonical.store import RawRecord
    from flows.pipeline import pipeline

    db_url = f"sqlite:///{tmp_path / 'ltc.db'}"
    monkeypatch.setenv("LTC_DATABASE_URL", db_url)
    store = Store.open(db_url)
    store.commit_page("stripe", "invoice", [RawRecord("invoice", f"in_{i}", {
        "id": f"in_{i}", "object": "invoice", "customer": "cus_1", "currency": None if i < 3 else "usd",
        "total": 1000, "created": 1774915200, "status": "open", "lines": {"data": []}}) for i in range(10)], None)
    store.close()
    (tmp_path / "bank").mkdir()
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("sources:\n  bank: {kind: camt053, options: {folder: bank}}\n")
    state = pipeline(str(cfg), sync=False, return_state=True)
    assert state.is_failed() and state.name == "Failed"
    assert "stripe invoice: 3 of 10 records quarantined" in (state.message or "")


def test_pipeline_flow_fails_when_a_rate_file_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             prefect_harness: None) -> None:
    """As `ltc run`: the fx task fails naming the file, the later stages still run on the rates there are (the
    report is written), and the flow run ends Failed with the reason (before: Completed, `fx ok`)."""
    from prefect.artifacts import Artifact

    from flows.pipeline import pipeline

    monkeypatch.setenv("LTC_DATABASE_URL", f"sqlite:///{tmp_path / 'ltc.db'}")
    (tmp_path / "bank").mkdir()
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text(f"sources:\n  bank: {{kind: camt053, options: {{folder: '{tmp_path / 'bank'}'}}}}\n"
                   f"fx:\n  files: ['{tmp_path / 'nope.csv'}']\n")
    state = pipeline(str(cfg), return_state=True)
    assert state.is_failed() and state.name == "Failed"
    reason = f"Stage fx failed: FX rates not refreshed: fx.files: {tmp_path / 'nope.csv'} does not exist or is not a file"
    assert reason in (state.message or "")
    assert (tmp_path / ".ltc" / "reports" / "report.html").exists()  # report (and reconcile) ran after it
    artifact = Artifact.get("ltc-pipeline")
    assert artifact is not None and "FX rates not refreshed" in str(artifact.data)

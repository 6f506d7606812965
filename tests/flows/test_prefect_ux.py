"""The pipeline as a Prefect user sees it: run names, tags, artifacts, a paused source, deployments and serve."""

from __future__ import annotations

import asyncio
import os
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from connectors import registry
from tests.connectors.fake import KeysetConnector, seeded
from tests.receiver import receiving

pytestmark = pytest.mark.prefect
ROOT = Path(__file__).resolve().parents[2]


class Factory:
    """Two CRM sources on the fake keyset connector; ``pause`` makes one of them hit its quota."""

    def __init__(self) -> None:
        self.sources = {"crm": seeded(30), "crm_eu": seeded(12)}
        self.pause: str | None = None

    def __call__(self, name: str, cfg: Any) -> KeysetConnector:
        src = self.sources[name]
        if self.pause == name:
            src.pause_at_page = src.pages_served + 1
        conn = KeysetConnector(src)
        conn.name = name
        return conn


def _runs_and_artifacts(flow_run_id: Any) -> tuple[Any, list[Any], dict[str, Any]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
            any_=[flow_run_id])))
    return run, children, {a.key: a for a in arts if a.key}


def test_a_paused_source_gives_a_paused_run_with_readable_artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   prefect_harness: None) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.pipeline import pipeline

    factory = Factory()
    monkeypatch.setitem(registry.KINDS, "hubspot", factory)
    monkeypatch.setenv("LTC_DATABASE_URL", f"sqlite:///{tmp_path / 'ltc.db'}")
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text(
        "sources:\n  crm: {kind: hubspot, base_url: 'http://127.0.0.1:1'}\n"
        "  crm_eu: {kind: hubspot, base_url: 'http://127.0.0.1:1'}\n"
        "notifications:\n  targets:\n    - {url: 'json://alerts.example.test/ltc', events: [run_paused]}\n")
    factory.pause = "crm"
    with receiving(monkeypatch) as receiver:
        state = pipeline(str(cfg), as_of=date(2026, 11, 30), return_state=True)

    # the runs list: not a green Completed run but a Failed one named Paused, with the reason
    assert state.is_failed() and state.name == "Paused"
    assert "Source crm (hubspot) paused" in (state.message or "") and "quota" in (state.message or "")
    run, children, arts = _runs_and_artifacts(state.state_details.flow_run_id)
    assert run.name == "pipeline as of 2026-11-30"
    subflows = {c.name: c for c in children}
    assert subflows["sync crm"].state.name == "Paused" and subflows["sync crm"].state.is_failed()
    assert subflows["sync crm_eu"].state.is_completed()  # the other source went on
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
            any_=[subflows["sync crm_eu"].id])))
    assert tasks and all({"ltc", "source:crm_eu"} <= set(t.tags) for t in tasks)
    _, _, sync_arts = _runs_and_artifacts(subflows["sync crm_eu"].id)
    assert sync_arts["sync-progress-crm-eu"].type == "progress"
    assert float(sync_arts["sync-progress-crm-eu"].data) == 100.0
    assert sync_arts["sync-crm-eu"].type == "table"
    # the rest of the pipeline ran on what it had, and said so
    summary = arts["ltc-pipeline"]
    assert summary.type == "markdown"
    text = str(summary.data)
    assert text.startswith("# ltc-hub pipeline — as of 2026-11-30") and "**Status:** ⚠️ partial data" in text
    assert "| crm | paused | deals: fake: daily quota" in text and "| crm_eu | ok |" in text
    assert text.count("fix: nothing to do") == 1
    assert "{'" not in text  # no Python dict dump
    assert "- **reconcile** —" in text and "run_paused → target 1 (json://…): sent" in text
    assert arts["ltc-kpis"].type == "table"
    link = arts["ltc-report"]
    assert link.type == "markdown"  # Prefect stores a link artifact as markdown: [Finance report](file://...)
    assert (tmp_path / ".ltc" / "reports" / "report.html").as_uri() in str(link.data)
    assert arts["ltc-exceptions"].type == "markdown"
    progress = arts["reconcile-progress"]
    assert progress.type == "progress" and float(progress.data) == 100.0
    # the alert reached its target, with the fix hint
    [alert] = receiver.to("alerts.example.test")
    body = alert.json()
    assert body["title"] == "ltc-hub: source paused" and "crm" in body["message"] and "fix:" in body["message"]


def test_the_pull_step_runs_in_ltc_home_or_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml
    from prefect.deployments.steps.core import run_steps

    from flows.steps import LtcHomeError, set_ltc_home

    pull = yaml.safe_load((ROOT / "prefect.yaml").read_text())["pull"]
    here = os.getcwd()
    monkeypatch.delenv("LTC_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        out = asyncio.run(run_steps(pull))
        assert Path(os.getcwd()) == ROOT and out["directory"] == str(ROOT)
        home = tmp_path / "home"
        (home / "flows").mkdir(parents=True)
        monkeypatch.setenv("LTC_HOME", str(home))
        assert set_ltc_home() == {"directory": str(home)} and Path(os.getcwd()) == home
        monkeypatch.setenv("LTC_HOME", str(tmp_path / "nowhere"))
        with pytest.raises(LtcHomeError, match=r"^LTC_HOME .*nowhere is not an ltc-hub checkout .*set LTC_HOME"):
            set_ltc_home()
    finally:
        os.chdir(here)


@pytest.mark.slow
def test_prefect_deploy_all_then_ltc_serve_coexist(tmp_path: Path, prefect_harness: None) -> None:
    """The real `prefect deploy --all` of prefect.yaml, then serve's deployments on top: no 422, same schedules."""
    import subprocess
    import sys

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from flows.serve import deployments

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_CLI_PROMPT": "false"}
    prefect = [sys.executable, "-m", "prefect"]
    subprocess.run([*prefect, "work-pool", "create", "ltc", "--type", "process", "--overwrite"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=120)
    done = subprocess.run([*prefect, "--no-prompt", "deploy", "--all"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def read() -> dict[str, Any]:
        with get_client(sync_client=True) as client:
            return {d.name: d for d in client.read_deployments()}

    deployed = read()
    assert deployed["pipeline"].pull_steps == [{"flows.steps.set_ltc_home": {}}]
    limit = deployed["pipeline"].global_concurrency_limit  # one run at a time, as `ltc serve` registers it
    assert limit is not None and limit.limit == 1 and deployed["pipeline"].concurrency_options is not None
    assert deployed["pipeline"].concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert deployed["pipeline"].work_pool_name == "ltc" and deployed["pipeline"].tags == ["ltc", "pipeline"]
    # sync-source has no default source: a run must name one
    assert "source" not in deployed["sync-source"].parameters
    assert "source" in deployed["sync-source"].parameter_openapi_schema["required"]
    for _ in range(2):  # what `ltc serve` registers before it starts serving, twice
        for d in deployments():
            d.apply()
    served = read()
    assert [(s.slug, s.active) for s in served["pipeline"].schedules] == [("hourly", True)]
    # writing into the ERP or the CRM on a schedule is opt-in
    assert [(s.slug, s.active) for s in served["push-orders"].schedules] == [("hourly", False)]
    assert [(s.slug, s.active) for s in served["push-crm"].schedules] == [("hourly", False)]
    assert served["pipeline"].schedules[0].id == deployed["pipeline"].schedules[0].id  # updated, not replaced

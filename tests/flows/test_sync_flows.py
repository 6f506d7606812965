"""The sync flows under a real Prefect server: one task per stream, artifacts, pause, no retry of fatal errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from canonical.store import Store
from canonical.tables import run
from connectors import registry
from connectors.base import Page, StreamSpec, Window
from connectors.errors import AuthenticationError, NotFound
from tests.connectors.fake import KeysetConnector, seeded

pytestmark = pytest.mark.prefect


class FakeFactory:
    """Stands in for a vendor kind: the flows build connectors through the registry as in production."""

    def __init__(self) -> None:
        self.source = seeded(25)
        self.fail_with: Exception | None = None
        self.built = 0

    def __call__(self, name: str, cfg: Any) -> KeysetConnector:
        self.built += 1
        conn = KeysetConnector(self.source)
        conn.name = name
        if self.fail_with is not None:
            err = self.fail_with

            def boom(*a: Any, **k: Any) -> Any:
                raise err

            conn.read_page = boom  # type: ignore[method-assign]
        return conn


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None) -> tuple[str, FakeFactory, str]:
    factory = FakeFactory()
    monkeypatch.setitem(registry.KINDS, "hubspot", factory)
    db_url = f"sqlite:///{tmp_path / 'ltc.db'}"
    monkeypatch.setenv("LTC_DATABASE_URL", db_url)
    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("sources:\n  crm: {kind: hubspot, base_url: 'http://127.0.0.1:1'}\n")
    return str(cfg), factory, db_url


def test_sync_source_lands_records_and_publishes_an_artifact(env: tuple[str, FakeFactory, str]) -> None:
    from prefect.artifacts import Artifact

    from flows.sync import sync_source

    cfg, _factory, db_url = env
    results = sync_source("crm", config_path=cfg)
    assert [(r["stream"], r["status"], r["records"]) for r in results] == [("deals", "success", 25)]
    store = Store.open(db_url)
    assert store.count_raw("crm", "deals") == 25
    artifact = Artifact.get("sync-crm")
    assert artifact is not None and "deals" in str(artifact.data)


def test_quota_pause_ends_the_flow_as_paused_not_completed(env: tuple[str, FakeFactory, str]) -> None:
    from flows.sync import sync_source

    cfg, factory, db_url = env
    factory.source.pause_at_page = factory.source.pages_served + 2
    state = sync_source("crm", config_path=cfg, return_state=True)
    assert state.name == "Paused" and "quota" in (state.message or "")
    store = Store.open(db_url)
    [s] = store.stream_states()
    assert s["status"] == "paused" and s["last_success_at"] is None


def test_credentials_errors_are_not_retried(env: tuple[str, FakeFactory, str]) -> None:
    from flows.sync import sync_source

    cfg, factory, _ = env
    factory.fail_with = AuthenticationError("crm: credentials rejected")
    built_before = factory.built
    state = sync_source("crm", config_path=cfg, return_state=True)
    assert state.is_failed()
    # one build for listing the streams + one for the single task attempt: no Prefect retry
    assert factory.built - built_before == 2


def test_prefect_yaml_deployments_build_with_their_schedules(prefect_harness: None) -> None:
    from flows.serve import deployments

    deps = {d.name: d for d in deployments(config_path="/etc/ltc.yaml")}
    assert {"pipeline", "sync-all", "sync-source", "import-statements", "push-orders", "push-crm"} <= set(deps)
    assert deps["sync-all"].schedules[0].schedule.cron == "0 * * * *"
    assert deps["sync-all"].schedules[0].active is True
    assert deps["sync-all"].parameters["config_path"] == "/etc/ltc.yaml"
    # writing into the CRM is opt-in: the push-crm schedule is declared, not active
    assert deps["push-crm"].schedules[0].schedule.cron == "50 * * * *"
    assert deps["push-crm"].schedules[0].active is False


class TwoStreams(KeysetConnector):
    """Two streams over the same fake source (objects ``deals`` and ``deals_b``); each page notes the rate share
    in force; the stream named ``failing`` fails at its first page (with an error no retry can fix)."""

    streams = (KeysetConnector.streams[0], dataclasses.replace(KeysetConnector.streams[0], name="deals_b",
                                                               object="deals_b"))
    failing: str | None = None
    shares: ClassVar[list[tuple[str, float]]] = []

    def read_page(self, stream: StreamSpec, window: Window, token: Any) -> Page:
        from connectors.governor import current_share

        TwoStreams.shares.append((stream.name, current_share()))
        if stream.name == self.failing:
            raise NotFound(f"fake: {stream.name} is not an object of this account")  # fatal: not retried
        return super().read_page(stream, window, token)


def test_fanned_out_streams_share_the_rate_and_one_failing_leaves_the_other_landed(
        env: tuple[str, FakeFactory, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``sync_fanned_out`` (what ``sync_on_dask`` runs on Dask; here on the default runner, threads): each of the
    source's two streams runs at half the rate; the stream that fails is named, the other lands all its records,
    the source's run says failed and the flow ends Failed."""
    from flows.sync import sync_fanned_out

    cfg, factory, db_url = env
    source = factory.source

    def build(name: str, _cfg: Any) -> TwoStreams:
        conn = TwoStreams(source)
        conn.name = name
        conn.failing = "deals_b"
        return conn

    monkeypatch.setitem(registry.KINDS, "hubspot", build)
    TwoStreams.shares.clear()
    state = sync_fanned_out(cfg, return_state=True)
    assert state.is_failed() and "crm failed: deals_b: fake: deals_b is not an object of this account" in (state.message or "")
    assert {name for name, _ in TwoStreams.shares} == {"deals", "deals_b"}
    assert {share for _, share in TwoStreams.shares} == {0.5}
    store = Store.open(db_url)
    assert store.count_raw("crm", "deals") == 25 and store.count_raw("crm", "deals_b") == 0
    with store.engine.connect() as conn:
        [(status, message)] = conn.execute(sa.select(run.c.status, run.c.message).where(run.c.kind == "sync")).all()
    assert status == "failed" and message.startswith("deals_b: ")
    store.close()
    # a runner that runs one task at a time: each stream may use the whole rate
    TwoStreams.shares.clear()
    sync_fanned_out(cfg, slots=1, return_state=True)
    assert {share for _, share in TwoStreams.shares} == {1.0}


def test_a_scheduled_run_that_finds_the_last_one_running_is_cancelled_not_piled_up(prefect_harness: None) -> None:
    """prefect.yaml's concurrency limit (one run, CANCEL_NEW) as `ltc serve` registers it: the server cancels a run of
    the pipeline while another is running, instead of starting one more that waits on the stage locks (hourly
    runs of a slow pipeline piled up, each with its process and memory)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy
    from prefect.states import Pending, Running

    from flows.serve import deployments

    deps = {d.name: d for d in deployments()}
    assert deps["sync-source"].concurrency_limit is None  # on demand, per source: the stage locks suffice
    pipeline_id = deps["pipeline"].apply()
    with get_client(sync_client=True) as client:
        served = client.read_deployment(pipeline_id)
        assert served.global_concurrency_limit is not None and served.global_concurrency_limit.limit == 1
        assert served.concurrency_options is not None
        assert served.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
        first = client.create_flow_run_from_deployment(pipeline_id)
        for state in (Pending(), Running()):
            assert client.set_flow_run_state(first.id, state).status.value == "ACCEPT"
        second = client.create_flow_run_from_deployment(pipeline_id)
        client.set_flow_run_state(second.id, Pending())
        assert client.read_flow_run(second.id).state.is_cancelled()
        assert client.read_flow_run(first.id).state.is_running()

"""One pipeline, three shells: on one world, ``ltc demo --world W``, ``ltc run`` on an ltc.yaml pointing at
``ltc sandbox start --world W``'s emulators, and the ``ltc-pipeline`` flow under the Prefect harness open
the same exceptions (code + fingerprint) and compute the same KPI values. The figures are printed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from canonical.store import Store
from reconcile.tables import kpi_snapshot, recon_exception
from sandbox.scenario import generate
from sandbox.world_writer import write_world
from tests.flows.conftest import running_sandbox

pytestmark = [pytest.mark.prefect, pytest.mark.slow]


def open_book(url: str) -> tuple[set[tuple[str, str]], dict[tuple[str, str], str]]:
    """Open exceptions (code, fingerprint) and the overall KPI values of the latest reconcile run."""
    store = Store.open(url)
    with store.engine.connect() as conn:
        ex = {(r.code, r.fingerprint) for r in conn.execute(
            sa.select(recon_exception.c.code, recon_exception.c.fingerprint).where(recon_exception.c.status == "open"))}
        last = conn.execute(sa.select(kpi_snapshot.c.run_id).order_by(kpi_snapshot.c.id.desc()).limit(1)).scalar()
        kpis = {(r.kpi, r.variant or ""): str(r.value) for r in conn.execute(
            sa.select(kpi_snapshot.c.kpi, kpi_snapshot.c.variant, kpi_snapshot.c.value)
            .where(kpi_snapshot.c.run_id == last, kpi_snapshot.c.owner.is_(None)))}
    store.close()
    return ex, kpis


@pytest.fixture
def world_dir(tmp_path: Path) -> Path:
    return write_world(generate(40, seed=21, erp="tryton"), tmp_path / "world")


@pytest.fixture
def sandbox(world_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.chdir(tmp_path)
    with running_sandbox(world_dir) as state:
        yield state


def test_demo_run_and_flow_agree(world_dir: Path, tmp_path: Path, sandbox: dict[str, Any],
                                 monkeypatch: pytest.MonkeyPatch, prefect_harness: None) -> None:
    from flows.pipeline import pipeline
    from ltc.cli.commands import app

    world_yaml = yaml.safe_load((world_dir / "world.yaml").read_text())
    as_of = str(world_yaml["as_of"])
    runner = CliRunner()
    urls = {k: f"sqlite:///{tmp_path / f'{k}.db'}" for k in ("demo", "run", "flow")}

    monkeypatch.setenv("LTC_DATABASE_URL", urls["demo"])
    demo = runner.invoke(app, ["demo", "--world", str(world_dir), "--out", str(tmp_path / "demo-reports")])
    assert demo.exit_code == 0, demo.output

    from ltc.app.emulators import write_config

    cfg = write_config(tmp_path / "ltc.yaml", sandbox)  # what `ltc sandbox start --write-config` writes, as it is
    monkeypatch.setenv("LTC_DATABASE_URL", urls["run"])
    run = runner.invoke(app, ["run", "--config", str(cfg), "--as-of", as_of])
    assert run.exit_code == 0, run.output

    monkeypatch.setenv("LTC_DATABASE_URL", urls["flow"])
    out = pipeline(str(cfg), as_of=date.fromisoformat(as_of))
    assert out["status"] == "completed" and out["as_of"] == as_of

    books = {k: open_book(u) for k, u in urls.items()}
    figures = {k: {"open_exceptions": len(ex), "by_code": _by_code(ex), "kpis": {"/".join(key): v for key, v in
                                                                                sorted(kp.items())}}
               for k, (ex, kp) in books.items()}
    print("\nthree-way equivalence figures:\n" + json.dumps(figures, indent=1, sort_keys=True))
    demo_ex, demo_kpi = books["demo"]
    assert demo_ex and demo_kpi
    assert books["run"] == (demo_ex, demo_kpi)
    assert books["flow"] == (demo_ex, demo_kpi)


def _by_code(ex: set[tuple[str, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for code, _fp in ex:
        out[code] = out.get(code, 0) + 1
    return dict(sorted(out.items()))

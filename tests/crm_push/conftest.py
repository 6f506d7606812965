"""A reconciled store from a generated world (Salesforce CRM, Tryton ERP, Stripe, bank), built once per
session; each test gets a copy of it and its own Salesforce emulator serving the world's records, with
the finance-status fields created as an admin would in Setup."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from canonical.store import Store
from connectors import crm_fields
from connectors.base import sync
from connectors.governor import reset_governors
from connectors.statements import run_import
from ltc.app import runtime
from ltc.app.config import Config, PushCrmConfig, SecretRef, SourceConfig
from ltc.app.demo import generate_world, load_fx_rates, world_sources
from ltc.app.pipeline import after_sync
from sandbox.run import WORLD_ACCESS
from sandbox.salesforce import Org, build_app
from sandbox.server import RunningServer, serve
from sandbox.world import WorldDir, read_world

SF_TYPES = {"currency": "currency", "number": "double", "date": "date", "url": "url", "text": "string"}
UI = "https://ltc.example.com"


@dataclass
class Built:
    world: WorldDir
    db: Path


@dataclass
class SfEnv:
    store: Store
    org: Org
    server: RunningServer
    cfg: Config
    world: WorldDir


@pytest.fixture(autouse=True)
def _fresh_governors() -> Iterator[None]:
    """Governors are per process and tenant: a quota reading of one test must not pause the next."""
    reset_governors()
    yield
    reset_governors()


@pytest.fixture(scope="session")
def reconciled_world(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("crm-world")
    world = read_world(generate_world(root / "world", chains=60, seed=23))
    db = root / "template.db"
    store = Store.open(f"sqlite:///{db}")
    with world_sources(world) as (cfg, _servers):
        for name in runtime.source_names(cfg):
            connector = runtime.build_connector(cfg, name)
            try:
                assert all(r.status == "success" for r in sync(connector, store))
            finally:
                connector.close()
        assert world.bank_folder is not None
        run_import(store, folder=world.bank_folder, source="bank")
        load_fx_rates(store, world.fx_rates)
        after_sync(store, cfg, world.as_of)
    store.close()
    reset_governors()
    return Built(world, db)


def create_fields(org: Org, options: dict[str, Any] | None = None, *, skip: tuple[str, ...] = ()) -> None:
    """What an admin does in Setup: the custom fields push-crm writes, on Opportunity and Account."""
    for role, fields in crm_fields.names("salesforce", options).items():
        obj = crm_fields.OBJECTS["salesforce"][role]
        for f, name in fields:
            if f"{obj}.{name}" not in skip:
                org.create_field(obj, name, SF_TYPES[f.kind], length=f.length if f.kind == "text" else None)


def sf_source(server: RunningServer, monkeypatch: pytest.MonkeyPatch, **options: Any) -> SourceConfig:
    creds = {}
    for key, value in WORLD_ACCESS["salesforce"]["credentials"].items():
        monkeypatch.setenv(f"TEST_SF_{key.upper()}", value)
        creds[key] = SecretRef(env=f"TEST_SF_{key.upper()}")
    return SourceConfig(kind="salesforce", base_url=server.url, credentials=creds,
                        options={"ca_file": server.ca_file, **options})


@pytest.fixture
def sf_env(reconciled_world: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[Callable[..., SfEnv]]:
    """``sf_env(fields=True, **source options)``: a copy of the reconciled store, a fresh emulator."""
    started: list[tuple[Store, RunningServer]] = []

    def make(*, fields: bool = True, **options: Any) -> SfEnv:
        db = tmp_path / f"ltc{len(started)}.db"
        shutil.copy(reconciled_world.db, db)
        store = Store.open(f"sqlite:///{db}")
        org = Org(world=reconciled_world.world.records["salesforce"])
        if fields:
            create_fields(org, options)
        server = serve(build_app(org), tls=True)
        started.append((store, server))
        cfg = Config(sources={"salesforce": sf_source(server, monkeypatch, **options)},
                     reporting_currency=reconciled_world.world.reporting_currency,
                     push_crm=PushCrmConfig(ui_base_url=UI))
        return SfEnv(store, org, server, cfg, reconciled_world.world)

    yield make
    for store, server in started:
        store.close()
        server._server.force_exit = True
        server.stop()

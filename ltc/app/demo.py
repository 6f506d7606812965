"""``ltc demo``: the main job on the embedded default — local emulators as sources, SQLite as store.

Starts every registered emulator on a free loopback port (with the credentials each one accepts),
points an in-memory configuration at them, then runs exactly what the ``ltc-pipeline`` flow runs:
sync every source, map, resolve identities, reconcile. Nothing outside 127.0.0.1 is contacted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from canonical.errors import LtcError
from ltc.app.config import Config, SecretRef, SourceConfig
from sandbox.run import start
from sandbox.server import RunningServer, Served
from sandbox.world import WorldChecks, WorldDir

if TYPE_CHECKING:
    from ltc.app.pipeline import PipelineResult, SyncOne
    from ltc.app.progress import OnProgress

# What each emulator accepts, and how its source is configured. Sandbox values, not secrets.
DEMO_SOURCES: dict[str, dict[str, Any]] = {
    "hubspot": {
        "app": {"token": "pat-na1-ltc-demo"},
        "credentials": {"token": "pat-na1-ltc-demo"},
        "options": {},
    },
    "salesforce": {
        "app": {},  # the emulator's own sandbox client (sandbox.salesforce.Credentials)
        "credentials": {"client_id": "ltc-emulator-client", "client_secret": "ltc-emulator-secret"},
        "options": {},
    },
    "stripe": {
        "app": {"api_key": "sk_test_ltc_demo"},
        "credentials": {"api_key": "sk_test_ltc_demo"},
        "options": {},
    },
}


@contextmanager
def demo_sources(seed: int = 7, size: int = 50) -> Iterator[tuple[Config, dict[str, RunningServer]]]:
    """Start the emulators and yield a configuration whose sources point at them."""
    kinds = sorted(DEMO_SOURCES)
    servers = start(kinds, seed=seed, size=size, options={k: DEMO_SOURCES[k]["app"] for k in kinds})
    with _pointed_at(servers, DEMO_SOURCES, "LTC_DEMO") as sources:
        yield Config(sources=sources), servers


@contextmanager
def _pointed_at(servers: Mapping[str, Served], access: dict[str, dict[str, Any]],
                env_prefix: str) -> Iterator[dict[str, SourceConfig]]:
    """Sources pointing at running emulators, credentials through ``<prefix>_<KIND>_<FIELD>``
    environment variables; on exit the environment is restored and the emulators stopped."""
    saved = dict(os.environ)
    try:
        sources: dict[str, SourceConfig] = {}
        for kind, srv in servers.items():
            spec = access[kind]
            creds: dict[str, SecretRef] = {}
            for field, value in spec["credentials"].items():
                var = f"{env_prefix}_{kind.upper()}_{field.upper()}"
                os.environ[var] = value
                creds[field] = SecretRef(env=var)
            options = {k: (srv.url if v == "$url" else v) for k, v in spec["options"].items()}
            if srv.ca_file:
                options["ca_file"] = srv.ca_file
            sources[kind] = SourceConfig(kind=kind, base_url=srv.url, credentials=creds,  # type: ignore[arg-type]
                                         options=options)
        yield sources
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for srv in servers.values():
            srv.stop()


@contextmanager
def world_sources(world: WorldDir, *, process: bool = False, ready: Callable[[], None] | None = None,
                  hand_over: bool = False) -> Iterator[tuple[Config, Mapping[str, Served]]]:
    """Serve ``world`` (read and validated by :func:`sandbox.world.read_world`) and yield a
    configuration whose sources point at its emulators, one source per system named after it.

    Credentials reach the connectors through ``LTC_WORLD_<SYSTEM>_<FIELD>`` environment variables
    (restored on exit). With ``bank`` in the world, a ``camt053`` source ``bank`` names the world's
    bank folder (``options.folder``); like every statement source it is not synced by the
    connectors: import it with :func:`connectors.statements.import_folder` (or ``run_import``).
    The world's ERP is ``erp.source`` in dry-run mode: a world is a replay, its ERP emulator
    answers reads only. ``reporting_currency`` is the world's; a system the world gives a mapping
    override (world.yaml ``mappings``) is mapped with it. With ``process``, the emulators run in a
    forked process (:func:`sandbox.run.start_world_process`: on another core, beside the connectors),
    which builds the emulators while ``ready()`` runs here (the world's checks: the emulators serve
    once it returned); without ``process``, ``ready()`` runs first. With ``process`` and ``hand_over``,
    this process drops its copy of the world's records once the child has them and ``ready()`` returned
    (``world.records`` is then empty here: only what the configuration names is used afterwards).
    """
    from ltc.app.config import ErpConfig, FxConfig
    from sandbox.run import WORLD_ACCESS, start_world, start_world_process

    if process:
        servers: Mapping[str, Served] = start_world_process(world, ready, hand_over=hand_over)
    else:
        if ready is not None:
            ready()
        servers = start_world(world)
    with _pointed_at(servers, WORLD_ACCESS, "LTC_WORLD") as sources:
        if world.jiandaoyun is not None and "jiandaoyun" in sources:  # the app and its forms: jiandaoyun/app.yaml
            src = sources["jiandaoyun"]
            sources["jiandaoyun"] = src.model_copy(update={"options": {**src.options, **world.jiandaoyun["options"]}})
        for system, override in world.mappings.items():  # the world's mappings/<system>.yaml (world.yaml)
            if system in sources:
                sources[system] = sources[system].model_copy(update={"mapping": str(override)})
        if world.bank_folder is not None:
            sources["bank"] = SourceConfig(kind="camt053", options={"folder": str(world.bank_folder)})
        erp = ErpConfig(source=world.erp, dry_run=True) if world.erp else None
        fx_file = Path(world.path) / "fx_rates.csv"
        fx = FxConfig(files=[str(fx_file)] if fx_file.exists() else [])
        yield Config(sources=sources, reporting_currency=world.reporting_currency, erp=erp, fx=fx), servers


def today() -> Any:
    return datetime.now(UTC).date()


# --- replay a world: what `ltc demo [--world DIR]` runs ---------------------------------------------

DEFAULT_WORLD = Path(".ltc/world")
DEFAULT_REPORTS = Path(".ltc/reports")


def generate_world(directory: str | Path = DEFAULT_WORLD, *, chains: int = 300, seed: int = 7,
                   erp: str = "tryton", crm: str = "salesforce") -> Path:
    """Generate a world (``sandbox.scenario``) and write it as vendor files into ``directory``
    (``crm``: salesforce, zoho or jiandaoyun; a Zoho or Jiandaoyun world has its own name, so a store
    never mixes the two)."""
    import shutil

    from sandbox.scenario import generate
    from sandbox.world_writer import write_world

    target = Path(directory)
    if (target / "world.yaml").exists():  # a world written before (maybe with another ERP): replace it whole
        shutil.rmtree(target)
    name = f"generated-seed{seed}-{chains}-{crm}" if crm in ("zoho", "jiandaoyun") else None
    return write_world(generate(chains, seed=seed, erp=erp), target, crm=crm, name=name)


def load_fx_rates(store: Any, rates: list[dict[str, Any]], source: str = "world") -> int:
    """Replace the dated FX rates of ``source`` with ``rates`` (``rate_date``, ``base``, ``quote``, ``rate``)."""
    from ltc.app.fx import load_rates

    return load_rates(store, rates, source)


def world_key(world: WorldDir) -> str:
    return f"{world.name} ({Path(world.path).resolve()})"


def claim_store(store: Any, world: WorldDir) -> None:
    """A store replays one world: another world's records would mix into its chains and report.

    The first replay marks the store (a ``demo-world`` run naming the world); replaying another
    world into it is refused with what to do instead."""
    import sqlalchemy as sa

    from canonical.db import mask_url
    from canonical.errors import ConfigError
    from canonical.tables import run

    key = world_key(world)
    with store.engine.connect() as conn:
        held = conn.execute(sa.select(run.c.source).where(run.c.kind == "demo-world")
                            .order_by(run.c.started_at.desc()).limit(1)).scalar()
    if held is not None and held != key:
        where = mask_url(store.engine.url.render_as_string(hide_password=False))
        raise ConfigError(f"the store {where} holds the world {held}; replaying {key} into it would "
                          "mix the two — remove that store (for the default: `rm .ltc/ltc.db`) or set "
                          "LTC_DATABASE_URL to another one")
    if held is None:  # the world's as-of stays the store's: a later `ltc reconcile` without --as-of uses it
        counts = {"as_of": world.as_of.isoformat()} if world.as_of else {}
        store.finish_run(store.begin_run("demo-world", key), "success", counts)


def replay_world(store: Any, world_path: str | Path, reports_dir: str | Path, *,
                 sync_one: SyncOne | None = None,
                 echo: Callable[[str], Any] = print, on_progress: OnProgress | None = None) -> dict[str, Any]:
    """Serve a world from the emulators and run the pipeline on it (:func:`ltc.app.pipeline.run_pipeline`):
    sync every API source (``sync_one(ctx, source)``, default :func:`connectors.base.sync`), import the
    bank statements, load ``fx_rates.csv``, map, resolve identities, reconcile as of the world's
    ``as_of`` (default today) and write the finance report into ``reports_dir``.

    Returns the summary (``mapping``, ``identity``, ``reconcile``, ``reports``, ``as_of``) and the
    :class:`~ltc.app.pipeline.PipelineResult` as ``result``.
    """
    from canonical.forking import frozen
    from connectors.statements import forget_parsed
    from sandbox.world import open_world

    world, checks = open_world(world_path, offer_statements=True)
    try:  # the world's records (hundreds of thousands, kept for the run): left out of its garbage collections
        with frozen():
            result = _replay(store, world, checks, reports_dir, sync_one=sync_one, echo=echo,
                             on_progress=on_progress)
    finally:
        forget_parsed()  # the statements the check parsed and the import did not use
    if result.failed_stage:
        failure = LtcError(f"the demo's {result.failed_stage} stage failed: {result.error}")
        failure.exit_code = result.exit_code  # 2 for what an operator fixes (a full disk), as `ltc run` exits
        raise failure
    report = result.stage("report")
    as_of = world.as_of or today()
    return {"unread": result.unread, "failed": result.quarantine_failure, "discovered": result.discovered,
            "mapping": result.mapping, "identity": result.identity, "reconcile": result.reconcile,
            "reports": report.detail["files"] if report else [], "as_of": as_of.isoformat(), "result": result}


def _replay(store: Any, world: WorldDir, checks: WorldChecks, reports_dir: str | Path, *,
            sync_one: SyncOne | None, echo: Callable[[str], Any], on_progress: OnProgress | None) -> PipelineResult:
    """The pipeline on a world opened by :func:`sandbox.world.open_world`, once its checks passed."""
    from canonical.forking import forks

    def meanwhile() -> None:
        """While the last checks run in their children: the emulators' process (forked, as world_sources forks
        where it can) has the records, so this one lets go of its copy; and the pipeline's modules load (0.5 s at
        20k chains, which otherwise came after the checks)."""
        world.forget_records()
        import ltc.app.pipeline  # noqa: F401

    def ready() -> None:  # runs while the emulators' process builds their indexes
        checks.finish(meanwhile=meanwhile if forks() else None)
        claim_store(store, world)

    as_of = world.as_of or today()
    try:
        # the emulators' child has the records: this process drops its copy (the stages after the sync need
        # the store only), and the sync's children are forked without it
        with world_sources(world, process=True, ready=ready, hand_over=True) as (cfg, servers):
            from ltc.app.pipeline import run_pipeline

            echo(f"world {world.name} ({world.path}): " + ", ".join(f"{k} {s.url}" for k, s in servers.items()))
            cfg.reports_dir = str(reports_dir)
            result = run_pipeline(store, cfg, as_of, sync_one=sync_one, echo=echo, on_progress=on_progress,
                                  report_title=f"Reconciled order-to-invoice-to-cash report: {world.name}")
    finally:
        checks.cancel()  # done with already, unless the emulators failed to start
    return result

"""Bank statements: import every new file of each ``camt053`` source's watched folder.

A source in ltc.yaml::

    bank:
      kind: camt053          # camt.053 and MT940 files alike
      options: {folder: /srv/bank/inbox}

Files already imported (by content hash) are skipped; a statement failing its balance gate is
rejected whole and reported, the others import.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from canonical.errors import ConfigError
from connectors.statements import run_import
from ltc.app import runtime
from ltc.app.config import load_config


@task(cache_policy=NO_CACHE, task_run_name="import statements of {source}")
def import_source_folder(source: str, folder: str, config_path: str | None = None) -> dict[str, Any]:
    store = runtime.open_store(config_path)
    try:
        summary = run_import(store, folder=folder, source=source)
    finally:
        store.close()
    return dataclasses.asdict(summary)


@flow(name="ltc-import-statements", flow_run_name="import bank statements")
def import_statements(config_path: str | None = None) -> dict[str, Any]:
    cfg = load_config(config_path)
    sources = {n: s for n, s in cfg.sources.items() if s.kind == "camt053"}
    out: dict[str, Any] = {}
    for name, src in sources.items():
        folder = src.options.get("folder")
        if not folder:
            raise ConfigError(f"sources.{name}.options.folder: the folder to watch for statement files is not set")
        out[name] = import_source_folder(name, str(folder), config_path)
    if out:
        create_table_artifact([{"source": n, **s["counts"]} for n, s in out.items()],
                              key="import-statements", description="Bank statement files imported in this run")
    return out

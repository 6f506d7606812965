"""What the CLI and the Prefect flows share: resolving the store and the sources of ltc.yaml."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from canonical import db
from canonical.errors import ConfigError, operator_error
from canonical.store import Store
from connectors import registry
from connectors.base import Connector, StreamResult, sync
from ltc.app.config import Config, insecure_urls, load_config
from ltc.app.progress import OnProgress, StreamTimer, stage

log = logging.getLogger("ltc")


def store_url(cfg: Config) -> str:
    """LTC_DATABASE_URL, else ltc.yaml's ``database_url``, else the embedded SQLite file."""
    return os.environ.get("LTC_DATABASE_URL") or cfg.database_url or db.DEFAULT_URL


def open_store(config_path: str | None = None, *, auto_create: bool = True) -> Store:
    return Store.open(store_url(load_config(config_path)), auto_create=auto_create)


def source_names(cfg: Config, only: list[str] | None = None) -> list[str]:
    """The configured sources to work on (all of them, or the named ones, checked)."""
    if not cfg.sources:
        raise ConfigError("no sources configured: add `sources:` to ltc.yaml (see `ltc config check`)")
    names = only or [n for n, s in cfg.sources.items() if s.kind != "camt053"]
    unknown = [n for n in names if n not in cfg.sources]
    if unknown:
        raise ConfigError(f"unknown source(s) {', '.join(unknown)}; configured: {', '.join(cfg.sources)}")
    return names


def build_connector(cfg: Config, name: str) -> Connector:
    src = cfg.sources[name]
    for url in insecure_urls(src):
        log.warning("sources.%s: %s is plain http:// to another host (allow_insecure_http: true): credentials "
                    "and data travel unencrypted", name, url.split("?", 1)[0])
    connector = registry.build(name, src)
    connector.lookback = timedelta(minutes=src.lookback_minutes)
    connector.clock_skew = timedelta(seconds=src.clock_skew_seconds)
    connector.deep_check_every = src.deep_every
    connector.deep_delete_max_share = src.deep_delete_max_share
    return connector


@dataclass
class FailedStream(StreamResult):
    """A stream (or a whole source, stream ``*``) that raised: the others went on. ``exit_code`` is
    the error's (2 when an operator can fix it: credentials, an unreachable URL, configuration)."""

    exit_code: int = 1


def exit_code_of(exc: BaseException) -> int:
    """The exit code an error stands for: its own (``LtcError.exit_code``), an operator's problem's
    (:func:`canonical.errors.operator_error`: a full disk...), else 1."""
    problem = operator_error(exc)
    return problem.exit_code if problem is not None else 1


def sync_sources(cfg: Config, store: Store, only: list[str] | None = None, streams: list[str] | None = None,
                 full_refresh: bool = False, *, deep: bool = False,
                 on_wait: Callable[[str], None] | None = None,
                 on_progress: OnProgress | None = None) -> Iterator[tuple[str, StreamResult]]:
    """Sync the configured sources (or the named ones) one after the other: (source, result) per stream.

    Each source is isolated: when one raises (bad credentials, unreachable, a bug), its finished
    streams and a :class:`FailedStream` saying why are yielded and the next source goes on.
    ``deep`` runs the deep completeness check now; ``on_wait`` hears when another process holds a
    source's sync lock and this one waits for it; ``on_progress`` hears each stage (``sync <source>``)
    and each stream's pages (:mod:`ltc.app.progress`)."""
    timer = StreamTimer(on_progress) if on_progress is not None else None
    for name in source_names(cfg, only):
        finished: list[StreamResult] = []
        current: list[str] = []

        def on_page(result: StreamResult, finished: list[StreamResult] = finished,
                    current: list[str] = current) -> None:
            current[:] = [result.stream]
            if result.status not in ("running", "failed"):
                finished.append(result)
            if timer is not None:
                timer(result)

        try:
            with stage(f"sync {name}", on_progress):
                connector = build_connector(cfg, name)
                try:
                    sync(connector, store, streams=streams, full_refresh=full_refresh, deep=deep,
                         on_wait=on_wait, on_page=on_page)
                finally:
                    connector.close()
        except Exception as exc:
            log.info("sync of source %s failed: %s", name, exc)
            yield from ((name, r) for r in finished)
            stream = current[0] if current and current[0] not in {r.stream for r in finished} else "*"
            yield name, FailedStream(name, stream, status="failed", message=str(exc)[:2000] or type(exc).__name__,
                                     exit_code=exit_code_of(exc))
            continue
        yield from ((name, r) for r in finished)

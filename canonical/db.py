"""Database URL handling, engines, and schema migrations (Alembic).

``LTC_DATABASE_URL`` selects the store. Default: a SQLite file ``./.ltc/ltc.db`` created on first
use. ``postgresql://`` URLs use psycopg 3. An empty database gets the schema on first use; a
database at an older revision is refused with a message saying to run ``ltc db upgrade``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from canonical import tables
from canonical.errors import ConfigError, DatabaseUnavailable, SchemaOutdated

DEFAULT_URL = "sqlite:///.ltc/ltc.db"
MIGRATIONS = Path(__file__).parent / "migrations"


def database_url(url: str | None = None) -> str:
    """The URL to use: the argument, else ``LTC_DATABASE_URL``, else the embedded SQLite file."""
    return url or os.environ.get("LTC_DATABASE_URL") or DEFAULT_URL


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (works on URLs SQLAlchemy cannot parse too)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def json_default(value: Any) -> Any:
    """Serialise what JSON lacks: Decimal as its exact text, sets as sorted lists."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def dumps(value: Any) -> bytes:
    """Canonical JSON bytes (sorted keys): the basis of content hashes and of stored payloads."""
    return orjson.dumps(value, default=json_default, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def _normalize(url: str) -> sa.engine.URL:
    try:
        parsed = sa.engine.make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"invalid LTC_DATABASE_URL {mask_url(url)!r}: expected e.g. sqlite:///path/ltc.db "
            "or postgresql://user:pass@host:5432/db"
        ) from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"unsupported database {mask_url(url)!r}: ltc-hub runs on SQLite or PostgreSQL"
        )
    return parsed


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str | None = None) -> Engine:
    """An engine for ``url``, checked to connect. Bad URL or unreachable database: one-line error."""
    raw = database_url(url)
    parsed = _normalize(raw)
    kwargs: dict[str, Any] = {
        "json_serializer": lambda v: dumps(v).decode(),
        "json_deserializer": orjson.loads,
    }
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except NoSuchModuleError:
        raise ConfigError(f"invalid LTC_DATABASE_URL {mask_url(raw)!r}: unknown driver") from None
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseUnavailable(f"cannot connect to database {mask_url(raw)}: {reason}") from None
    return engine


# --- migrations -------------------------------------------------------------------------------

def alembic_config(connection: Connection | None = None, *, target_metadata: sa.MetaData | None = None) -> Config:
    """The Alembic configuration of canonical/migrations, on ``connection``.

    ``target_metadata`` (the whole schema, :data:`ltc.app.schema.metadata`) is only needed to
    autogenerate a migration; upgrading runs the scripts alone.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    if target_metadata is not None:
        cfg.attributes["target_metadata"] = target_metadata
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema to ``revision``; returns (before, after)."""
    before = current_revision(engine)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    after = current_revision(engine)
    assert after is not None
    return before, after


def _has_ltc_tables(engine: Engine) -> bool:
    """Whether the database holds any table of ltc-hub (every ltc-hub schema has the canonical ones)."""
    existing = set(sa.inspect(engine).get_table_names())
    return bool(existing & set(tables.metadata.tables))


def ensure_schema(engine: Engine, *, auto_create: bool = True) -> None:
    """Refuse to run against a schema other than head; create it in an empty database."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    masked = mask_url(engine.url.render_as_string(hide_password=False))
    if current is None and not _has_ltc_tables(engine):
        if auto_create:
            upgrade(engine)
            return
        raise SchemaOutdated(f"database {masked} has no ltc-hub schema: run `ltc db upgrade`")
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current is not None and current not in known:
        raise SchemaOutdated(
            f"database {masked} is at schema revision {current}, newer than this ltc-hub knows "
            f"(head {head}): upgrade ltc-hub"
        )
    raise SchemaOutdated(
        f"database {masked} is at schema revision {current or 'none'}, this ltc-hub needs {head}: "
        "run `ltc db upgrade`"
    )

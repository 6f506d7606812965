"""Database URL handling, engines, and schema migrations (Alembic).

``LTC_DATABASE_URL`` selects the store. Default: a SQLite file ``./.ltc/ltc.db`` created on first
use. ``postgresql://`` URLs use psycopg 3. An empty database gets the schema on first use; a
database at an older revision is refused with a message saying to run ``ltc db upgrade``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from canonical import tables
from canonical.errors import DAMAGED_STORE, ConfigError, DatabaseUnavailable, SchemaOutdated

log = logging.getLogger("canonical.db")
T = TypeVar("T")
DEFAULT_URL = "sqlite:///.ltc/ltc.db"
MIGRATIONS = Path(__file__).parent / "migrations"


def database_url(url: str | None = None) -> str:
    """The URL to use: the argument, else ``LTC_DATABASE_URL``, else the embedded SQLite file."""
    return url or os.environ.get("LTC_DATABASE_URL") or DEFAULT_URL


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (works on URLs SQLAlchemy cannot parse too). A SQLite URL holds
    no password and is shown as a person writes it (SQLAlchemy writes a ``file:`` URI's colon as ``%3A``)."""
    if url.startswith("sqlite:"):
        return urllib.parse.unquote(url)
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def json_default(value: Any) -> Any:
    """Serialise what JSON lacks: Decimal as its exact text, sets as sorted lists."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


_INT64 = (-(2**63), 2**63 - 1)
# U+0000 as orjson writes it (``\u0000``), not preceded by an escaped backslash (``\\u0000`` is text)
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def _storable(value: Any) -> Any:
    """The value with what orjson cannot write made storable, exactly where possible: integers
    beyond 64 bits as their decimal text (a JSON reader would turn them into lossy floats), lone
    UTF-16 surrogates (``"\ud800"`` in a vendor's JSON) as U+FFFD."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value) if not _INT64[0] <= value <= _INT64[1] else value
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_storable(k) if isinstance(k, str) else k: _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


# JSON with exact decimals, parsed by msgspec: 1.5-2x faster than ``json`` with ``parse_float=Decimal`` (a world's
# files, the Salesforce, HubSpot, Stripe and Zoho answers), with the same values
_EXACT = msgspec.json.Decoder(float_hook=Decimal)


def loads_exact(text: str | bytes) -> Any:
    """The JSON value of ``text``, every number with a fraction or an exponent a ``Decimal`` of its exact text:
    what ``json.loads(text, parse_float=Decimal)`` returns. A text msgspec refuses (``NaN``, a lone surrogate, UTF-16,
    malformed JSON) is parsed by ``json``, whose value or error (its message names the line and column) stands."""
    try:
        return _EXACT.decode(text)
    except Exception:
        return json.loads(text, parse_float=Decimal)


def dumps(value: Any) -> bytes:
    """Canonical JSON bytes (sorted keys): the basis of content hashes and of stored payloads.

    Whatever a vendor payload holds is storable on both backends, identically: an integer beyond
    64 bits is kept exact as its decimal text, and U+0000 (which PostgreSQL refuses in ``text`` and
    ``jsonb``) and lone surrogates are stored as U+FFFD, the replacement character, in values and
    keys alike.
    """
    try:
        out = orjson.dumps(value, default=json_default, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        if "64-bit" not in str(exc) and "surrogates" not in str(exc):
            raise
        out = orjson.dumps(_storable(value), default=json_default,
                           option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    if b"\\u0000" in out:
        out = _NUL_ESCAPE.sub("\\1\ufffd".encode(), out)  # as orjson writes U+FFFD: UTF-8
    return out


def parsed_url(url: str | None = None) -> sa.engine.URL:
    """The store's URL (the argument, else ``LTC_DATABASE_URL``, else the default), parsed and checked as
    :func:`make_engine` does, without connecting: a bad one is one line (:class:`ConfigError`)."""
    return _normalize(database_url(url))


def _normalize(url: str) -> sa.engine.URL:
    try:
        parsed = sa.engine.make_url(url)
    except ValueError:  # the port, parsed as an int
        raise ConfigError(
            f"invalid LTC_DATABASE_URL {mask_url(url)!r}: the port must be a number (e.g. host:5432)"
        ) from None
    except ArgumentError:
        raise ConfigError(
            f"invalid LTC_DATABASE_URL {mask_url(url)!r}: expected e.g. sqlite:///path/ltc.db "
            "or postgresql://user:pass@host:5432/db"
        ) from None
    try:
        parsed.port  # noqa: B018 - parsed lazily: "host:54x2" fails only when read
    except ValueError:
        raise ConfigError(
            f"invalid LTC_DATABASE_URL {mask_url(url)!r}: the port must be a number (e.g. host:5432)"
        ) from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in _DRIVERS:
        raise ConfigError(
            f"unsupported database {mask_url(url)!r}: ltc-hub runs on SQLite or PostgreSQL"
        )
    driver = parsed.drivername.partition("+")[2]
    drivers, supported = _DRIVERS[backend]
    if driver not in drivers:  # never connected with: another driver takes other arguments, or is async
        raise ConfigError(f"unsupported driver {driver!r} in LTC_DATABASE_URL {mask_url(url)!r}: {supported}")
    return parsed


#: the drivers ltc-hub connects with, by database ("": the URL names none; a PostgreSQL URL without one was given
#: psycopg's), and what an operator writes
_DRIVERS = {
    "sqlite": (("", "pysqlite"), "ltc-hub opens SQLite with Python's sqlite3 only: write sqlite:///path/ltc.db "
                                 "(or sqlite+pysqlite:///path/ltc.db)"),
    "postgresql": (("psycopg",), "ltc-hub connects to PostgreSQL with psycopg 3 only: write "
                                 "postgresql://user:pass@host:5432/db (or postgresql+psycopg://...)"),
}


# A sync lands a page in one transaction; its records' ids are in the page's (modification time) order, so
# they go to scattered leaves of the raw table's (system, object, source_id) index, and the leaves a page
# dirties grow with the index up to one per record. With SQLite's defaults (a 2 MiB page cache, a checkpoint
# once the WAL holds 1,000 pages: at every page commit then) each page re-read those leaves from the file
# and copied them into the database again: a cost per record that grew with what was stored already.
SQLITE_CACHE_KIB = 65_536  # the page cache of a connection that lands pages, at most (allocated as it fills;
# only there: the mapping stage's writes, which append in key order, spent more CPU with it than without)
SQLITE_CHECKPOINT_PAGES = 16_384  # WAL pages before a commit checkpoints: a leaf that several pages
# rewrite is copied into the database once


#: how long a connection waits for the database's other connections: SQLite's busy timeout, and the longest a new
#: connection tries to put a new database into WAL mode while another connection holds it (:func:`_wal_mode`)
SQLITE_BUSY_MS = 30_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    _wal_mode(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}")
    cur.close()


def _wal_mode(cur: Any) -> None:
    """Put the database into WAL mode (a no-op once it is: the mode is kept in the file). A new database's first
    connections switch it: while another connection holds a write lock on it (two processes opening a new store at
    once: the other one switching it, or creating the schema), SQLite answers "database is locked" at once, without
    its busy wait (waiting there could deadlock), so the switch is tried again, up to :data:`SQLITE_BUSY_MS` in all,
    until that connection is done (a first ``ltc sync`` beside another failed so, one run in three)."""
    deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
    pause = 0.002
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def landing_cache(conn: Connection) -> None:
    """SQLite: ``conn``'s database connection keeps up to SQLITE_CACHE_KIB of pages from now on (once per
    connection: a sync's pages land on scattered index leaves). Elsewhere: nothing."""
    record: Any = conn.connection
    if conn.dialect.name != "sqlite" or record.info.get("ltc_landing_cache"):
        return
    record.dbapi_connection.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    record.info["ltc_landing_cache"] = True


@contextmanager
def no_autocheckpoint(conn: Connection) -> Iterator[None]:
    """SQLite: the block's commits on ``conn`` do not checkpoint the WAL (a checkpoint at a commit copies pages
    and syncs the file while the writer still holds its turn; the caller checkpoints later, see
    :func:`passive_checkpoint`). Elsewhere: nothing."""
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name != "sqlite" or raw is None:
        yield
        return
    before = raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    raw.execute("PRAGMA wal_autocheckpoint=0")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA wal_autocheckpoint={int(before)}")


def passive_checkpoint(conn: Connection) -> None:
    """SQLite: copy what the WAL holds into the database file without waiting for readers or writers (one
    under way elsewhere makes it return at once). Elsewhere: nothing."""
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "sqlite" and raw is not None:
        raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def sqlite_file(url: sa.URL) -> Path | None:
    """The file of a SQLite store, at a plain path or as a ``file:`` URI names it (``sqlite:///file:/srv/ltc.db?mode=ro
    &uri=true``: a store read only); None for another database or one in memory."""
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return None
    if path.startswith("file:"):
        path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        if not path or path == ":memory:" or url.query.get("mode") == "memory":
            return None
    return Path(path).expanduser()


def require_existing(url: str | None = None) -> None:
    """A SQLite store's file must be there already: :class:`DatabaseUnavailable` (one line) if not, before anything
    creates it. Other databases are checked by connecting."""
    raw = database_url(url)
    store = sqlite_file(_normalize(raw))
    if store is not None and not store.is_file():
        raise DatabaseUnavailable(f"no store at {mask_url(raw)}: the file does not exist; check LTC_DATABASE_URL "
                                  "(or database_url in ltc.yaml); a sync or `ltc db upgrade` makes a new store")


def make_engine(url: str | None = None) -> Engine:
    """An engine for ``url``, checked to connect. Bad URL or unreachable database: one-line error."""
    raw = database_url(url)
    parsed = _normalize(raw)
    kwargs: dict[str, Any] = {
        "json_serializer": lambda v: dumps(v).decode(),
        "json_deserializer": orjson.loads,
    }
    if parsed.get_backend_name() == "sqlite":
        store = sqlite_file(parsed)
        if store is not None:  # a file: URI's path too, not a folder named "file:" here
            store.parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs["pool_pre_ping"] = True
        # prepare_threshold None: no server-side prepared statements. psycopg prepares a statement run five times on
        # a connection; behind a pooler in transaction mode (PgBouncer before 1.21, the pooled endpoints of managed
        # PostgreSQL services) the next transaction may run on another server session, which does not know it
        # ("prepared statement "_pg3_1" does not exist"). ltc-hub's statements are few and large: nothing to gain.
        kwargs["connect_args"] = {"connect_timeout": 10, "prepare_threshold": None}
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except NoSuchModuleError:
        raise ConfigError(f"invalid LTC_DATABASE_URL {mask_url(raw)!r}: unknown driver") from None
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    for attempt in range(1, _RESTART_ATTEMPTS + 1):
        try:
            with engine.connect():
                pass
            return engine
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            if attempt < _RESTART_ATTEMPTS and _restarting(exc):  # a server restart: it answers again soon
                time.sleep(min(5.0, 0.5 * 2 ** (attempt - 1)))
                continue
            if _DAMAGED in reason:  # a truncated file: its first page is read to open it
                raise DatabaseUnavailable(f"cannot open database {mask_url(raw)}: {DAMAGED_STORE} ({reason})") \
                    from None
            raise DatabaseUnavailable(f"cannot connect to database {mask_url(raw)}: {reason}"
                                      f"{_sqlite_folder_note(parsed)}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _sqlite_folder_note(url: sa.URL) -> str:
    """Why an existing SQLite store could not be opened, when its folder is not writable (a read-only mount, a
    restored backup, a folder of another user's): SQLite keeps the store's ``-wal`` and ``-shm`` files beside it
    even to read it (WAL mode), so it says only "unable to open database file"."""
    store = sqlite_file(url)
    if store is None or not store.is_file() or os.access(store.parent, os.W_OK | os.X_OK):
        return ""
    return (f" (its folder {store.parent} is not writable, and SQLite writes the store's -wal and -shm files beside "
            "it even to read it: make the folder writable for this user, or copy the store to one that is)")


_RESTART_ATTEMPTS = 8
_DAMAGED = "database disk image is malformed"


def _restarting(exc: DBAPIError) -> bool:
    """The server is shutting down or starting up (not a wrong address or password)."""
    state = getattr(exc.orig, "sqlstate", None)
    text = str(exc.orig)
    return state in _PG_CONNECTION_STATES or "shutting down" in text or "starting up" in text \
        or "in recovery mode" in text


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


def known_revisions() -> set[str]:
    """Every schema revision this ltc-hub has a migration script of (head and all before it)."""
    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema to ``revision`` in one transaction; returns (before, after).

    All or nothing, SQLite included: a process killed half-way leaves the schema as it was (an empty
    store stays empty and is created again on next use), never tables without their revision."""
    before = current_revision(engine)
    newer = _newer(engine, before)
    if newer is not None:  # a store a later ltc-hub upgraded: no script here goes down from it
        raise newer
    with _ddl_engine(engine) as ddl, ddl.begin() as conn:
        command.upgrade(alembic_config(conn), revision)
    after = current_revision(engine)
    assert after is not None
    return before, after


@contextmanager
def _ddl_engine(engine: Engine) -> Iterator[Engine]:
    """An engine whose transactions hold DDL: PostgreSQL's own; for a SQLite file, one that emits
    ``BEGIN`` itself (pysqlite runs DDL outside any transaction, one ``CREATE TABLE`` at a time)."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        yield engine
        return
    ddl = sa.create_engine(engine.url, poolclass=sa.pool.NullPool, connect_args={"timeout": 60})

    @sa.event.listens_for(ddl, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver opens no transaction of its own

    @sa.event.listens_for(ddl, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        yield ddl
    finally:
        ddl.dispose()


def upgrade_locked(engine: Engine) -> tuple[str | None, str]:
    """:func:`upgrade` under the schema lock (``ltc db upgrade`` while a first sync creates it)."""
    with _schema_lock(engine):
        return upgrade(engine)


def _other_tables(engine: Engine) -> list[str]:
    """The tables, where ltc-hub would make its own (PostgreSQL: the current schema), that are not ltc-hub's."""
    return sorted(set(sa.inspect(engine).get_table_names()) - set(tables.metadata.tables) - {"alembic_version"})


def _has_ltc_tables(engine: Engine) -> bool:
    """Whether the database holds any table of ltc-hub (every ltc-hub schema has the canonical ones)."""
    existing = set(sa.inspect(engine).get_table_names())
    return bool(existing & set(tables.metadata.tables))


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """Serialise first-use schema creation between processes (two first syncs on a fresh store):
    a PostgreSQL advisory lock, or an OS lock on a file next to the SQLite database."""
    if engine.dialect.name == "postgresql":
        # a transaction's lock, which a pooler in transaction mode keeps on one server session (see locks.py)
        with engine.connect().execution_options(isolation_level="READ COMMITTED") as conn, conn.begin():
            conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            yield
        return
    path = sqlite_file(engine.url)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: SQLite's own locking is all there is
        fcntl = None  # type: ignore[assignment]
    if path is None or fcntl is None:
        yield
        return
    with open(f"{path}.schema-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released by the kernel if this process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_SCHEMA_LOCK_KEY = 0x4C54435F534348  # "LTC_SCH"


def ensure_schema(engine: Engine, *, auto_create: bool = True) -> None:
    """Refuse to run against a schema other than head; create it in an empty database.

    Creation is serialised between processes, and the revision read again once the lock is held,
    so a second process starting on the same fresh store waits and then finds the schema made."""
    if current_revision(engine) == head_revision():
        return
    with _schema_lock(engine):
        _check_schema(engine, auto_create=auto_create)


def _check_schema(engine: Engine, *, auto_create: bool) -> None:
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    masked = mask_url(engine.url.render_as_string(hide_password=False))
    if current is None and not _has_ltc_tables(engine):
        if auto_create:
            others = _other_tables(engine)
            if others:  # first use creates the schema in an empty database only, never beside another application's
                shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
                raise SchemaOutdated(
                    f"database {masked} holds another application's tables ({shown}) and no ltc-hub schema: point "
                    "LTC_DATABASE_URL at a new file or an empty database, or run `ltc db upgrade` to add ltc-hub's "
                    "tables there on purpose")
            upgrade(engine)
            return
        raise SchemaOutdated(f"database {masked} has no ltc-hub schema: run `ltc db upgrade`")
    newer = _newer(engine, current)
    if newer is not None:
        raise newer
    raise SchemaOutdated(
        f"database {masked} is at schema revision {current or 'none'}, this ltc-hub needs {head}: "
        "run `ltc db upgrade`"
    )


def _newer(engine: Engine, current: str | None) -> SchemaOutdated | None:
    """The error for a schema revision this ltc-hub has no script of (a later release's), or None."""
    if current is None or current in known_revisions():
        return None
    masked = mask_url(engine.url.render_as_string(hide_password=False))
    return SchemaOutdated(f"database {masked} is at schema revision {current}, newer than this ltc-hub knows "
                          f"(head {head_revision()}): upgrade ltc-hub (a store is never migrated down)")


# --- connection loss ----------------------------------------------------------------------------

_PG_CONNECTION_STATES = ("57P01", "57P02", "57P03")  # admin / crash shutdown, cannot connect now


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` says the database connection was lost or cannot be made right now (a
    PostgreSQL restart), as opposed to an error in the statement."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if type(orig).__module__.startswith("psycopg") and type(orig).__name__ in ("OperationalError", "InterfaceError"):
        state = getattr(orig, "sqlstate", None)
        return state is None or state.startswith("08") or state in _PG_CONNECTION_STATES
    return False


def reconnecting(fn: Callable[[], T], *, what: str, attempts: int = 8, base_s: float = 0.5,
                 max_s: float = 10.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``fn`` (one whole transaction); if the connection is lost, reconnect and run it again.

    ``fn`` must be safe to repeat: a transaction whose COMMIT was sent but not acknowledged may have
    landed, so what it writes is idempotent (upserts, hash-checked landing, deduplicated quarantine).
    After ``attempts`` the loss is an operator's problem: :class:`DatabaseUnavailable`, one line.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except DBAPIError as exc:
            if not is_disconnect(exc):
                raise
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            if attempt == attempts:
                raise DatabaseUnavailable(f"{what}: lost the database connection and could not reconnect "
                                          f"after {attempts} attempts ({reason})") from None
            log.warning("%s: database connection lost (%s); reconnecting (attempt %d/%d)", what, reason,
                        attempt + 1, attempts)
            sleep(min(max_s, base_s * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")  # pragma: no cover

"""``ltc db restore``: put a backup ``ltc db backup`` wrote back into the store.

* The backup is checked first: a SQLite store file that passes ``PRAGMA quick_check``, or a ``pg_dump`` custom
  archive ``pg_restore`` can read, holding ltc-hub's schema at a revision this ltc-hub knows (a later release's is
  refused: a store is never migrated down).
* A run holding one of the store's stage locks (:mod:`canonical.locks`) refuses the restore: it would go on writing
  into a store that changed under it.
* The store as it is goes to a safety copy first (the backup function's own; a damaged SQLite file, which no backup
  reads, has its bytes copied aside instead).
* **SQLite**: the backup is copied *into* the live store with SQLite's online backup API, page by page under the
  store's write lock: a process that has the store open sees the old database or the restored one, never a mix, and
  the store's ``-wal`` and ``-shm`` files stay its own. Only a file SQLite cannot open as a database at all is
  replaced by a restored copy.
* **PostgreSQL**: ``pg_restore --clean --if-exists --no-owner --single-transaction`` (all or nothing; the password
  in its environment).
* A backup of an older schema is then upgraded as ``ltc db upgrade`` does.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from canonical import db, locks
from canonical import tables as ct
from canonical.backup import backup, pg_env
from canonical.errors import ConfigError, DatabaseUnavailable, InputError, StoreProblem

_SQLITE_MAGIC = b"SQLite format 3\x00"
_PG_MAGIC = b"PGDMP"
#: what SQLite says of a store file it cannot read
_DAMAGED = ("database disk image is malformed", "file is not a database", "failed its check")


@dataclass(frozen=True)
class Plan:
    """A checked backup and the store it goes into."""

    url: str
    backup: Path
    revision: str
    store_file: Path | None  # SQLite: the store's file; PostgreSQL: None
    archive_tables: frozenset[str] = frozenset()  # PostgreSQL: the tables the archive holds

    @property
    def target(self) -> str:
        """What the restore replaces, for a person."""
        if self.store_file is not None:
            return f"the store {self.store_file}"
        return f"the database {db.mask_url(self.url)}"


@dataclass
class Restored:
    revision: str
    safety_copy: Path | None = None
    upgraded: tuple[str | None, str] | None = None
    notes: list[str] = field(default_factory=list)


def check(url: str | None, backup_file: str | Path) -> Plan:
    """The backup at ``backup_file`` checked for the store at ``url``; :class:`InputError` (one line) if it cannot
    be restored there, :class:`StoreProblem` if a run holds the store."""
    raw = db.database_url(url)
    parsed = db.parsed_url(raw)
    path = Path(backup_file).expanduser().absolute()
    if not path.is_file():
        raise InputError(f"no backup at {path}: give the file `ltc db backup` wrote")
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise InputError(f"cannot read the backup {path} ({exc.strerror or exc})") from None
    if parsed.get_backend_name() == "sqlite":
        store = db.sqlite_file(parsed)
        if store is None:
            raise ConfigError(f"the store {db.mask_url(raw)} is in memory: there is nothing to restore into")
        if not head.startswith(_SQLITE_MAGIC):
            kind = " (a pg_dump archive: restore it into a PostgreSQL store)" if head.startswith(_PG_MAGIC) else ""
            raise InputError(f"{path} is not a SQLite store file{kind}: give a backup `ltc db backup` wrote of a "
                             "SQLite store")
        if store.exists() and store.resolve() == path.resolve():
            raise InputError(f"{path} is the store itself: give a backup file")
        plan = Plan(raw, path, _sqlite_revision(path), store)
    else:
        if not head.startswith(_PG_MAGIC):
            kind = " (a SQLite store file: restore it into a SQLite store)" if head.startswith(_SQLITE_MAGIC) else ""
            raise InputError(f"{path} is not a pg_dump custom-format archive{kind}: give a backup `ltc db backup` "
                             "wrote of a PostgreSQL store")
        revision, archived = _pg_archive(path)
        plan = Plan(raw, path, revision, None, archived)
    _check_revision(plan)
    check_unlocked(plan)
    return plan


def _check_revision(plan: Plan) -> None:
    if plan.revision not in db.known_revisions():
        raise InputError(f"the backup {plan.backup} is at schema revision {plan.revision}, newer than this ltc-hub "
                         f"knows (head {db.head_revision()}): restore it with the ltc-hub release that wrote it, or "
                         "upgrade ltc-hub (a store is never migrated down)")


def _sqlite_revision(path: Path) -> str:
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise InputError(f"the backup {path} is damaged ({'; '.join(p.splitlines()[0] for p in problems[:2])})"
                                 ": give another backup")
            has_version = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = "
                                       "'alembic_version'").fetchone()
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone() if has_version else None
    except sqlite3.DatabaseError as exc:
        state = "is damaged" if _is_damage(exc) else "cannot be read as a SQLite store"
        raise InputError(f"the backup {path} {state} ({exc}): give another backup") from None
    if row is None:
        raise InputError(f"the backup {path} holds no ltc-hub schema (no schema revision): give a backup "
                         "`ltc db backup` wrote")
    return str(row[0])


def _pg_tool(name: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        raise ConfigError(f"{name} not found: install the PostgreSQL client tools (the server's major version or "
                          "later), e.g. `apt-get install postgresql-client`")
    return binary


def _first_line(text: str, code: int) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[0] if lines else f"exit code {code}"


_TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE (\S+) (\S+) ")


def _pg_archive(path: Path) -> tuple[str, frozenset[str]]:
    """The schema revision of a pg_dump archive and the tables it holds (read with ``pg_restore``, not restored)."""
    binary = _pg_tool("pg_restore")
    listed = subprocess.run([binary, "--list", str(path)], capture_output=True, text=True)
    if listed.returncode != 0:
        raise InputError(f"the backup {path} is not a readable pg_dump archive "
                         f"({_first_line(listed.stderr, listed.returncode)}): give another backup")
    archived = frozenset(m.group(2) for line in listed.stdout.splitlines() if (m := _TOC_TABLE.match(line)))
    data = subprocess.run([binary, "--data-only", "--table=alembic_version", "--file=-", str(path)],
                          capture_output=True, text=True)
    if data.returncode != 0:
        raise InputError(f"the backup {path} cannot be read ({_first_line(data.stderr, data.returncode)}): give "
                         "another backup")
    rows: list[str] = []
    copying = False
    for line in data.stdout.splitlines():
        if line.startswith("COPY ") and "alembic_version" in line:
            copying = True
        elif copying and line == "\\.":
            break
        elif copying and line.strip():
            rows.append(line.strip())
    if "alembic_version" not in archived or not rows:
        raise InputError(f"the backup {path} holds no ltc-hub schema (no schema revision): give a backup "
                         "`ltc db backup` wrote")
    return rows[0], archived


# --- the stage locks ----------------------------------------------------------------------------

def check_unlocked(plan: Plan) -> None:
    """:class:`StoreProblem` naming the holder if a live process holds one of the store's stage locks."""
    held = _held_sqlite(plan) if plan.store_file is not None else _held_pg(plan.url)
    if held is not None:
        raise StoreProblem(f"{held}: a run is under way on the store; let it finish (or stop it), then run "
                           "`ltc db restore` again")


def _held_sqlite(plan: Plan) -> str | None:
    store = plan.store_file
    if store is None or not store.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(store, timeout=30)) as conn:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stage_lock'").fetchone():
                return None
            rows = conn.execute("SELECT name, holder FROM stage_lock ORDER BY name").fetchall()
    except sqlite3.DatabaseError:  # a damaged store: no run gets far in it, and restoring it is the point
        return None
    for name, holder in rows:
        if locks.holder_alive(str(holder)):
            parts = str(holder).rsplit(":", 3)
            who = f"pid {parts[1]} on {parts[0]}" if len(parts) == 4 else str(holder)
            return f"the store's lock {name} is held by {who}"
    return None


def _held_pg(url: str) -> str | None:
    engine = db.make_engine(url)
    names = {locks.advisory_key(n): n for n in ("reconcile", "identity")}
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT a.pid, a.client_addr::text, (l.classid::bigint << 32) | l.objid::bigint FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.pid <> pg_backend_pid() ORDER BY a.pid LIMIT 1").first()
    finally:
        engine.dispose()
    if row is None:
        return None
    name = names.get(int(row[2]), "a stage lock (a sync, a mapping or the reconciliation)")
    return f"the store's lock {name} is held by PostgreSQL backend pid {row[0]}" + (f" from {row[1]}" if row[1] else "")


# --- restoring ----------------------------------------------------------------------------------

def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def restore(plan: Plan, *, safety_copy: bool = True) -> Restored:
    """Put the checked backup ``plan`` into its store; returns what was done."""
    check_unlocked(plan)  # again: the operator may have taken a while to confirm
    if plan.store_file is not None:
        done = _restore_sqlite(plan, plan.store_file, safety_copy)
    else:
        done = _restore_pg(plan, safety_copy)
    engine = db.make_engine(plan.url)
    try:
        with engine.begin() as conn:  # the backup's lock rows name the processes that held them then, none now
            if sa.inspect(conn).has_table("stage_lock"):
                conn.execute(sa.delete(ct.stage_lock))
        if plan.revision != db.head_revision():
            done.upgraded = db.upgrade_locked(engine)
    finally:
        engine.dispose()
    return done


def _is_damage(exc: BaseException) -> bool:
    text = str(exc)
    return any(words in text for words in _DAMAGED)


def _restore_sqlite(plan: Plan, store: Path, safety_copy: bool) -> Restored:
    done = Restored(plan.revision)
    damaged = False
    if store.is_file():
        dest = store.with_name(f"{store.name}.before-restore-{_stamp()}.db")
        try:
            db.make_engine(plan.url).dispose()
            if safety_copy:
                backup(plan.url, dest)
                done.safety_copy = dest
        except (DatabaseUnavailable, InputError, sa.exc.DBAPIError) as exc:
            if not _is_damage(exc):
                raise
            damaged = True
            if safety_copy:  # no backup reads a damaged store: its bytes as they are, with its WAL
                _copy_aside(store, dest)
                done.safety_copy = dest
                done.notes.append(f"the store is damaged, so no checked copy of it could be made: its file (and its "
                                  f"-wal file) copied as is to {dest}")
    else:
        store.parent.mkdir(parents=True, exist_ok=True)
        done.notes.append(f"there was no store at {store}: a new one was made")
    source_uri = f"file:{urllib.parse.quote(str(plan.backup.resolve()))}?mode=ro"
    with contextlib.closing(sqlite3.connect(source_uri, uri=True)) as source:
        try:
            with contextlib.closing(sqlite3.connect(store, timeout=60)) as live:
                source.backup(live)
        except sqlite3.DatabaseError as exc:
            if not damaged or not _is_damage(exc):
                raise StoreProblem(f"cannot restore into {store}: {exc}") from None
            _replace(source, store)
            done.notes.append("the store's file could not be opened as a database: it was replaced by the restored "
                              "copy (its -wal and -shm files removed); restart any ltc-hub process that had it open")
    return done


def _copy_aside(store: Path, dest: Path) -> None:
    try:
        shutil.copyfile(store, dest)
        wal = Path(f"{store}-wal")
        if wal.is_file():
            shutil.copyfile(wal, Path(f"{dest}-wal"))
    except OSError as exc:
        raise StoreProblem(f"cannot copy the damaged store to {dest} ({exc.strerror or exc}): free space or fix the "
                           "permissions there, or give --no-safety-copy") from None


def _replace(source: sqlite3.Connection, store: Path) -> None:
    """Put a restored copy in place of a store file SQLite cannot open (no process reads anything from it)."""
    fresh = store.with_name(f".{store.name}.restoring")
    fresh.unlink(missing_ok=True)
    try:
        with contextlib.closing(sqlite3.connect(fresh)) as out:
            source.backup(out)
        for suffix in ("-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        os.replace(fresh, store)
    finally:
        fresh.unlink(missing_ok=True)


def _restore_pg(plan: Plan, safety_copy: bool) -> Restored:
    done = Restored(plan.revision)
    binary = _pg_tool("pg_restore")
    url = db.parsed_url(plan.url)
    if safety_copy:
        dest = plan.backup.parent / f"{url.database}.before-restore-{_stamp()}.dump"
        backup(plan.url, dest)
        done.safety_copy = dest
    _drop_tables_not_archived(plan)
    run = subprocess.run([binary, "--clean", "--if-exists", "--no-owner", "--single-transaction",
                          "--dbname", str(url.database), str(plan.backup)],
                         env=pg_env(url), capture_output=True, text=True)
    if run.returncode != 0:
        raise StoreProblem(f"pg_restore failed, and undid what it restored (one transaction): "
                           f"{_first_line(run.stderr, run.returncode)}")
    return done


def _drop_tables_not_archived(plan: Plan) -> None:
    """A store at a later revision than the backup has tables the archive lacks: ``pg_restore --clean`` drops only
    the archive's own, and the upgrade that follows would find them there. ltc-hub's tables only."""
    engine = db.make_engine(plan.url)
    try:
        with engine.begin() as conn:
            present = set(sa.inspect(conn).get_table_names())
            extra = sorted(present & (set(ct.metadata.tables) | {"alembic_version"}) - plan.archive_tables)
            for name in extra:
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}" CASCADE')
    finally:
        engine.dispose()

"""``ltc db backup``: a consistent copy of the store, taken while runs go on.

* **SQLite**: ``VACUUM INTO`` a new file beside the destination (a read transaction: in WAL mode writers go on, and
  the copy is the store as of the moment it began), checked with ``PRAGMA quick_check``, then renamed into place, so
  the destination is never a half-written file. Copying the store's file itself while it is in use is not a backup:
  the last commits live in its ``-wal`` file, and a copy taken during a checkpoint is torn.
* **PostgreSQL**: ``pg_dump --format=custom`` (``ltc db restore`` puts it back with ``pg_restore``); the password goes to it in the
  environment, never on its command line, where ``ps`` shows it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from canonical import db
from canonical.errors import ConfigError, InputError, StoreProblem


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int
    revision: str | None


def backup(url: str, dest: str | Path) -> Backup:
    """Write a consistent copy of the store at ``url`` to ``dest`` (a new file)."""
    target = Path(dest).expanduser()
    if target.exists():
        raise InputError(f"{target} exists already: give a new file name (a backup never overwrites)")
    if not target.parent.is_dir():
        raise InputError(f"{target.parent} is not a folder")
    partial = _claim(target)
    try:
        engine = db.make_engine(url)
        try:
            revision = db.current_revision(engine)
            if engine.dialect.name == "sqlite":
                _sqlite(engine, partial)
            else:
                _pg_dump(engine.url, partial)
        finally:
            engine.dispose()
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return Backup(target, target.stat().st_size, revision)


def _claim(target: Path) -> Path:
    """The file a backup is written to before it is renamed to ``target``, made (empty: ``VACUUM INTO`` and pg_dump
    write into it; a killed backup's removed first). A folder this process may not write is one line naming the
    backup and the system's reason (SQLite says only "unable to open database: <that file>"), before the store is
    read."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.unlink(missing_ok=True)  # a killed backup's
        partial.touch(exist_ok=False)
    except OSError as exc:
        raise StoreProblem(f"cannot write the backup {target} ({exc.strerror or exc}): check the permissions and the "
                           f"mount of {target.parent}, or give a folder this process may write") from None
    return partial


def _sqlite(engine: sa.Engine, partial: Path) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql("VACUUM INTO ?", (str(partial),))
    with contextlib.closing(sqlite3.connect(partial)) as check:
        problems = [r[0] for r in check.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        raise InputError(f"the copy of the store failed its check ({'; '.join(problems[:3])}): the store itself may "
                         "be damaged; run `sqlite3 <store> 'PRAGMA integrity_check'`")


#: the connection parameters of a URL's query that pg_dump takes from its environment
_LIBPQ_ENV = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
              "connect_timeout": "PGCONNECT_TIMEOUT", "options": "PGOPTIONS"}


def _pg_dump(url: sa.URL, partial: Path) -> None:
    binary = shutil.which("pg_dump")
    if binary is None:
        raise ConfigError("pg_dump not found: install the PostgreSQL client tools (the server's major version or "
                          "later), e.g. `apt-get install postgresql-client`")
    done = subprocess.run([binary, "--format=custom", f"--file={partial}", "--dbname", str(url.database)],
                          env=pg_env(url), capture_output=True, text=True)
    if done.returncode != 0:
        lines = [x for x in done.stderr.strip().splitlines() if x.strip()]
        raise InputError(f"pg_dump failed: {lines[0] if lines else f'exit code {done.returncode}'}")


def pg_env(url: sa.URL) -> dict[str, str]:
    """The environment of a PostgreSQL client tool (pg_dump, pg_restore) connecting as ``url`` does: the password
    in it, never on the tool's command line, where ``ps`` shows it."""
    env = {**os.environ}
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    for key, part in (("PGHOST", url.host), ("PGPORT", url.port), ("PGUSER", url.username)):
        if part is not None:
            env[key] = str(part)
    for key, value in url.query.items():  # sslmode, sslrootcert, ...: libpq reads them from its environment too
        name = _LIBPQ_ENV.get(key)
        if name is not None:
            env[name] = str(value if isinstance(value, str) else value[0])
    return env

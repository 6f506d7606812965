"""Errors an operator can act on. Each carries a one-line message that says what to fix.

The CLI prints ``str(error)`` on one line and exits with ``exit_code``; no traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path


class LtcError(Exception):
    """Base of every error that should reach an operator as one clear line."""

    exit_code = 1


class ConfigError(LtcError):
    """Bad configuration or input: fix the file, variable or argument named in the message."""

    exit_code = 2


class DatabaseUnavailable(LtcError):
    """The store's database cannot be reached or opened."""

    exit_code = 2


class SchemaOutdated(LtcError):
    """The database schema is not the one this version of ltc-hub expects."""

    exit_code = 2


class InputError(LtcError):
    """A file or record given to ltc-hub is malformed; the message names file and line."""

    exit_code = 2


class StoredValueError(LtcError):
    """A row in the store's tables holds a value ltc-hub cannot read (an amount that is not a decimal, or too large
    to compute with): the message names table, row, column and value. Such a row was written around the mapping
    stage (which quarantines these), by hand or by a tool: correct or delete it."""

    exit_code = 2


class StoreProblem(LtcError):
    """The store's database, or a disk a run writes, cannot take the work (full, read-only, locked too long, out of
    connections, a file or directory this process may not write): an operator must fix it. What was committed
    before stands; the next run does the rest."""

    exit_code = 2


_AGAIN = "then run again (what was committed stands; the rest is done again)"

_FREE = "free space there (a run's scratch files go to TMPDIR, its reports to reports_dir), " + _AGAIN

_TIMEOUT = ("raise statement_timeout for ltc-hub's role (ALTER ROLE … SET statement_timeout = 0, or some minutes: a "
            "large store's reads and index builds take that long), " + _AGAIN)

_POOLER = ("the PostgreSQL connection goes through a pooler in transaction mode (PgBouncer, a managed service's pooled "
           "endpoint), where one client's prepared statements meet another's: give ltc-hub's database session pooling "
           "(pool_mode = session), PgBouncer 1.21 or later with max_prepared_statements, or a direct connection, "
           + _AGAIN)

#: what to do about a SQLite store whose file is damaged (its header intact: it opens, and a read of a damaged page
#: fails; a truncated file is refused when it is opened, with the same words)
DAMAGED_STORE = ("the store's database file is damaged: restore it from a backup with `ltc db restore <backup>` (a "
                 "file `ltc db backup` wrote; it copies the damaged file aside first; README: Backups); without one, "
                 "`sqlite3 <store> .recover` salvages what it can")

#: the words of a condition an operator fixes, as SQLite says it (the driver's message, also as ADBC's driver or a
#: helper process passes it on) or as a file write does (Polars, Arrow: the system's message in theirs), and what to do
_WORDS = (
    ("no space left on device", "no space left on a device this run writes: " + _FREE),
    ("disk quota exceeded", "the disk quota of a device this run writes is used up: " + _FREE),
    ("database or disk is full", "the disk that holds the store's database is full: free space on it, " + _AGAIN),
    ("disk i/o error", "a disk I/O error on the store's database file: check the disk and its file system, " + _AGAIN),
    ("readonly database", "the store's database is read-only for this process: check the permissions of the file "
                          "and of its directory (SQLite writes its -wal and -shm files beside it) and the mount, "
                          + _AGAIN),
    ("canceling statement due to statement timeout", "a statement ran past the database's statement_timeout: "
                                                      + _TIMEOUT),
    ("database disk image is malformed", DAMAGED_STORE),
    ("database is locked", "another process held the store's database locked for longer than this one waits (its "
                           "busy timeout): a tool or another process in a long write transaction; let it finish, "
                           + _AGAIN),
    # connectorx (the columnar reader) names the SQLSTATE in its text: a prepared statement met another client's
    ("sqlstate(e42p05)", _POOLER),
    ("sqlstate(e26000)", _POOLER),
)

#: PostgreSQL's SQLSTATEs for a condition an operator fixes, and what to do
_POSTGRES = {
    "53100": "the PostgreSQL server is out of disk space: free space on it, " + _AGAIN,
    "53200": "the PostgreSQL server is out of memory: check its memory settings and load, " + _AGAIN,
    "53300": "the PostgreSQL server refuses more connections: raise its max_connections or close idle clients, "
             + _AGAIN,
    "57014": "the PostgreSQL server canceled a statement (its statement_timeout, or an administrator): " + _TIMEOUT,
    "25P03": "the PostgreSQL server ended a session idle in a transaction (its idle_in_transaction_session_timeout): "
             "raise it for ltc-hub's role (ALTER ROLE … SET idle_in_transaction_session_timeout = 0), " + _AGAIN,
    "57P05": "the PostgreSQL server ended an idle session (its idle_session_timeout): raise it for ltc-hub's role "
             "(ALTER ROLE … SET idle_session_timeout = 0), " + _AGAIN,
    "25006": "the PostgreSQL server is read-only (a standby?): point LTC_DATABASE_URL at the primary, " + _AGAIN,
    "42501": "the database role lacks a privilege on the store: grant it (README: The store), " + _AGAIN,
    "42P05": _POOLER,  # duplicate_prepared_statement
    "26000": _POOLER,  # invalid_sql_statement_name: a prepared statement another server session does not know
}

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS)
_IN_THE_WAY = (errno.ENOTDIR, errno.EEXIST)  # a file where a folder is wanted (``--out report.html``, a path under it)


def operator_error(exc: BaseException) -> LtcError | None:
    """``exc`` as the one-line error an operator acts on, or None (a bug: its traceback is what helps). An
    :class:`LtcError` anywhere in its chain is that error; a full disk, a read-only or too long locked store, a
    PostgreSQL server out of space or connections (what the driver says, however deep in the chain: SQLAlchemy
    wraps it, a helper process passes its text on) a :class:`StoreProblem` naming what to do, with the driver's
    words."""
    for err in _chain(exc):
        if isinstance(err, LtcError):
            return err
        if isinstance(getattr(err, "orig", None), BaseException):
            continue  # SQLAlchemy's wrapper: the driver's own error is next
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            where = f" for {err.filename}" if err.filename else ""
            return StoreProblem(f"no space left on the device{where} ({err.strerror}): {_FREE}")
        if isinstance(err, OSError) and err.errno in _REFUSED and err.filename:
            return StoreProblem(f"{err.strerror}: {err.filename}: check its permissions, its directory's and the "
                                "mount, or choose another place (--out or reports_dir for the reports, TMPDIR for a "
                                f"run's scratch files), {_AGAIN}")
        if isinstance(err, OSError) and err.errno in _IN_THE_WAY and err.filename:
            return StoreProblem(f"{err.strerror}: {err.filename}: a file is where a folder is wanted: choose another "
                                "place (--out or reports_dir for the reports, TMPDIR for a run's scratch files), "
                                f"{_AGAIN}")
        state = getattr(err, "sqlstate", None)
        if isinstance(state, str) and state in _POSTGRES:
            return StoreProblem(f"{_POSTGRES[state]} ({_first_line(err)})")
        text = _first_line(err)
        for words, what in _WORDS:
            if words in text.lower():
                return StoreProblem(f"{what} ({text})")
    return None


def error_text(exc: BaseException, *, typed: bool = True) -> str:
    """``exc`` in one message for a run's record, a log or a progress line: an operator's problem under a driver's
    error (:func:`operator_error`) as what to do and the driver's words, anything else as ``Type: message``
    (``typed``) or its message."""
    problem = operator_error(exc)
    if isinstance(problem, StoreProblem) and problem is not exc:
        return str(problem)
    return f"{type(exc).__name__}: {exc}" if typed else str(exc)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the driver's error it wraps (SQLAlchemy's ``orig``) and its causes, innermost last, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        err = todo.pop(0)
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        yield err
        orig = getattr(err, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None, err.__cause__,
                 None if err.__suppress_context__ else err.__context__]


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def yaml_problem(path: object, exc: Exception, *, default_line: int | None = None) -> str:
    """``<path>:<line>: not valid YAML: <problem>`` for a YAML parse error (line where the parser knows it)."""
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else default_line
    where = f"{path}:{line}" if line is not None else str(path)
    return f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"


def yaml_text(path: Path) -> str:
    """A YAML file an operator wrote, as text: UTF-8 (a byte-order mark allowed, as Windows Notepad writes it) or
    UTF-16 with its byte-order mark (Notepad's "Unicode"), the encodings YAML allows. ``ValueError`` (one line, file
    and line) for another encoding: a Chinese Windows editor's "ANSI" (GBK) or a Western one's (cp1252) is not
    guessed at, as a wrong guess would give wrong names silently. ``OSError`` as the file system raised it."""
    data = path.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not valid UTF-16 text, though it starts as UTF-16 does; save it as UTF-8") \
                from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8 "
                         "(a Windows editor's 'ANSI', such as GBK, is not)") from None

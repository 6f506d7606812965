"""One lock per stage and store: two reconciles, two mappings of a system, two syncs of a source
never run at the same time against one store; the second waits for the first, saying so.

* **PostgreSQL**: a transaction's advisory lock (``pg_try_advisory_xact_lock``) in a transaction held open on
  a connection of its own for the stage (read committed: it holds no snapshot, so it keeps nothing from VACUUM). A
  process that dies loses its session, and the lock with it. Not a session's lock: behind a pooler in transaction
  mode (PgBouncer, the pooled endpoints of managed PostgreSQL services) a session lock stays on the server session
  that took it, which goes back to the pool between statements: the next client given that session holds the lock
  too, and the unlock may reach another session and leave the lock held for good.
* **SQLite**: a row in ``stage_lock`` naming the holder (host, pid and the process's start time),
  written with a compare-and-set upsert under SQLite's writer lock. A row whose process is gone
  (killed, crashed) is stale and taken over; a live holder is waited for.

Locks are re-entrant within one thread (``ltc run`` may hold ``map`` while a helper asks again).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine

from canonical import db
from canonical.errors import LtcError
from canonical.processes import running, start_time
from canonical.tables import stage_lock as lock_table

log = logging.getLogger("canonical.locks")

_held: dict[tuple[str, str, int], int] = {}
_held_guard = threading.Lock()


class LockTimeout(LtcError):
    """Another process held the stage's lock for longer than we were willing to wait."""

    exit_code = 1


def holder_id() -> str:
    """This process and thread as a lock holder: ``host:pid:start:thread``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{start_time(pid)}:{threading.get_ident()}"


def holder_alive(holder: str) -> bool:
    """Whether the process named by ``holder`` still runs. A holder on another host cannot be
    checked from here and counts as alive (SQLite stores are local files, so this is rare)."""
    try:
        host, pid_text, start, _thread = holder.rsplit(":", 3)
        pid = int(pid_text)
    except ValueError:
        return False
    return running(host, pid, start)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` from the lock's name."""
    return int.from_bytes(hashlib.blake2b(f"ltc:{name}".encode(), digest_size=8).digest(), "big", signed=True)


def _describe(holder: str) -> str:
    parts = holder.rsplit(":", 3)
    return f"pid {parts[1]} on {parts[0]}" if len(parts) == 4 else holder


@contextmanager
def stage_lock(engine: Engine, name: str, *, timeout_s: float | None = None, poll_s: float = 0.5,
               on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock ``name`` (e.g. ``reconcile``, ``map:crm``, ``sync:crm``) of this store.

    Waits while another process holds it (``on_wait`` gets one line saying who, default: a log
    warning); after ``timeout_s`` (None: no limit) raises :class:`LockTimeout`.
    """
    key = (str(engine.url), name, threading.get_ident())
    with _held_guard:
        depth = _held.get(key, 0)
        _held[key] = depth + 1
    try:
        if depth:
            yield
            return
        say = on_wait or (lambda line: log.warning("%s", line))
        if engine.dialect.name == "postgresql":
            with _advisory(engine, name, timeout_s, poll_s, say):
                yield
        else:
            with _lock_row(engine, name, timeout_s, poll_s, say):
                yield
    finally:
        with _held_guard:
            if _held[key] == 1:
                del _held[key]
            else:
                _held[key] -= 1


def _deadline(timeout_s: float | None) -> float | None:
    return None if timeout_s is None else time.monotonic() + timeout_s


def _check_deadline(deadline: float | None, name: str, who: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise LockTimeout(f"{name}: still held by another process ({who}) after waiting; try again later")


@contextmanager
def _advisory(engine: Engine, name: str, timeout_s: float | None, poll_s: float,
              say: Callable[[str], None]) -> Iterator[None]:
    k = advisory_key(name)
    deadline = _deadline(timeout_s)
    said = False

    def acquire() -> Connection:
        """A session holding the lock (a connection lost while waiting, e.g. a server restart,
        is replaced and the wait goes on)."""
        nonlocal said
        conn = engine.connect().execution_options(isolation_level="READ COMMITTED")
        try:
            conn.begin()
            # the transaction only holds the lock, idle the whole stage: a server's idle_in_transaction_session_timeout
            # would end it and free the lock under the running stage, silently (for this transaction only: SET LOCAL
            # leaves nothing on a pooled server session)
            conn.exec_driver_sql("SET LOCAL idle_in_transaction_session_timeout = 0")
            while not conn.exec_driver_sql("SELECT pg_try_advisory_xact_lock(%s)", (k,)).scalar():
                who = _pg_holder(conn, k)
                if not said:
                    say(f"{name}: another process holds this store's lock ({who}); waiting for it to finish")
                    said = True
                _check_deadline(deadline, name, who)
                time.sleep(poll_s)
        except BaseException:
            conn.close()
            raise
        return conn

    conn = db.reconnecting(acquire, what=f"{name}: taking the store's lock")
    try:
        yield
    finally:
        # the transaction's end frees the lock; a session lost meanwhile (a server restart) took it with it
        with contextlib.suppress(sa.exc.DBAPIError):
            conn.rollback()
        with contextlib.suppress(sa.exc.DBAPIError):
            conn.close()


def _pg_holder(conn: Connection, key: int) -> str:
    row = conn.exec_driver_sql(
        "SELECT a.pid, a.application_name, a.client_addr::text FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
        "AND ((l.classid::bigint << 32) | l.objid::bigint) = (%s::bigint) LIMIT 1",
        (key,),
    ).first()
    if row is None:
        return "a PostgreSQL session"
    return f"PostgreSQL backend pid {row[0]}" + (f" from {row[2]}" if row[2] else "")


def _take(conn: Connection, name: str, me: str, expected: str) -> bool:
    """Compare-and-set: insert the lock row, or take it over from ``expected`` (one statement,
    under SQLite's writer lock); False when someone else got there first."""
    stmt = sqlite.insert(lock_table).values(name=name, holder=me, acquired_at=datetime.now(UTC))
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"], set_={"holder": me, "acquired_at": stmt.excluded.acquired_at},
        where=lock_table.c.holder == expected,
    )
    return bool(conn.execute(stmt).rowcount)


@contextmanager
def _lock_row(engine: Engine, name: str, timeout_s: float | None, poll_s: float,
              say: Callable[[str], None]) -> Iterator[None]:
    me = holder_id()
    deadline = _deadline(timeout_s)
    said = False
    while True:
        with engine.connect() as conn:
            current = conn.execute(sa.select(lock_table.c.holder).where(lock_table.c.name == name)).scalar()
        if current is None or current == me or not holder_alive(current):
            if current is not None and current != me:
                log.warning("%s: taking over the lock of %s, which is no longer running", name, _describe(current))
            with engine.begin() as conn:
                if _take(conn, name, me, current or me):
                    break
            continue  # someone else took it between the read and the write: look again
        if not said:
            say(f"{name}: another process holds this store's lock ({_describe(current)}); waiting for it to finish")
            said = True
        _check_deadline(deadline, name, _describe(current))
        time.sleep(poll_s)
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(sa.delete(lock_table).where(lock_table.c.name == name, lock_table.c.holder == me))

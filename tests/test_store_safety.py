"""What the store keeps under hostile payloads, crashes and concurrency (issue 13).

U+0000 and integers beyond 64 bits land on both backends; the same rejection is quarantined once;
rows a killed run left ``running`` are closed at the next start; stage locks serialise two
processes (and a dead holder's lock is taken over); two first uses of a fresh store both get the
schema; a lost PostgreSQL connection is reconnected and the transaction run again.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from canonical import db
from canonical.errors import DatabaseUnavailable
from canonical.locks import holder_alive, stage_lock
from canonical.store import INTERRUPTED, RawRecord, Rejected, Store, content_hash, now
from canonical.tables import stage_lock as lock_table
from connectors.base import sync
from tests.connectors.fake import KeysetConnector, seeded

ROOT = Path(__file__).resolve().parents[1]


def test_nul_in_values_and_keys_is_stored_as_the_replacement_character(store: Store) -> None:
    payload = {"id": "n1", "name": "Acme\x00 GmbH", "a\x00b": ["x\x00"], "literal": "\\u0000 is text"}
    store.commit_page("crm", "accounts", [RawRecord("accounts", "n1", payload)], None)
    raw = store.get_raw("crm", "accounts", "n1")
    assert raw is not None
    assert raw["payload"]["name"] == "Acme\ufffd GmbH" and raw["payload"]["a\ufffdb"] == ["x\ufffd"]
    assert raw["payload"]["literal"] == "\\u0000 is text"  # an escaped backslash is not a NUL
    # the same on both backends: the hash is of the stored form
    assert raw["content_hash"] == content_hash({**payload}) == content_hash(
        {"id": "n1", "name": "Acme\ufffd GmbH", "a\ufffdb": ["x\ufffd"], "literal": "\\u0000 is text"})


def test_integers_beyond_64_bits_are_kept_exact(store: Store) -> None:
    big = 2**70 + 1
    payload = {"id": "b1", "amount": big, "nested": [{"n": -big}], "small": 5}
    store.commit_page("crm", "deals", [RawRecord("deals", "b1", payload)], None,
                      rejected=[Rejected("deals", "why", payload=payload)])
    raw = store.get_raw("crm", "deals", "b1")
    assert raw is not None
    assert raw["payload"] == {"id": "b1", "amount": str(big), "nested": [{"n": str(-big)}], "small": 5}
    assert store.quarantined()[0]["payload"]["amount"] == str(big)


def test_the_same_rejection_is_quarantined_once_while_open(store: Store) -> None:
    bad = [Rejected("deals", "record has no 'id'", payload={"name": f"x{i}"}, field="id") for i in range(2)]
    for _ in range(3):  # three runs re-read the same two bad records
        store.commit_page("crm", "deals", [], None, rejected=bad)
    assert len(store.quarantined()) == 2
    changed = [Rejected("deals", "record has no 'id'", payload={"name": "x0", "v": 2}, field="id")]
    store.commit_page("crm", "deals", [], None, rejected=changed)
    assert len(store.quarantined()) == 3  # a changed record is a new entry


def test_rows_left_running_by_a_killed_run_are_closed_at_the_next_start(store: Store) -> None:
    # what a SIGKILL in the middle of a sync leaves behind
    dead_run = store.begin_run("sync", "fake")
    store.start_stream("fake", "deals", dead_run)
    [result] = sync(KeysetConnector(seeded(3)), store)
    assert result.status == "success"
    with store.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, message FROM run WHERE id = :i"), {"i": dead_run}).one()
    assert tuple(row) == ("failed", INTERRUPTED)
    [state] = store.stream_states()
    assert state["status"] == "success"
    assert not [r for r in _runs(store) if r[1] == "running"]


def _runs(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT id, status FROM run"))]  # type: ignore[misc]


def test_a_stage_lock_makes_the_second_holder_wait_and_says_so(store: Store) -> None:
    order: list[str] = []
    lines: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with stage_lock(store.engine, "reconcile"):
            order.append("first in")
            first_in.set()
            time.sleep(0.6)
            order.append("first out")

    def second() -> None:
        first_in.wait(5)
        with stage_lock(store.engine, "reconcile", poll_s=0.05, on_wait=lines.append):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["first in", "first out", "second in"]
    assert len(lines) == 1 and "another process holds this store's lock" in lines[0] and "reconcile" in lines[0]
    with stage_lock(store.engine, "reconcile"), stage_lock(store.engine, "reconcile"):
        pass  # re-entrant within one thread


def test_a_dead_holders_sqlite_lock_row_is_taken_over(sqlite_store: Store) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)

    dead = f"{socket.gethostname()}:{int(proc.stdout)}:1:1"
    assert not holder_alive(dead)
    with sqlite_store.engine.begin() as conn:
        conn.execute(lock_table.insert().values(name="map:crm", holder=dead, acquired_at=now()))
    waited: list[str] = []
    t0 = time.monotonic()
    with stage_lock(sqlite_store.engine, "map:crm", on_wait=waited.append):
        with sqlite_store.engine.connect() as conn:
            holder = conn.execute(sa.select(lock_table.c.holder)).scalar()
        assert holder != dead
    assert not waited and time.monotonic() - t0 < 2
    with sqlite_store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(lock_table)).scalar() == 0


_OPEN = ("import sys; from canonical.store import Store; s = Store.open(sys.argv[1]); "
         "print(len(s.stream_states()))")


def _race_first_use(url: str) -> list[subprocess.CompletedProcess[str]]:
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN, url], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


@pytest.mark.slow
def test_first_use_of_a_fresh_sqlite_store_is_race_free(tmp_path: Path) -> None:
    for i in range(2):
        results = _race_first_use(f"sqlite:///{tmp_path / f'race{i}.db'}")
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        assert all(r.stdout.strip() == "0" for r in results)


def _held(path: Path) -> sqlite3.Connection:
    """Another process's connection to a new database, in the middle of its first write (a rollback-journal file
    still, as a new one is until a connection switches it to WAL)."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE held (x)")
    return other


def test_a_new_sqlite_store_opens_while_another_connection_writes_it(tmp_path: Path) -> None:
    """Two processes opening a new store at once (two first syncs): the switch to WAL mode of the one that finds the
    other writing was refused at once, "database is locked" without SQLite's busy wait (one trial in three of
    ``bench/faults.py --scenario concurrent``); it waits for the other now (fails on 4b16761)."""
    path = tmp_path / "new.db"
    other = _held(path)
    commit = threading.Timer(0.3, other.execute, ("COMMIT",))
    commit.start()
    try:
        engine = db.make_engine(f"sqlite:///{path}")
    finally:
        commit.join()
        other.close()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("SELECT count(*) FROM held").scalar() == 0
    engine.dispose()


def test_a_new_sqlite_store_held_too_long_is_a_one_line_error(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "SQLITE_BUSY_MS", 300)
    path = tmp_path / "new.db"
    other = _held(path)
    t0 = time.monotonic()
    try:
        with pytest.raises(DatabaseUnavailable, match="database is locked"):
            db.make_engine(f"sqlite:///{path}")
    finally:
        other.close()
    assert 0.2 < time.monotonic() - t0 < 5


@pytest.mark.slow
@pytest.mark.postgres
def test_first_use_of_a_fresh_postgresql_store_is_race_free(pg_new_database: Callable[[], str]) -> None:
    for _ in range(2):
        results = _race_first_use(pg_new_database())
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]


@pytest.mark.postgres
def test_a_postgresql_stage_lock_outlasts_an_idle_session_timeout(pg_new_database: Callable[[], str]) -> None:
    """The lock's session is idle the whole stage: a server's idle_session_timeout ended it and freed the lock under
    the running stage, silently (fails on 28a1a90); the lock's transaction outlasts idle_in_transaction_session_timeout
    as well."""
    from canonical.locks import advisory_key

    store = Store.open(pg_new_database())
    try:
        with store.engine.begin() as conn:
            for setting in ("idle_session_timeout", "idle_in_transaction_session_timeout"):
                conn.exec_driver_sql(f"ALTER DATABASE \"{store.engine.url.database}\" SET {setting} = '300ms'")
        store.engine.dispose()
        with stage_lock(store.engine, "map:crm"):
            time.sleep(1.0)  # the stage running
            with store.engine.connect() as other:
                taken = other.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (advisory_key("map:crm"),)).scalar()
                assert taken is False  # still held by the stage's session
    finally:
        store.close()


@pytest.mark.postgres
def test_a_lost_postgresql_connection_is_reconnected_and_the_transaction_run_again(
        pg_new_database: Callable[[], str]) -> None:
    store = Store.open(pg_new_database())
    calls = []

    def page(conn: sa.Connection) -> int:
        calls.append(1)
        if len(calls) == 1:  # the server goes away in the middle of the transaction
            conn.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))
        store.upsert_raw(conn, "crm", [RawRecord("deals", "1", {"id": "1"})])
        return 1

    assert store.transaction("test page", page) == 1
    assert len(calls) == 2 and store.count_raw("crm", "deals") == 1
    store.close()


def test_reconnecting_gives_up_with_one_line() -> None:
    class Orig(Exception):
        pass

    def lost() -> None:
        raise sa.exc.OperationalError("SELECT 1", {}, Orig("server closed the connection unexpectedly"),
                                      connection_invalidated=True)

    sleeps: list[float] = []
    with pytest.raises(DatabaseUnavailable, match="lost the database connection and could not reconnect"):
        db.reconnecting(lost, what="page commit", attempts=3, sleep=sleeps.append)
    assert len(sleeps) == 2

    def statement_error() -> None:
        raise sa.exc.IntegrityError("INSERT", {}, Orig("duplicate key"))

    with pytest.raises(sa.exc.IntegrityError):  # not a connection problem: not retried
        db.reconnecting(statement_error, what="x", sleep=sleeps.append)

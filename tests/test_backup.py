"""``ltc db backup``: a consistent copy of the store while runs go on, that opens as the store it copies."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from canonical import db
from canonical import tables as ct
from canonical.backup import backup
from canonical.errors import InputError, StoreProblem
from canonical.locks import stage_lock
from canonical.restore import check, restore
from canonical.store import RawRecord, Store
from sandbox.scenario import generate
from tests.test_cli import ltc

WORLD = generate(120, seed=5)
COUNTED = ("deal", "order", "invoice", "payment")


def _counts(url: str) -> dict[str, int]:
    store = Store.open(url)
    try:
        with store.engine.connect() as conn:
            return {name: conn.execute(sa.select(sa.func.count()).select_from(ct.table_for(name))).scalar_one()
                    for name in COUNTED}
    finally:
        store.close()


def test_a_sqlite_backup_taken_while_a_sync_writes_opens_as_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ltc.db'}"
    store = Store.open(url)
    WORLD.load(store)
    before = _counts(url)
    stop = threading.Event()
    wrote = []

    def sync() -> None:  # a sync landing pages meanwhile: the backup neither waits for it nor stops it
        i = 0
        while not stop.is_set():
            with store.engine.begin() as conn:
                store.upsert_raw(conn, "crm", [RawRecord("deals", f"live-{i}-{k}", {"id": k}) for k in range(50)])
            wrote.append(i)
            i += 1

    writer = threading.Thread(target=sync)
    writer.start()
    try:
        made = backup(url, tmp_path / "copy.db")
    finally:
        stop.set()
        writer.join(30)
    assert wrote, "the sync wrote nothing meanwhile"
    assert made.path == tmp_path / "copy.db" and made.size > 0 and made.revision == db.head_revision()
    assert _counts(f"sqlite:///{made.path}") == before
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    with pytest.raises(InputError, match="exists already: give a new file name"):
        backup(url, made.path)
    store.close()


def test_the_command_names_the_copy_and_refuses_a_store_that_is_not_there(tmp_path: Path) -> None:
    def ltc(*args: str, url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from ltc.cli import main; main()", *args], cwd=tmp_path,
                              env={**{k: v for k, v in os.environ.items() if k != "LTC_CONFIG"},
                                   "LTC_DATABASE_URL": url},
                              capture_output=True, text=True, timeout=120)

    missing = ltc("db", "backup", str(tmp_path / "x.db"), url=f"sqlite:///{tmp_path / 'typo.db'}")
    assert missing.returncode == 2 and "no store at" in missing.stderr and not (tmp_path / "typo.db").exists()
    url = f"sqlite:///{tmp_path / 'ltc.db'}"
    WORLD.load(Store.open(url))
    done = ltc("db", "backup", str(tmp_path / "copy.db"), url=url)
    assert done.returncode == 0, done.stderr
    assert f"written to {tmp_path / 'copy.db'}" in done.stdout and db.head_revision() in done.stdout


@pytest.mark.postgres
def test_a_postgresql_backup_restores_with_pg_restore(pg_new_database: Callable[[], str], tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("no pg_dump/pg_restore here (Debian: postgresql-client)")
    url = pg_new_database()
    WORLD.load(Store.open(url))
    made = backup(url, tmp_path / "ltc.dump")
    assert made.revision == db.head_revision() and made.size > 0
    restored = pg_new_database()
    target = sa.engine.make_url(restored)
    done = subprocess.run(["pg_restore", "--no-owner", "-h", str(target.host), "-p", str(target.port or 5432),
                           "-U", str(target.username), "-d", str(target.database), str(made.path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _counts(restored) == _counts(url)



def test_a_backup_to_a_folder_it_cannot_write_is_one_line_naming_it(tmp_path: Path) -> None:
    """``ltc db backup /sys/b.db`` (a folder this process may not write; /var/backups for a user) ended in SQLite's
    traceback "unable to open database: /sys/.b.db.partial", exit 1. Now one line naming the backup, the system's
    reason and what to do (exit 2), before the store is read."""
    url = f"sqlite:///{tmp_path / 'ltc.db'}"
    Store.open(url).close()
    with pytest.raises(StoreProblem) as caught:
        backup(url, "/sys/b.db")
    assert caught.value.exit_code == 2
    assert re.fullmatch(r"cannot write the backup /sys/b\.db \([^)]+\): check the permissions and the mount of /sys, "
                        r"or give a folder this process may write", str(caught.value)), str(caught.value)


# --- ltc db restore ---------------------------------------------------------------------------------------------

def _content(url: str) -> dict[str, list[str]]:
    """Every row of every table of the store (the stage locks aside), in an order of their own."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            names = sorted(set(sa.inspect(conn).get_table_names()) - {"stage_lock"})
            return {t: sorted(map(repr, conn.exec_driver_sql(f'SELECT * FROM "{t}"').all())) for t in names}
    finally:
        engine.dispose()


def _change(url: str) -> None:
    """What happens to a store after its backup: records land, records go."""
    store = Store.open(url)
    try:
        with store.engine.begin() as conn:
            store.upsert_raw(conn, "crm", [RawRecord("deals", f"after-{k}", {"id": k}) for k in range(30)])
            conn.execute(sa.delete(ct.raw_record).where(ct.raw_record.c.source_id.in_(
                sa.select(ct.raw_record.c.source_id).where(ct.raw_record.c.source_id.not_like("after-%")).limit(20)
                .scalar_subquery())))
    finally:
        store.close()


def _restore(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LTC, "db", "restore", *args], cwd=tmp_path, stdin=subprocess.DEVNULL,
                          env={**{k: v for k, v in os.environ.items() if k != "LTC_CONFIG"}, "LTC_DATABASE_URL": url},
                          capture_output=True, text=True, timeout=120)


LTC = [sys.executable, "-c", "from ltc.cli import main; main()"]


@pytest.fixture
def sqlite_backup(tmp_path: Path) -> tuple[str, Path]:
    """A SQLite store with the world in it, and its backup."""
    url = f"sqlite:///{tmp_path / 'ltc.db'}"
    store = Store.open(url)
    WORLD.load(store)
    store.close()
    made = ltc("db", "backup", str(tmp_path / "good.db"), env={"LTC_DATABASE_URL": url}, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    return url, tmp_path / "good.db"


def test_restore_puts_a_sqlite_backup_into_the_live_store_after_a_safety_copy(
        tmp_path: Path, sqlite_backup: tuple[str, Path]) -> None:
    url, good = sqlite_backup
    backed_up = _content(url)
    _change(url)
    changed = _content(url)
    assert changed != backed_up
    reader = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with reader.connect() as conn:  # a process with the store open meanwhile (a running ltc serve)
        assert conn.execute(sa.select(sa.func.count()).select_from(ct.raw_record)).scalar_one() == sum(
            1 for _ in changed["raw_record"])
        done = _restore(tmp_path, url, str(good), "--yes")
        assert done.returncode == 0, done.stderr
        # it reads the restored database through the same open file: the backup went into the store, not beside it
        assert conn.execute(sa.select(sa.func.count()).select_from(ct.raw_record)).scalar_one() == len(
            backed_up["raw_record"])
    reader.dispose()
    assert _content(url) == backed_up
    copies = sorted(tmp_path.glob("ltc.db.before-restore-*.db"))
    assert len(copies) == 1 and re.fullmatch(r"ltc\.db\.before-restore-\d{8}T\d{6}Z\.db", copies[0].name)
    assert f"safety copy of the store as it was: {copies[0]}" in done.stdout
    assert f"restored {good} (schema revision {db.head_revision()}) into the store {tmp_path / 'ltc.db'}" in done.stdout
    assert _content(f"sqlite:///{copies[0]}") == changed
    again = _restore(tmp_path, url, str(good), "--yes", "--no-safety-copy")
    assert again.returncode == 0 and "no safety copy made" in again.stdout, again.stderr
    assert len(list(tmp_path.glob("ltc.db.before-restore-*"))) == 1


def test_restore_refuses_while_a_run_holds_a_stage_lock(tmp_path: Path, sqlite_backup: tuple[str, Path]) -> None:
    url, good = sqlite_backup
    _change(url)
    changed = _content(url)
    engine = db.make_engine(url)
    try:
        with stage_lock(engine, "reconcile"):  # this process: alive
            done = _restore(tmp_path, url, str(good), "--yes")
    finally:
        engine.dispose()
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"error: the store's lock reconcile is held by pid {os.getpid()} on {socket.gethostname()}: a run is under way "
        "on the store; let it finish (or stop it), then run `ltc db restore` again"]
    assert _content(url) == changed and not list(tmp_path.glob("*before-restore*"))


def _future(path: Path) -> Path:
    future = path.with_name("future.db")
    shutil.copyfile(path, future)
    with contextlib.closing(sqlite3.connect(future)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099_later'")
    return future


def test_restore_refuses_a_bad_backup_or_no_confirmation_with_one_line(
        tmp_path: Path, sqlite_backup: tuple[str, Path]) -> None:
    url, good = sqlite_backup
    before = _content(url)
    (tmp_path / "notes.txt").write_text("not a store\n")
    damaged = tmp_path / "damaged.db"
    shutil.copyfile(good, damaged)
    with damaged.open("r+b") as f:
        f.seek(200000)
        f.write(b"\xde\xad" * 512)
    cases = {
        "notes.txt": f"error: {tmp_path / 'notes.txt'} is not a SQLite store file: give a backup `ltc db backup` wrote "
                     "of a SQLite store",
        str(_future(good)): f"error: the backup {tmp_path / 'future.db'} is at schema revision 0099_later, newer than "
                            f"this ltc-hub knows (head {db.head_revision()})",
    }
    with pytest.raises(InputError, match=f"^the backup {re.escape(str(damaged))} is damaged \\("):
        check(url, damaged)
    with pytest.raises(InputError, match=r"^no backup at "):
        check(url, tmp_path / "missing.db")
    for name, expected in cases.items():
        done = _restore(tmp_path, url, name, "--yes")
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(expected), (name, done.stderr)
    unconfirmed = _restore(tmp_path, url, str(good))
    assert unconfirmed.returncode == 2 and unconfirmed.stderr.strip().splitlines() == [
        f"error: the store {tmp_path / 'ltc.db'} will be replaced by the backup {good} (schema revision "
        f"{db.head_revision()}), after a safety copy of it: give --yes to restore without a terminal to confirm on"]
    assert _content(url) == before and not list(tmp_path.glob("*before-restore*"))


def test_a_damaged_store_is_restored_from_a_good_backup_and_works(
        tmp_path: Path, sqlite_backup: tuple[str, Path]) -> None:
    url, good = sqlite_backup
    path = tmp_path / "ltc.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:  # pages in the middle of the file, those status reads
        roots = [r[0] for r in conn.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = 'stream_state'")]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    assert path.stat().st_size > 260_000 and all(0 < (r - 1) * size < path.stat().st_size - size for r in roots)
    with path.open("r+b") as f:
        for offset in (200000, *((r - 1) * size for r in roots)):
            f.seek(offset)
            f.write(b"\xde\xad" * 512)
    env = {"LTC_DATABASE_URL": url}
    assert ltc("status", env=env, cwd=tmp_path).returncode == 2
    damaged = path.read_bytes()
    done = _restore(tmp_path, url, str(good), "--yes")
    assert done.returncode == 0, done.stderr
    copy = next(tmp_path.glob("ltc.db.before-restore-*.db"))
    assert f"note: the store is damaged, so no checked copy of it could be made: its file (and its -wal file) copied " \
           f"as is to {copy}" in done.stdout
    assert copy.read_bytes() == damaged
    status = ltc("status", env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert _content(url) == _content(f"sqlite:///{good}")


def test_a_backup_of_an_older_schema_is_restored_and_upgraded(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    engine = db.make_engine(f"sqlite:///{old}")
    db.upgrade(engine, "0009_i17map_pending2")
    engine.dispose()
    url = f"sqlite:///{tmp_path / 'ltc.db'}"
    Store.open(url).close()
    done = _restore(tmp_path, url, str(old), "--yes")
    assert done.returncode == 0, done.stderr
    assert f"schema upgraded as `ltc db upgrade` does: 0009_i17map_pending2 -> {db.head_revision()}" in done.stdout
    engine = db.make_engine(url)
    assert db.current_revision(engine) == db.head_revision()
    engine.dispose()


@pytest.mark.postgres
def test_a_postgresql_backup_is_restored_into_the_store(pg_new_database: Callable[[], str], tmp_path: Path) -> None:
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("no pg_dump/pg_restore here (Debian: postgresql-client)")
    url = pg_new_database()
    store = Store.open(url)
    WORLD.load(store)
    store.close()
    made = backup(url, tmp_path / "ltc.dump")
    backed_up = _content(url)
    _change(url)
    changed = _content(url)
    assert changed != backed_up
    engine = db.make_engine(url)
    try:
        with stage_lock(engine, "reconcile"), pytest.raises(StoreProblem, match=(
                r"^the store's lock reconcile is held by PostgreSQL backend pid \d+.*: a run is under way")):
            check(url, made.path)
    finally:
        engine.dispose()
    with pytest.raises(InputError, match="is not a pg_dump custom-format archive"):
        check(url, Path(__file__))
    done = restore(check(url, made.path))
    assert _content(url) == backed_up
    assert done.safety_copy is not None and done.safety_copy.read_bytes().startswith(b"PGDMP")
    again = pg_new_database()
    Store.open(again).close()
    restore(check(again, done.safety_copy), safety_copy=False)
    assert _content(again) == changed


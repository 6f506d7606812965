"""``ltc db backup``: a consistent copy of the store while runs go on, that opens as the store it copies."""

from __future__ import annotations

import os
import re
import shutil
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
from canonical.store import RawRecord, Store
from sandbox.scenario import generate

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

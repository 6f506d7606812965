"""The store behind a real PgBouncer in transaction mode (what managed PostgreSQL services' pooled endpoints are):
consecutive transactions of one client may run on different server sessions, and those of two clients on one.

Before (0ee0bb2), through such a pool, ``ltc demo`` failed in its syncs and mapping (psycopg's server-side prepared
statements: "prepared statement "_pg3_0" already exists") and then hung for good: a stage's session advisory lock
stayed on the pooled server session that took it, so the next client handed that session held the lock too, and the
unlock, sent on another session, left it held."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from canonical import db
from canonical.locks import LockTimeout, stage_lock
from canonical.store import Store
from sandbox.scenario import generate

pytestmark = pytest.mark.postgres
WORLD = generate(300, seed=4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pooled(pg_new_database: Callable[[], str], request: pytest.FixtureRequest) -> Iterator[str]:
    """A new database's URL through PgBouncer in transaction mode, two server sessions per database (or as many as
    the test's ``sessions`` marker says)."""
    marker = request.node.get_closest_marker("sessions")
    sessions = marker.args[0] if marker else 2
    binary = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)
    if binary is None:
        pytest.skip("no pgbouncer here (Debian: apt-get install pgbouncer)")
    url = sa.engine.make_url(pg_new_database())
    work = Path(tempfile.mkdtemp(prefix="ltc-test-pgbouncer-"))
    work.chmod(0o777)  # PgBouncer refuses to run as root: as root it runs as the postgres user, which writes here
    port = _free_port()
    (work / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={url.host} port={url.port or 5432} user={url.username}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = any\n"
        f"pool_mode = transaction\ndefault_pool_size = {sessions}\nmax_client_conn = 50\n"
        f"logfile = {work}/pgbouncer.log\npidfile = {work}/pgbouncer.pid\n"
        "ignore_startup_parameters = extra_float_digits,options,application_name\n")
    cmd = [binary, *(["-u", "postgres"] if os.geteuid() == 0 else []), str(work / "pgbouncer.ini")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        yield url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def test_statements_repeated_by_two_clients_through_one_pool(pooled: str) -> None:
    """psycopg prepares a statement run five times; two clients sharing a server session collided (already exists),
    and one moved to another session lacked it (does not exist)."""
    engine = db.make_engine(pooled)
    try:
        with engine.connect() as a, engine.connect() as b:
            for i in range(8):
                for conn in (a, b):
                    with conn.begin():
                        assert conn.execute(sa.text("SELECT CAST(:v AS integer) + 1"), {"v": i}).scalar() == i + 1
    finally:
        engine.dispose()


def test_a_stage_lock_is_exclusive_through_a_transaction_pool(pooled: str) -> None:
    """A second process's stage waits for the first's (here: times out) and takes the lock once it is free."""
    holder_engine, other_engine = db.make_engine(pooled), db.make_engine(pooled)
    held, release = threading.Event(), threading.Event()

    def first_stage() -> None:
        with stage_lock(holder_engine, "reconcile"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=first_stage)
    t.start()
    try:
        assert held.wait(30)
        with other_engine.connect() as conn:  # the pool's sessions meanwhile run others' transactions
            for _ in range(4):
                with conn.begin():
                    conn.execute(sa.text("SELECT 1"))
        waits: list[str] = []
        with pytest.raises(LockTimeout), stage_lock(other_engine, "reconcile", timeout_s=1.0, poll_s=0.1,
                                                    on_wait=waits.append):
            pass
        assert waits and "another process holds this store's lock" in waits[0]
    finally:
        release.set()
        t.join(30)
    with stage_lock(other_engine, "reconcile", timeout_s=5.0, poll_s=0.1):
        pass  # free again: nothing left held on a pooled session
    holder_engine.dispose()
    other_engine.dispose()



@pytest.mark.sessions(10)
def test_a_reconciliation_through_a_transaction_pool_ends_it_never_hangs(pooled: str, tmp_path: Path) -> None:
    """The columnar reader (connectorx) prepares statements in one transaction and used them in the next: behind a
    transaction pool its COPY hung for good, holding the run's locks (0ee0bb2). Now it reads through a cursor in one
    transaction, and where two clients' prepared statements still meet on a server session the run ends with one
    line naming the fix (session pooling), exit 2. Either way it ends, with the store's own results or that line."""
    import subprocess
    import sys

    WORLD.load(Store.open(pooled))
    res = subprocess.run([sys.executable, "-c", "from ltc.cli import main; main()", "reconcile", "--as-of",
                          WORLD.as_of.isoformat()], env={**os.environ, "LTC_DATABASE_URL": pooled}, cwd=tmp_path,
                         capture_output=True, text=True, timeout=240)
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    if res.returncode == 0:
        assert "lifecycle: new=" in res.stdout
    else:
        assert res.returncode == 2 and "pooler in transaction mode" in res.stderr and "pool_mode = session" in \
            res.stderr, res.stderr[-2000:]

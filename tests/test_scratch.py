"""Scratch folders a killed run leaves behind are removed by the next run.

Before (0ee0bb2): every reconciliation killed by SIGTERM or SIGKILL left its ``ltc-recon-*`` folder in the temp folder
(47 MB at 100k chains, GBs at 1M) until the disk filled."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from canonical import scratch
from canonical.store import Store
from sandbox.scenario import generate


def _folder(root: Path, name: str, marker: str | None) -> Path:
    d = root / name
    d.mkdir()
    (d / "data.parquet").write_bytes(b"x" * 1000)
    if marker is not None:
        (d / scratch.OWNER).write_text(marker)
    return d


def test_only_the_folders_of_gone_processes_of_this_host_are_swept(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    me = scratch.owner()
    dead = _folder(tmp_path, "ltc-recon-dead", f"{host} {gone.pid} 12345")
    reused = _folder(tmp_path, "ltc-recon-reused", f"{host} {os.getpid()} 1")  # this pid, another start: pid reused
    live = _folder(tmp_path, "ltc-recon-live", me)
    elsewhere = _folder(tmp_path, "ltc-recon-other-host", f"{host}-not {gone.pid} 12345")  # a Dask worker's
    unmarked = _folder(tmp_path, "ltc-recon-unmarked", None)  # being made, or not ours
    not_ours = _folder(tmp_path, "other-dead", f"{host} {gone.pid} 12345")
    assert sorted(scratch.sweep(tmp_path)) == sorted([dead, reused])
    assert not dead.exists() and not reused.exists()
    assert all(p.is_dir() for p in (live, elsewhere, unmarked, not_ours))


def test_a_scratch_folder_is_marked_and_removed(tmp_path: Path) -> None:
    with scratch.scratch_dir("ltc-test-", tmp_path) as d:
        assert (Path(d) / scratch.OWNER).read_text() == scratch.owner()
        assert not scratch.orphaned(scratch.owner())
    assert not Path(d).exists()
    removing: list = []
    with scratch.scratch_dir("ltc-test-", tmp_path, removing=removing) as d:
        pass
    for t in removing:
        t.join()
    assert not Path(d).exists() and len(removing) == 1


def _reconcile(url: str, tmp: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "LTC_DATABASE_URL": url, "TMPDIR": str(tmp)}
    return subprocess.Popen([sys.executable, "-c", "from ltc.cli import main; main()", "reconcile", "--as-of",
                             "2026-10-31"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _started(tmp: Path, proc: subprocess.Popen[str], known: list[Path]) -> Path:
    """The run's scratch folder (not one of ``known``), once its marker is there (the run is under way)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = [p for p in tmp.glob("ltc-recon-*") if p not in known and (p / scratch.OWNER).is_file()]
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("no scratch folder within 60 s")


@pytest.mark.slow
def test_killed_runs_leave_no_scratch_folder_behind(tmp_path: Path) -> None:
    """SIGTERM (``systemctl stop``, ``docker stop``) and SIGKILL (the out-of-memory killer) end a run where it is, its
    folder left; the next run removes it, says so, and goes on. (SIGTERM keeps its default action: a handler that
    unwinds the run never runs while the main thread waits in native code, a hung driver call say, and the process
    would then ignore SIGTERM.)"""
    url = f"sqlite:///{tmp_path / 'ltc.db'}"
    generate(8000, seed=3).load(Store.open(url))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    left = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        run = _reconcile(url, tmp)
        left.append(_started(tmp, run, left))
        run.send_signal(sig)
        run.communicate(timeout=60)
        assert run.returncode == -sig
        assert left[-1].is_dir() and all(not p.exists() for p in left[:-1])  # the SIGTERM'd run's swept by the next

    run = _reconcile(url, tmp)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert f"removed 1 scratch folder(s) that killed runs left in {tmp}: {left[-1].name}" in err
    assert list(tmp.glob("ltc-*")) == []  # (Polars keeps a folder of its own there)

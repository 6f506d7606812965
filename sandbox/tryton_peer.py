"""A real trytond on loopback, for contract tests, benches and demos.

Building a database with the ``sale`` and ``account_invoice`` modules takes ~30 s, so it is done
once into a cache directory keyed by the installed trytond module versions
(``~/.cache/ltc-hub/trytond-<versions>/template.sqlite``) and copied for each server. The server
runs on SQLite, on a free ``127.0.0.1`` port, and is stopped by :meth:`TrytonPeer.stop`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx

MODULES = ("sale", "account_invoice")
DATABASE = "ltc"
ADMIN_LOGIN = "admin"
ADMIN_PASSWORD = "admin"  # a throw-away local peer; never a real credential


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def versions_key() -> str:
    """``8.2.1-sale8.2.0-ai8.2.0``: the cache key of the module-activated template database."""
    def v(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "none"
    return f"{v('trytond')}-sale{v('trytond_sale')}-ai{v('trytond_account_invoice')}"


def cache_dir() -> Path:
    base = Path(os.environ.get("LTC_CACHE_DIR") or Path.home() / ".cache" / "ltc-hub")
    return base / f"trytond-{versions_key()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(workdir: Path, port: int) -> Path:
    (workdir / "db").mkdir(parents=True, exist_ok=True)
    conf = workdir / "trytond.conf"
    conf.write_text(
        "[database]\nuri = sqlite://\n"
        f"path = {workdir / 'db'}\n"
        f"[web]\nlisten = 127.0.0.1:{port}\n"
        # Tests run fast; keep Tryton's default 5 min "fresh session" window and 60 s request limit.
    )
    (workdir / "adminpass").write_text(ADMIN_PASSWORD + "\n")
    return conf


def _env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TRYTONPASSFILE"] = str(workdir / "adminpass")
    env.pop("TRYTOND_CONFIG", None)
    env.pop("TRYTOND_DATABASE_URI", None)
    return env


def build_template(target: Path) -> None:
    """Create a SQLite database with the modules activated (~30 s) and move it to ``target``."""
    work = target.parent / f"build-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    conf = _write_config(work, free_port())
    # The SQLite backend does not create the file itself ("Database ... doesn't exist").
    (work / "db" / f"{DATABASE}.sqlite").touch()
    cmd = [_bin("trytond-admin"), "-c", str(conf), "-d", DATABASE, "--email", "admin@example.com",
           "-u", *MODULES, "--activate-dependencies"]
    with open(work / "admin.log", "wb") as log:
        done = subprocess.run(cmd, env=_env(work), stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = (work / "admin.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"trytond-admin failed ({done.returncode}):\n{tail}")
    os.replace(work / "db" / f"{DATABASE}.sqlite", target)
    shutil.rmtree(work, ignore_errors=True)


def template_path() -> Path:
    """The cached template, built under a lock if missing (parallel sessions build it once)."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "template.sqlite"
    if target.exists():
        return target
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not target.exists():
                build_template(target)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


class TrytonPeer:
    """One trytond process serving a copy of the template database."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> str:
        return DATABASE

    @property
    def log_path(self) -> Path:
        return self.workdir / "trytond.log"

    def start(self, timeout: float = 60.0) -> TrytonPeer:
        conf = _write_config(self.workdir, self.port)
        shutil.copyfile(template_path(), self.workdir / "db" / f"{DATABASE}.sqlite")
        # -d preloads the pool: a database not named here fails its first login (KeyError 'res.user').
        cmd = [_bin("trytond"), "-c", str(conf), "-d", DATABASE]
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            cmd, env=_env(self.workdir), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        body = {"id": 0, "method": "common.server.version", "params": []}
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"trytond exited with {self.process.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            with contextlib.suppress(httpx.TransportError):
                if httpx.post(f"{self.base_url}/rpc/", json=body, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"trytond did not answer on {self.base_url} within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def __enter__(self) -> TrytonPeer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_peer(workdir: Path) -> Iterator[TrytonPeer]:
    peer = TrytonPeer(workdir).start()
    try:
        yield peer
    finally:
        peer.stop()

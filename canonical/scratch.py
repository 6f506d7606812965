"""Scratch directories that a killed process does not leave behind.

A reconciliation works in a temporary directory (the export, the spill, the buckets' results: 2-3 GB at 1M chains)
that it removes when it ends. A process killed with SIGKILL (the kernel's out-of-memory killer, ``kill -9``, a
container stopped past its grace period) ends without removing it, and every such run left its directory in the temp
folder until the disk filled. Each directory made here holds a marker naming its process (host, pid and the pid's
start time, so a reused pid is not taken for it); making one first removes those of this host whose process is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from canonical.processes import running, start_time

log = logging.getLogger(__name__)

OWNER = ".ltc-owner"
PREFIX = "ltc-"


def owner() -> str:
    """This process, as a marker names it."""
    pid = os.getpid()
    return f"{socket.gethostname()} {pid} {start_time(pid)}"


def orphaned(marker: str) -> bool:
    """Whether the process a marker names is gone (on this host; another host's directories are never judged)."""
    host, _, rest = marker.strip().partition(" ")
    pid_text, _, started = rest.partition(" ")
    return pid_text.isdigit() and not running(host, int(pid_text), started)


def sweep(root: str | Path | None = None) -> list[Path]:
    """Remove the scratch directories in ``root`` (default: the temp folder) whose process is gone; returns them."""
    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        candidates = [p for p in base.glob(f"{PREFIX}*") if p.is_dir()]
    except OSError:
        return removed
    for d in candidates:
        try:
            marker = (d / OWNER).read_text()
        except OSError:  # not one of ours, or one being made
            continue
        if orphaned(marker):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    if removed:
        log.warning("removed %d scratch folder(s) that killed runs left in %s: %s", len(removed), base,
                    ", ".join(p.name for p in removed))
    return removed


@contextlib.contextmanager
def scratch_dir(prefix: str, root: str | Path | None = None, *,
                removing: list[threading.Thread] | None = None) -> Iterator[str]:
    """A new directory ``<root>/<prefix>…`` (``prefix`` starts with ``ltc-``) marked as this process's, removed when the
    block is left: by a thread of its own when ``removing`` is given (the caller joins it), else at once. Those a
    killed process left in ``root`` are removed first."""
    assert prefix.startswith(PREFIX), prefix
    sweep(root)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=root)
    try:
        Path(tmp, OWNER).write_text(owner())
        yield tmp
    finally:
        if removing is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            t = threading.Thread(target=shutil.rmtree, args=(tmp,), kwargs={"ignore_errors": True},
                                 name="ltc-scratch-removal")
            t.start()
            removing.append(t)

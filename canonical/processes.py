"""Is the process that left something behind (a lock row, a scratch folder) still running? Standard library only:
the columnar helper processes import it too."""

from __future__ import annotations

import os
import socket


def start_time(pid: int) -> str:
    """The start time of a process in clock ticks since boot (Linux ``/proc/<pid>/stat``), "" where unknown: tells a
    live process from a new one that reuses a dead one's pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]  # field 22; the name in parentheses may hold spaces
    except (OSError, IndexError):
        return ""


def running(host: str, pid: int, started: str) -> bool:
    """Whether process ``pid`` of ``host``, started at ``started`` ("" if unknown), still runs. A process of another
    host cannot be checked from here and counts as running."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return not started or start_time(pid) in ("", started)

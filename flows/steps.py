"""Deployment steps of ``prefect.yaml`` (run by the worker before each flow run).

``set_ltc_home``: the flow run's working directory — where the entrypoints (``flows/*.py``) and, unless
``LTC_CONFIG`` says otherwise, ``ltc.yaml`` are. It is ``$LTC_HOME`` when set, else the ltc-hub checkout
the worker's Python imports ``flows`` from; a directory without ``flows/`` is refused with one line
naming what to set (no traceback from deep inside Prefect).
"""

from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


class LtcHomeError(RuntimeError):
    pass


def ltc_home(directory: str | None = None) -> Path:
    """The directory the flows run in: ``directory``, else ``$LTC_HOME``, else the checkout of this code."""
    chosen = directory or os.environ.get("LTC_HOME")
    home = Path(chosen).expanduser().resolve() if chosen else CHECKOUT
    if not (home / "flows").is_dir():
        origin = "LTC_HOME" if not directory and os.environ.get("LTC_HOME") else "the directory"
        raise LtcHomeError(f"{origin} {home} is not an ltc-hub checkout (no flows/ in it): set LTC_HOME on the "
                           "worker to the directory holding flows/ and ltc.yaml (or LTC_CONFIG to the ltc.yaml)")
    return home


def set_ltc_home(directory: str | None = None) -> dict[str, str]:
    """Pull step: change into :func:`ltc_home` and return it as ``{"directory": ...}``."""
    home = ltc_home(directory)
    os.chdir(home)
    return {"directory": str(home)}

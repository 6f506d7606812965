"""Polars' allocator is set up before Polars loads, on every path a user runs (canonical.ALLOCATOR).

Each case starts a fresh interpreter without ``_RJEM_MALLOC_CONF``, records the variable at the moment Polars is
first imported (an import hook), and imports one entry point: the ``ltc`` command, the engine, a Prefect flow as a
worker loads it from ``prefect.yaml``'s entrypoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import canonical

ROOT = Path(__file__).resolve().parent.parent

# installed first in the child: remembers _RJEM_MALLOC_CONF when `import polars` is first asked for
_HOOK = """
import importlib.abc, os, sys
seen = {}
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "polars" and "polars" not in seen:
            seen["polars"] = os.environ.get("_RJEM_MALLOC_CONF")
        return None
sys.meta_path.insert(0, Watch())
"""


def _seen(body: str, env_value: str | None = None) -> dict[str, str | None]:
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    if env_value is not None:
        env["_RJEM_MALLOC_CONF"] = env_value
    env["PYTHONPATH"] = str(ROOT)
    code = _HOOK + body + "\nimport json; print(json.dumps(seen))\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("entry", ["ltc.cli.commands", "reconcile.stream", "canonical.columnar"])
def test_polars_loads_with_the_allocator_set(entry: str) -> None:
    seen = _seen(f"import {entry}\nimport polars")
    assert seen == {"polars": canonical.ALLOCATOR}


def test_a_prefect_worker_loading_the_reconcile_flow_sets_it_too() -> None:
    seen = _seen("from prefect.flows import load_flow_from_entrypoint\n"
                 "load_flow_from_entrypoint('flows/pipeline.py:pipeline')\nimport polars")
    assert seen == {"polars": canonical.ALLOCATOR}


def test_a_value_from_the_environment_is_kept() -> None:
    assert _seen("import reconcile.engine", env_value="narenas:2") == {"polars": "narenas:2"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc")
@pytest.mark.parametrize("preset", [None, "2"])
def test_openblas_starts_no_spinning_threads_unless_asked(preset: str | None) -> None:
    """The partition's connected components load scipy and its OpenBLAS, which starts a spinning thread per core
    for nothing the data path does: after ``import canonical`` it runs on the calling thread alone; a value the
    environment gives is kept."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    env["PYTHONPATH"] = str(ROOT)
    code = ("import os, canonical\n"
            "import numpy as np\nfrom scipy.sparse import coo_matrix\nfrom scipy.sparse.csgraph import connected_components\n"
            "connected_components(coo_matrix((np.ones(3), (np.arange(3), np.arange(3))), shape=(3, 3)))\n"
            "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    setting, threads = out.stdout.split()
    assert setting == (preset or "1")
    assert (int(threads) == 1) == (preset is None)

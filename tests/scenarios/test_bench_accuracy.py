"""bench/accuracy.py end to end on a tiny world: it replays, scores and prints the last line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_prints_per_code_and_last_line(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "accuracy.py"), "--chains", "40", "--seed", "2"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert re.fullmatch(r"precision=\d\.\d{4} recall=\d\.\d{4}", lines[-1])
    planted = int(re.search(r"planted=(\d+)", run.stdout).group(1))  # type: ignore[union-attr]
    assert planted > 0
    assert "found/planted" in run.stdout

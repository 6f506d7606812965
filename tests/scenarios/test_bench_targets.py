"""bench/targets.py: reading a benchmark's figures, checking them against the targets, and a quick run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _targets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_targets", ROOT / "bench" / "targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_targets"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


T = _targets()


def test_figures_are_the_key_value_words() -> None:
    got = T.figures("store_reconcile_s=91.60 peak_rss_mb=1437 parquet_ratio=1.51 (note) x= =y")
    assert got == {"store_reconcile_s": "91.60", "peak_rss_mb": "1437", "parquet_ratio": "1.51", "x": ""}


def test_checks_compare_numbers_and_words() -> None:
    figures = {"parquet_ratio": "1.30", "stage_records_per_s": "79999", "identical": "True"}
    assert T.Check("parquet_ratio", "<=", "1.3").holds(figures) is True
    assert T.Check("parquet_ratio", "<=", "1.29").holds(figures) is False
    assert T.Check("stage_records_per_s", ">=", "80000").holds(figures) is False
    assert T.Check("stage_records_per_s", ">=", "79999").holds(figures) is True
    assert T.Check("identical", "==", "True").holds(figures) is True
    assert T.Check("identical", "==", "True").holds({"identical": "False"}) is False
    assert T.Check("speedup", ">=", "1").holds(figures) is None  # not printed: neither met nor missed


def test_the_machine_readable_line_is_found_above_trailing_log_lines() -> None:
    dask = next(t for t in T.TARGETS if t.name == "dask")
    lines = ["dask: 2 worker processes; identical results: True",
             "dask_workers=2 buckets=1 one_process_s=0.59 dask_s=3.93 speedup=0.15 identical=True",
             "12:41:20.166 | INFO | prefect - Stopping temporary server on http://127.0.0.1:8222"]
    assert T.last_figures(lines, dask)["identical"] == "True"
    assert T.last_figures(lines[:1], dask) == {}
    store = next(t for t in T.TARGETS if t.name == "reconcile-sqlite-100k")
    got = T.last_figures(["store sqlite: ... ratio_floor=1.19", "store sqlite: ... ratio_floor=1.21",
                          "store_reconcile_s=7.45 peak_rss_mb=900 parquet_ratio=1.29"], store)
    assert got["parquet_ratio"] == "1.29" and got["ratio_floor"] == "1.21"  # the last one printed


def test_linear_growth_compares_the_per_record_cost() -> None:
    assert T.linear({"world-5k": {"records_per_s": "8000"}}) is None
    ok, detail = T.linear({"world-5k": {"records_per_s": "8000"}, "world-100k": {"records_per_s": "7000"}})
    assert ok and "1.14" in detail
    ok, _ = T.linear({"world-5k": {"records_per_s": "8000"}, "world-100k": {"records_per_s": "4000"}})
    assert not ok


def test_an_unknown_target_name_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        T.main(["--only", "mapping,nope", "--list"])
    assert "unknown target(s) nope" in str(exc.value)
    assert T.main(["--only", "mapping", "--list"]) == 0
    assert "stage_records_per_s >= 80000" in capsys.readouterr().out


@pytest.mark.slow
def test_quick_run_reports_the_figures_and_the_probe(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "targets.py"), "--quick", "--only", "mapping",
                          "--logs", str(tmp_path / "logs"), "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("targets_met=0/0 probe_python_s=")  # --quick checks no target
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("mapping: ran"))
    assert "stage_records_per_s=" in line and "target" not in line
    data = json.loads(out.read_text())
    mapping = data["targets"]["mapping"]
    assert mapping["status"] == "ran" and int(mapping["figures"]["stage_records_per_s"]) > 0
    assert data["probe_python_s"] > 0 and data["probe_polars_s"] > 0
    assert (tmp_path / "logs" / "mapping.log").read_text().startswith(sys.executable)


@pytest.mark.slow
def test_reconcile_pairs_alternate_the_two_paths_and_report_medians(tmp_path: Path) -> None:
    """``bench/reconcile.py --pairs 3``: three (Parquet, store) pairs on one loaded store, each pair's figures printed;
    the last line's ratio is the median of the pairs' ratios and its store time the median store time."""
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "reconcile.py"), "--chains", "300", "--store", "sqlite",
                          "--pairs", "3", "--world", str(tmp_path / "world")],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert sum(ln.startswith("store sqlite: world loaded") for ln in lines) == 1  # loaded once
    pairs_line = next(ln for ln in lines if ln.startswith("pairs (Parquet s, store s, ratio): "))
    pairs = [[float(x) for x in p.split(", ")] for p in pairs_line.split(": ", 1)[1].split("; ")]
    assert len(pairs) == 3 and all(p > 0 and s > 0 for p, s, _r in pairs)
    # each figure rounded to 2 places: the ratio within what the rounded seconds allow
    assert all((s - 0.005) / (p + 0.005) - 0.005 <= r <= (s + 0.005) / (p - 0.005) + 0.005 for p, s, r in pairs)
    got = T.figures(lines[-1])
    assert got["pairs"] == "3"
    assert float(got["parquet_ratio"]) == sorted(r for _p, _s, r in pairs)[1]
    assert float(got["store_reconcile_s"]) == sorted(s for _p, s, _r in pairs)[1]

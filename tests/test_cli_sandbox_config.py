"""`ltc sandbox start --world W --write-config ltc.yaml` writes a configuration `ltc run` uses as it is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from canonical.store import Store
from ltc.app.config import load_config

WORLDS = Path(__file__).parent / "worlds"
LTC = [sys.executable, "-c", "from ltc.cli import main; main()"]


def ltc(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LTC_")}
    return subprocess.run([*LTC, *args], capture_output=True, text=True, cwd=cwd, timeout=240,
                          env={**base, "COLUMNS": "200", **(env or {})})


@pytest.mark.slow
@pytest.mark.parametrize("world", ["tryton", "jiandaoyun"])
def test_written_config_points_at_the_emulators_and_ltc_run_finds_the_data(world: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'run.db'}"
    start = ltc("sandbox", "start", "--world", str(WORLDS / world), "--write-config", "ltc.yaml", cwd=tmp_path)
    try:
        assert start.returncode == 0, start.stderr
        cfg_path = tmp_path / "ltc.yaml"
        data = yaml.safe_load(cfg_path.read_text())
        world_yaml = yaml.safe_load((WORLDS / world / "world.yaml").read_text())
        assert set(data["sources"]) == set(world_yaml["systems"])
        src = data["sources"][world]
        assert src["base_url"].startswith(("http://127.0.0.1:", "https://127.0.0.1:"))
        assert all("value" in ref for ref in src["credentials"].values())  # the emulator's throwaway ones
        assert data["reporting_currency"] == world_yaml["reporting_currency"]
        if world_yaml["erp"] != "none":
            assert data["erp"] == {"source": world_yaml["erp"], "dry_run": True}
        assert load_config(cfg_path).sources[world].kind == world

        check = ltc("config", "check", "--config", "ltc.yaml", cwd=tmp_path)
        assert check.returncode == 0, check.stderr
        run = ltc("run", "--config", "ltc.yaml", "--as-of", str(world_yaml["as_of"]), cwd=tmp_path,
                  env={"LTC_DATABASE_URL": db})
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"{world}: ok" in run.stdout
    finally:
        stop = ltc("sandbox", "stop", cwd=tmp_path)
        assert "sandbox stopped" in stop.stdout
    store = Store.open(db)
    landed = {s["stream"]: s["records_seen"] for s in store.stream_states() if s["connector"] == world}
    expected = {p.stem: sum(1 for line in p.read_text().splitlines() if line.strip())
                for p in (WORLDS / world / world).glob("*.jsonl")}
    assert sum(landed.values()) > 0
    for obj, n in expected.items():  # every object of the world that a stream reads arrived whole
        if obj in landed:
            assert landed[obj] == n, (obj, landed[obj], n)
    counts = store.table_counts()
    assert sum(counts.values()) > 0, counts


def test_literal_credentials_only_for_a_source_on_this_machine(tmp_path: Path) -> None:
    from canonical.errors import ConfigError

    cfg = tmp_path / "ltc.yaml"
    cfg.write_text("sources:\n  pay:\n    kind: stripe\n    base_url: https://api.stripe.com\n"
                   "    credentials: {api_key: {value: sk_live_pasted}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert f"{cfg}:3: sources.pay" in str(err.value) and "only for the local sandbox" in str(err.value)
    assert "sk_live_pasted" not in str(err.value)


def test_write_config_needs_a_world(tmp_path: Path) -> None:
    res = ltc("sandbox", "start", "--write-config", "ltc.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "--write-config needs --world" in res.stderr
    assert not (tmp_path / ".ltc" / "sandbox.json").exists()

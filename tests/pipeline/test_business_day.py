"""The as-of of a run without one: today in the company's time zone (ltc.yaml ``timezone``), not in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from canonical.errors import ConfigError
from canonical.store import Store
from ltc.app.config import Config, load_config
from ltc.app.pipeline import default_as_of


def test_today_is_the_companys_day() -> None:
    late = datetime(2026, 10, 30, 23, 30, tzinfo=UTC)  # 07:30 on the 31st in Shanghai, 16:30 on the 30th in LA
    assert Config().today(late) == date(2026, 10, 30)  # the default: UTC
    assert Config(timezone="Asia/Shanghai").today(late) == date(2026, 10, 31)
    assert Config(timezone="America/Los_Angeles").today(late) == date(2026, 10, 30)


def test_a_run_without_an_as_of_takes_the_configured_zones_day(sqlite_store: Store) -> None:
    """UTC+14 and UTC-11 are never on the same day: whatever the clock, the two defaults differ (before, both were
    the UTC day; fails on 497a2af)."""
    ahead = default_as_of(sqlite_store, Config(timezone="Pacific/Kiritimati"))
    behind = default_as_of(sqlite_store, Config(timezone="Pacific/Pago_Pago"))
    assert 1 <= (ahead - behind).days <= 2


def test_an_unknown_time_zone_is_a_one_line_config_error(tmp_path: Path) -> None:
    path = tmp_path / "ltc.yaml"
    path.write_text("timezone: Asia/Beijing\n")  # not an IANA name (Asia/Shanghai is)
    with pytest.raises(ConfigError, match=r"unknown time zone 'Asia/Beijing'; an IANA name, e\.g\. UTC, Asia/Shanghai"):
        load_config(str(path))

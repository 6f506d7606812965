"""Building the HubSpot connector from ltc.yaml's source entry, and the pacing arithmetic."""

from __future__ import annotations

import bisect

import pytest

from canonical.errors import ConfigError
from connectors.governor import RateGovernor
from connectors.hubspot import HubSpotConnector, modified_property, pace
from connectors.registry import build
from ltc.app.config import SecretRef, SourceConfig


def test_from_config_reads_token_options_and_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HS_TOKEN", "pat-na1-from-env")
    cfg = SourceConfig(kind="hubspot", base_url="http://127.0.0.1:9", credentials={"token": SecretRef(env="HS_TOKEN")},
                       options={"tenant": "acme", "properties": {"deals": ["dealname"]}, "url_budget": 2000},
                       streams=["deals", "owners"], lookback_minutes=3)
    c = build("crm", cfg)
    assert isinstance(c, HubSpotConnector)
    assert [s.name for s in c.streams] == ["deals", "owners"]
    assert c.lookback.total_seconds() == 180 and c.url_budget == 2000
    assert c.properties_wanted == {"deals": ["dealname"]}
    assert c.http.client.headers["Authorization"] == "Bearer pat-na1-from-env"
    c.close()


def test_missing_token_names_what_to_fix() -> None:
    with pytest.raises(ConfigError, match=r"sources\.crm\.credentials\.token"):
        build("crm", SourceConfig(kind="hubspot"))


def test_contacts_filter_on_their_own_last_modified_property() -> None:
    assert modified_property("contacts") == "lastmodifieddate"
    assert modified_property("deals") == modified_property("line_items") == "hs_lastmodifieddate"


@pytest.mark.parametrize(("limit", "interval_s"), [(190, 10.0), (100, 10.0), (250, 10.0), (5, 1.0)])
def test_pace_never_admits_more_than_the_rolling_limit(limit: int, interval_s: float) -> None:
    """Simulate a greedy client against the paced bucket: no window of ``interval_s`` (plus the
    jitter allowance) may hold more than ``limit`` requests, and the rate stays near the limit."""
    now = [0.0]
    gov = RateGovernor("t", capacity=limit, interval_s=interval_s, clock=lambda: now[0],
                       sleep=lambda s: now.__setitem__(0, now[0] + s))
    pace(gov, limit, interval_s)
    gov.tokens = gov.capacity
    sent = []
    for _ in range(limit * 6):
        gov.acquire()
        sent.append(now[0])
    worst = max(bisect.bisect_left(sent, start + interval_s + 0.05) - i for i, start in enumerate(sent))
    assert worst <= limit
    achieved = (len(sent) - 1) / (sent[-1] - sent[0])
    assert achieved >= 0.85 * limit / interval_s


def test_deep_delete_max_share_comes_from_ltc_yaml_and_is_a_share() -> None:
    from pydantic import ValidationError

    from ltc.app.config import Config
    from ltc.app.runtime import build_connector

    src = {"kind": "hubspot", "base_url": "http://127.0.0.1:9", "credentials": {"token": {"value": "pat"}}}
    cfg = Config.model_validate({"sources": {"crm": {**src, "deep_delete_max_share": "0.25"}}})
    c = build_connector(cfg, "crm")
    assert c.deep_delete_max_share == 0.25
    c.close()
    assert build_connector(Config.model_validate({"sources": {"crm": src}}), "crm").deep_delete_max_share == 0.1
    with pytest.raises(ValidationError, match="deep_delete_max_share"):
        SourceConfig.model_validate({**src, "deep_delete_max_share": 1.5})

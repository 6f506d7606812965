"""Coercions: vendor value formats -> canonical types."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from canonical.money import Money
from mappings.coerce import COERCIONS, CoercionError, normalize_domain, scale_minor


def c(name: str, **options: object):  # type: ignore[no-untyped-def]
    return COERCIONS[name][0]({"timezone": "UTC", "system": "s", "entity": "account", **options})


@pytest.mark.parametrize(
    "value",
    ["2013-05-20T20:49:32.000+0000", "2013-05-20T20:49:32Z", "2013-05-20 20:49:32", 1369082972, "1369082972000",
     {"__class__": "datetime", "year": 2013, "month": 5, "day": 20, "hour": 20, "minute": 49, "second": 32,
      "microsecond": 0}],
)
def test_instants_from_every_vendor_format(value: object) -> None:
    assert c("instant")(value) == datetime(2013, 5, 20, 20, 49, 32, tzinfo=UTC)


def test_naive_instants_take_the_mapping_timezone_and_dates_are_local() -> None:
    assert c("instant", timezone="Europe/Paris")("2026-01-01 00:30:00") == datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    assert c("date", timezone="America/New_York")("2026-04-01T02:00:00Z") == date(2026, 3, 31)
    assert c("date")({"__class__": "date", "year": 2026, "month": 4, "day": 1}) == date(2026, 4, 1)
    with pytest.raises(CoercionError):
        c("date")("2026-13-01")


def test_odoo_false_and_many2one() -> None:
    assert c("str")(False) is None
    assert c("str")([7, "Acme Corporation"]) == "Acme Corporation"
    assert c("ref")([7, "Acme Corporation"]) == "s:account:7"
    assert c("ref")(False) is None
    assert c("currency")([2, "USD"]) == "USD"
    assert c("country")([75, "France"]) == "FR"


def test_amounts_are_exact() -> None:
    assert c("decimal")({"__class__": "Decimal", "decimal": "490.00"}) == Decimal("490.00")
    assert c("decimal")(0.1) == Decimal("0.1")  # a float read back from JSON: its shortest text
    assert c("decimal")("1,234.50") == Decimal("1234.50")
    with pytest.raises(CoercionError):
        c("decimal")("12,5x")
    with pytest.raises(CoercionError):
        c("money_minor")(Decimal("12.5"))
    assert scale_minor(1050, "JPY", "stripe") == Decimal(1050)
    assert scale_minor(1050, "KWD", "stripe") == Decimal("1.050")


@given(st.integers(min_value=-10**12, max_value=10**12), st.sampled_from(["USD", "JPY", "KWD", "EUR", "ISK"]))
def test_minor_units_match_money_from_minor(units: int, currency: str) -> None:
    assert scale_minor(units, currency, "stripe") == Money.from_minor(units, currency, convention="stripe").amount


@pytest.mark.parametrize(
    ("raw", "domain"),
    [("https://www.Acme.com/about", "acme.com"), ("ap@acme.co.uk", "acme.co.uk"), ("acme.com", "acme.com"),
     ("http://localhost:8000", None), ("", None)],
)
def test_domain(raw: str, domain: str | None) -> None:
    assert normalize_domain(raw) == domain


def test_hubspot_association_prefers_primary_and_is_order_independent() -> None:
    fn = c("hubspot_association")
    v3 = [{"id": "2", "type": "deal_to_company_unlabeled"}, {"id": "9", "type": "deal_to_company"}]
    assert fn({"results": v3}) == "s:account:9"
    assert fn({"results": list(reversed(v3))}) == "s:account:9"
    assert fn([{"toObjectId": 4, "associationTypes": [{"typeId": 341}]}]) == "s:account:4"
    assert fn({"results": []}) is None


def test_a_date_coercion_keeps_the_dates_of_texts_but_not_failures() -> None:
    fn = c("date")
    assert fn("2024-01-05") == date(2024, 1, 5)
    assert fn("2013-05-20T23:49:32+02:00") == date(2013, 5, 20)
    assert fn.cache == {"2024-01-05": date(2024, 1, 5), "2013-05-20T23:49:32+02:00": date(2013, 5, 20)}
    for bad in ("2024-13-45", "someday"):
        with pytest.raises(CoercionError):
            fn(bad)
        with pytest.raises(CoercionError):  # a second time too: a failure is not kept
            fn(bad)
    assert fn("") is None
    assert set(fn.cache) == {"2024-01-05", "2013-05-20T23:49:32+02:00"}


def test_the_date_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import mappings.coerce as coerce

    monkeypatch.setattr(coerce, "DATE_CACHE_SIZE", 3)
    fn = c("date")
    days = [f"2024-01-{d:02d}" for d in range(1, 8)]
    assert [fn(d) for d in days] == [date(2024, 1, d) for d in range(1, 8)]
    assert len(fn.cache) <= 3
    assert fn("2024-01-01") == date(2024, 1, 1)


def test_the_date_cache_is_per_timezone() -> None:
    utc, tokyo = c("date"), c("date", timezone="Asia/Tokyo")
    assert utc("2013-05-20T20:49:32Z") == date(2013, 5, 20)
    assert tokyo("2013-05-20T20:49:32Z") == date(2013, 5, 21)
    assert utc("2013-05-20T20:49:32Z") == date(2013, 5, 20)

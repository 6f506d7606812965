"""A world's Salesforce datetimes are served in the REST form, however the world wrote them."""

from __future__ import annotations

import pytest

from sandbox.salesforce import _sf_stamp


@pytest.mark.parametrize(("given", "served"), [
    ("2026-01-31T10:00:00.000+0000", "2026-01-31T10:00:00.000+0000"),  # the REST form: itself
    ("2026-01-31T10:00:00Z", "2026-01-31T10:00:00.000+0000"),
    ("2026-01-31T10:00:00.123456+00:00", "2026-01-31T10:00:00.123+0000"),
    ("2026-01-31T12:00:00.000+0200", "2026-01-31T10:00:00.000+0000"),
    ("2026-01-31T10:00:00", "2026-01-31T10:00:00.000+0000"),  # no zone: UTC
    ("2026-02-30T10:00:00.000+0000", "2026-02-30T10:00:00.000+0000"),  # not a date: kept as given
    ("2026-01-31T24:00:00.000+0000", "2026-01-31T24:00:00.000+0000"),
    ("2026-W05-1T10:00:00.000+0000", "2026-01-26T10:00:00.000+0000"),  # an ISO week date is no REST form
    ("not a stamp", "not a stamp"),
])
def test_stamp_in_rest_form(given: str, served: str) -> None:
    assert _sf_stamp(given) == served

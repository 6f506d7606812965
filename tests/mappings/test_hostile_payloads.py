"""Hypothesis-generated payloads through every shipped mapping never crash the pipeline (issue 13).

Each example takes a vendor fixture record and replaces values anywhere in it with hostile ones (NUL
and lone surrogates, integers beyond 64 bits, NaN and infinities, 1e308, decimal commas, impossible
dates, over-long text, deep nesting, wrong types): landing stores it or quarantines it, mapping maps
it or quarantines it with a reason, and reconciliation then runs on whatever passed."""

from __future__ import annotations

import copy
import itertools
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canonical.store import Store
from connectors.base import StreamSpec, to_raw
from ltc.app.config import Config
from mappings.engine import run_mapping
from reconcile.engine import run_reconciliation
from tests.mappings.mapping_fixtures import SYSTEMS, fixture_records

HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([Decimal("1e308"), Decimal("-1.23e29"), Decimal("NaN"), Decimal("Infinity"), Decimal("1E-40"),
                     Decimal("123456789012345678901234567890.123456789")]),
    st.sampled_from(["12,50", "1,250", "1.250,00", "1e308", "2026-02-30", "2026-13-01T25:61:00Z", "\x00",
                     "Acme\x00 GmbH", "\ud800", "x" * 5000, "", " ", "=HYPERLINK(\"x\")", "NaN", "-0", "1_000",
                     "9" * 40, "00Dxx\x00", "false", "null"]),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.recursive(st.text(max_size=3), lambda c: st.lists(c, max_size=2) | st.dictionaries(st.text(max_size=3), c,
                                                                                            max_size=2), max_leaves=6),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(record: Any, path: tuple[Any, ...], value: Any) -> None:
    cur = record
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = value


_IDS = {"salesforce": "Id", "camt053": "entry_reference"}
_seq = itertools.count()


@pytest.mark.slow
@pytest.mark.parametrize("kind", SYSTEMS)
def test_hostile_payloads_are_mapped_or_quarantined_never_a_crash(kind: str, store: Store) -> None:
    base = fixture_records(kind)
    spec_of = {r.object: StreamSpec(r.object, r.object, primary_key=_IDS.get(kind, "id")) for r in base}
    landed: list[str] = []

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.data())
    def one(data: st.DataObject) -> None:
        raw = data.draw(st.sampled_from(base))
        payload = copy.deepcopy(dict(raw.payload))
        paths = _paths(payload)
        for path in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=4, unique=True)):
            try:
                _set(payload, path, data.draw(HOSTILE))
            except (KeyError, IndexError, TypeError):
                continue  # an earlier replacement removed this path's parent
        system = f"h{next(_seq)}"
        raws, rejected = to_raw(spec_of[raw.object], [payload])
        store.commit_page(system, "all", raws, None, rejected=rejected)
        counts = run_mapping(store, system, kind, config=Config())
        got = counts.get(system, {})
        assert got.get("records", 0) == len(raws)  # every landed record went through mapping
        assert got.get("mapped", 0) + got.get("quarantined", 0) <= len(raws)
        landed.append(system)

    one()
    assert landed
    run_reconciliation(store, Config(), date(2026, 11, 1))  # on whatever passed mapping

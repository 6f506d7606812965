"""End to end without Prefect: the Stripe emulator is synced, mapped, resolved and reconciled.

This is also the shipped Stripe mapping applied to emulator output (not hand-written fixtures).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from canonical import tables
from canonical.store import Store
from connectors.base import sync
from connectors.governor import RateGovernor
from connectors.http import RetryPolicy
from connectors.stripe import StripeConnector
from ltc.app.config import Config
from ltc.app.pipeline import after_sync
from sandbox.server import RunningServer, serve
from sandbox.stripe import StripeEmulator, create_app

KEY = "sk_test_pipeline_0123456789abcdef"


@pytest.fixture(scope="module")
def stripe_world() -> Iterator[tuple[StripeEmulator, RunningServer]]:
    emu = StripeEmulator(seed=11, size=12, api_key=KEY)
    with serve(create_app(emulator=emu)) as server:
        yield emu, server


def test_stripe_sync_map_resolve_reconcile(store: Store, stripe_world: tuple[StripeEmulator, RunningServer],
                                           tmp_path: Path) -> None:
    emu, server = stripe_world
    conn = StripeConnector("stripe", api_key=KEY, base_url=server.url, clock=emu.now,
                           policy=RetryPolicy(max_attempts=2, sleep=lambda s: None),
                           governor=RateGovernor("stripe-pipeline", capacity=1000, interval_s=1.0))
    results = sync(conn, store)
    assert all(r.status == "success" for r in results)
    landed = {r.stream: r.records for r in results}
    summary = after_sync(store, Config(), date(2026, 11, 22))
    mapping = summary["mapping"]
    assert mapping.get("quarantined", 0) == 0, store.quarantined()
    counts = store.table_counts()
    # every customer, invoice and charge landed became a canonical row
    assert counts["account"] == landed["customers"] > 0
    assert counts["invoice"] == landed["invoices"] > 0
    assert counts["invoice_line"] >= counts["invoice"]
    assert counts["payment"] >= landed["charges"] > 0
    with store.engine.connect() as c:
        inv = c.execute(sa.select(tables.table_for("invoice"))).mappings().first()
    assert inv is not None and inv["currency"] and inv["total"] is not None
    # Stripe objects explain no CRM deal here, so reconciliation reports them rather than dropping them
    rec = summary["reconcile"]
    assert rec["chains"] == 0 and rec["rows"]["invoice"] == counts["invoice"]
    states = rec["states"]
    for entity in ("invoice", "payment"):  # conservation: every row ends in exactly one state
        assert sum(v for k, v in states.items() if k.startswith(f"{entity}:")) == rec["rows"][entity]
    assert states.get("payment:matched", 0) > 0  # charges carry their invoice: applied by reference
    assert rec["exceptions"].get("INVOICE_WITHOUT_ORDER", 0) > 0

"""Jiandaoyun emulator + connector fixtures: a real HTTP server per test, connectors pointed at it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connectors.http import RetryPolicy
from connectors.jiandaoyun import FormConfig, JiandaoyunConnector, LinesConfig
from sandbox.jiandaoyun import API_KEY, JdyEmulator
from sandbox.server import RunningServer, serve


def forms_by_label(emu: JdyEmulator) -> list[FormConfig]:
    """The generated app's forms configured by widget *label* (what an admin reads in the form designer)."""
    def label(role: str, key: str) -> str:
        name = emu.labels[role][key]
        form = emu.form(role)
        for w in form.widgets:
            if w["name"] == name:
                return str(w["label"])
            for item in w.get("items") or []:
                if item["name"] == name:
                    return str(item["label"])
        raise KeyError(key)

    out = []
    if "customers" in emu.roles:
        out.append(FormConfig("customers", emu.roles["customers"], "account",
                              {"name": label("customers", "name"), "tax_id": label("customers", "tax_id"),
                               "owner": label("customers", "owner")}))
    if "opportunities" in emu.roles:
        out.append(FormConfig("opportunities", emu.roles["opportunities"], "deal",
                              {"name": label("opportunities", "name"), "account_id": label("opportunities", "customer"),
                               "amount": label("opportunities", "amount"), "stage": label("opportunities", "stage"),
                               "close_date": label("opportunities", "close_date")}))
    if "contracts" in emu.roles:
        out.append(FormConfig("contracts", emu.roles["contracts"], "order",
                              {"number": label("contracts", "number"), "account_id": label("contracts", "customer"),
                               "deal_ref": label("contracts", "opportunity"), "total": label("contracts", "amount"),
                               "order_date": label("contracts", "signed"), "state": label("contracts", "status")},
                              lines=LinesConfig(label("contracts", "items"),
                                                {"product_name": label("contracts", "items.product"),
                                                 "quantity": label("contracts", "items.qty"),
                                                 "unit_price": label("contracts", "items.price"),
                                                 "amount": label("contracts", "items.subtotal")})))
    if "collections" in emu.roles:
        out.append(FormConfig("collections", emu.roles["collections"], "payment",
                              {"reference": label("collections", "number"), "amount": label("collections", "amount"),
                               "payment_date": label("collections", "date"),
                               "invoice_ref": label("collections", "contract")}))
    return out


def make_connector(server: RunningServer, emu: JdyEmulator, **kwargs: Any) -> JiandaoyunConnector:
    """A connector on its own tenant (the governor is per tenant), pointed at the emulator."""
    kwargs.setdefault("policy", RetryPolicy(base_s=0.01, max_backoff_s=0.05, max_wait_s=0.05))
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("forms", forms_by_label(emu))
    kwargs.setdefault("rate_per_s", 10_000)
    return JiandaoyunConnector("jdy", app_id=emu.app_id, base_url=server.url,
                               tenant=f"t-{uuid.uuid4().hex[:8]}", **kwargs)


@pytest.fixture
def jdy() -> Iterator[Callable[..., tuple[JdyEmulator, RunningServer]]]:
    """``emu, server = jdy(size=..., roles=[...], ...)``: started now, stopped after the test."""
    servers: list[RunningServer] = []

    def start(**kwargs: Any) -> tuple[JdyEmulator, RunningServer]:
        kwargs.setdefault("rate_per_s", None)
        emu = JdyEmulator(**kwargs)
        srv = serve(emu.app)
        servers.append(srv)
        return emu, srv

    yield start
    for srv in reversed(servers):
        srv.stop()

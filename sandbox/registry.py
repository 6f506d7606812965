"""The emulators `ltc sandbox start` knows: kind -> factory of an ASGI app (seed, size, faults as kwargs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandbox import hubspot, jiandaoyun, salesforce, stripe, zoho

EMULATORS: dict[str, Callable[..., Any]] = {
    "hubspot": hubspot.create_app,
    "salesforce": salesforce.build_app,
    "stripe": stripe.create_app,
    "zoho": zoho.create_app,
    "jiandaoyun": jiandaoyun.create_app,
}

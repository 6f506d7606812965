"""Fixtures for the mapping tests: hand-written vendor records shaped as api_facts.md documents.

``fixtures/<system>/<raw object>.json`` holds a list of records exactly as the connector lands them
(JSON parsed with ``parse_float=Decimal``). They can be swapped for emulator output later.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from canonical import db
from canonical.store import RawRecord, Store

FIXTURES = Path(__file__).parent / "fixtures"
SYSTEMS = ("salesforce", "hubspot", "stripe", "tryton", "odoo", "camt053")


def source_id(system: str, record: dict[str, Any]) -> str:
    if system == "salesforce":
        return str(record["Id"])
    if system == "camt053":
        return f"{record['statement_id']}/{record['entry_reference']}/0"
    return str(record["id"])


def fixture_records(system: str) -> list[RawRecord]:
    out = []
    for path in sorted((FIXTURES / system).glob("*.json")):
        for rec in json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal):
            out.append(RawRecord(path.stem, source_id(system, rec), rec))
    return out


def as_stored(payload: Any) -> Any:
    """The payload as the mapping stage reads it back from raw landing (Decimal -> exact text)."""
    return orjson.loads(db.dumps(payload))


def land(store: Store, system: str, records: list[RawRecord] | None = None) -> None:
    recs = fixture_records(system) if records is None else records
    store.commit_page(system, "all", recs, None)


"""Land a world directory's files straight into a store (no emulator): the writer's own check."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from canonical.store import RawRecord, Store
from connectors.statements import import_file
from connectors.tryton import codec
from ltc.config import Config, SourceConfig

KINDS = {"salesforce": "salesforce", "tryton": "tryton", "stripe": "stripe", "bank": "camt053"}


def world_config() -> Config:
    return Config(sources={name: SourceConfig(kind=kind) for name, kind in KINDS.items()})  # type: ignore[arg-type]


def land_files(store: Store, directory: Path) -> None:
    for system in ("salesforce", "tryton", "stripe"):
        for path in sorted((directory / system).glob("*.jsonl")):
            records = []
            for line in path.read_text().splitlines():
                if system == "tryton":
                    payload = codec.decode(json.loads(line))
                    records.append(RawRecord(path.stem, str(payload["id"]), payload))
                elif system == "salesforce":
                    payload = json.loads(line, parse_float=Decimal)
                    records.append(RawRecord(path.stem, payload["Id"], payload))
                else:
                    payload = json.loads(line)
                    records.append(RawRecord(payload["object"], payload["id"], payload))
            store.commit_page(system, path.stem, records, None)
    for path in sorted((directory / "bank").glob("*.xml")):
        import_file(store, path, source="bank")

"""Can the pipeline read a world's records? Checked with the connector's own requests and the mapping.

A record that is valid JSON in the vendor's shape can still be unreadable by the code that serves
it: a Tryton dotted read written flat (``"currency.code": "EUR"`` where the connector reads
``"currency.": {"code": "EUR"}``), a field the connector never requests (a Tryton invoice's
``due_date``: the connector reads ``lines_to_pay.maturity_date``), a Stripe invoice line without a
currency (the mapping quarantines the invoice). :func:`first_unreadable` serves each stream the
connector syncs from the world's records the way its emulator answers the connector's request
(the stream's fields and domain), then maps the answer with the source's mapping (shipped + the
world's override): the first record that the connector drops a field of, or that the mapping
would quarantine, is the problem to report.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from canonical import db
from mappings.engine import compile_for, map_records

# file object -> raw object (Stripe lands a resource under its `object` name)
STRIPE_RAW = {"customers": "customer", "charges": "charge", "refunds": "refund", "invoices": "invoice",
              "credit_notes": "credit_note", "balance_transactions": "balance_transaction",
              "payouts": "payout", "payment_intents": "payment_intent"}
_CHUNK = 10_000  # payloads round-tripped per orjson call (one call per record costs more than the JSON)
_STAMPS = frozenset({"id", "create_date", "write_date", "create_uid", "write_uid", "rec_name", "display_name"})


def _stored(payload: Any) -> Any:
    """The payload (or a list of payloads) as the mapping stage reads it back from the raw landing."""
    return orjson.loads(db.dumps(payload))


def streams_of(system: str, records: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    """The objects whose records the check reads, in the order it reads them: an ERP's synced streams, another
    API source's files (associations aside)."""
    if system == "tryton":
        from connectors.tryton.connector import STREAMS

        return [stream.object for stream in STREAMS]
    if system == "odoo":
        from connectors.odoo import STREAMS as ODOO_STREAMS

        return [ostream.object for ostream in ODOO_STREAMS]
    return [obj for obj, _raw, _recs in _files(system, records)]


def _served(system: str, records: Mapping[str, list[dict[str, Any]]], objects: Collection[str]
            ) -> Iterator[tuple[str, str, dict[str, Any] | None, dict[str, Any]]]:
    """``(file object, raw object, world record or None, payload as landed)`` of every record of ``objects``
    that the system's connector syncs, as its emulator serves it."""
    if system == "tryton":
        from connectors.tryton.connector import _CONTEXT, STREAMS
        from sandbox.tryton import TrytonWorld

        world = TrytonWorld({m: rs for m, rs in records.items()})
        for stream in STREAMS:
            if stream.object not in objects:
                continue
            by_id = {r.get("id"): r for r in records.get(stream.object, [])}
            rows = world.call(f"model.{stream.object}.search_read",
                              [stream.options["domain"], 0, None, [["id", "ASC"]], list(stream.options["fields"]),
                               dict(_CONTEXT)])
            for row in rows:
                yield stream.object, stream.object, by_id.get(row["id"]), row
    elif system == "odoo":
        from connectors.odoo import STREAMS as ODOO_STREAMS
        from sandbox.odoo import MODELS, OdooServer

        server = OdooServer(models={m: list(records.get(m, [])) for m in MODELS})
        for ostream in ODOO_STREAMS:
            if ostream.object not in objects:
                continue
            by_id = {r.get("id"): r for r in records.get(ostream.object, [])}
            rows = server.execute(ostream.object, "search_read", [[list(t) if isinstance(t, tuple) else t
                                                                   for t in ostream.domain]],
                                  {"fields": list(ostream.fields), "order": "id asc"})
            for row in rows:
                yield ostream.object, ostream.object, by_id.get(row["id"]), row
    else:
        for obj, raw, recs in _files(system, records):
            if obj in objects:
                for rec in recs:
                    yield obj, raw, None, rec


def _files(system: str, records: Mapping[str, list[dict[str, Any]]]
           ) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """``(file object, raw object, records)`` of each file an API source serves as it is (not the ERPs')."""
    for obj, recs in records.items():
        if not obj.startswith("associations/"):
            yield obj, (STRIPE_RAW.get(obj, obj) if system == "stripe" else obj), recs


def _dropped(world_rec: dict[str, Any], served: dict[str, Any]) -> str | None:
    """A field of the world record that the connector's request leaves out."""
    missing = world_rec.keys() - served.keys() - _STAMPS  # most records: none (set operations, in C)
    if not missing:
        return None
    for key, value in world_rec.items():  # the first in the record's order
        if key not in missing or f"{key}." in served or value in (None, False, [], {}):
            continue
        return key
    return None


def first_unreadable(system: str, records: Mapping[str, list[dict[str, Any]]],
                     override: str | Path | None = None) -> tuple[str, str, str] | None:
    """``(file object, record id, what is wrong)`` of the first record of ``system`` that its
    connector and mapping cannot read, or None."""
    found = unreadable_in(system, records, override, streams_of(system, records))
    return found[1] if found else None


def check_parts(system: str, records: Mapping[str, list[dict[str, Any]]], parts: int) -> list[list[str]]:
    """The system's objects (:func:`streams_of`) in at most ``parts`` shares of about as many records each, for
    :func:`unreadable_in` in as many processes: the largest first, each onto the share with the fewest so far."""
    shares: list[list[str]] = [[] for _ in range(parts)]
    sizes = [0] * parts
    for obj in sorted(streams_of(system, records), key=lambda o: -len(records.get(o, []))):
        least = sizes.index(min(sizes))
        shares[least].append(obj)
        sizes[least] += len(records.get(obj, []))
    return [share for share in shares if share]


Rank = tuple[int, int]
"""Which of two problems :func:`first_unreadable` names first: a field the connector drops (0) before a record the
mapping rejects (1), then the object's place in :func:`streams_of`."""


def unreadable_in(system: str, records: Mapping[str, list[dict[str, Any]]], override: str | Path | None,
                  objects: Collection[str]) -> tuple[Rank, tuple[str, str, str]] | None:
    """:func:`first_unreadable` over the records of ``objects`` only, with the problem's :data:`Rank`: of the
    problems found by parts that together hold every object, the least ranked is the one the whole check finds
    (within an object, records are checked in order)."""
    mset = compile_for(system, system, override)
    order = {obj: n for n, obj in enumerate(streams_of(system, records))}
    batch: list[tuple[None, str, str, Any, None]] = []
    plans = mset.plans
    erp = system in ("tryton", "odoo")
    if not erp:  # served as they are: a file's records at once, no field dropped
        for obj, raw, recs in _files(system, records):
            if raw in plans and obj in objects:
                batch.extend([(None, raw, str(p.get("Id", p.get("id"))), p, None) for p in recs])
    for obj, raw, world_rec, payload in _served(system, records, objects) if erp else ():
        rid = str(payload.get("Id", payload.get("id")))
        if world_rec is not None and (key := _dropped(world_rec, payload)) is not None:
            fields = ", ".join(sorted(k for k in payload if k not in _STAMPS))
            hint = (f"; a dotted read is written as {{\"{key.split('.')[0]}.\": {{\"{key.split('.', 1)[1]}\": …}}}}"
                    if "." in key.rstrip(".") else "")
            return (0, order[obj]), (obj, rid, f"field {key!r} is never requested by the {system} connector, so it "
                                               f"would not be read (it requests: {fields}){hint}")
        if raw in plans:
            batch.append((None, raw, rid, payload, None))
    files = {raw: obj for obj, raw, _recs in _files(system, records)}  # an ERP's raw object is its file's
    # landed as the pipeline lands them and mapped, a chunk at a time (a list's JSON is its items' JSON; a
    # record maps on its own): the first chunk with a rejected record holds the first one
    for i in range(0, len(batch), _CHUNK):
        chunk = batch[i:i + _CHUNK]
        stored = _stored([b[3] for b in chunk])
        result = map_records(mset, [(None, raw, rid, p, None)
                                    for (_, raw, rid, _, _), p in zip(chunk, stored, strict=True)])
        if result.rejected:
            bad = result.rejected[0]
            where = f"field {bad.field}: " if bad.field else ""
            obj = files.get(bad.object, bad.object)
            return (1, order.get(obj, len(order))), (
                obj, bad.source_id or "?",
                f"the {system} mapping cannot read it ({where}{bad.reason}); fix the record or give the world a "
                f"mapping override (world.yaml mappings: {{{system}: mappings/{system}.yaml}})")
    return None

"""The records behind reconciliation exceptions, as ``ltc exceptions list --json`` describes them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from canonical import tables as ct


def source_records(store: Any, canonical_ids: list[str]) -> dict[str, dict[str, str | None]]:
    """Canonical id -> the record it came from: ``{system, object, id, entity, canonical_id}``.

    Read from the canonical rows (``source_system``, ``source_object``, ``source_id``); an id whose row
    is gone (or whose entity has no table) is described from the id itself, with ``object`` null.
    """
    by_entity: dict[str, set[str]] = {}
    for cid in canonical_ids:
        parts = cid.split(":", 2)
        if len(parts) == 3:
            by_entity.setdefault(parts[1], set()).add(cid)
    found: dict[str, dict[str, str | None]] = {}
    with store.engine.connect() as conn:
        for entity, ids in by_entity.items():
            try:
                table = ct.table_for(entity)
            except (KeyError, ValueError):
                continue
            wanted = sorted(ids)
            for i in range(0, len(wanted), 500):
                q = sa.select(table.c.id, table.c.source_system, table.c.source_object, table.c.source_id).where(
                    table.c.id.in_(wanted[i:i + 500]))
                for cid, system, obj, sid in conn.execute(q):
                    found[cid] = {"system": system, "object": obj, "id": sid, "entity": entity, "canonical_id": cid}
    for cid in canonical_ids:
        if cid not in found:
            parts = cid.split(":", 2)
            if len(parts) == 3:
                found[cid] = {"system": parts[0], "object": None, "id": parts[2], "entity": parts[1],
                              "canonical_id": cid}
            else:
                found[cid] = {"system": None, "object": None, "id": cid, "entity": None, "canonical_id": cid}
    return found


# what a finance team still has to read: resolved ones stay in the store, behind ``--status all``
DEFAULT_STATUSES = ("open", "acknowledged")


def statuses_for(status: str | None) -> tuple[str, ...] | None:
    """The statuses ``ltc exceptions list --status S`` shows: open + acknowledged by default, every
    status for ``all``, else the one named (``None`` means no filter)."""
    if status is None:
        return DEFAULT_STATUSES
    if status.lower() == "all":
        return None
    return (status.lower(),)


def list_exceptions(store: Any, code: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """The exceptions ``ltc exceptions list`` shows (see :func:`statuses_for`), with their detail."""
    from reconcile import lifecycle

    rows = lifecycle.list_exceptions(store, code, statuses_for(status))
    for r in rows:
        ev = r.get("evidence")
        r["detail"] = ev.get("detail") if isinstance(ev, dict) else None
    return rows

"""Loud on unread data: quarantine and unmapped required fields per stream, and the run's verdict.

:func:`stream_health` counts, per source stream (system and raw object), the records landed, the
records in open quarantine (fetch, map or validate stage) and, among those, the ones missing a
required field (by field). A stream whose quarantined share exceeds ``quarantine_fail_share``
(ltc.yaml, default 0.05) fails the run: :func:`failure` is the one line ``ltc run``/``ltc demo``
print before exiting 1, and the ``ltc-pipeline`` flow raises it so its run is not Completed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from canonical.store import Store
from canonical.tables import quarantine, raw_record

EXIT_UNREAD = 1
_REQUIRED = ("required value missing", "cannot be reconciled")


def stream_health(store: Store, fail_share: float) -> list[dict[str, Any]]:
    """Per stream with anything quarantined: ``system``, ``object``, ``records``, ``quarantined``,
    ``share``, ``missing`` (required field -> records), ``failing``; worst share first."""
    q, r = quarantine.c, raw_record.c
    with store.engine.connect() as conn:
        quarantined = conn.execute(
            sa.select(q.system, q.object, q.stage, q.field, q.reason, sa.func.count())
            .where(q.resolved_at.is_(None)).group_by(q.system, q.object, q.stage, q.field, q.reason)).all()
        if not quarantined:
            return []
        landed = {(s, o): int(n) for s, o, n in conn.execute(
            sa.select(r.system, r.object, sa.func.count()).where(r.deleted.is_(False)).group_by(r.system, r.object))}
    streams: dict[tuple[str, str], dict[str, Any]] = {}
    for system, obj, stage, fld, reason, n in quarantined:
        s = streams.setdefault((system, obj), {"system": system, "object": obj, "quarantined": 0, "fetch": 0,
                                               "missing": defaultdict(int)})
        s["quarantined"] += int(n)
        if stage == "fetch":
            s["fetch"] += int(n)  # never landed: counted in the stream's records too
        if fld and any(str(reason).startswith(x) or x in str(reason) for x in _REQUIRED):
            s["missing"][fld] += int(n)
    out = []
    for key, s in streams.items():
        records = landed.get(key, 0) + s.pop("fetch")
        share = s["quarantined"] / records if records else 1.0
        out.append({**s, "missing": dict(s["missing"]), "records": records, "share": round(share, 4),
                    "failing": share > fail_share})
    out.sort(key=lambda s: (-s["share"], s["system"], s["object"]))
    return out


def failure(streams: Iterable[Mapping[str, Any]], fail_share: float) -> str | None:
    """The one line that fails a run, or None when every stream is under the share."""
    bad = [s for s in streams if s.get("failing")]
    if not bad:
        return None
    what = "; ".join(f"{s['system']} {s['object']}: {s['quarantined']} of {s['records']} records quarantined "
                     f"({s['share']:.1%})" for s in bad)
    return (f"unread data: {what} — over quarantine_fail_share {fail_share:.0%}; "
            "see `ltc status` and the quarantine, fix the mapping (`ltc mappings suggest`) and `ltc remap`")


def lines(streams: Iterable[Mapping[str, Any]]) -> list[str]:
    """The summary's first lines: quarantine and unmapped required fields per stream."""
    out = []
    for s in streams:
        missing = ", ".join(f"{f} missing in {n}" for f, n in sorted(s["missing"].items()))
        out.append(f"{'FAIL ' if s['failing'] else ''}{s['system']} {s['object']}: {s['quarantined']} of "
                   f"{s['records']} quarantined ({s['share']:.1%})" + (f"; required {missing}" if missing else ""))
    return out

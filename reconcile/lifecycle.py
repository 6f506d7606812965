"""Exception lifecycle: open -> acknowledged -> resolved, keyed on the stable fingerprint.

After each run, :func:`sync` compares what was found with what is stored, in bulk:
new -> ``open``; found again after ``resolved`` -> reopened; stored open/acknowledged but no longer
found -> ``resolved`` automatically (the data was fixed). Every change writes an audit row (who,
when, why, which action). :func:`act` is the path of people (``ltc exceptions ack|resolve|assign|
comment|snooze`` and the work queue ``ltc ui``, one or many at once); :func:`transition` is its
one-exception status form.
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from canonical.db import dumps
from canonical.errors import InputError
from canonical.store import Store, now
from canonical.tables import Amount, UTCDateTime
from reconcile.tables import recon_exception as exc_t
from reconcile.tables import recon_exception_audit as audit_t

SYSTEM_ACTOR = "reconcile"


def _source_id(canonical_id: str) -> str:
    parts = canonical_id.split(":", 2)
    return parts[2] if len(parts) == 3 else canonical_id


class Found(dict[str, dict[str, Any]]):
    """:func:`prepare`'s rows by fingerprint, each also as the tuple the driver is handed (``stored``: the values of
    :data:`FOUND` in the store's forms for ``dialect``), so that :func:`sync` converts nothing in its transaction."""

    def __init__(self, rows: dict[str, dict[str, Any]], dialect: sa.Dialect) -> None:
        super().__init__(rows)
        self.dialect = dialect.name
        conv = [_stored(dialect, exc_t.c[c]) for c in FOUND]
        self.stored = {fp: tuple(f(r[c]) for c, f in zip(FOUND, conv, strict=True)) for fp, r in rows.items()}


#: the columns of a found exception (:func:`prepare`), in :class:`Found`'s tuples
FOUND = ("fingerprint", "code", "severity", "chain_id", "subject_ids", "source_ids", "owner", "currency",
         "amount_at_risk", "reporting_currency", "amount_reporting", "evidence", "last_seen_at", "last_run_id")


def prepare(ex: pl.DataFrame, run_id: str, at: datetime, dialect: sa.Dialect | None = None) -> dict[str, dict[str, Any]]:
    """The stored form of one run's findings, by fingerprint (what :func:`sync` writes): a caller with time to
    spare before the sync's transaction (the store path, while its links are committed) makes it then; with the
    store's ``dialect``, their values converted for the driver too (:class:`Found`)."""
    out: dict[str, dict[str, Any]] = {}
    for r in ex.iter_rows(named=True):
        out[r["fingerprint"]] = {
            "fingerprint": r["fingerprint"], "code": r["code"], "severity": r["severity"], "chain_id": r["chain_id"],
            "subject_ids": list(r["records"]), "source_ids": [_source_id(i) for i in r["records"]],
            "owner": r["owner"], "currency": r["currency"], "amount_at_risk": r["amount"],
            "reporting_currency": r["reporting_currency"], "amount_reporting": r["amount_reporting"],
            "evidence": {"keys": list(r["keys"]), "detail": r["detail"], "bucket": r["bucket"]},
            "last_seen_at": at, "last_run_id": run_id,
        }
    return out if dialect is None else Found(out, dialect)


def sync(conn: Connection, ex: pl.DataFrame, run_id: str, at: datetime | None = None,
         found: dict[str, dict[str, Any]] | None = None) -> dict[str, int]:
    """Apply one run's findings to the stored exceptions; returns counts per transition. ``found``:
    :func:`prepare` of the same ``ex``, ``run_id`` and ``at``, when made beforehand."""
    at = at or now()
    if found is None:
        found = prepare(ex, run_id, at)
    stored = dict(conn.execute(sa.select(exc_t.c.fingerprint, exc_t.c.status)).all())
    new = [fp for fp in found if fp not in stored]
    reopen = [fp for fp in found if stored.get(fp) == "resolved"]
    keep = [fp for fp in found if stored.get(fp) in ("open", "acknowledged")]
    gone = [fp for fp, st in stored.items() if st in ("open", "acknowledged") and fp not in found]
    # the audit rows as the driver takes them (every value text but the instant, converted once)
    when = _stored(conn.dialect, audit_t.c.at)(at)
    audit: list[tuple[Any, ...]] = []
    # bulk, at the driver level: tens of thousands of exceptions are one executemany (PostgreSQL: COPY) each, not a Python
    # round of SQLAlchemy's per-row type processing (the values are converted to their stored forms here)
    pre = found.stored if isinstance(found, Found) and found.dialect == conn.dialect.name else None
    if new:
        # conflict-safe: a fingerprint stored meanwhile by someone else is left to them, not a crash
        if pre is not None:  # made before the transaction: only the status and first seen added here
            seen = _stored(conn.dialect, exc_t.c.first_seen_at)(at)
            _execute(conn, exc_t, [*FOUND, "status", "first_seen_at", "resolved_at"],
                     [(*pre[fp], "open", seen, None) for fp in new], conflict="fingerprint")
        else:
            _write(conn, exc_t, [dict(found[fp], status="open", first_seen_at=at, resolved_at=None) for fp in new],
                   conflict="fingerprint")
        audit += [(fp, when, SYSTEM_ACTOR, None, "open", "detected", run_id, "detected") for fp in new]
    upd_cols = ["severity", "chain_id", "subject_ids", "source_ids", "owner", "currency", "amount_at_risk",
                "reporting_currency", "amount_reporting", "evidence", "last_seen_at", "last_run_id"]
    for fps, extra in ((keep, {}), (reopen, {"status": "open", "resolved_at": None})):
        if fps and pre is not None:
            pick = operator.itemgetter(*(FOUND.index(c) for c in upd_cols))
            _update_rows(conn, exc_t, [*upd_cols, *extra], [(*pick(pre[fp]), *extra.values(), fp) for fp in fps])
        elif fps:
            _update(conn, exc_t, [{**{c: found[fp][c] for c in upd_cols}, **extra, "fingerprint": fp} for fp in fps])
    audit += [(fp, when, SYSTEM_ACTOR, "resolved", "open", "found again: the break is back", run_id, "reopened")
              for fp in reopen]
    if gone:
        _update(conn, exc_t, [{"status": "resolved", "resolved_at": at, "last_run_id": run_id, "fingerprint": fp}
                              for fp in gone])
        audit += [(fp, when, SYSTEM_ACTOR, stored[fp], "resolved", "auto-resolved: no longer found (data fixed)", run_id,
                   "auto_resolved") for fp in gone]
    if audit:
        _execute(conn, audit_t, list(_audit("", None, "", "", None, at)), audit)
    return {"new": len(new), "reopened": len(reopen), "still_open": len(keep), "auto_resolved": len(gone)}


def _stored(dialect: sa.Dialect, col: sa.Column[Any]) -> Callable[[Any], Any]:
    """What the driver is handed for a value of ``col`` (as the column's SQLAlchemy type would bind it)."""
    typ = col.type
    if isinstance(typ, UTCDateTime):
        # a run writes one instant (its time) on every row: converted once, not once per row and column
        if dialect.name == "sqlite":  # SQLite's DateTime text, as SQLAlchemy writes it
            return functools.lru_cache(maxsize=16)(
                lambda v: None if v is None else typ.process_bind_param(v, dialect).strftime("%Y-%m-%d %H:%M:%S.%f"))
        return functools.lru_cache(maxsize=16)(lambda v: typ.process_bind_param(v, dialect))
    if isinstance(typ, Amount):
        return lambda v: typ.process_bind_param(v, dialect)
    if isinstance(typ, sa.JSON):
        return lambda v: None if v is None else dumps(v).decode()
    return lambda v: v


def _placeholder(conn: Connection, col: sa.Column[Any]) -> str:
    if conn.dialect.name != "postgresql":
        return "?"
    return "CAST(%s AS jsonb)" if isinstance(col.type, sa.JSON) else "%s"


def _write(conn: Connection, table: sa.Table, rows: list[dict[str, Any]], conflict: str | None = None) -> None:
    """``INSERT`` the rows (all with the same keys) at the driver level (:func:`_execute`)."""
    cols = list(rows[0])
    conv = [_stored(conn.dialect, table.c[c]) for c in cols]
    _execute(conn, table, cols, [tuple(f(r[c]) for c, f in zip(cols, conv, strict=True)) for r in rows], conflict)


def _execute(conn: Connection, table: sa.Table, cols: list[str], rows: list[tuple[Any, ...]],
             conflict: str | None = None) -> None:
    """``INSERT`` rows already in the driver's forms (values of ``cols``): one executemany, or on PostgreSQL one
    ``COPY`` (into a scratch table first when a ``conflict`` is to be skipped)."""
    names = ", ".join(f'"{c}"' for c in cols)
    if conn.dialect.name == "postgresql":
        if not conflict:
            _copy(conn, table.name, cols, rows)
            return
        with _scratch(conn, table, cols, rows) as tmp:
            conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({names}) SELECT {names} FROM "{tmp}" '
                                 f'ON CONFLICT ("{conflict}") DO NOTHING')
        return
    marks = ", ".join(_placeholder(conn, table.c[c]) for c in cols)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'
    if conflict:
        sql += f' ON CONFLICT ("{conflict}") DO NOTHING'
    conn.exec_driver_sql(sql, rows)


def _update(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """``UPDATE`` each row's columns by its ``fingerprint`` (all rows with the same keys; :func:`_update_rows`)."""
    cols = [c for c in rows[0] if c != "fingerprint"]
    conv = [_stored(conn.dialect, table.c[c]) for c in cols]
    _update_rows(conn, table, cols,
                 [(*(f(r[c]) for c, f in zip(cols, conv, strict=True)), r["fingerprint"]) for r in rows])


def _update_rows(conn: Connection, table: sa.Table, cols: list[str], rows: list[tuple[Any, ...]]) -> None:
    """``UPDATE`` of ``cols`` by ``fingerprint``, rows already in the driver's forms (their values, the key last):
    one executemany, or on PostgreSQL one ``COPY`` into a scratch table and one ``UPDATE … FROM`` it."""
    if conn.dialect.name == "postgresql":
        with _scratch(conn, table, [*cols, "fingerprint"], rows) as tmp:
            sets = ", ".join(f'"{c}" = s."{c}"' for c in cols)
            conn.exec_driver_sql(f'UPDATE "{table.name}" AS t SET {sets} FROM "{tmp}" AS s '
                                 'WHERE t."fingerprint" = s."fingerprint"')
        return
    sets = ", ".join(f'"{c}" = {_placeholder(conn, table.c[c])}' for c in cols)
    key = _placeholder(conn, table.c.fingerprint)
    conn.exec_driver_sql(f'UPDATE "{table.name}" SET {sets} WHERE "fingerprint" = {key}', rows)


def _copy(conn: Connection, table: str, cols: list[str], rows: list[tuple[Any, ...]]) -> None:
    """PostgreSQL: ``COPY`` the rows (values of ``cols`` in the driver's forms: JSON as text) into ``table``, in
    ``conn``'s transaction. 57k exceptions of a first run (and their audit rows) took 0.88 s, executemany 1.46 s (this
    process's CPU 0.34 against 0.90 s)."""
    raw: Any = conn.connection.dbapi_connection  # psycopg's connection: COPY is psycopg's own API
    names = ", ".join(f'"{c}"' for c in cols)
    with raw.cursor() as cur, cur.copy(f'COPY "{table}" ({names}) FROM STDIN') as cp:
        for row in rows:
            cp.write_row(row)


@contextlib.contextmanager
def _scratch(conn: Connection, table: sa.Table, cols: list[str], rows: list[tuple[Any, ...]]) -> Iterator[str]:
    """PostgreSQL: a temporary table of ``table``'s ``cols`` (their types, no constraint) holding the rows, for one
    statement to read; dropped after it."""
    tmp = f"_ltc_{table.name}_rows"
    names = ", ".join(f'"{c}"' for c in cols)
    conn.exec_driver_sql(f'CREATE TEMPORARY TABLE "{tmp}" ON COMMIT DROP AS SELECT {names} FROM "{table.name}" '
                         'WITH NO DATA')
    _copy(conn, tmp, cols, rows)
    yield tmp
    conn.exec_driver_sql(f'DROP TABLE "{tmp}"')


def _audit(fp: str, frm: str | None, to: str, reason: str, run_id: str | None, at: datetime,
           actor: str = SYSTEM_ACTOR, action: str = "change") -> dict[str, Any]:
    return {"fingerprint": fp, "at": at, "actor": actor, "from_status": frm, "to_status": to, "reason": reason,
            "run_id": run_id, "action": action}


_ALLOWED = {"acknowledged": ("open",), "resolved": ("open", "acknowledged"), "open": ("acknowledged", "resolved")}
# A person's actions: the status each moves to (None: the status stays) and the statuses it applies to.
ACTIONS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "acknowledge": ("acknowledged", _ALLOWED["acknowledged"]),
    "resolve": ("resolved", _ALLOWED["resolved"]),
    "reopen": ("open", _ALLOWED["open"]),
    "assign": (None, ("open", "acknowledged", "resolved")),
    "comment": (None, ("open", "acknowledged", "resolved")),
    "snooze": (None, ("open", "acknowledged")),
}
_ACTION_OF = {"acknowledged": "acknowledge", "resolved": "resolve", "open": "reopen"}


def resolve_id(conn: Connection, ident: str) -> str:
    """A fingerprint from its full value or a unique prefix (at least 6 characters)."""
    ident = ident.strip().lower()
    if len(ident) < 6:
        raise InputError(f"exception id {ident!r} is too short: give at least 6 characters of the fingerprint")
    # a literal prefix: % and _ in what a person typed are characters, not LIKE's wildcards
    hits = conn.execute(sa.select(exc_t.c.fingerprint).where(exc_t.c.fingerprint.startswith(ident, autoescape=True))
                        .limit(3)).scalars().all()
    if not hits:
        raise InputError(f"no exception with id {ident!r} (see `ltc exceptions list`)")
    if len(hits) > 1:
        raise InputError(f"exception id {ident!r} is ambiguous ({', '.join(hits)}); give more characters")
    return hits[0]


def _check(action: str, note: str, owner: str | None, until: date | None, today: date) -> str:
    """The audit reason of a person's action, or InputError when the action lacks what it needs."""
    note = (note or "").strip()
    if action not in ACTIONS:
        raise InputError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    if action in ("resolve", "reopen", "comment") and not note:
        raise InputError("a note is required: say why" if action != "comment" else "a comment needs text")
    if action == "acknowledge":
        return note or "acknowledged"
    if action == "assign":
        who = (owner or "").strip()
        return (f"assigned to {who}" if who else "unassigned") + (f": {note}" if note else "")
    if action == "snooze":
        if until is not None and until <= today:
            raise InputError(f"snooze until {until.isoformat()}: give a date after today ({today.isoformat()})")
        return (f"snoozed until {until.isoformat()}" if until else "snooze lifted") + (f": {note}" if note else "")
    return note


def act(store: Store, idents: Sequence[str], action: str, actor: str, *, note: str = "", owner: str | None = None,
        until: date | None = None, today: date | None = None) -> list[dict[str, Any]]:
    """A person's action on one or several exceptions, in one transaction, each with an audit row naming ``actor``.

    ``acknowledge`` / ``resolve`` / ``reopen`` move the status; ``assign`` sets the owner a person chose
    (``owner`` empty: unassign), ``comment`` only writes the trail, ``snooze`` hides the exception from
    the work queue until ``until`` (None: lift the snooze), a day after ``today`` (the company's day, ``Config.today``;
    default: the UTC day). An exception the action does not apply to
    (resolving a resolved one) is skipped with the reason; the others go on. The CLI
    (``ltc exceptions ...``) and the work queue (``ltc ui``) both come here.
    """
    if not actor or not actor.strip():
        raise InputError("an action needs the acting user")
    at = now()
    reason = _check(action, note, owner, until, today or at.date())
    to, allowed = ACTIONS[action]
    out: list[dict[str, Any]] = []
    with store.engine.begin() as conn:
        fps = list(dict.fromkeys(resolve_id(conn, i) for i in idents))
        current = dict(conn.execute(sa.select(exc_t.c.fingerprint, exc_t.c.status)
                                    .where(exc_t.c.fingerprint.in_(fps))).all()) if fps else {}
        values: dict[str, Any] = {}
        if to is not None:
            values = {"status": to, "resolved_at": at if to == "resolved" else None}
        elif action == "assign":
            values = {"assignee": (owner or "").strip() or None}
        elif action == "snooze":
            values = {"snoozed_until": until}
        by_status: dict[str, list[str]] = {}
        for fp in fps:
            by_status.setdefault(current[fp], []).append(fp)
        applied: set[str] = set()
        for cur, group in by_status.items():
            if cur not in allowed:
                continue
            # only from the status just read: another person (or a run) who changed the exception since then wins,
            # and this action is not applied to it (the row is locked by the update until the transaction ends)
            applied.update(conn.execute(
                exc_t.update().where(exc_t.c.fingerprint.in_(group), exc_t.c.status == cur)
                .values(**(values or {"status": cur})).returning(exc_t.c.fingerprint)).scalars())
        audit = []
        for fp in fps:
            cur = current[fp]
            if cur not in allowed:
                what = f"move it to {to}" if to else f"{action} it"
                out.append({"fingerprint": fp, "from": cur, "to": cur, "skipped": f"exception {fp[:12]} is {cur}; "
                            f"cannot {what}"})
            elif fp not in applied:
                out.append({"fingerprint": fp, "from": cur, "to": cur,
                            "skipped": f"exception {fp[:12]} was changed by someone else meanwhile: reload"})
            else:
                audit.append(_audit(fp, cur, to or cur, reason, None, at, actor.strip(), action))
                out.append({"fingerprint": fp, "from": cur, "to": to or cur, "skipped": None})
        if audit:
            conn.execute(audit_t.insert(), audit)
    return out


def transition(store: Store, ident: str, to: str, note: str, actor: str) -> dict[str, Any]:
    """Manual status change with an audit row; refuses transitions that make no sense."""
    if not note or not note.strip():
        raise InputError("a note is required: say why (--note \"...\")")
    if to not in _ACTION_OF:
        raise InputError(f"unknown status {to!r}; known: {', '.join(_ACTION_OF)}")
    res = act(store, [ident], _ACTION_OF[to], actor, note=note)[0]
    if res["skipped"]:
        raise InputError(res["skipped"])
    return res


def exposure(conn: Connection, reporting_currency: str) -> list[dict[str, Any]]:
    """The open book after a run, as KPI rows (kept per run in ``kpi_snapshot`` for the trend and the
    change since the last run): exceptions not resolved, and their amount at risk in the reporting
    currency (those without an FX rate are counted in the denominator's complement, not summed)."""
    # the driver's values as they come (SQLite: text, PostgreSQL: Decimal), not through the Amount type row by row
    raw = sa.type_coerce(exc_t.c.amount_reporting, sa.String)
    rows = conn.execute(sa.select(raw).where(exc_t.c.status != "resolved")).scalars().all()
    priced = [a if isinstance(a, Decimal) else Decimal(a) for a in rows if a is not None]
    total = sum(priced, Decimal(0))
    return [
        {"kpi": "open_exceptions", "variant": "open_or_acknowledged_after_run", "owner": None,
         "value": Decimal(len(rows)), "unit": "count", "numerator": None, "denominator": None},
        {"kpi": "amount_at_risk", "variant": "sum_open_amount_in_reporting_currency", "owner": None, "value": total,
         "unit": reporting_currency, "numerator": Decimal(len(priced)), "denominator": Decimal(len(rows))},
    ]


def list_exceptions(store: Store, code: str | None = None,
                    status: str | Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Exceptions by code and fingerprint; ``status`` one status or several (``None``: every status)."""
    q = sa.select(exc_t).order_by(exc_t.c.code, exc_t.c.fingerprint)
    if code:
        q = q.where(exc_t.c.code == code.upper())
    if isinstance(status, str):
        q = q.where(exc_t.c.status == status.lower())
    elif status is not None:
        q = q.where(exc_t.c.status.in_([x.lower() for x in status]))
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def audit_trail(store: Store, fingerprint: str) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        q = sa.select(audit_t).where(audit_t.c.fingerprint == fingerprint).order_by(audit_t.c.id)
        return [dict(r._mapping) for r in conn.execute(q)]

"""What the work queue reads: the filtered queue with its totals, one exception with its chain,
records, evidence and history. Plain SQLAlchemy Core, the same on SQLite and PostgreSQL.

Filters that SQL does not do the same on both backends (amounts are text on SQLite, subjects are
JSON) are applied in Python on the open rows, which stay few (exceptions, not records).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa

from canonical.store import Store
from reconcile.codes import CODES, SEVERITIES
from reconcile.tables import recon_exception as exc_t
from reconcile.tables import recon_exception_audit as audit_t
from reports.finance import _money, chain_detail, describe
from reports.links import SourceLinks

SORTS = ("amount", "age", "code", "severity", "owner", "status")
SEVERITY_RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}  # critical first
PAGE_SIZE = 200


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except ValueError:
        return None


def _dec(v: str | None) -> Decimal | None:
    """A finite amount, else None: NaN (which no amount compares with), sNaN and Infinity are ignored as any other
    malformed value is."""
    try:
        d = Decimal(v) if v not in (None, "") else None
    except InvalidOperation:
        return None
    return d if d is not None and d.is_finite() else None


@dataclass
class Filters:
    """The queue's filters, from the query string (unknown or malformed values are ignored)."""

    code: str = ""
    severity: str = ""
    owner: str = ""  # an owner, "unowned", or empty for all
    source: str = ""  # a source system (salesforce, tryton, stripe, bank...)
    status: str = "active"  # active (open + acknowledged) | open | acknowledged | resolved
    min_age: int | None = None  # days since first seen
    min_amount: Decimal | None = None  # in the reporting currency
    snoozed: bool = False  # include exceptions snoozed until a later date
    sort: str = "amount"
    desc: bool = True
    page: int = 1

    @classmethod
    def parse(cls, q: dict[str, str]) -> Filters:
        f = cls()
        code = (q.get("code") or "").strip().upper()
        f.code = code if code in CODES else ""
        sev = (q.get("severity") or "").strip().lower()
        f.severity = sev if sev in SEVERITIES else ""
        f.owner = (q.get("owner") or "").strip()[:400]
        f.source = (q.get("source") or "").strip()[:64]
        st = (q.get("status") or "active").strip().lower()
        f.status = st if st in ("active", "open", "acknowledged", "resolved") else "active"
        f.min_age = _int(q.get("min_age"))
        f.min_amount = _dec(q.get("min_amount"))
        f.snoozed = q.get("snoozed") in ("1", "on", "true")
        sort = (q.get("sort") or "amount").strip().lower()
        f.sort = sort if sort in SORTS else "amount"
        f.desc = q.get("dir", "desc") != "asc"
        f.page = max(_int(q.get("page")) or 1, 1)
        return f

    def query(self, **change: Any) -> dict[str, str]:
        """The filters as query parameters (with ``change`` applied), for links and hidden inputs."""
        d: dict[str, Any] = {"code": self.code, "severity": self.severity, "owner": self.owner,
                             "source": self.source, "status": self.status, "min_age": self.min_age,
                             "min_amount": self.min_amount, "snoozed": "1" if self.snoozed else "",
                             "sort": self.sort, "dir": "desc" if self.desc else "asc", "page": self.page}
        d.update(change)
        # only an unset filter is left out (and the first page): ``min_age=1`` and ``min_amount=1`` are filters
        return {k: str(v) for k, v in d.items() if v is not None and v != "" and not (k == "page" and v == 1)}


@dataclass
class Queue:
    rows: list[dict[str, Any]]
    total: int
    amount: Decimal
    reporting_currency: str | None
    unpriced: int
    by_status: dict[str, int]
    page: int
    pages: int
    codes: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    snoozed_hidden: int = 0


def _systems(subject_ids: list[str]) -> set[str]:
    return {i.split(":", 1)[0] for i in subject_ids or [] if ":" in i}


def _row(m: dict[str, Any], now: datetime) -> dict[str, Any]:
    first = m["first_seen_at"]
    return {
        "fingerprint": m["fingerprint"], "code": m["code"], "status": m["status"], "severity": m["severity"],
        "chain_id": m["chain_id"], "subject_ids": list(m["subject_ids"] or []),
        "owner": m["assignee"] or m["owner"], "assignee": m["assignee"], "derived_owner": m["owner"],
        "currency": m["currency"], "amount_at_risk": _money(m["amount_at_risk"], m["currency"]),
        "reporting_currency": m["reporting_currency"],
        "amount_reporting": _money(m["amount_reporting"], m["reporting_currency"]),
        "first_seen_at": first, "last_seen_at": m["last_seen_at"], "resolved_at": m["resolved_at"],
        "age_days": (now - first).days if first else None, "snoozed_until": m["snoozed_until"],
        "evidence": m["evidence"] or {}, "systems": sorted(_systems(m["subject_ids"])),
    }


def queue(store: Store, f: Filters, *, today: date | None = None, paginate: bool = True) -> Queue:
    now = datetime.now(UTC)
    today = today or now.date()
    q = sa.select(exc_t)
    if f.status == "active":
        q = q.where(exc_t.c.status.in_(["open", "acknowledged"]))
    else:
        q = q.where(exc_t.c.status == f.status)
    with store.engine.connect() as conn:
        all_rows = [_row(dict(r._mapping), now) for r in conn.execute(q)]
    codes = sorted({r["code"] for r in all_rows})
    owners = sorted({r["owner"] for r in all_rows if r["owner"]})
    sources = sorted({s for r in all_rows for s in r["systems"]})
    rows, hidden = [], 0
    for r in all_rows:
        if f.code and r["code"] != f.code:
            continue
        if f.severity and r["severity"] != f.severity:
            continue
        if f.owner == "unowned" and r["owner"]:
            continue
        if f.owner and f.owner != "unowned" and r["owner"] != f.owner:
            continue
        if f.source and f.source not in r["systems"]:
            continue
        if f.min_age is not None and (r["age_days"] or 0) < f.min_age:
            continue
        if f.min_amount is not None and (r["amount_reporting"] is None or r["amount_reporting"] < f.min_amount):
            continue
        if not f.snoozed and r["snoozed_until"] is not None and r["snoozed_until"] > today:
            hidden += 1
            continue
        rows.append(r)
    key = {
        "amount": lambda r: (r["amount_reporting"] is not None, r["amount_reporting"] or 0),
        "age": lambda r: r["age_days"] or 0,
        "code": lambda r: (r["code"], r["amount_reporting"] or 0),
        "severity": lambda r: (SEVERITY_RANK.get(r["severity"], 0), r["amount_reporting"] or 0),
        "owner": lambda r: (r["owner"] or "", r["amount_reporting"] or 0),
        "status": lambda r: (r["status"], r["amount_reporting"] or 0),
    }[f.sort]
    rows.sort(key=lambda r: r["fingerprint"])
    rows.sort(key=key, reverse=f.desc)
    amount = sum((r["amount_reporting"] or Decimal(0) for r in rows), Decimal(0))
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    pages = max((len(rows) + PAGE_SIZE - 1) // PAGE_SIZE, 1) if paginate else 1
    page = min(f.page, pages)
    rep = next((r["reporting_currency"] for r in rows if r["reporting_currency"]), None)
    shown = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE] if paginate else rows
    return Queue(rows=shown, total=len(rows), amount=amount,
                 reporting_currency=rep, unpriced=sum(1 for r in rows if r["amount_reporting"] is None),
                 by_status=by_status, page=page, pages=pages, codes=codes, owners=owners, sources=sources,
                 snoozed_hidden=hidden)


def filtered_ids(store: Store, f: Filters, *, today: date | None = None) -> list[str]:
    """Every fingerprint the filters select (all pages): the target of a bulk action. ``today``: the company's day
    (``Config.today``), as for the page, which decides the snoozes that are over."""
    return [r["fingerprint"] for r in queue(store, f, today=today, paginate=False).rows]


def exception(store: Store, fingerprint: str, links: SourceLinks) -> dict[str, Any] | None:
    """One exception with its chain, records (with source links), evidence and history."""
    now = datetime.now(UTC)
    with store.engine.connect() as conn:
        m = conn.execute(sa.select(exc_t).where(exc_t.c.fingerprint == fingerprint)).first()
        if m is None:
            return None
        row = _row(dict(m._mapping), now)
        chain = chain_detail(conn, row["chain_id"], links) if row["chain_id"] else None
        records = describe(conn, row["subject_ids"], links)
        history = [dict(a._mapping) for a in conn.execute(
            sa.select(audit_t).where(audit_t.c.fingerprint == fingerprint).order_by(audit_t.c.id.desc()))]
    row["records"] = [records.get(i) for i in row["subject_ids"]]
    row["chain"] = chain
    row["history"] = history
    return row

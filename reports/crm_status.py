"""The finance status each CRM deal and account should show: what the finance report shows, per record.

Built from :func:`reports.finance.build_report` (the chains of the latest reconciliation, their
status and open exceptions, nothing recomputed) plus, per chain, the date of the latest payment
applied and the days its oldest open invoice is past due (as of the reconciliation's day).

* **Deal** (one per chain whose deal comes from the CRM): ERP order numbers, invoiced, paid, open
  balance and their currency (the chain's), last payment date, days overdue, chain status, open
  exception codes and a link to the most severe open exception.
* **Account** (the roll-up over the account's chains): invoiced, paid, open in the chains' currency
  when they share one, else converted into the reporting currency at the latest dated rate on or
  before the day (no rate: the amounts are left empty and a warning says which); won deals, deals
  with exceptions, the latest payment, the worst days overdue, a status (exception > overdue > open >
  not invoiced > paid), the codes and a link to the account's most severe exception.

Links go to the most severe open exception (the account's: across its chains), from ``push_crm`` in
ltc.yaml: ``ui_base_url`` (the work queue, ``ltc ui``: ``<ui_base_url>/x/<fingerprint>``), else
``report_url`` (the published report, ``#x-<fingerprint>``), or explicit templates with
``{ui_base_url}``, ``{report_url}``, ``{fingerprint}``, ``{chain_id}``, ``{record_id}``,
``{account_id}`` (values URL-encoded).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from canonical import tables as ct
from canonical.money import minor_units
from canonical.store import Store
from connectors.crm_fields import FinanceStatus, StatusRecord
from reconcile.tables import fx_rate, recon_allocation, recon_link
from reports.finance import build_report

ZERO = Decimal(0)
SEVERITY = {"low": 0, "medium": 1, "high": 2, "critical": 3}
TEXT_LIMIT = 255


@dataclass(frozen=True)
class Links:
    """Where a CRM user goes from a deal or account to its exceptions."""

    ui_base_url: str | None = None
    report_url: str | None = None
    deal_template: str | None = None
    account_template: str | None = None

    def _template(self, explicit: str | None, ui: str, report: str) -> str | None:
        if explicit:
            return explicit
        if self.ui_base_url:
            return ui
        return report if self.report_url else None

    def deal(self, **values: str) -> str | None:
        tpl = self._template(self.deal_template, "{ui_base_url}/x/{fingerprint}", "{report_url}#x-{fingerprint}")
        return self._fill(tpl, values)

    def account(self, **values: str) -> str | None:
        tpl = self._template(self.account_template, "{ui_base_url}/x/{fingerprint}", "{report_url}#x-{fingerprint}")
        return self._fill(tpl, values)

    def _fill(self, template: str | None, values: Mapping[str, str]) -> str | None:
        if template is None:
            return None
        base = {"ui_base_url": (self.ui_base_url or "").rstrip("/"), "report_url": self.report_url or ""}
        return template.format(**base, **{k: quote(v, safe="") for k, v in values.items()})


def _clip(items: list[str], sep: str = ", ", limit: int = TEXT_LIMIT) -> str | None:
    """Join ``items``, ending with ``(+N more)`` where the text would pass ``limit``."""
    if not items:
        return None
    out: list[str] = []
    for i, item in enumerate(items):
        rest = len(items) - i
        tail = f"{sep}(+{rest} more)" if rest > 1 else ""
        if len(sep.join([*out, item])) + len(tail) > limit:
            return sep.join(out) + f"{sep}(+{rest} more)"
        out.append(item)
    return sep.join(out)


def _amount(value: Any, currency: str | None) -> Decimal | None:
    """An amount with its currency's decimals (``0`` -> ``0.00``) where that loses nothing."""
    if value is None:
        return None
    d = Decimal(value)
    try:
        q = d.quantize(Decimal(1).scaleb(-minor_units(currency))) if currency else d
    except (ValueError, ArithmeticError):
        return d
    return q if q == d else d


def _day(value: Any) -> date | None:
    if value is None:
        return None
    return value.date() if isinstance(value, datetime) else value


@dataclass
class _ChainExtras:
    last_payment: date | None = None
    days_overdue: int = 0


def _extras(conn: sa.Connection, as_of: date) -> dict[str, _ChainExtras]:
    """Per chain: the latest payment applied to its invoices and the worst days past due of an open one."""
    invoice, payment = ct.table_for("invoice"), ct.table_for("payment")
    lk, al = recon_link.c, recon_allocation.c
    chains_of: dict[str, set[str]] = defaultdict(set)
    for chain, inv in conn.execute(sa.select(lk.chain_id, lk.to_id).where(lk.chain_id.is_not(None),
                                                                          lk.to_entity == "invoice")):
        chains_of[inv].add(chain)
    paid: dict[str, Decimal] = defaultdict(lambda: ZERO)
    last: dict[str, date] = {}
    pays = sa.select(al.invoice_id, al.amount, payment.c.payment_date, payment.c.received_at).select_from(
        recon_allocation.join(payment, payment.c.id == al.payment_id, isouter=True))
    for inv, amount, pay_date, received in conn.execute(pays):
        paid[inv] += Decimal(amount)
        day = pay_date or _day(received)
        if day is not None and (inv not in last or day > last[inv]):
            last[inv] = day
    out: dict[str, _ChainExtras] = defaultdict(_ChainExtras)
    rows = conn.execute(sa.select(invoice.c.id, invoice.c.kind, invoice.c.total, invoice.c.due_date,
                                  invoice.c.status, invoice.c.currency).where(invoice.c.deleted_at.is_(None)))
    for inv_id, kind, total, due, status, currency in rows:
        chains = chains_of.get(inv_id)
        if not chains:
            continue
        residual = abs(Decimal(total or 0)) - paid.get(inv_id, ZERO)
        try:
            unit = Decimal(1).scaleb(-minor_units(currency)) if currency else Decimal("0.01")
        except ValueError:
            unit = Decimal("0.01")
        overdue = (kind != "credit_note" and status not in ("void", "draft") and due is not None and due < as_of
                   and residual >= unit)
        for chain in chains:
            ex = out[chain]
            day = last.get(inv_id)
            if day is not None and (ex.last_payment is None or day > ex.last_payment):
                ex.last_payment = day
            if overdue:
                ex.days_overdue = max(ex.days_overdue, (as_of - due).days)
    return out


class _Rates:
    """Dated FX rates (1 base = rate quote), latest on or before the day, either direction."""

    def __init__(self, conn: sa.Connection, as_of: date):
        self.best: dict[tuple[str, str], tuple[date, Decimal]] = {}
        for base, quote_ccy, day, rate in conn.execute(sa.select(fx_rate.c.base, fx_rate.c.quote, fx_rate.c.rate_date,
                                                                 fx_rate.c.rate).where(fx_rate.c.rate_date <= as_of)):
            key = (base, quote_ccy)
            if key not in self.best or day > self.best[key][0]:
                self.best[key] = (day, Decimal(rate))

    def convert(self, amount: Decimal, frm: str, to: str) -> Decimal | None:
        if frm == to:
            return amount
        if (frm, to) in self.best:
            value = amount * self.best[(frm, to)][1]
        elif (to, frm) in self.best and self.best[(to, frm)][1]:
            value = amount / self.best[(to, frm)][1]
        else:
            return None
        return value.quantize(Decimal(1).scaleb(-minor_units(to)), ROUND_HALF_EVEN)


def _top_exception(xs: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return max(xs, key=lambda x: (SEVERITY.get(x["severity"], 0), x["amount_reporting"] or ZERO, x["fingerprint"]),
               default=None)


def finance_status(store: Store, *, systems: set[str] | None = None, links: Links | None = None,
                   reporting_currency: str = "USD", as_of: date | None = None,
                   today: date | None = None) -> FinanceStatus:
    """The status of every deal in a reconciled chain and of its account, for the CRM sources ``systems``
    (None: every source), as of ``as_of`` (default: the latest reconciliation's as-of, else ``today``: the company's
    day, ``Config.today``; default the UTC day)."""
    links = links or Links()
    report = build_report(store, monthly=False)  # the months are the page's, not the CRM's
    day = as_of or report.as_of or today or datetime.now(UTC).date()
    result = FinanceStatus(as_of=day)
    deal_t, acct_t = ct.table_for("deal"), ct.table_for("account")
    chain_ids = report.chains.column("chain_id")
    with store.engine.connect() as conn:
        extras = _extras(conn, day)
        rates = _Rates(conn, day)
        deals = {r.id: r for r in _select_in(conn, deal_t, [deal_t.c.id, deal_t.c.source_system, deal_t.c.source_object,
                                                            deal_t.c.source_id], chain_ids)}
        acct_ids = sorted({a for a in report.chains.column("account") if a})
        accounts = {r.id: r for r in _select_in(conn, acct_t, [acct_t.c.id, acct_t.c.source_system,
                                                              acct_t.c.source_object, acct_t.c.source_id], acct_ids)}
    open_by_chain: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for x in report.exceptions:
        if x["chain_id"]:
            open_by_chain[x["chain_id"]].append(x)
    by_account: dict[str, list[tuple[dict[str, Any], _ChainExtras]]] = defaultdict(list)
    for chain in report.chains:
        d = deals.get(chain["chain_id"])
        if d is None or (systems is not None and d.source_system not in systems):
            continue
        ex = extras.get(chain["chain_id"], _ChainExtras())
        xs = open_by_chain.get(chain["chain_id"], [])
        top = _top_exception(xs)
        codes = sorted({x["code"] for x in xs})
        values = {
            "erp_orders": _clip(chain["orders"].split()),
            **{k: _amount(chain[c], chain["currency"]) for k, c in (("invoiced", "invoiced"), ("paid", "paid"),
                                                                    ("open_balance", "open"))},
            "currency": chain["currency"], "last_payment_date": ex.last_payment, "days_overdue": ex.days_overdue,
            "status": chain["status"], "exception_codes": _clip(codes),
            "exception_link": None if top is None else links.deal(
                fingerprint=top["fingerprint"], chain_id=chain["chain_id"], record_id=d.source_id,
                account_id=chain["account"] or ""),
        }
        result.records.append(StatusRecord("deal", d.id, d.source_system, d.source_object, d.source_id,
                                           chain["currency"], values))
        acct = accounts.get(chain["account"]) if chain["account"] else None
        if acct is not None and acct.source_system == d.source_system:
            by_account[acct.id].append((chain, ex))
    for acct_id, members in sorted(by_account.items()):
        a = accounts[acct_id]
        values, currency, warning = _rollup(members, open_by_chain, rates, reporting_currency)
        if warning:
            result.warnings.append(f"account {a.source_id}: {warning}")
        top = _top_exception(x for c, _ in members for x in open_by_chain.get(c["chain_id"], []))
        values["exception_link"] = None if top is None else links.account(
            fingerprint=top["fingerprint"], chain_id=top["chain_id"], record_id=a.source_id, account_id=a.source_id)
        result.records.append(StatusRecord("account", a.id, a.source_system, a.source_object, a.source_id,
                                           currency, values))
    return result


def _rollup(members: list[tuple[dict[str, Any], _ChainExtras]], open_by_chain: Mapping[str, list[dict[str, Any]]],
            rates: _Rates, reporting_currency: str) -> tuple[dict[str, Any], str | None, str | None]:
    currencies = {c["currency"] for c, _ in members if c["currency"]}
    currency = next(iter(currencies)) if len(currencies) == 1 else reporting_currency
    sums: dict[str, Decimal | None] = {"invoiced": ZERO, "paid": ZERO, "open": ZERO}
    missing: set[str] = set()
    for chain, _ in members:
        for key in sums:
            if sums[key] is None:
                continue
            value = rates.convert(chain[key] or ZERO, chain["currency"] or currency, currency)
            if value is None:
                missing.add(chain["currency"])
                sums[key] = None
            else:
                sums[key] = sums[key] + value  # type: ignore[operator]
    codes = sorted({x["code"] for c, _ in members for x in open_by_chain.get(c["chain_id"], [])})
    overdue = max(ex.days_overdue for _, ex in members)
    statuses = {c["status"] for c, _ in members}
    if codes:
        status = "exception"
    elif overdue > 0:
        status = "overdue"
    elif (sums["open"] or ZERO) > 0 or "partly paid" in statuses or "invoiced, unpaid" in statuses:
        status = "open"
    elif statuses & {"won, not ordered", "ordered, not invoiced"}:
        status = "not invoiced"
    else:
        status = "paid"
    payments = [ex.last_payment for _, ex in members if ex.last_payment is not None]
    values = {
        **{k: _amount(sums[c], currency) for k, c in (("invoiced", "invoiced"), ("paid", "paid"),
                                                       ("open_balance", "open"))}, "currency": currency,
        "last_payment_date": max(payments) if payments else None, "days_overdue": overdue, "status": status,
        "exception_codes": _clip(codes),
        "won_deals": sum(1 for c, _ in members if c["stage"] == "closed_won"),
        "deals_with_exceptions": sum(1 for c, _ in members if open_by_chain.get(c["chain_id"])),
    }
    warning = (f"no FX rate from {', '.join(sorted(missing))} to {currency} on or before the day; the roll-up "
               "amounts are left empty") if missing else None
    return values, currency, warning


def _select_in(conn: sa.Connection, table: sa.Table, cols: list[Any], ids: list[str]) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(ids), 500):
        out.extend(conn.execute(sa.select(*cols).where(table.c.id.in_(ids[i:i + 500]))))
    return out

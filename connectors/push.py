"""Push closed-won CRM deals into the configured ERP as customer + sales order, idempotently.

The ERP side is a small protocol, :class:`ErpTarget`, so Tryton and Odoo plug in the same way
(a connector module ``connectors.<kind>`` exposes ``make_erp_target(name, source_config)``).

Rules, for every candidate deal (closed-won, live, with no ERP order in the store or changed since
its order was last synced):

* the ERP sale carries the CRM deal id (the deal's ``source_id``) as its reference; the push first
  looks it up there, so a re-push never duplicates;
* not found -> find or create the customer (by the CRM account reference), create the sale and,
  unless the ERP source says ``options.confirm_orders: false``, quote and confirm it;
* found and identical (currency, and per line product code, quantity and unit price) -> nothing;
* found, different, still editable (draft/quotation) -> the sale is updated (then confirmed);
* found, different, already confirmed -> a :class:`PushConflict` is reported for an operator; the
  sale is left alone.

A deal that cannot be pushed (no lines and no amount, unknown currency, ERP refusal) is reported
with its reason and the run goes on. ``dry_run`` only reads the ERP.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal, Protocol

import sqlalchemy as sa

from canonical import tables
from canonical.errors import ConfigError, LtcError
from canonical.money import Money, sum_money
from canonical.store import Store

DEFAULT_PRODUCT_CODE = "CRM-DEAL"


class PushError(LtcError):
    """A deal could not be pushed; the message says why."""


class PushConflict(PushError):
    """The deal changed after its ERP sale was confirmed: an operator must reconcile them."""

    def __init__(self, deal_ref: str, sale_number: str | None, state: str, differences: Sequence[str]) -> None:
        self.deal_ref = deal_ref
        self.sale_number = sale_number
        self.state = state
        self.differences = list(differences)
        super().__init__(
            f"deal {deal_ref} changed after ERP sale {sale_number or '?'} was {state}: "
            + "; ".join(differences)
        )


def _norm(value: Decimal) -> Decimal:
    """``10.00`` and ``10`` compare and print the same (``normalize`` alone would give ``1E+1``)."""
    n = value.normalize()
    return n.quantize(Decimal(1)) if n.as_tuple().exponent > 0 else n  # type: ignore[operator]


# --- what is pushed -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushAccount:
    """The customer, identified in the ERP by ``reference`` (the CRM account id)."""

    reference: str
    name: str
    email: str | None = None
    tax_id: str | None = None
    country: str | None = None


@dataclass(frozen=True, slots=True)
class PushLine:
    product_code: str
    product_name: str
    quantity: Decimal
    unit_price: Decimal  # net of discount, in the order's currency

    def key(self) -> tuple[str, Decimal, Decimal]:
        return (self.product_code, _norm(self.quantity), _norm(self.unit_price))


@dataclass(frozen=True, slots=True)
class PushOrder:
    """A closed-won deal as the ERP should receive it."""

    deal_id: str  # canonical id
    reference: str  # the CRM deal id, stored on the ERP sale
    name: str
    account: PushAccount
    currency: str
    order_date: date | None
    lines: tuple[PushLine, ...]

    @property
    def total(self) -> Money:
        return sum_money([Money.of(ln.quantity * ln.unit_price, self.currency) for ln in self.lines],
                         self.currency)

    def line_keys(self) -> list[tuple[str, Decimal, Decimal]]:
        return sorted(ln.key() for ln in self.lines)


@dataclass(frozen=True, slots=True)
class ErpSaleLine:
    product_code: str | None
    quantity: Decimal
    unit_price: Decimal

    def key(self) -> tuple[str, Decimal, Decimal]:
        return (self.product_code or "", _norm(self.quantity), _norm(self.unit_price))


@dataclass(frozen=True, slots=True)
class ErpSale:
    """A sales order as an ERP target reports it."""

    id: int | str
    reference: str | None
    number: str | None
    state: str
    editable: bool  # lines may still change (draft / quotation)
    confirmed: bool  # confirmed or further along (processing, done)
    currency: str
    lines: tuple[ErpSaleLine, ...]
    untaxed: Money | None = None
    total: Money | None = None
    party_id: int | str | None = None

    def line_keys(self) -> list[tuple[str, Decimal, Decimal]]:
        return sorted(ln.key() for ln in self.lines)


def differences(order: PushOrder, sale: ErpSale) -> list[str]:
    """What differs between a deal and its ERP sale (empty: nothing to do)."""
    diffs = []
    if order.currency != sale.currency:
        diffs.append(f"currency {sale.currency} -> {order.currency}")
    old, new = sale.line_keys(), order.line_keys()
    if old != new:
        removed = [k for k in old if k not in new]
        added = [k for k in new if k not in old]
        fmt = lambda k: f"{k[0]} x{k[1]} @ {k[2]}"  # noqa: E731
        if removed:
            diffs.append("ERP lines not in deal: " + ", ".join(fmt(k) for k in removed))
        if added:
            diffs.append("deal lines not in ERP: " + ", ".join(fmt(k) for k in added))
    return diffs


class ErpTarget(Protocol):
    """What the push needs from an ERP. Implementations raise :class:`PushError` (or an
    ``LtcError``) with a clear message when the ERP refuses something."""

    name: str

    def find_sale_by_reference(self, reference: str) -> ErpSale | None: ...

    def upsert_party(self, account: PushAccount) -> int | str: ...

    def create_sale(self, order: PushOrder, party_id: int | str) -> ErpSale: ...

    def update_draft_sale(self, sale: ErpSale, order: PushOrder, party_id: int | str) -> ErpSale: ...

    def confirm(self, sale: ErpSale) -> ErpSale: ...


# --- the report ---------------------------------------------------------------------------------

Action = Literal["create", "update", "confirm", "unchanged", "conflict", "error"]


@dataclass(slots=True)
class PushResult:
    deal_id: str
    reference: str
    deal_name: str
    action: Action
    amount: Money
    sale_number: str | None = None
    sale_state: str | None = None
    done: bool = False  # False in a dry run (or when the action failed)
    message: str | None = None
    error: LtcError | None = None


@dataclass(slots=True)
class PushReport:
    erp: str
    dry_run: bool
    results: list[PushResult] = field(default_factory=list)

    def by_action(self, action: Action) -> list[PushResult]:
        return [r for r in self.results if r.action == action]

    @property
    def conflicts(self) -> list[PushConflict]:
        return [r.error for r in self.results if isinstance(r.error, PushConflict)]

    @property
    def failed(self) -> list[PushResult]:
        return [r for r in self.results if r.action in ("conflict", "error")]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.results:
            out[r.action] += 1
        return dict(out)

    def totals(self, action: Action) -> dict[str, Money]:
        """Amount per currency of the deals with this action."""
        out: dict[str, Money] = {}
        for r in self.by_action(action):
            cur = r.amount.currency
            out[cur] = out.get(cur, Money.zero(cur)) + r.amount
        return out


# --- selecting deals from the canonical store ---------------------------------------------------


def _exact_price(amount: Decimal, quantity: Decimal) -> Decimal | None:
    """``amount / quantity`` if it is exact to 4 decimals (Tryton's price digits), else None."""
    price = amount / quantity
    return price if price == price.quantize(Decimal("0.0001")) else None


def _line_from_row(row: Any, currency: str) -> PushLine:
    qty = row.quantity if row.quantity is not None else Decimal(1)
    if qty == 0:
        raise PushError(f"deal line {row.id} has quantity 0")
    price: Decimal | None
    if row.amount is not None and (row.unit_price is None or row.amount != qty * row.unit_price):
        price = _exact_price(row.amount, qty)
        if price is None:
            raise PushError(
                f"deal line {row.id}: amount {row.amount} {currency} over quantity {qty} is not an exact unit price"
            )
    elif row.unit_price is not None:
        price = row.unit_price
    else:
        raise PushError(f"deal line {row.id} has neither unit price nor amount")
    code = (row.product_code or "").strip() or DEFAULT_PRODUCT_CODE
    name = row.product_name or code
    return PushLine(product_code=code, product_name=name, quantity=qty, unit_price=price)


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def select_deals(store: Store, erp_system: str, *, deal_ids: Sequence[str] | None = None
                 ) -> tuple[list[PushOrder], list[PushResult]]:
    """Closed-won deals to push, and those that cannot be pushed (as ``error`` results).

    A candidate has no live order from ``erp_system`` with its reference, or was updated in the CRM
    after that order was last synced (it may need an update, or be a conflict).
    """
    deal, line, acct = tables.table_for("deal"), tables.table_for("deal_line"), tables.table_for("account")
    order = tables.table_for("order")
    live_order_of_deal = sa.and_(
        order.c.source_system == erp_system, order.c.deal_ref == deal.c.source_id, order.c.deleted_at.is_(None),
        sa.or_(order.c.state.is_(None), order.c.state != "cancelled"),
    )
    last_order = sa.select(sa.func.max(order.c.source_updated_at)).where(live_order_of_deal).scalar_subquery()
    has_order = sa.exists().where(live_order_of_deal)
    q = (
        sa.select(deal, acct.c.source_id.label("acct_ref"), acct.c.name.label("acct_name"),
                  acct.c.email.label("acct_email"), acct.c.tax_id.label("acct_tax_id"),
                  acct.c.country.label("acct_country"))
        .select_from(deal.outerjoin(acct, acct.c.id == deal.c.account_id))
        .where(deal.c.stage == "closed_won", deal.c.deleted_at.is_(None))
        .where(sa.or_(~has_order, deal.c.source_updated_at > last_order))
        .order_by(deal.c.close_date, deal.c.id)
    )
    if deal_ids is not None:
        q = q.where(deal.c.id.in_(list(deal_ids)))
    orders: list[PushOrder] = []
    rejected: list[PushResult] = []
    with store.engine.connect() as conn:
        deals = list(conn.execute(q))
        lines_by_deal: dict[str, list[Any]] = defaultdict(list)
        for chunk in _chunks([d.id for d in deals]):
            for row in conn.execute(
                sa.select(line).where(line.c.deal_id.in_(list(chunk)), line.c.deleted_at.is_(None))
                .order_by(line.c.deal_id, line.c.id)
            ):
                lines_by_deal[row.deal_id].append(row)
    for d in deals:
        currency = d.currency or "USD"
        amount = Money.of(d.amount if d.amount is not None else Decimal(0), currency)
        try:
            orders.append(_order_from(d, lines_by_deal.get(d.id, []), currency, amount))
        except LtcError as exc:
            rejected.append(PushResult(d.id, d.source_id, d.name or d.source_id, "error", amount,
                                       message=str(exc), error=exc))
    return orders, rejected


def _order_from(d: Any, rows: list[Any], currency: str, amount: Money) -> PushOrder:
    if d.currency is None:
        raise PushError(f"deal {d.source_id} has no currency")
    if d.account_id is None or d.acct_ref is None:
        raise PushError(f"deal {d.source_id} has no (synced) account; the ERP needs a customer")
    lines = tuple(_line_from_row(r, currency) for r in rows)
    if not lines:
        if not amount:
            raise PushError(f"deal {d.source_id} has no lines and no amount")
        lines = (PushLine(DEFAULT_PRODUCT_CODE, d.name or "CRM deal", Decimal(1), amount.amount),)
    return PushOrder(
        deal_id=d.id, reference=d.source_id, name=d.name or d.source_id,
        account=PushAccount(reference=d.acct_ref, name=d.acct_name or d.acct_ref, email=d.acct_email,
                            tax_id=d.acct_tax_id, country=d.acct_country),
        currency=currency, order_date=d.close_date, lines=lines,
    )


# --- the push -----------------------------------------------------------------------------------


def push_order(target: ErpTarget, order: PushOrder, *, dry_run: bool = False, confirm: bool = True) -> PushResult:
    """Push one deal; every ERP refusal becomes an ``error`` result, a late change a ``conflict``."""
    result = PushResult(order.deal_id, order.reference, order.name, "create", order.total)
    try:
        sale = target.find_sale_by_reference(order.reference)
        if sale is None:
            if not dry_run:
                party = target.upsert_party(order.account)
                sale = target.create_sale(order, party)
                if confirm:
                    sale = target.confirm(sale)
                result.done = True
        else:
            result.sale_number, result.sale_state = sale.number, sale.state
            diffs = differences(order, sale)
            if not diffs:
                result.action = "confirm" if (confirm and not sale.confirmed and sale.state != "cancelled") else "unchanged"
                if result.action == "confirm" and not dry_run:
                    sale = target.confirm(sale)
                    result.done = True
            elif sale.editable:
                result.action, result.message = "update", "; ".join(diffs)
                if not dry_run:
                    party = target.upsert_party(order.account)
                    sale = target.update_draft_sale(sale, order, party)
                    if confirm:
                        sale = target.confirm(sale)
                    result.done = True
            else:
                raise PushConflict(order.reference, sale.number, sale.state, diffs)
        if sale is not None:
            result.sale_number, result.sale_state = sale.number, sale.state
    except PushConflict as exc:
        result.action, result.message, result.error = "conflict", str(exc), exc
    except LtcError as exc:
        result.action, result.message, result.error, result.done = "error", str(exc), exc, False
    return result


def push_orders(store: Store, target: ErpTarget, *, dry_run: bool = False, confirm: bool = True,
                deal_ids: Sequence[str] | None = None) -> PushReport:
    """Push every candidate deal (see module doc) and record the run in the store."""
    orders, rejected = select_deals(store, target.name, deal_ids=deal_ids)
    report = PushReport(erp=target.name, dry_run=dry_run, results=list(rejected))
    run_id = None if dry_run else store.begin_run("push", target.name)
    status = "failed"
    try:
        for order in orders:
            report.results.append(push_order(target, order, dry_run=dry_run, confirm=confirm))
        status = "success" if not report.failed else "partial"
    finally:
        if run_id is not None:
            store.finish_run(run_id, status, report.counts(),
                             message="; ".join(r.message or "" for r in report.failed)[:2000] or None)
    return report


TargetFactory = Callable[[str, Any], ErpTarget]


def make_target(config: Any) -> tuple[ErpTarget, bool]:
    """The ERP target named by ``erp.source`` in ltc.yaml, and whether to confirm orders."""
    if config.erp is None:
        raise ConfigError("no ERP configured: add `erp: {source: <name of a tryton or odoo source>}` to ltc.yaml")
    name = config.erp.source
    source = config.sources[name]
    try:
        module = importlib.import_module(f"connectors.{source.kind}")
        factory: TargetFactory = module.make_erp_target
    except (ImportError, AttributeError):
        raise ConfigError(f"erp.source {name!r}: pushing orders to {source.kind} is not supported yet") from None
    confirm = bool(source.options.get("confirm_orders", True))
    return factory(name, source), confirm

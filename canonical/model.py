"""The canonical Lead-to-Cash model.

Every entity carries where it came from (``source_system``, ``source_object``, ``source_id``,
``source_updated_at``), a tombstone (``deleted_at``), its lineage (``raw_id``: the raw landing row it
was mapped from; further contributors are in the ``lineage`` table) and ``attributes`` for custom
fields added by mapping configuration.

Money fields are :class:`~canonical.money.Money`; each entity holds one ``currency`` and every money
field on it must be in that currency (checked by :func:`to_row`). A date stays a ``date``; an
instant is a timezone-aware UTC ``datetime``.

Canonical ids are deterministic: ``<system>:<entity>:<source id>``. Mapping can therefore compute a
foreign key (a deal's account) without a lookup, and re-mapping yields the same ids.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from canonical.money import Money

DEAL_STAGES = ("prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost")
INVOICE_STATUSES = ("draft", "open", "paid", "void", "uncollectible")
INVOICE_KINDS = ("invoice", "credit_note")
PAYMENT_KINDS = ("payment", "refund")
ORDER_STATES = ("draft", "quotation", "confirmed", "processing", "done", "cancelled")
QUOTE_STATUSES = ("draft", "sent", "accepted", "rejected", "expired")
CONTRACT_STATUSES = ("draft", "in_approval", "activated", "expired", "terminated", "cancelled")
DELIVERY_STATES = ("draft", "waiting", "ready", "shipped", "delivered", "cancelled")


def canonical_id(system: str, entity: str, source_id: str) -> str:
    """The stable id of a canonical row: ``salesforce:deal:006xx``."""
    return f"{system}:{entity}:{source_id}"


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive datetimes are refused (their zone is unknown)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"instant {value.isoformat()} has no timezone; refusing to guess")
    return value.astimezone(UTC)


@dataclass(kw_only=True)
class Entity:
    """Fields every canonical entity has."""

    ENTITY: ClassVar[str] = ""
    id: str
    source_system: str
    source_object: str
    source_id: str
    source_updated_at: datetime | None = None
    deleted_at: datetime | None = None
    raw_id: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Account(Entity):
    ENTITY: ClassVar[str] = "account"
    name: str
    normalized_name: str | None = None
    domain: str | None = None
    email: str | None = None
    tax_id: str | None = None
    country: str | None = None
    currency: str | None = None
    owner: str | None = None


@dataclass(kw_only=True)
class Contact(Entity):
    ENTITY: ClassVar[str] = "contact"
    account_id: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None


@dataclass(kw_only=True)
class Lead(Entity):
    ENTITY: ClassVar[str] = "lead"
    name: str | None = None
    company: str | None = None
    email: str | None = None
    status: str | None = None
    lead_source: str | None = None
    created_at: datetime | None = None
    converted_at: datetime | None = None
    converted_account_id: str | None = None
    converted_deal_id: str | None = None
    owner: str | None = None


@dataclass(kw_only=True)
class Deal(Entity):
    ENTITY: ClassVar[str] = "deal"
    account_id: str | None = None
    name: str | None = None
    stage: str | None = None
    source_stage: str | None = None
    pipeline: str | None = None
    currency: str | None = None
    amount: Money | None = None
    close_date: date | None = None
    created_at: datetime | None = None
    owner: str | None = None
    # the ERP order number the CRM keeps on the deal (a custom field): links the order from the deal's side
    order_ref: str | None = None


@dataclass(kw_only=True)
class DealLine(Entity):
    ENTITY: ClassVar[str] = "deal_line"
    deal_id: str | None = None
    product_code: str | None = None
    product_name: str | None = None
    quantity: Decimal | None = None
    currency: str | None = None
    unit_price: Money | None = None
    discount: Money | None = None
    amount: Money | None = None


@dataclass(kw_only=True)
class Quote(Entity):
    """A priced offer for a deal (``status`` one of :data:`QUOTE_STATUSES`)."""

    ENTITY: ClassVar[str] = "quote"
    number: str | None = None
    name: str | None = None
    account_id: str | None = None
    deal_id: str | None = None
    deal_ref: str | None = None
    status: str | None = None
    source_status: str | None = None
    quote_date: date | None = None
    valid_until: date | None = None
    currency: str | None = None
    untaxed: Money | None = None
    tax: Money | None = None
    total: Money | None = None
    owner: str | None = None


@dataclass(kw_only=True)
class QuoteLine(Entity):
    ENTITY: ClassVar[str] = "quote_line"
    quote_id: str | None = None
    product_code: str | None = None
    product_name: str | None = None
    quantity: Decimal | None = None
    currency: str | None = None
    unit_price: Money | None = None
    discount: Money | None = None
    amount: Money | None = None


@dataclass(kw_only=True)
class Contract(Entity):
    """A signed agreement (``status`` one of :data:`CONTRACT_STATUSES`); ``value`` is its contracted total."""

    ENTITY: ClassVar[str] = "contract"
    number: str | None = None
    account_id: str | None = None
    deal_id: str | None = None
    deal_ref: str | None = None
    status: str | None = None
    source_status: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    signed_date: date | None = None
    currency: str | None = None
    value: Money | None = None
    owner: str | None = None


@dataclass(kw_only=True)
class Order(Entity):
    ENTITY: ClassVar[str] = "order"
    number: str | None = None
    account_id: str | None = None
    deal_ref: str | None = None
    order_date: date | None = None
    state: str | None = None
    currency: str | None = None
    untaxed: Money | None = None
    tax: Money | None = None
    total: Money | None = None
    ref_text: str | None = None  # free text that may name a deal (description, origin, notes): see reconcile.discovery


@dataclass(kw_only=True)
class OrderLine(Entity):
    ENTITY: ClassVar[str] = "order_line"
    order_id: str | None = None
    product_code: str | None = None
    product_name: str | None = None
    quantity: Decimal | None = None
    currency: str | None = None
    unit_price: Money | None = None
    amount: Money | None = None


@dataclass(kw_only=True)
class Delivery(Entity):
    """An outgoing shipment of an order (``state`` one of :data:`DELIVERY_STATES`).

    ``order_id`` is the canonical order when the source names it; ``order_ref`` the order's number."""

    ENTITY: ClassVar[str] = "delivery"
    number: str | None = None
    account_id: str | None = None
    order_id: str | None = None
    order_ref: str | None = None
    state: str | None = None
    source_state: str | None = None
    planned_date: date | None = None
    shipped_date: date | None = None
    delivered_date: date | None = None


@dataclass(kw_only=True)
class DeliveryLine(Entity):
    ENTITY: ClassVar[str] = "delivery_line"
    delivery_id: str | None = None
    order_line_id: str | None = None
    product_code: str | None = None
    product_name: str | None = None
    quantity: Decimal | None = None
    state: str | None = None


@dataclass(kw_only=True)
class Invoice(Entity):
    ENTITY: ClassVar[str] = "invoice"
    number: str | None = None
    kind: str = "invoice"
    account_id: str | None = None
    order_ref: str | None = None
    deal_ref: str | None = None
    issue_date: date | None = None
    due_date: date | None = None
    status: str | None = None
    currency: str | None = None
    untaxed: Money | None = None
    tax: Money | None = None
    total: Money | None = None
    amount_paid: Money | None = None
    amount_due: Money | None = None
    ref_text: str | None = None  # metadata values, memo, description, origin: see reconcile.discovery


@dataclass(kw_only=True)
class InvoiceLine(Entity):
    ENTITY: ClassVar[str] = "invoice_line"
    invoice_id: str | None = None
    product_code: str | None = None
    product_name: str | None = None
    quantity: Decimal | None = None
    currency: str | None = None
    unit_price: Money | None = None
    amount: Money | None = None


@dataclass(kw_only=True)
class Payment(Entity):
    ENTITY: ClassVar[str] = "payment"
    kind: str = "payment"
    account_id: str | None = None
    currency: str | None = None
    amount: Money | None = None
    fee: Money | None = None
    payment_date: date | None = None
    received_at: datetime | None = None
    payer_name: str | None = None
    payer_reference: str | None = None
    remittance: str | None = None
    reference: str | None = None
    invoice_ref: str | None = None
    deal_ref: str | None = None
    settlement_ref: str | None = None
    status: str | None = None
    ref_text: str | None = None  # metadata values, description, end-to-end id: see reconcile.discovery


@dataclass(kw_only=True)
class CrossRef:
    """One member of an identity cluster: ``member_id`` is the same real-world thing as ``cluster_id``."""

    ENTITY: ClassVar[str] = "cross_ref"
    entity: str
    cluster_id: str
    member_id: str
    method: str
    confidence: Decimal
    evidence: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


ENTITIES: dict[str, type[Entity]] = {
    cls.ENTITY: cls
    for cls in (Account, Contact, Lead, Deal, DealLine, Quote, QuoteLine, Contract, Order, OrderLine, Delivery,
                DeliveryLine, Invoice, InvoiceLine, Payment)
}


def field_types(cls: type[Entity]) -> dict[str, Any]:
    """Field name -> resolved type (``X | None`` unwrapped to ``X``): a new dict, each class's resolved once."""
    known = _FIELD_TYPES.get(cls)
    if known is None:
        known = _FIELD_TYPES[cls] = _field_types(cls)
    return dict(known)


_FIELD_TYPES: dict[type[Entity], dict[str, Any]] = {}


def _field_types(cls: type[Entity]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
            tp = args[0]
        out[f.name] = tp
    return out


def money_fields(cls: type[Entity]) -> tuple[str, ...]:
    return tuple(name for name, tp in field_types(cls).items() if tp is Money)


def to_row(entity: Entity) -> dict[str, Any]:
    """Flatten an entity to a table row: money -> Decimal, currency checked against ``currency``."""
    row: dict[str, Any] = {}
    currency = getattr(entity, "currency", None)
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        if isinstance(value, Money):
            if currency is None:
                currency = value.currency
                row["currency"] = currency
            elif value.currency != currency:
                raise ValueError(
                    f"{entity.ENTITY} {entity.id}: {f.name} is in {value.currency}, entity is in {currency}"
                )
            value = value.amount
        row[f.name] = value
    if currency is not None:
        row["currency"] = currency
    return row


def from_row(cls: type[Entity], row: typing.Mapping[str, Any]) -> Entity:
    """Build an entity from a table row (the inverse of :func:`to_row`)."""
    names = {f.name for f in dataclasses.fields(cls)}
    monies = set(money_fields(cls))
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in row:
            continue
        value = row[name]
        if name in monies and value is not None:
            value = Money(Decimal(value), row["currency"])
        kwargs[name] = value
    return cls(**kwargs)

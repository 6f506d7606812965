"""The company behind a generated world: customers, deals, orders, invoices, payments, and how this
company happens to keep its references (its *conventions*, drawn from the seed).

Written from the vendors' documented shapes (docs/world.md, tests/worlds/) and from the failures
listed in issue 11, not from the reconciliation engine: nothing here knows which fields the shipped
mappings read.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

# Where a company keeps the CRM deal id / the ERP order number on a Stripe invoice (metadata keys are
# free-form in Stripe, every company picks its own).
STRIPE_DEAL_KEYS = ("crm_opportunity", "sf_id", "opportunity", "hubspot_deal", "deal", "crm_ref", "oppty_id")
STRIPE_ORDER_KEYS = ("erp_so", "order_ref", "sales_order", "so_number", "erp_order", "po_internal", "auftrag")
STRIPE_CUSTOMER_KEYS = ("crm_account", "sf_account", "hubspot_company", "account_ref", "customer_no")
# Where a Stripe invoice names the ERP order when it is not in metadata.
STRIPE_ORDER_PLACES = ("metadata", "description", "footer", "custom_fields")
# Salesforce custom fields / HubSpot custom properties for the customer's tax id.
SF_TAX_FIELDS = ("VAT_Number__c", "Tax_ID__c", "USt_IdNr__c", "Company_Tax_Number__c", "Registration_No__c")
HS_TAX_PROPS = ("vat_number", "tax_id", "company_vat", "steuernummer", "uscc_code")
# Where the CRM keeps the ERP order number (if it does).
SF_ORDER_FIELDS = ("ERP_Order__c", "Sales_Order_No__c", "Order_Number__c", "SAP_Order__c")
HS_ORDER_PROPS = ("erp_order", "sales_order_number", "so_ref", "order_no")
# Zoho CRM custom fields (API names, no suffix) for the tax id and the ERP order number.
ZOHO_TAX_FIELDS = ("VAT_Number", "Tax_ID", "GSTIN", "USt_IdNr", "Company_Reg_No")
ZOHO_ORDER_FIELDS = ("ERP_Order", "Sales_Order_No", "SAP_Order_Number")
# Jiandaoyun (简道云): forms are built by the company, so these are widget *labels*.
JDY_TAX_LABELS = ("统一社会信用代码", "税号", "纳税人识别号", "信用代码")
JDY_ORDER_LABELS = ("ERP订单号", "销售订单号", "订单编号", "U8订单号")
# Where the ERP order names the CRM deal.
ERP_DEAL_PLACES = ("reference", "description", "crm_side_only")
# How customers write remittance information on a bank transfer.
REMITTANCE_STYLES = ("exact", "prefix", "digits", "order", "batch", "e2e", "structured", "noisy", "none")


@dataclass(frozen=True)
class Conventions:
    """How this company keeps references; every field is drawn from the seed."""

    crm: str  # salesforce | hubspot | zoho | jiandaoyun (only when asked for: draw(seed, crm=...))
    erp: str  # tryton | odoo
    reporting_currency: str
    stripe_share: float  # share of chains billed through Stripe (the rest: ERP invoice + bank transfer)
    stripe_deal_key: str
    stripe_order_key: str
    stripe_order_place: str
    stripe_customer_key: str
    crm_tax_field: str
    crm_order_field: str | None  # CRM custom field with the ERP order number (None: not kept)
    erp_deal_place: str
    erp_crm_id_on_party: bool  # ERP party carries the CRM account id (Tryton identifier / Odoo ref)
    invoice_prefix: str  # ERP invoice numbering
    order_prefix: str
    remittance: tuple[str, ...]  # styles this company's customers use, most common first
    fx_share: float  # share of foreign-currency invoices paid into the home-currency account
    fee_share: float  # share of transfers that arrive with the sender's bank charges deducted
    cash: str = "bank"  # where customer cash is seen: bank (camt.053) | erp (payments booked on invoices)
    ships: bool = False  # goods leave by ERP shipments (Tryton stock.shipment.out / Odoo stock.picking) the hub syncs

    @classmethod
    def draw(cls, seed: int, crm: str | None = None) -> Conventions:
        """The seed's conventions; ``crm`` replaces the drawn CRM (and its field names) and nothing else,
        so a seed's world stays the same company on another CRM."""
        drawn = cls._draw(seed)
        if crm is None or crm == drawn.crm:
            return drawn
        fields = {"salesforce": (SF_TAX_FIELDS, SF_ORDER_FIELDS), "hubspot": (HS_TAX_PROPS, HS_ORDER_PROPS),
                  "zoho": (ZOHO_TAX_FIELDS, ZOHO_ORDER_FIELDS), "jiandaoyun": (JDY_TAX_LABELS, JDY_ORDER_LABELS)}
        if crm not in fields:
            raise ValueError(f"crm must be one of {', '.join(fields)}, not {crm!r}")
        r = random.Random(f"conventions:{seed}:{crm}")
        tax, order = fields[crm]
        from dataclasses import replace

        return replace(drawn, crm=crm, crm_tax_field=r.choice(tax),
                       crm_order_field=r.choice((*order, None)) if drawn.crm_order_field else None)

    @classmethod
    def _draw(cls, seed: int) -> Conventions:
        r = random.Random(f"conventions:{seed}")
        crm = r.choice(("salesforce", "hubspot"))
        erp = r.choice(("tryton", "odoo"))
        styles = list(REMITTANCE_STYLES)
        r.shuffle(styles)
        kw = dict(
            crm=crm, erp=erp,
            reporting_currency=r.choice(("EUR", "USD")),
            stripe_share=r.choice((0.0, 0.2, 0.35, 0.5)),
            stripe_deal_key=r.choice(STRIPE_DEAL_KEYS),
            stripe_order_key=r.choice(STRIPE_ORDER_KEYS),
            stripe_order_place=r.choice(STRIPE_ORDER_PLACES),
            stripe_customer_key=r.choice(STRIPE_CUSTOMER_KEYS),
            crm_tax_field=r.choice(SF_TAX_FIELDS if crm == "salesforce" else HS_TAX_PROPS),
            crm_order_field=r.choice((*(SF_ORDER_FIELDS if crm == "salesforce" else HS_ORDER_PROPS), None)),
            erp_deal_place=r.choice(ERP_DEAL_PLACES),
            erp_crm_id_on_party=r.random() < 0.5,
            invoice_prefix=r.choice(("INV-2026-", "RE2026", "F", "", "AR-")) if erp == "tryton" else "INV/2026/",
            order_prefix=r.choice(("SO-", "SO", "AB-", "ORD")) if erp == "tryton" else "S",
            remittance=tuple(styles[: r.randint(3, 6)]),
            fx_share=r.choice((0.0, 0.3, 0.6)),
            fee_share=r.choice((0.0, 0.1, 0.25)),
        )
        cash = "erp" if r.random() < 0.3 else "bank"
        kw["ships"] = random.Random(f"conventions-ships:{seed}").random() < 0.6  # drawn apart, like the CRM below
        # some companies sell in Zoho CRM (drawn apart, so the other conventions of a seed stay as they were)
        z = random.Random(f"conventions-zoho:{seed}")
        if z.random() < 0.3:
            kw.update(crm="zoho", crm_tax_field=z.choice(ZOHO_TAX_FIELDS),
                      crm_order_field=z.choice((*ZOHO_ORDER_FIELDS, None)))
        return cls(**kw, cash=cash)  # type: ignore[arg-type]


@dataclass
class Customer:
    key: int
    name: str  # the legal name the ERP and the bank use
    crm_name: str  # how sales typed it into the CRM
    country: str
    domain: str
    tax_id: str
    currency: str
    crm_tax_id: str | None  # what the CRM custom field says (None: field empty)
    payer_name: str  # debtor name on bank transfers
    iban: str
    crm_id: str = ""
    erp_id: int = 0
    stripe_id: str = ""


@dataclass
class Deal:
    crm_id: str
    customer: Customer
    name: str
    stage: str  # won | lost | open
    amount: Decimal
    currency: str
    close_date: date
    order_number_on_crm: str | None = None


@dataclass
class Order:
    erp_id: int
    number: str
    customer: Customer
    deal: Deal | None
    order_date: date
    currency: str
    total: Decimal
    deal_ref: str | None  # the deal id as written on the order (None: not written)
    customer_po: str
    billing: str  # erp | stripe
    line_id: int = 0
    product: str = "SVC"
    ship_plan: str = "auto"  # auto (as the warehouse does it) | shipped (on ``shipped``) | none (never shipped)
    shipped: date | None = None  # the day the goods went out (None: not yet)


@dataclass
class Invoice:
    system: str  # the ERP's name or "stripe"
    ident: str  # source id (Tryton/Odoo integer as text, Stripe in_…)
    number: str
    customer: Customer
    order: Order | None
    invoice_date: date
    due_date: date
    currency: str
    total: Decimal
    paid: Decimal = Decimal(0)
    line_ids: list[int] = field(default_factory=list)
    memo: str | None = None  # free text a person typed (Stripe description / ERP description)


@dataclass
class Payment:
    system: str  # bank | stripe
    ident: str  # bank AcctSvcrRef, Stripe ch_…
    customer: Customer | None
    payer_name: str
    amount: Decimal  # credited amount, in the account currency
    currency: str  # account currency
    value_date: date
    remittance: str | None = None
    structured_ref: str | None = None
    end_to_end: str | None = None
    instructed: tuple[Decimal, str] | None = None  # (amount, currency) the payer instructed
    charges: Decimal | None = None  # bank charges deducted, in the account currency
    invoices: list[Invoice] = field(default_factory=list)  # what it pays (truth only)
    stripe_invoice: str | None = None  # charge.invoice
    fee: int = 0  # Stripe fee in minor units
    style: str = ""  # how the payer wrote the remittance (diagnostics only)


@dataclass
class Break:
    """One planted break: its code, the source records it involves, and codes that are a fair
    consequence of the same fact (e.g. a duplicate invoice also over-invoices its order)."""

    code: str
    records: list[tuple[str, str, str]]  # (system, object, source id)
    note: str
    tolerated: tuple[str, ...] = ()


@dataclass
class Company:
    seed: int
    as_of: date
    conventions: Conventions
    customers: list[Customer] = field(default_factory=list)
    deals: list[Deal] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    invoices: list[Invoice] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)
    fx: dict[tuple[date, str], Decimal] = field(default_factory=dict)  # (day, quote) -> 1 EUR = rate quote

"""The finance-status fields ltc-hub writes onto CRM deals and accounts (``ltc push-crm``).

One declaration per field: its key, label, kind and default name in Salesforce (a custom field on
Opportunity / Account) and HubSpot (a property of deals / companies, in the property group ``ltc``).
A source renames or drops fields in ``ltc.yaml``::

    sources:
      crm:
        kind: salesforce
        options:
          finance_fields:
            deal: {invoiced: Invoiced_Net__c, exception_link: null}   # null: not written
            account: {status: Finance_Health__c}

The connectors read the same names (:func:`own_paths`) so that a record whose only change is one of
these fields (and the stamps such a write bumps) is not landed again as a business change: push-crm
never fights the sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from canonical.errors import ConfigError

Kind = Literal["currency", "number", "text", "date", "url"]
Role = Literal["deal", "account"]
CRM_KINDS = ("salesforce", "hubspot")
HUBSPOT_GROUP = "ltc"

# The CRM object of each role, per CRM kind (the canonical deal/account's ``source_object``).
OBJECTS: dict[str, dict[str, str]] = {
    "salesforce": {"deal": "Opportunity", "account": "Account"},
    "hubspot": {"deal": "deals", "account": "companies"},
}
# What a write of ours bumps besides our fields: never a business change.
STAMPS: dict[str, tuple[str, ...]] = {
    "salesforce": ("SystemModstamp", "LastModifiedDate", "LastModifiedById"),
    "hubspot": ("updatedAt", "properties.hs_lastmodifieddate", "properties.hs_updated_by_user_id"),
}


@dataclass(frozen=True)
class FinanceField:
    key: str
    label: str
    kind: Kind
    salesforce: str
    hubspot: str
    description: str
    length: int = 255  # text fields

    def default(self, crm: str) -> str:
        return self.salesforce if crm == "salesforce" else self.hubspot

    def salesforce_type(self) -> str:
        """How an admin creates it in Setup (type and size)."""
        return {"currency": "Currency(16, 2)", "number": "Number(9, 0)", "date": "Date", "url": "URL(255)",
                "text": f"Text({self.length})"}[self.kind]


def _f(key: str, label: str, kind: Kind, stem: str, description: str, length: int = 255) -> FinanceField:
    return FinanceField(key, label, kind, f"LTC_{stem}__c", f"ltc_{stem.lower()}", description, length)


_ORDERS = _f("erp_orders", "LTC ERP orders", "text", "ERP_Orders", "ERP sales order numbers of the deal")
_INVOICED = _f("invoiced", "LTC invoiced amount", "currency", "Invoiced_Amount",
               "Invoiced (net of credit notes), in LTC currency")
_PAID = _f("paid", "LTC paid amount", "currency", "Paid_Amount", "Payments applied to the invoices, in LTC currency")
_OPEN = _f("open_balance", "LTC open balance", "currency", "Open_Balance", "Invoiced minus paid, in LTC currency")
_CURRENCY = _f("currency", "LTC currency", "text", "Currency", "ISO currency of the LTC amounts", 3)
_LAST_PAID = _f("last_payment_date", "LTC last payment date", "date", "Last_Payment_Date",
                "Date of the latest payment applied")
_OVERDUE = _f("days_overdue", "LTC days overdue", "number", "Days_Overdue",
              "Days the oldest open invoice is past its due date (0: none)")
_STATUS = _f("status", "LTC finance status", "text", "Status",
             "paid | partly paid | invoiced, unpaid | ordered, not invoiced | won, not ordered | exception", 40)
_CODES = _f("exception_codes", "LTC open exceptions", "text", "Exception_Codes",
            "Codes of the open reconciliation exceptions")
_LINK = _f("exception_link", "LTC exception link", "url", "Exception_Link",
           "Link to the exception in the ltc-hub work queue or report")

DEAL_FIELDS: tuple[FinanceField, ...] = (_ORDERS, _INVOICED, _PAID, _OPEN, _CURRENCY, _LAST_PAID, _OVERDUE, _STATUS,
                                         _CODES, _LINK)
ACCOUNT_FIELDS: tuple[FinanceField, ...] = (
    _INVOICED, _PAID, _OPEN, _CURRENCY, _LAST_PAID, _OVERDUE,
    _f("status", "LTC finance status", "text", "Status", "exception | overdue | open | not invoiced | paid", 40),
    _CODES,
    _f("exception_link", "LTC exceptions link", "url", "Exception_Link",
       "Link to the account's exceptions in the ltc-hub work queue or report"),
    _f("won_deals", "LTC won deals", "number", "Won_Deals", "Closed-won deals in reconciled chains"),
    _f("deals_with_exceptions", "LTC deals with exceptions", "number", "Deals_With_Exceptions",
       "Deals with open reconciliation exceptions"),
)
FIELDS: dict[Role, tuple[FinanceField, ...]] = {"deal": DEAL_FIELDS, "account": ACCOUNT_FIELDS}


def names(crm: str, options: Mapping[str, Any] | None, source: str = "crm") -> dict[str, list[tuple[FinanceField, str]]]:
    """The fields a source writes per role, as (field, CRM name): defaults with ``options.finance_fields``."""
    overrides = (options or {}).get("finance_fields") or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"sources.{source}.options.finance_fields: a mapping of deal/account to field names")
    unknown_roles = set(overrides) - set(FIELDS)
    if unknown_roles:
        raise ConfigError(f"sources.{source}.options.finance_fields: unknown {', '.join(sorted(unknown_roles))}; "
                          "use deal and account")
    out: dict[str, list[tuple[FinanceField, str]]] = {}
    role: Role
    for role in ("deal", "account"):
        given = overrides.get(role) or {}
        keys = {f.key for f in FIELDS[role]}
        unknown = set(given) - keys
        if unknown:
            raise ConfigError(f"sources.{source}.options.finance_fields.{role}: unknown field(s) "
                              f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(keys))}")
        chosen = []
        for f in FIELDS[role]:
            name = given.get(f.key, f.default(crm))
            if name:  # null / "" / false: not written
                chosen.append((f, str(name)))
        out[role] = chosen
    return out


def own_paths(crm: str, options: Mapping[str, Any] | None, source: str = "crm") -> dict[str, tuple[str, ...]]:
    """Per CRM object, the payload paths only push-crm changes (our fields and the stamps our write bumps):
    the raw landing's content hash leaves them out."""
    prefix = "properties." if crm == "hubspot" else ""
    out: dict[str, tuple[str, ...]] = {}
    for role, fields in names(crm, options, source).items():
        out[OBJECTS[crm][role]] = STAMPS[crm] + tuple(prefix + name for _, name in fields)
    return out


@dataclass(frozen=True)
class StatusRecord:
    """What one CRM record should show: ``values`` by field key (Decimal, int, str, date or None)."""

    role: str  # deal | account
    canonical_id: str
    system: str  # the CRM source
    object: str  # Opportunity, Account, deals, companies
    record_id: str
    currency: str | None
    values: dict[str, Any]


@dataclass
class FinanceStatus:
    """The records of one reconciliation's finance status (``reports.crm_status`` builds it)."""

    as_of: date
    records: list[StatusRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

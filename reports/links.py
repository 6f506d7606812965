"""Links from a canonical record to the same record in its source system's web UI.

Built from ltc.yaml: a source's ``web.url`` (default: the vendor's web app, or the source's
``base_url`` where the API and the web client share a host), HubSpot's ``web.portal_id``, Stripe's
``web.test_mode`` and Tryton's database. Shapes (the vendors' own record URLs):

* Salesforce: ``<instance>/lightning/r/<Object>/<Id>/view``
* HubSpot: ``https://app.hubspot.com/contacts/<portal id>/record/<object type id>/<id>``
* Stripe: ``https://dashboard.stripe.com[/test]/payments/ch_...`` (``/invoices/in_...``, ``/customers/cus_...``...)
* Tryton (web client sao): ``<server>/#<database>/model/<model>/<id>``
* Odoo: ``<server>/web#id=<id>&model=<model>&view_type=form`` (Odoo 17+ redirects it to its new routes)

A record whose source has no web UI (bank statements) or whose source is not configured has no link.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import polars as pl

HUBSPOT_TYPES = {"contacts": "0-1", "companies": "0-2", "deals": "0-3", "tickets": "0-5", "products": "0-7",
                 "line_items": "0-8", "quotes": "0-14", "invoices": "0-53"}
STRIPE_PREFIX = {"ch_": "payments", "py_": "payments", "pi_": "payments", "re_": "refunds", "in_": "invoices",
                 "cus_": "customers", "po_": "payouts", "sub_": "subscriptions", "cn_": "credit-notes"}
STRIPE_OBJECT = {"charge": "payments", "payment_intent": "payments", "refund": "refunds", "invoice": "invoices",
                 "customer": "customers", "payout": "payouts", "credit_note": "credit-notes"}
TRYTON_MODEL = {"payments": "account.move.line"}
# A row whose source object is stored under its canonical entity name (rows loaded from canonical
# tables, e.g. the scenario generator's worlds) is linked as the vendor's usual object for it.
ENTITY_OBJECT = {
    "salesforce": {"deal": "Opportunity", "account": "Account", "lead": "Lead", "contact": "Contact",
                   "quote": "Quote", "contract": "Contract", "order": "Order"},
    "hubspot": {"deal": "deals", "account": "companies", "contact": "contacts", "invoice": "invoices"},
    "tryton": {"order": "sale.sale", "invoice": "account.invoice", "account": "party.party",
               "payment": "account.move.line", "delivery": "stock.shipment.out"},
    "odoo": {"order": "sale.order", "invoice": "account.move", "account": "res.partner", "payment": "account.payment",
             "delivery": "stock.picking"},
}
DEFAULT_WEB = {"hubspot": "https://app.hubspot.com", "stripe": "https://dashboard.stripe.com"}


@dataclass(frozen=True)
class _Web:
    kind: str
    url: str | None
    portal_id: str | None = None
    test_mode: bool = False
    database: str | None = None


_MARK = "LTCID"  # stands for the id when a pair's URL is made once: letters only, so quoting leaves it as it is
_PER_ID = ("", "", "")  # a pair whose URL depends on the id itself (Stripe's section comes from its prefix)
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch  # what quote(safe="") leaves as it is


def _q(part: str) -> str:
    text = str(part)
    # a report links tens of thousands of records, whose ids rarely need quoting: checked at C speed first
    return text if (text.isascii() and text.isalnum()) or _UNRESERVED(text) else quote(text, safe="")


def _or_mark(text: str | None) -> str:
    return "\x01" if text is None else text


class SourceLinks:
    """``url(system, object, id)`` for the sources of a configuration."""

    def __init__(self, webs: dict[str, _Web] | None = None) -> None:
        self._webs = webs or {}
        self._around: dict[tuple[str | None, str | None], tuple[str, ...]] = {}

    @classmethod
    def from_config(cls, cfg: Any | None) -> SourceLinks:
        webs: dict[str, _Web] = {}
        for name, src in (getattr(cfg, "sources", None) or {}).items():
            web = src.web
            url = web.url or DEFAULT_WEB.get(src.kind) or src.base_url
            database = web.database or (src.options or {}).get("database")
            webs[name] = _Web(kind=src.kind, url=url.rstrip("/") if url else None, portal_id=web.portal_id,
                              test_mode=web.test_mode, database=str(database) if database else None)
        return cls(webs)

    def url(self, system: str | None, obj: str | None, source_id: str | None) -> str | None:
        if not source_id:
            return None
        # a report links tens of thousands of records of a few (system, object) pairs: the text around
        # the id is made once per pair (Stripe's depends on the id: made each time)
        key = (system, obj)
        around = self._around.get(key)
        if around is None:
            around = self._around[key] = self._template(system, obj)
        if around is _PER_ID:
            return self._url(system, obj, source_id)
        if not around:
            return None
        return f"{around[0]}{_q(str(source_id))}{around[1]}"

    def urls(self, systems: pl.Series, objects: pl.Series, ids: pl.Series) -> pl.Series:
        """:meth:`url` of each row, as a column: the text around the id made once per (system, object) pair and the
        ids that need no quoting put in it by Polars; the others (quoted ids, Stripe's, whose section depends on the
        id) by :meth:`url` itself, once each."""
        df = pl.DataFrame({"s": systems.cast(pl.String), "o": objects.cast(pl.String), "i": ids.cast(pl.String)})
        pairs = df.select("s", "o").unique().rows()
        before: dict[str, str] = {}
        after: dict[str, str] = {}
        for system, obj in pairs:
            around = self._around.get((system, obj))
            if around is None:
                around = self._around[(system, obj)] = self._template(system, obj)
            if around and around is not _PER_ID:
                pair = f"{_or_mark(system)}\x00{_or_mark(obj)}"
                before[pair], after[pair] = around[0], around[1]
        key = pl.concat_str([pl.col("s").fill_null("\x01"), pl.lit("\x00"), pl.col("o").fill_null("\x01")])
        fast = key.is_in(list(before)) & pl.col("i").str.contains(r"^[A-Za-z0-9_.~-]+$")
        slow = df.filter(~fast & pl.col("i").is_not_null() & (pl.col("i") != "")).unique()
        made = {f"{_or_mark(s)}\x00{_or_mark(o)}\x00{i}": self.url(s, o, i) for s, o, i in slow.rows()}
        made_key = pl.concat_str([key, pl.lit("\x00"), pl.col("i")])
        odd = (made_key.replace_strict(made, default=None, return_dtype=pl.String) if made
               else pl.lit(None, pl.String))
        ahead = key.replace_strict(before, default=None, return_dtype=pl.String) if before else pl.lit(None, pl.String)
        behind = key.replace_strict(after, default=None, return_dtype=pl.String) if after else pl.lit(None, pl.String)
        return df.select(pl.when(fast).then(pl.concat_str([ahead, pl.col("i"), behind])).otherwise(odd)
                         .alias("url")).to_series()

    def _template(self, system: str | None, obj: str | None) -> tuple[str, ...]:
        """``(before, after)`` the quoted id, ``()`` for no link, or ``_PER_ID`` when it depends on the id."""
        web = self._webs.get(system or "")
        if web is None or not web.url:
            return ()
        if web.kind == "stripe":
            return _PER_ID
        url = self._url(system, obj, _MARK)
        if url is None:
            return ()
        if url.count(_MARK) != 1:  # the configured URL holds the mark itself: made each time
            return _PER_ID
        before, _sep, after = url.partition(_MARK)
        return (before, after)

    def _url(self, system: str | None, obj: str | None, source_id: str | None) -> str | None:
        web = self._webs.get(system or "")
        if web is None or not web.url or not source_id:
            return None
        sid, obj = str(source_id), str(obj or "")
        obj = ENTITY_OBJECT.get(web.kind, {}).get(obj, obj)
        if web.kind == "salesforce" and obj:
            return f"{web.url}/lightning/r/{_q(obj)}/{_q(sid)}/view"
        if web.kind == "hubspot" and web.portal_id and obj in HUBSPOT_TYPES:
            return f"{web.url}/contacts/{_q(web.portal_id)}/record/{HUBSPOT_TYPES[obj]}/{_q(sid)}"
        if web.kind == "stripe":
            section = next((s for p, s in STRIPE_PREFIX.items() if sid.startswith(p)), None) or STRIPE_OBJECT.get(obj)
            if section:
                return f"{web.url}{'/test' if web.test_mode else ''}/{section}/{_q(sid)}"
        if web.kind == "tryton" and web.database and obj:
            return f"{web.url}/#{_q(web.database)}/model/{_q(TRYTON_MODEL.get(obj, obj))}/{_q(sid)}"
        if web.kind == "odoo" and obj:
            return f"{web.url}/web#id={_q(sid)}&model={_q(obj)}&view_type=form"
        return None

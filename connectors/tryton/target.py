"""Tryton as an ERP target of the push (:class:`connectors.push.ErpTarget`).

Tryton's ``create`` runs no ``on_change``, so everything the client UI would fill in is sent
explicitly: the product template's ``sale_uom``, the sale's invoice/shipment address, and on each
sale line its ``unit``, ``unit_price`` and ``taxes`` (the product category's customer taxes, so no
"default taxes" warning is raised). A party created over RPC has no address; one is created with it.

The customer is found by a party identifier ``CRM-<CRM account id>``; the sale's ``reference``
holds the CRM deal id. Products are found by code, or created as services in the configured
accounting category. A sale is editable in ``draft`` and ``quotation`` (a quotation is put back
to draft before its lines are replaced).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from canonical.money import Money
from connectors.push import ErpSale, ErpSaleLine, PushAccount, PushError, PushLine, PushOrder
from connectors.tryton.rpc import TrytonClient, TrytonError

PARTY_REF_PREFIX = "CRM-"
_EDITABLE = ("draft", "quotation")
_CONFIRMED = ("confirmed", "processing", "done")
_SALE_FIELDS = ["number", "reference", "state", "currency.code", "party", "lines",
                "untaxed_amount", "total_amount"]


class TrytonTarget:
    """Creates and updates parties, products and sales in one Tryton company."""

    def __init__(self, client: TrytonClient, *, name: str = "tryton", product_category: str | None = None,
                 payment_term: str | None = None) -> None:
        self.client = client
        self.name = name
        self._category_name = product_category
        self._payment_term_name = payment_term
        self._defaults: dict[str, Any] | None = None
        self._currencies: dict[str, int] = {}

    # --- lazily resolved configuration -----------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        if self._defaults is not None:
            return self._defaults
        c = self.client
        cat_domain: list[Any] = [["accounting", "=", True]]
        if self._category_name:
            cat_domain.append(["name", "=", self._category_name])
        cats = c.search("product.category", cat_domain, order=[("id", "ASC")], limit=1)
        if not cats:
            raise PushError(
                f"Tryton has no accounting product category{' named ' + repr(self._category_name) if self._category_name else ''}"
                " for new products; create one or set options.product_category")
        term_domain: list[Any] = [["name", "=", self._payment_term_name]] if self._payment_term_name else []
        terms = c.search("account.invoice.payment_term", term_domain, order=[("id", "ASC")], limit=1)
        if self._payment_term_name and not terms:
            raise PushError(f"Tryton has no payment term named {self._payment_term_name!r} (options.payment_term)")
        units = c.search("product.uom", [["name", "=", "Unit"]], limit=1)
        if not units:
            raise PushError("Tryton has no 'Unit' unit of measure")
        self._defaults = {"category": cats[0], "payment_term": terms[0] if terms else None, "unit": units[0]}
        return self._defaults

    def _currency_id(self, code: str) -> int:
        if code not in self._currencies:
            ids = self.client.search("currency.currency", [["code", "=", code]], limit=1)
            if not ids:
                raise PushError(f"currency {code} does not exist in Tryton; create it (with a rate) first")
            self._currencies[code] = ids[0]
        return self._currencies[code]

    # --- reads ----------------------------------------------------------------------------------
    def _to_sale(self, rec: dict[str, Any]) -> ErpSale:
        currency = rec["currency."]["code"]
        lines = self.client.read("sale.line", rec["lines"], ["type", "product.code", "quantity", "unit_price"])
        return ErpSale(
            id=rec["id"], reference=rec.get("reference"), number=rec.get("number"), state=rec["state"],
            editable=rec["state"] in _EDITABLE, confirmed=rec["state"] in _CONFIRMED, currency=currency,
            lines=tuple(
                ErpSaleLine((ln.get("product.") or {}).get("code"), Decimal(ln["quantity"]), ln["unit_price"])
                for ln in lines if ln["type"] == "line"
            ),
            untaxed=Money.of(rec["untaxed_amount"], currency) if rec.get("untaxed_amount") is not None else None,
            total=Money.of(rec["total_amount"], currency) if rec.get("total_amount") is not None else None,
            party_id=rec["party"],
        )

    def _read_sale(self, sale_id: int | str) -> ErpSale:
        (rec,) = self.client.read("sale.sale", [int(sale_id)], _SALE_FIELDS)
        return self._to_sale(rec)

    def find_sale_by_reference(self, reference: str) -> ErpSale | None:
        recs = self.client.search_read("sale.sale", [["reference", "=", reference]], _SALE_FIELDS,
                                       order=[("id", "ASC")])
        live = [r for r in recs if r["state"] != "cancelled"]
        if len(live) > 1:
            numbers = ", ".join(str(r.get("number") or r["id"]) for r in live)
            raise PushError(f"deal {reference} already has {len(live)} Tryton sales ({numbers}); keep one")
        chosen = live or recs[-1:]
        return self._to_sale(chosen[0]) if chosen else None

    # --- writes ---------------------------------------------------------------------------------
    def upsert_party(self, account: PushAccount) -> int:
        code = PARTY_REF_PREFIX + account.reference
        found = self.client.search_read("party.party", [["identifiers.code", "=", code]],
                                        ["name", "addresses"], order=[("id", "ASC")], limit=1)
        if found:
            party = found[0]
            values: dict[str, Any] = {}
            if party["name"] != account.name:
                values["name"] = account.name
            if not party["addresses"]:
                values["addresses"] = [["create", [{}]]]
            if values:
                self.client.write("party.party", [party["id"]], values)
            return int(party["id"])
        values = {"name": account.name, "identifiers": [["create", [{"code": code}]]],
                  "addresses": [["create", [{}]]]}
        if account.email:
            values["contact_mechanisms"] = [["create", [{"type": "email", "value": account.email}]]]
        (party_id,) = self.client.create("party.party", [values])
        return int(party_id)

    def _products(self, lines: Sequence[PushLine]) -> dict[str, int]:
        """Product id per code: found by code, the missing ones created as services in one call."""
        codes = sorted({ln.product_code for ln in lines})
        found = {r["code"]: r["id"] for r in self.client.search_read(
            "product.product", [["code", "in", codes]], ["code"])}
        missing = [c for c in codes if c not in found]
        if missing:
            cfg = self._config()
            names = {ln.product_code: ln.product_name for ln in lines}
            prices = {ln.product_code: ln.unit_price for ln in lines}
            self.client.create("product.template", [{
                "name": names[c], "type": "service", "salable": True,
                "default_uom": cfg["unit"], "sale_uom": cfg["unit"], "list_price": prices[c],
                "account_category": cfg["category"], "code": c, "products": [["create", [{}]]],
            } for c in missing])
            found.update({r["code"]: r["id"] for r in self.client.search_read(
                "product.product", [["code", "in", missing]], ["code"])})
        return found

    def _line_values(self, order: PushOrder) -> list[dict[str, Any]]:
        products = self._products(order.lines)
        taxes = self.client.read("product.product", list(set(products.values())),
                                 ["template.account_category.customer_taxes_used"])
        taxes_by_product = {
            t["id"]: ((t.get("template.") or {}).get("account_category.") or {}).get("customer_taxes_used") or []
            for t in taxes
        }
        cfg = self._config()
        out = []
        for seq, ln in enumerate(order.lines, start=1):
            pid = products[ln.product_code]
            out.append({
                "type": "line", "sequence": seq, "product": pid, "description": ln.product_name,
                "quantity": ln.quantity, "unit": cfg["unit"], "unit_price": ln.unit_price,
                "taxes": [["add", list(taxes_by_product.get(pid, []))]],
            })
        return out

    def _header_values(self, order: PushOrder, party_id: int | str) -> dict[str, Any]:
        (party,) = self.client.read("party.party", [int(party_id)], ["addresses"])
        address = party["addresses"][0]
        values: dict[str, Any] = {
            "party": int(party_id), "invoice_address": address, "shipment_address": address,
            "currency": self._currency_id(order.currency), "reference": order.reference,
            "description": order.name[:200], "sale_date": order.order_date,
        }
        if self._config()["payment_term"]:
            values["payment_term"] = self._config()["payment_term"]
        return values

    def create_sale(self, order: PushOrder, party_id: int | str) -> ErpSale:
        values = self._header_values(order, party_id)
        values["lines"] = [["create", self._line_values(order)]]
        (sale_id,) = self.client.create("sale.sale", [values])
        return self._read_sale(sale_id)

    def update_draft_sale(self, sale: ErpSale, order: PushOrder, party_id: int | str) -> ErpSale:
        current = self._read_sale(sale.id)
        if not current.editable:
            raise PushError(f"Tryton sale {current.number or current.id} is {current.state}; it can no longer be edited")
        if current.state == "quotation":
            self.client.button("sale.sale", "draft", [int(sale.id)])
        (rec,) = self.client.read("sale.sale", [int(sale.id)], ["lines"])
        values = self._header_values(order, party_id)
        values["lines"] = [["delete", rec["lines"]], ["create", self._line_values(order)]]
        self.client.write("sale.sale", [int(sale.id)], values)
        return self._read_sale(sale.id)

    def close(self) -> None:
        self.client.close()

    def confirm(self, sale: ErpSale) -> ErpSale:
        current = self._read_sale(sale.id)
        try:
            if current.state == "draft":
                self.client.button("sale.sale", "quote", [int(sale.id)])
                current = self._read_sale(sale.id)
            if current.state == "quotation":
                self.client.button("sale.sale", "confirm", [int(sale.id)])
        except TrytonError as exc:
            raise PushError(f"Tryton refused to confirm sale {current.number or current.id}: {exc}") from None
        return self._read_sale(sale.id)

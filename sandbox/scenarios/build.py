"""Plan a company's Lead-to-Cash history from a seed: customers, deals, orders, invoices, payments,
with the breaks a real company's data shows planted on a few chains (and recorded as the truth).

Noise that is *not* a break: lost and open deals, deals won in the last days (no order yet), orders
of the last weeks not yet invoiced, invoices not yet due, instalment invoices, partial payments that
add up, batch transfers paying several invoices, bank charges deducted by the sender's bank (shown
as camt ``Chrgs`` with the instructed amount), foreign-currency invoices paid into the home account
at the day's rate, Stripe fees, payer-name variants, Chinese legal names, homonyms in two countries
and group companies sharing one web domain (different legal entities, different tax ids).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sandbox.scenarios.model import Break, Company, Conventions, Customer, Deal, Invoice, Order, Payment

CODES = ("WON_NOT_ORDERED", "ORDER_WITHOUT_DEAL", "AMOUNT_MISMATCH", "CURRENCY_MISMATCH",
         "ORDERED_NOT_INVOICED", "OVER_INVOICED", "INVOICE_WITHOUT_ORDER", "DUPLICATE_INVOICE",
         "INVOICE_OVERDUE", "UNAPPLIED_PAYMENT", "PAYMENT_MISMATCH", "AMBIGUOUS_MATCH", "STAGE_CONFLICT",
         "CUSTOMER_MISMATCH", "DELIVERED_NOT_INVOICED", "INVOICED_NOT_DELIVERED")
# planted only in companies whose shipments are synced
SHIP_CODES = ("DELIVERED_NOT_INVOICED", "INVOICED_NOT_DELIVERED")
CENT = Decimal("0.01")
# the CRM's (deal, account) objects
_CRM_OBJECTS = {"salesforce": ("Opportunity", "Account"), "hubspot": ("deals", "companies"), "zoho": ("Deals", "Accounts"),
                "jiandaoyun": ("opportunities", "customers")}
TERM_DAYS = 30

_WORDS = ("Nordlicht", "Atlas", "Helix", "Orion", "Vega", "Kestrel", "Blue Harbor", "Granite", "Summit", "Lumen",
          "Cobalt", "Meridian", "Falcon", "Tessera", "Quarry", "Harbor", "Pioneer", "Aurora", "Cedar", "Delta",
          "Ember", "Fjord", "Juniper", "Kepler", "Larch", "Magnolia", "Nimbus", "Onyx", "Polaris", "Quill",
          "Rowan", "Sable", "Tundra", "Umber", "Verde", "Willow", "Xenon", "Yarrow", "Zephyr", "Alder")
_TRADES = ("Robotics", "Logistics", "Medical", "Foods", "Software", "Energy", "Textiles", "Optics", "Tools",
           "Analytics", "Packaging", "Marine", "Pharma", "Retail", "Motors")
_LEGAL = {"DE": ("GmbH", "AG", "GmbH & Co. KG"), "AT": ("GmbH",), "FR": ("SAS", "SARL", "SA"),
          "GB": ("Ltd", "PLC"), "US": ("Inc.", "LLC", "Corp."), "NL": ("B.V.",), "ES": ("S.L.", "S.A."),
          "IT": ("S.r.l.", "S.p.A.")}
_CURRENCY = {"DE": "EUR", "AT": "EUR", "FR": "EUR", "NL": "EUR", "ES": "EUR", "IT": "EUR", "GB": "GBP",
             "US": "USD", "CN": "USD"}
_CN_CITY = (("深圳市", "Shenzhen"), ("广州市", "Guangzhou"), ("上海", "Shanghai"), ("杭州", "Hangzhou"),
            ("苏州", "Suzhou"))
_CN_WORD = (("华星", "Huaxing"), ("创维", "Chuangwei"), ("海辰", "Haichen"), ("云帆", "Yunfan"), ("金川", "Jinchuan"),
            ("博远", "Boyuan"), ("嘉禾", "Jiahe"), ("天泽", "Tianze"), ("恒瑞", "Hengrui"), ("新材", "Xincai"))
_CN_TRADE = (("科技", "Technology"), ("电子", "Electronics"), ("光电", "Optoelectronics"), ("智能", "Intelligent"),
             ("贸易", "Trading"))
_CN_FORM = (("有限公司", "Co., Ltd."), ("股份有限公司", "Co., Ltd."), ("有限责任公司", "Co., Ltd."))
_UNKNOWN_PAYERS = ("J. Smith", "Private customer", "Kanzlei Weber", "M. Rossi", "ACME TRAVEL REFUND",
                   "Unknown remitter", "Hotel Seeblick", "T. Nguyen")


def _q(v: Decimal) -> Decimal:
    return v.quantize(CENT, rounding=ROUND_HALF_UP)


class _Ids:
    def __init__(self, seed: int) -> None:
        self.n: dict[str, int] = defaultdict(int)
        self.seed = seed

    def next(self, kind: str) -> int:
        self.n[kind] += 1
        return self.n[kind]


def _tax_id(r: random.Random, country: str) -> str:
    if country == "CN":  # 统一社会信用代码: 18 characters
        return "91" + "".join(r.choice("0123456789") for _ in range(6)) + "".join(
            r.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(10))
    if country == "US":
        return f"{r.randint(10, 99)}-{r.randint(1000000, 9999999)}"
    if country == "GB":
        return f"GB{r.randint(100000000, 999999999)}"
    digits = {"DE": 9, "AT": 8, "FR": 11, "NL": 12, "ES": 9, "IT": 11}[country]
    body = "".join(r.choice("0123456789") for _ in range(digits))
    return ("ATU" if country == "AT" else country) + (body[:9] + "B01" if country == "NL" else body)


def _iban(r: random.Random, country: str) -> str:
    cc = country if country in ("DE", "FR", "GB", "NL", "ES", "IT", "AT") else "DE"
    return cc + f"{r.randint(10, 99)}" + "".join(r.choice("0123456789") for _ in range(18))


class _Planner:
    def __init__(self, chains: int, seed: int, breaks: bool, as_of: date, crm: str | None = None) -> None:
        self.r = random.Random(f"company:{seed}")
        self.conv = Conventions.draw(seed, crm)
        self.co = Company(seed=seed, as_of=as_of, conventions=self.conv)
        self.ids = _Ids(seed)
        self.chains = chains
        self.breaks = breaks
        self.as_of = as_of
        self.erp = self.conv.erp
        self.used_names: set[str] = set()
        self.used_bases: set[str] = set()  # trading names in use (group members and homonyms included)
        self.open_amounts: dict[int, set[Decimal]] = defaultdict(set)  # customer key -> open invoice totals

    # -- customers ------------------------------------------------------------------------------------
    def _new_customer(self, name: str, crm_name: str, country: str, domain: str) -> Customer:
        r = self.r
        k = self.ids.next("customer")
        tax = _tax_id(r, country)
        crm_tax = tax if r.random() < 0.75 else None
        if crm_tax and crm_tax[:2].isalpha() and r.random() < 0.3:  # typed with a space / lower case: same id
            crm_tax = crm_tax.lower() if r.random() < 0.5 else f"{crm_tax[:2]} {crm_tax[2:]}"
        payer = name if r.random() < 0.6 else name.upper()
        c = Customer(key=k, name=name, crm_name=crm_name, country=country, domain=domain, tax_id=tax,
                     currency=_CURRENCY[country], crm_tax_id=crm_tax, payer_name=payer, iban=_iban(r, country))
        c.crm_id = self._crm_id("account")
        self.co.customers.append(c)
        return c

    def customers(self, n: int) -> None:
        r = self.r
        while len(self.co.customers) < n:
            kind = r.random()
            if kind < 0.08:  # a Chinese customer, billed in USD; the CRM may hold the English name
                cn = [r.choice(x) for x in (_CN_CITY, _CN_WORD, _CN_TRADE, _CN_FORM)]
                name = "".join(x[0] for x in cn)
                if name in self.used_names:
                    continue
                self.used_names.add(name)
                en = " ".join(x[1] for x in cn)
                c = self._new_customer(name, en if r.random() < 0.5 else name, "CN",
                                       f"{cn[1][1].lower()}{r.randint(1, 999)}.example.cn")
                c.payer_name = name  # Chinese banks send the registered legal name
                continue
            word, trade = r.choice(_WORDS), r.choice(_TRADES)
            if kind < 0.14:  # a group: two legal entities sharing a domain, different trades and tax ids
                trade2 = r.choice([t for t in _TRADES if t != trade])
                country = r.choice(("DE", "FR", "GB", "US"))
                form = r.choice(_LEGAL[country])
                names = [f"{word} {trade} {form}", f"{word} {trade2} {form}"]
                if any(x in self.used_names for x in names) or f"{word} {trade}" in self.used_bases \
                        or f"{word} {trade2}" in self.used_bases:
                    continue
                self.used_bases.update((f"{word} {trade}", f"{word} {trade2}"))
                domain = f"{word.lower().replace(' ', '')}-group.example"
                if domain in self.used_bases:  # one group per group domain
                    continue
                self.used_bases.add(domain)
                for nm in names:
                    self.used_names.add(nm)
                    self._new_customer(nm, nm, country, domain)
                continue
            if kind < 0.19:  # homonyms: the same name in two countries, two companies
                pair = r.choice((("DE", "AT"), ("GB", "US"), ("FR", "DE")))
                base = f"{word} {trade}"
                if base in self.used_bases:
                    continue
                self.used_bases.add(base)
                for country in pair:
                    nm = f"{base} {_LEGAL[country][0]}"
                    self.used_names.add(f"{base} {country}")
                    self._new_customer(nm, nm, country, f"{base.lower().replace(' ', '')}-{country.lower()}.example")
                continue
            country = r.choice(("DE", "DE", "FR", "GB", "US", "US", "NL", "ES", "IT"))
            form = r.choice(_LEGAL[country])
            base = f"{word} {trade}"
            if base in self.used_bases:  # one company per trading name (and so per web domain)
                base = f"{word} {r.choice(_WORDS)} {trade}"
                if base in self.used_bases:
                    continue
            self.used_bases.add(base)
            name = f"{base} {form}"
            self.used_names.add(name)
            crm_name = name if r.random() < 0.7 else base
            self._new_customer(name, crm_name, country, base.lower().replace(" ", "") + ".example")

    # -- helpers ----------------------------------------------------------------------------------------
    def _amount(self) -> Decimal:
        return _q(Decimal(self.r.randint(50_000, 8_000_000)) / 100)

    def _days_ago(self, lo: int, hi: int) -> date:
        return self.as_of - timedelta(days=self.r.randint(lo, hi))

    def _crm_id(self, kind: str) -> str:
        n = self.ids.next(kind)
        if self.conv.crm == "salesforce":
            prefix = {"account": "001", "deal": "006"}[kind]
            return f"{prefix}W{self.co.seed % 100:02d}{n:010d}AAB"[:18].ljust(18, "A")
        if self.conv.crm == "jiandaoyun":  # a 24-hex data id (ObjectId-like)
            tag = {"account": "6a1", "deal": "6a6"}[kind]
            return f"{tag}{self.co.seed % 256:02x}{n:019x}"
        if self.conv.crm == "zoho":  # 19-digit record ids of one org
            return str({"account": 4_876_876_000_000_100_000, "deal": 4_876_876_000_000_400_000}[kind] + n * 3)
        base = {"account": 31_000_000_000, "deal": 18_000_000_000}[kind]
        return str(base + n * 7)

    def _deal(self, c: Customer, stage: str, close: date, currency: str | None = None) -> Deal:
        d = Deal(crm_id=self._crm_id("deal"), customer=c, name=f"{c.crm_name} - {self.r.choice(_TRADES)} rollout",
                 stage=stage, amount=self._amount(), currency=currency or c.currency, close_date=close)
        self.co.deals.append(d)
        return d

    def _order(self, c: Customer, deal: Deal | None, when: date, total: Decimal, currency: str,
               billing: str) -> Order:
        n = self.ids.next("order")
        conv = self.conv
        number = f"{conv.order_prefix}{n:05d}" if self.erp == "odoo" else f"{conv.order_prefix}{70 + n}"
        place = conv.erp_deal_place
        if place == "crm_side_only" and conv.crm_order_field is None:
            place = "reference"
        deal_ref = None
        if deal is not None:
            if place == "crm_side_only":
                deal.order_number_on_crm = number
            else:
                deal_ref = deal.crm_id
                if conv.crm_order_field is not None and self.r.random() < 0.5:
                    deal.order_number_on_crm = number
        o = Order(erp_id=n, number=number, customer=c, deal=deal, order_date=when, currency=currency, total=total,
                  deal_ref=deal_ref, customer_po=f"PO-{self.r.randint(1000, 9999)}", billing=billing,
                  product=self.r.choice(("LIC-STD", "SRV-IMPL", "HW-T2", "SUP-GOLD")))
        o.line_id = n
        self.co.orders.append(o)
        return o

    def _invoice(self, c: Customer, order: Order | None, when: date, total: Decimal, currency: str,
                 system: str) -> Invoice:
        n = self.ids.next("invoice")
        if system == "stripe":
            ident = f"in_1W{self.co.seed % 100:02d}{n:010d}"
            number = f"{0xA1B2C3 + self.co.seed * 7919:X}"[-8:] + f"-{n:04d}"
        else:
            ident = str(n)
            number = (f"{self.conv.invoice_prefix}{n:05d}" if self.erp == "odoo"
                      else f"{self.conv.invoice_prefix}{10000 + n}")
        inv = Invoice(system=system, ident=ident, number=number, customer=c, order=order, invoice_date=when,
                      due_date=when + timedelta(days=TERM_DAYS), currency=currency, total=total)
        self.co.invoices.append(inv)
        return inv

    def _bank_ref(self) -> str:
        return f"W{self.co.seed % 1000:03d}B{self.ids.next('bank'):08d}"

    def _pay_day(self, inv: Invoice) -> date:
        last = min(inv.due_date - timedelta(days=1), self.as_of)
        first = min(inv.invoice_date + timedelta(days=1), last)
        return first + timedelta(days=self.r.randint(0, max(0, (last - first).days)))

    def _fx(self, day: date, quote: str) -> Decimal:
        key = (day, quote)
        if key not in self.co.fx:
            base = {"USD": Decimal("1.08"), "GBP": Decimal("0.86"), "EUR": Decimal(1)}[quote]
            wobble = Decimal(self.r.randint(-300, 300)) / Decimal(10000)
            self.co.fx[key] = (base * (1 + wobble)).quantize(Decimal("0.0001"))
        return self.co.fx[key]

    def _remit_text(self, style: str, invs: list[Invoice]) -> tuple[str | None, str | None, str | None]:
        """(unstructured remittance, structured creditor reference, end-to-end id)."""
        r = self.r
        nums = [i.number for i in invs]
        e2e = f"E2E{r.randint(10**9, 10**10 - 1)}" if r.random() < 0.5 else None
        if style == "exact":
            return " ".join(nums), None, e2e
        if style == "prefix":
            return r.choice(("Invoice ", "Rechnung ", "Facture n° ", "RE: ", "Inv. ")) + ", ".join(nums), None, e2e
        if style == "digits":  # the invoice's own sequence part, as people copy it from the PDF
            if self.erp == "odoo":  # INV/2026/00072 -> 2026/00072 (00072 alone would also be order S00072)
                digits = [re.sub(r"^\D+", "", x) for x in nums]
            else:  # INV-2026-10072, RE202610072, F10072 -> 10072
                digits = [x[-5:] if x[-5:].isdigit() else x for x in nums]
            return r.choice(("RE: ", "Inv ", "")) + " + ".join(digits), None, e2e
        if style == "order" and len(invs) == 1 and invs[0].order is not None:
            return f"payment for order {invs[0].order.number}", None, e2e
        if style == "batch":
            return "INV " + " + ".join(nums), None, e2e
        if style == "e2e":
            return None, None, nums[0] if len(nums) == 1 else "-".join(nums)
        if style == "structured":
            return None, nums[0], e2e
        if style == "noisy":
            return (f"{r.choice(('Kd-Nr', 'Cust', 'Client'))} {r.randint(1000, 9999)} {' '.join(nums)} "
                    f"{r.choice(('thank you', 'vielen Dank', 'merci', '/ROC/'))}"), None, e2e
        return " ".join(nums), None, e2e

    def _bank_payment(self, c: Customer, invs: list[Invoice], amount: Decimal, day: date, *,
                      style: str | None = None, allow_fee: bool = True, unreferenced: bool = False) -> Payment:
        """``unreferenced``: the payer writes no reference although name + amount fit several invoices
        (the planted AMBIGUOUS_MATCH); otherwise such a payer writes one."""
        r = self.r
        conv = self.conv
        style = style or r.choice(conv.remittance)
        if style == "none" and (len(invs) != 1 or amount != invs[0].total or (not unreferenced and any(
                i is not invs[0] and i.customer is c and i.total == amount for i in self.co.invoices))):
            style = "exact"  # name + amount alone would be truly ambiguous: this payer would write a reference
        if style == "order" and (len(invs) != 1 or invs[0].order is None or sum(
                1 for i in self.co.invoices if i.order is invs[0].order) != 1):
            style = "exact"
        ustrd, strd, e2e = (None, None, None) if style == "none" else self._remit_text(style, invs)
        cur = invs[0].currency if invs else c.currency
        credited, acct_cur, instructed, charges = amount, cur, None, None
        if style != "none" and cur != "EUR" and r.random() < conv.fx_share:
            rate = self._fx(day, cur)
            credited, acct_cur, instructed = _q(amount / rate), "EUR", (amount, cur)
        if style != "none" and allow_fee and r.random() < conv.fee_share:
            charges = Decimal(r.choice(("7.50", "12.00", "15.00", "25.00")))
            instructed = instructed or (amount, cur)
            credited = credited - charges
        if conv.cash == "erp":  # booked in the ERP against the invoice(s) it pays: no remittance, no bank line
            p = Payment(system=self.erp, ident=str(erp_id("payment", self.ids.next("erp_payment"))), customer=c,
                        payer_name=c.name, amount=amount, currency=cur, value_date=day, invoices=list(invs),
                        style="erp payment")
            for inv in invs:
                inv.paid += inv.total if len(invs) > 1 else amount
            self.co.payments.append(p)
            return p
        p = Payment(system="bank", ident=self._bank_ref(), customer=c, payer_name=c.payer_name, amount=credited,
                    currency=acct_cur, value_date=day, remittance=ustrd, structured_ref=strd, end_to_end=e2e,
                    instructed=instructed, charges=charges, invoices=list(invs),
                    style=style + ("+fx" if acct_cur != cur else "") + ("+fee" if charges else ""))
        for inv in invs:
            inv.paid += inv.total if len(invs) > 1 else amount
        self.co.payments.append(p)
        return p

    def _stripe_payment(self, inv: Invoice, amount: Decimal, day: date) -> Payment:
        n = self.ids.next("charge")
        p = Payment(system="stripe", ident=f"ch_3W{self.co.seed % 100:02d}{n:010d}", customer=inv.customer,
                    payer_name=inv.customer.name, amount=amount, currency=inv.currency, value_date=day,
                    invoices=[inv], stripe_invoice=inv.ident)
        p.fee = int((amount * 100 * Decimal("0.029")).to_integral_value()) + 30
        inv.paid += amount
        self.co.payments.append(p)
        return p

    def _settle(self, inv: Invoice, *, must: bool = False) -> None:
        """Pay an invoice in full (noise styles), or leave it open when it is not due yet."""
        r = self.r
        if inv.invoice_date >= self.as_of:
            return
        if inv.due_date > self.as_of and not must and r.random() < 0.35:
            self.open_amounts[inv.customer.key].add(inv.total)
            return
        day = self._pay_day(inv)
        if inv.system == "stripe":
            self._stripe_payment(inv, inv.total, day)
            return
        if must:  # a planted chain: a later invoice may repeat this amount or order, so name the invoice
            self._bank_payment(inv.customer, [inv], inv.total, day, style=self.r.choice(
                [x for x in self.conv.remittance if x not in ("order", "none", "batch")] or ["exact"]))
            return
        if r.random() < 0.12 and (day - inv.invoice_date).days >= 2:  # two transfers that add up
            first = _q(inv.total * Decimal(r.choice(("0.3", "0.5", "0.6"))))
            d1 = inv.invoice_date + timedelta(days=1)
            self._bank_payment(inv.customer, [inv], first, d1, style="exact", allow_fee=False)
            self._bank_payment(inv.customer, [inv], inv.total - first, day, style="exact", allow_fee=False)
            return
        self._bank_payment(inv.customer, [inv], inv.total, day)

    def _ref(self, *objs: object) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        conv = self.conv
        for o in objs:
            if isinstance(o, Deal):
                out.append((conv.crm, _CRM_OBJECTS[conv.crm][0], o.crm_id))
            elif isinstance(o, Customer):
                out.append((conv.crm, _CRM_OBJECTS[conv.crm][1], o.crm_id))
            elif isinstance(o, Order):
                out.append((self.erp, "sale.sale" if self.erp == "tryton" else "sale.order",
                            self._erp_id("order", o.erp_id)))
            elif isinstance(o, Invoice):
                if o.system == "stripe":
                    out.append(("stripe", "invoices", o.ident))
                else:
                    out.append((self.erp, "account.invoice" if self.erp == "tryton" else "account.move",
                                self._erp_id("invoice", int(o.ident))))
            elif isinstance(o, Payment):
                obj = {"stripe": "charges", "bank": "camt053", "tryton": "account.move.line",
                       "odoo": "account.payment"}[o.system]
                out.append((o.system, obj, o.ident))
        return out

    def party_ref(self, c: Customer) -> tuple[str, str, str]:
        return (self.erp, "party.party" if self.erp == "tryton" else "res.partner", self._erp_id("party", c.key))

    @staticmethod
    def _erp_id(kind: str, n: int) -> str:
        return str(erp_id(kind, n))

    def plant(self, code: str, note: str, *objs: object, tolerated: tuple[str, ...] = ()) -> None:
        self.co.breaks.append(Break(code=code, records=self._ref(*objs), note=note, tolerated=tolerated))

    # -- chains -------------------------------------------------------------------------------------------
    def chain(self, c: Customer, code: str | None) -> None:
        r = self.r
        conv = self.conv
        billing = "stripe" if r.random() < conv.stripe_share else "erp"
        inv_sys = "stripe" if billing == "stripe" else self.erp

        if code == "ORDER_WITHOUT_DEAL":
            o = self._order(c, None, self._days_ago(20, 150), self._amount(), c.currency, billing)
            inv = self._invoice(c, o, min(o.order_date + timedelta(days=2), self.as_of), o.total, o.currency, inv_sys)
            self._settle(inv, must=True)
            self.plant(code, "ERP order no deal explains", o)
            return
        if code == "INVOICE_WITHOUT_ORDER":
            inv = self._invoice(c, None, self._days_ago(10, 120), self._amount(), c.currency, inv_sys)
            inv.memo = r.choice(("Consulting, ad hoc", "Extra services", None))
            self._settle(inv, must=True)
            self.plant(code, "invoice raised by hand, no order behind it", inv)
            return
        if code == "UNAPPLIED_PAYMENT" and conv.cash == "erp":  # a receipt booked to the party, no invoice
            p = Payment(system=self.erp, ident=str(erp_id("payment", self.ids.next("erp_payment"))), customer=c,
                        payer_name=c.name, amount=self._amount(), currency=c.currency, value_date=self._days_ago(1, 90),
                        style="erp payment, no invoice")
            self.co.payments.append(p)
            self.plant(code, "receipt booked to the customer, no invoice it pays", p)
            return
        if code == "UNAPPLIED_PAYMENT":
            p = Payment(system="bank", ident=self._bank_ref(), customer=None, payer_name=r.choice(_UNKNOWN_PAYERS),
                        amount=self._amount(), currency=r.choice(("EUR", "USD")), value_date=self._days_ago(1, 90),
                        remittance=r.choice(("Zahlung", "payment", None, "Ueberweisung", "refund ref 88123")))
            self.co.payments.append(p)
            self.plant(code, "credit from a payer who is no customer, no reference", p)
            return

        stage = "won"
        if code is None:
            x = r.random()
            stage = "lost" if x < 0.12 else "open" if x < 0.2 else "won"
        if code == "STAGE_CONFLICT":
            stage = "lost"
        recent_ok = code in (None, "DUPLICATE_INVOICE", "AMBIGUOUS_MATCH")
        close = self._days_ago(0, 170) if recent_ok else self._days_ago(50, 170)
        if code in ("DUPLICATE_INVOICE", "AMBIGUOUS_MATCH"):
            close = self._days_ago(12, 20)
        currency = "USD" if code == "CURRENCY_MISMATCH" and c.currency != "USD" else (
            "EUR" if code == "CURRENCY_MISMATCH" else c.currency)
        d = self._deal(c, stage, close if stage != "open" else self.as_of + timedelta(days=r.randint(5, 90)),
                       currency)
        if stage in ("lost", "open") and code is None:
            return
        if code == "WON_NOT_ORDERED":
            d.close_date = self._days_ago(20, 150)
            self.plant(code, "closed-won deal the ERP never got", d)
            return
        if code is None and (self.as_of - d.close_date).days < 4:
            return  # won this week, order not entered yet (within the grace period)

        total = d.amount
        if code == "AMOUNT_MISMATCH":
            total = _q(d.amount * Decimal(r.choice(("0.75", "0.85", "1.12", "1.25", "1.40"))))
        order_day = min(d.close_date + timedelta(days=r.randint(0, 3)), self.as_of)
        o = self._order(c, d, order_day, total, c.currency, billing)
        if code == "AMOUNT_MISMATCH":
            self.plant(code, f"deal {d.amount} vs order {o.total}", d, o)
        elif code == "CURRENCY_MISMATCH":
            self.plant(code, f"deal in {d.currency}, order in {o.currency}, same figure", d, o,
                       tolerated=("AMOUNT_MISMATCH",))
        elif code == "STAGE_CONFLICT":
            self.plant(code, "deal lost in the CRM but ordered, invoiced and paid", d, o,
                       tolerated=("ORDER_WITHOUT_DEAL",))
        if code == "DELIVERED_NOT_INVOICED":
            o.order_date = self._days_ago(12, 40)
            d.close_date = min(d.close_date, o.order_date)
            o.ship_plan, o.shipped = "shipped", o.order_date + timedelta(days=r.randint(0, 2))
            self.plant(code, f"goods shipped on {o.shipped}, never billed", o, tolerated=("ORDERED_NOT_INVOICED",))
            return
        if code == "ORDERED_NOT_INVOICED":
            o.ship_plan = "none"
            o.order_date = self._days_ago(45, 150)
            d.close_date = o.order_date
            self.plant(code, "order never invoiced", o, d)
            return
        if code is None and (self.as_of - o.order_date).days < 20 and r.random() < 0.5:
            return  # recent order, invoicing still to come

        inv_day = min(o.order_date + timedelta(days=r.randint(0, 6)), self.as_of)
        if code is None and inv_sys != "stripe" and r.random() < 0.1 and o.total > 2000:  # instalments
            half = _q(o.total / 2)
            i1 = self._invoice(c, o, inv_day, half, o.currency, inv_sys)
            i2 = self._invoice(c, o, min(inv_day + timedelta(days=r.randint(1, 20)), self.as_of), o.total - half,
                               o.currency, inv_sys)
            self._settle(i1)
            self._settle(i2)
            return
        inv = self._invoice(c, o, inv_day, o.total, o.currency, inv_sys)

        if code == "INVOICED_NOT_DELIVERED":
            inv.invoice_date = max(o.order_date, self._days_ago(12, 60))
            inv.due_date = inv.invoice_date + timedelta(days=TERM_DAYS)
            o.ship_plan = "none"
            self._settle(inv, must=True)
            self.plant(code, f"billed on {inv.invoice_date}, nothing shipped", o, inv)
            return
        if code == "INVOICE_OVERDUE":
            inv.invoice_date = max(o.order_date, self._days_ago(TERM_DAYS + 10, TERM_DAYS + 100))
            inv.due_date = inv.invoice_date + timedelta(days=TERM_DAYS)
            self.plant(code, f"due {inv.due_date}, nothing paid", inv)
            return
        if code in ("PAYMENT_MISMATCH", "AMBIGUOUS_MATCH") and inv.system == "stripe":
            # a Stripe invoice is paid in full by its payment intent; short, over and unreferenced
            # payments are bank transfers against an ERP invoice
            self.co.invoices.remove(inv)
            o.billing = "erp"
            inv = self._invoice(c, o, inv_day, o.total, o.currency, self.erp)
        if code == "PAYMENT_MISMATCH":
            inv.invoice_date = max(o.order_date, self._days_ago(TERM_DAYS + 5, TERM_DAYS + 90))
            inv.due_date = inv.invoice_date + timedelta(days=TERM_DAYS)
            short = r.random() < 0.6
            amount = _q(inv.total * Decimal(r.choice(("0.4", "0.5", "0.7", "0.9") if short else ("1.05", "1.1"))))
            day = self._pay_day(inv)
            p = self._bank_payment(c, [inv], amount, day, style="exact", allow_fee=False)
            self.plant(code, f"{'short' if short else 'over'} payment {amount} of {inv.total}", inv, p)
            return
        if code == "OVER_INVOICED":
            self._settle(inv, must=True)
            extra = self._invoice(c, o, min(inv.invoice_date + timedelta(days=r.randint(1, 10)), self.as_of),
                                  _q(o.total * Decimal(r.choice(("0.1", "0.2", "0.3")))), o.currency, inv_sys)
            self._settle(extra, must=True)
            self.plant(code, f"order {o.total} invoiced {inv.total} + {extra.total}", o, extra)
            return
        if code == "DUPLICATE_INVOICE":
            self._settle(inv, must=True)
            dup = self._invoice(c, o, min(inv.invoice_date + timedelta(days=r.randint(0, 2)), self.as_of), inv.total,
                                o.currency, inv_sys)
            self.plant(code, f"{inv.number} billed twice ({dup.number})", inv, dup,
                       tolerated=("OVER_INVOICED",))
            return
        if code == "AMBIGUOUS_MATCH":
            d2 = self._deal(c, "won", d.close_date, d.currency)
            d2.amount = d.amount
            o2 = self._order(c, d2, o.order_date, o.total, o.currency, "erp")
            twin = self._invoice(c, o2, inv.invoice_date, inv.total, inv.currency, self.erp)
            p = self._bank_payment(c, [inv], inv.total, self._pay_day(inv), style="none", unreferenced=True)
            p.invoices = []
            inv.paid = Decimal(0)
            self.plant(code, f"one transfer of {inv.total}, no reference, two open invoices of that amount",
                       p, inv, twin)
            return
        self._settle(inv, must=code is not None)

    def shipments(self) -> None:
        """When the goods of each order went out: a few days after the order; an order not billed yet
        is still in the warehouse unless it left in the last couple of days."""
        if not self.conv.ships:
            return
        billed = {id(i.order) for i in self.co.invoices if i.order is not None}
        for o in self.co.orders:
            if o.ship_plan != "auto":
                continue
            day = o.order_date + timedelta(days=self.r.randint(0, 3))
            if day <= self.as_of and (id(o) in billed or (self.as_of - day).days <= 2):
                o.shipped = day

    def batches(self) -> None:
        """Some customers pay two of their open invoices with one transfer ("INV 10023 + 10024")."""
        if "batch" not in self.conv.remittance or self.conv.cash == "erp":
            return
        by_customer: dict[int, list[Invoice]] = defaultdict(list)
        for inv in self.co.invoices:
            if (inv.system != "stripe" and inv.paid == 0 and inv.due_date > self.as_of
                    and inv.invoice_date < self.as_of - timedelta(days=2) and inv.currency == inv.customer.currency
                    and not self._planted(inv)):
                by_customer[inv.customer.key].append(inv)
        for invs in by_customer.values():
            if len(invs) >= 2 and self.r.random() < 0.7:
                pair = invs[:2]
                day = max(i.invoice_date for i in pair) + timedelta(days=1)
                self._bank_payment(pair[0].customer, pair, sum((i.total for i in pair), Decimal(0)),
                                   min(day, self.as_of), style="batch", allow_fee=False)

    def _planted(self, inv: Invoice) -> bool:
        ref = self._ref(inv)[0]
        return any(ref in b.records for b in self.co.breaks)

    def customer_mismatches(self, k: int) -> None:
        """CRM says one tax id, the ERP party of the same chain another."""
        linked = {o.customer.key for o in self.co.orders if o.deal is not None}
        pool = [c for c in self.co.customers if c.crm_tax_id and c.key in linked]
        for c in self.r.sample(pool, min(k, len(pool))):
            c.crm_tax_id = _tax_id(self.r, c.country)
            self.plant("CUSTOMER_MISMATCH", f"CRM tax id {c.crm_tax_id} vs ERP {c.tax_id}", c)
            self.co.breaks[-1].records.append(self.party_ref(c))


def erp_id(kind: str, n: int) -> int:
    """ERP integer ids: one range per model so that a record is recognisable from its id alone."""
    return {"party": 1_000, "order": 100_000, "order_line": 200_000, "invoice": 300_000,
            "invoice_line": 400_000, "payment": 500_000, "shipment": 600_000, "move": 700_000}[kind] + n


def build(chains: int, seed: int, *, breaks: bool = True, as_of: date = date(2026, 10, 31),
          rate: float = 0.009, crm: str | None = None) -> Company:
    """The company's history: ``chains`` deal-to-cash chains, breaks planted at ``rate`` per code;
    ``crm`` replaces the CRM the seed draws (salesforce, hubspot, jiandaoyun)."""
    p = _Planner(chains, seed, breaks, as_of, crm)
    p.customers(max(8, chains // 3))
    plan: list[str | None] = [None] * chains
    if breaks:
        per_code = max(1, round(chains * rate))
        slots = list(range(chains))
        p.r.shuffle(slots)
        it = iter(slots)
        for code in CODES:
            if code == "CUSTOMER_MISMATCH" or (code in SHIP_CODES and not p.conv.ships):
                continue
            for _ in range(per_code):
                plan[next(it)] = code
    picker: Callable[[], Customer] = lambda: p.r.choice(p.co.customers)  # noqa: E731
    for planned in plan:
        p.chain(picker(), planned)
    if breaks:
        p.customer_mismatches(max(1, round(chains * rate)))
    p.batches()
    p.shipments()
    return p.co


def labels(co: Company) -> dict[str, str]:
    """``"system/source id"`` -> what kind of record this is and how its references are kept (diagnostics:
    the bench groups false positives by it)."""
    conv = co.conventions
    out: dict[str, str] = {}
    paid_by: dict[int, list[str]] = defaultdict(list)
    for p in co.payments:
        for inv in p.invoices:
            paid_by[id(inv)].append(p.style or p.system)
        label = (f"{p.system} payment, remittance {p.style or 'charge.invoice'}" if p.customer is not None
                 else "bank payment from a non-customer")
        if p.customer is not None and p.customer.country == "CN":
            label += ", Chinese payer"
        out[f"{p.system}/{p.ident}"] = label
    for d in co.deals:
        linked = [o for o in co.orders if o.deal is d] if d.stage == "won" else []
        how = ("order names it in " + conv.erp_deal_place if linked and linked[0].deal_ref
               else f"only CRM field {conv.crm_order_field}" if d.order_number_on_crm else "no order")
        out[f"{conv.crm}/{d.crm_id}"] = f"{d.stage} deal, {how}"
    for o in co.orders:
        how = (f"deal ref in {conv.erp_deal_place}" if o.deal_ref else
               f"deal only via CRM field {conv.crm_order_field}" if o.deal and o.deal.order_number_on_crm else
               "no deal")
        out[f"{conv.erp}/{erp_id('order', o.erp_id)}"] = f"order billed in {o.billing}, {how}"
    for inv in co.invoices:
        where = (f"order ref in {conv.stripe_order_place}"
                 + (f" ({conv.stripe_order_key})" if conv.stripe_order_place == "metadata" else "")
                 if inv.system == "stripe" else "order via ERP link")
        if inv.order is None:
            where = "no order"
        paid = "+".join(sorted(set(paid_by.get(id(inv), [])))) or "unpaid"
        key = inv.ident if inv.system == "stripe" else str(erp_id("invoice", int(inv.ident)))
        out[f"{inv.system}/{key}"] = f"{inv.system} invoice, {where}, paid by {paid}"
    for c in co.customers:
        kind = "CN" if c.country == "CN" else c.country
        shared = sum(1 for x in co.customers if x.domain == c.domain) > 1
        homonym = sum(1 for x in co.customers if x.name == c.name) > 1
        desc = f"customer {kind}" + (", shares its domain" if shared else "") + (", homonym" if homonym else "")
        out[f"{conv.crm}/{c.crm_id}"] = desc
        out[f"{conv.erp}/{erp_id('party', c.key)}"] = desc
        if c.stripe_id:
            out[f"stripe/{c.stripe_id}"] = desc
    return out

"""Identity resolution: which accounts across CRM, ERP, Stripe and bank payers are the same customer.

Evidence, strongest first, for a pair of records:

1. ``reference``: one names the other (Stripe ``metadata.crm_account_id``, an ERP partner's ``ref``
   holding the CRM id: mapped into ``attributes.account_ref`` / ``attributes.crm_account_ref``).
2. ``tax_id``: the same normalized tax id.
3. ``name`` / ``name+domain`` / ``domain``: equal normalized names (:mod:`canonical.names`), the same
   web or e-mail domain (free-mail domains do not count).
4. ``acronym`` and ``fuzzy``: rapidfuzz similarity of normalized names.

Rules that keep precision: two *different* tax ids are never linked (at most a review candidate);
different countries, different numbers in the names, or different place names (``Acme Japan`` vs
``Acme France``) cap a name-based link below the automatic threshold; so do two different web domains
for a similar (not equal) name, and an equal name that two accounts of one system share (homonyms:
only a domain, a tax id or a reference can then say which one is meant). A similar name never links
above an equal one.

Confidence >= ``identity_auto_threshold`` links automatically; between the review and auto
thresholds the pair is a *review candidate* (``identity_candidate``, for a person to decide). Auto links
are applied strongest first with ties broken by ids, so the result does not depend on input order;
a link that would put two different tax ids into one cluster becomes a review candidate instead.

Scale: candidate pairs come from blocking keys (tax id, domain, each distinctive name token,
name acronym) with a cap on block size, so 100k accounts compare in seconds, not hours.

Results (:func:`run_identity`):

* ``cross_ref`` (entity ``account``): every live account, its ``cluster_id`` (the smallest canonical
  id of the cluster), and the method/confidence/evidence of its strongest link (``self`` for a
  singleton). Entity ``payment``: a bank payment whose payer name resolved to an account cluster.
* ``identity_candidate``: review candidates ``(entity, left_id, right_id, method, confidence,
  evidence)``: account pairs left in different clusters, and payments whose payer is ambiguous or
  only similar.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import combinations
from typing import Any

import sqlalchemy as sa
from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from canonical import tables
from canonical.names import GENERIC, acronym, name_tokens, normalize_name

AUTO = Decimal("0.92")
REVIEW = Decimal("0.80")
BLOCK_CAP = 200  # a blocking key shared by more records than this is too common to compare on

FREE_MAIL = frozenset(
    ["gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.co.jp", "hotmail.com", "outlook.com", "live.com", "msn.com", "icloud.com", "me.com", "aol.com", "gmx.de", "gmx.net", "web.de", "t-online.de", "orange.fr", "free.fr", "laposte.net", "wanadoo.fr", "libero.it", "mail.ru", "yandex.ru", "qq.com", "163.com", "126.com", "naver.com", "proton.me", "protonmail.com", "hey.com", "fastmail.com", "zoho.com", "example.com"]
)
PLACES = frozenset(
    ["usa", "us", "america", "american", "canada", "mexico", "brazil", "argentina", "chile", "uk", "britain", "british", "england", "ireland", "germany", "deutschland", "german", "france", "french", "spain", "espana", "italy", "italia", "netherlands", "nederland", "holland", "belgium", "belgie", "luxembourg", "switzerland", "schweiz", "suisse", "swiss", "austria", "osterreich", "sweden", "norway", "denmark", "finland", "iceland", "estonia", "latvia", "lithuania", "hungary", "romania", "bulgaria", "croatia", "serbia", "slovakia", "slovenia", "ukraine", "poland", "portugal", "greece", "turkey", "egypt", "morocco", "nigeria", "kenya", "indonesia", "malaysia", "thailand", "vietnam", "philippines", "peru", "colombia", "venezuela", "uruguay", "japan", "nippon", "china", "chinese", "hongkong", "hong", "kong", "taiwan", "korea", "singapore", "india", "australia", "zealand", "africa", "israel", "emirates", "uae", "dubai", "saudi", "russia", "europe", "european", "asia", "pacific", "apac", "emea", "latam", "nordic", "nordics", "iberia", "benelux", "north", "south", "east", "west", "london", "paris", "berlin", "munich", "muenchen", "munchen", "tokyo", "osaka", "beijing", "shanghai", "shenzhen", "new", "york", "boston", "chicago", "texas", "california", "madrid", "barcelona", "milan", "milano", "rome", "roma", "amsterdam", "zurich", "vienna", "wien", "sydney", "melbourne", "toronto", "vancouver", "montreal", "seoul", "mumbai", "delhi", "bangalore", "dublin"]
)
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class Party:
    """One record to resolve: an account, or a payment's payer."""

    id: str
    name: str
    entity: str = "account"
    source_id: str = ""
    tax_id: str | None = None
    domain: str | None = None
    country: str | None = None
    refs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Link:
    left: str
    right: str
    method: str
    confidence: Decimal
    evidence: dict[str, Any]


@dataclass
class IdentityResult:
    cluster_of: dict[str, str]  # account id -> cluster id
    member_link: dict[str, Link | None]  # account id -> strongest link inside its cluster
    reviews: list[Link] = field(default_factory=list)
    payer_links: list[Link] = field(default_factory=list)  # payment id -> account (right)
    payer_reviews: list[Link] = field(default_factory=list)


@dataclass(slots=True)
class _Prepared:
    party: Party
    norm: str
    words: tuple[str, ...]
    tokens: frozenset[str]
    acro: str | None
    digits: tuple[str, ...]
    places: frozenset[str]
    domain: str | None
    homonym: bool = False  # another account of the same system has this normalized name


def _prepare(p: Party) -> _Prepared:
    norm = normalize_name(p.name) if p.name else ""
    words = norm.split()
    places = frozenset(w for w in words if w in PLACES)
    domain = p.domain.lower() if p.domain and p.domain.lower() not in FREE_MAIL else None
    return _Prepared(p, norm, tuple(words), frozenset(words), acronym(norm), tuple(_DIGITS.findall(norm)), places,
                     domain)


SHARED_DOMAIN_MIN = 3
FUZZY_MAX = Decimal("0.94")  # a similar name links below an equal one (``name`` 0.95)
NUMBERED_SIBLINGS = Decimal("0.70")  # below any sensible review threshold


def _drop_shared_domains(items: list[_Prepared]) -> list[_Prepared]:
    """A domain that several accounts of one system share (a reseller's, a group's, a placeholder)
    identifies none of them: it stops counting as evidence for those accounts."""
    per_system: dict[tuple[str, str], int] = {}
    for p in items:
        if p.domain:
            key = (p.party.id.split(":", 1)[0], p.domain)
            per_system[key] = per_system.get(key, 0) + 1
    for p in items:
        if p.domain and per_system[(p.party.id.split(":", 1)[0], p.domain)] >= SHARED_DOMAIN_MIN:
            p.domain = None
    return items


def _mark_homonyms(items: list[_Prepared]) -> list[_Prepared]:
    """A name two accounts of one system share (two companies called "Guangzhou Jiahe Electronics" in
    the CRM) cannot say which of them another record is: the name alone stops being enough for them."""
    per_system: dict[tuple[str, str], int] = defaultdict(int)
    for p in items:
        if p.norm:
            per_system[(p.party.id.split(":", 1)[0], p.norm)] += 1
    for p in items:
        if p.norm and per_system[(p.party.id.split(":", 1)[0], p.norm)] >= 2:
            p.homonym = True
    return items


def _q(x: float) -> Decimal:
    return Decimal(str(round(x, 4)))


def score(a: _Prepared, b: _Prepared, auto: Decimal = AUTO) -> Link | None:
    """The evidence that two records are the same customer, or ``None`` when there is none."""
    pa, pb = a.party, b.party
    left, right = (pa.id, pb.id) if pa.id <= pb.id else (pb.id, pa.id)
    tax_conflict = bool(pa.tax_id and pb.tax_id and pa.tax_id != pb.tax_id)
    cap = auto - Decimal("0.05")  # highest confidence of a capped (review-only) link
    evidence: dict[str, Any] = {}
    if tax_conflict:
        evidence["tax_ids"] = sorted([pa.tax_id or "", pb.tax_id or ""])

    # 1. explicit references
    if (pb.source_id and pb.source_id in pa.refs) or pb.id in pa.refs or (pa.source_id and pa.source_id in pb.refs) \
            or pa.id in pb.refs:
        evidence["reference"] = True
        return Link(left, right, "reference", cap if tax_conflict else Decimal("1"), evidence)
    # 2. tax id
    if pa.tax_id and pa.tax_id == pb.tax_id:
        return Link(left, right, "tax_id", Decimal("0.99"), {"tax_id": pa.tax_id})

    if not a.norm or not b.norm:
        return None
    same_domain = bool(a.domain and a.domain == b.domain)
    exact = a.norm == b.norm
    sim = max(fuzz.ratio(a.norm, b.norm), fuzz.token_sort_ratio(a.norm, b.norm)) / 100.0
    if not exact and not same_domain and sim < 0.7 and len(a.words) != len(b.words) \
            and a.norm.replace(" ", "") != b.acro and b.norm.replace(" ", "") != a.acro:
        return None  # nothing left that could link them: skip the slower checks
    evidence["names"] = sorted([a.norm, b.norm])
    if not exact:
        evidence["similarity"] = round(sim, 4)
    if same_domain:
        evidence["domain"] = a.domain

    method: str
    conf: Decimal
    if exact:
        method, conf = ("name+domain", Decimal("0.98")) if same_domain else ("name", Decimal("0.95"))
    elif same_domain and sim >= 0.6:
        method, conf = "domain", Decimal("0.95")
    elif (a.acro and b.norm.replace(" ", "") == a.acro) or (b.acro and a.norm.replace(" ", "") == b.acro):
        method, conf = "acronym", Decimal("0.95") if same_domain else Decimal("0.84")
    elif _abbreviated(a, b) or _abbreviated(b, a):
        method, conf = "abbreviation", Decimal("0.93")
    elif same_domain:
        method, conf = "domain", Decimal("0.82")
    elif sim >= 0.7:
        # never above an exact name: "Vega Cedar Textiles" meets "Cedar Vega Textiles" at token-sort 1.0
        method, conf = "fuzzy", min(_q(sim), FUZZY_MAX)
    else:
        return None

    # Signs of two different legal entities with similar names: review at most.
    reasons = []
    if tax_conflict:
        reasons.append("different tax ids")
    if pa.country and pb.country and pa.country.upper() != pb.country.upper():
        reasons.append("different countries")
        evidence["countries"] = sorted([pa.country.upper(), pb.country.upper()])
    if a.digits != b.digits and method != "reference":
        reasons.append("different numbers in the names")
    if a.places != b.places and method in ("fuzzy", "domain", "acronym"):
        reasons.append("different places in the names")
    if a.domain and b.domain and a.domain != b.domain and method in ("fuzzy", "acronym", "abbreviation"):
        reasons.append("different web domains")
        evidence["domains"] = sorted([a.domain, b.domain])
    if method == "name":
        if pa.id.split(":", 1)[0] != pb.id.split(":", 1)[0]:
            if a.homonym or b.homonym:
                reasons.append("the name is not unique in its system")
        elif a.domain and b.domain and a.domain != b.domain:  # two records of one system, one name, two sites
            reasons.append("different web domains")
            evidence["domains"] = sorted([a.domain, b.domain])
    # a shared domain is evidence, not a verdict: two companies of one group share it (Acme Robotics /
    # Acme Finance at acme.com) and are two legal entities
    if method == "fuzzy" and _distinct_token(a, b) and not _one_typo_in_context(a, b):
        reasons.append("a distinctive word differs")
    elif method == "domain" and _distinct_both_ways(a, b) and not _one_typo_in_context(a, b):
        # each name has a word the other lacks ("Adventure Works" / "Adventure Works Cycles" is one name
        # with a qualifier; "Acme Robotics" / "Acme Finance" are two)
        reasons.append("a distinctive word differs")
    if reasons:
        evidence["capped"] = reasons
        conf = min(conf, cap)
    if a.digits and b.digits and a.digits != b.digits and method != "reference" \
            and [w for w in a.words if not w.isdigit()] == [w for w in b.words if not w.isdigit()]:
        # "Customer 014" / "Customer 015", "Store 12" / "Store 13": the number is the identity
        evidence.setdefault("capped", []).append("names differ only by their numbers")
        conf = min(conf, NUMBERED_SIBLINGS)
    return Link(left, right, method, conf, evidence)


def _distinct_token(a: _Prepared, b: _Prepared) -> bool:
    """A non-generic word on one side with no close counterpart on the other (``ireland``/``iceland``
    pass the similarity test as strings but name different banks)."""
    for x, y in ((a.tokens, b.tokens), (b.tokens, a.tokens)):
        for t in x - y:
            if t in GENERIC or len(t) < 3:
                continue
            # a typo in a long word is tolerated; short words must match exactly (beacon / bacon)
            if not any(_close_words(t, u) for u in y):
                return True
    return False


def _distinct_both_ways(a: _Prepared, b: _Prepared) -> bool:
    """Each name has a non-generic word with no close counterpart in the other."""
    def one_way(x: frozenset[str], y: frozenset[str]) -> bool:
        return any(t not in GENERIC and len(t) >= 3 and not any(_close_words(t, u) for u in y) for t in x - y)
    return one_way(a.tokens, b.tokens) and one_way(b.tokens, a.tokens)


def _abbreviated(a: _Prepared, b: _Prepared) -> bool:
    """``soc generale`` / ``societe generale``: same words in order, some cut to a prefix of 3+
    letters (bank statements truncate payer names), at least one distinctive word in full."""
    wa, wb = a.words, b.words
    if len(wa) != len(wb) or len(wa) < 2 or wa == wb or wa[0][0] != wb[0][0]:
        return False
    full = 0
    for x, y in zip(wa, wb, strict=True):
        if x == y:
            full += x not in GENERIC
        elif not (len(x) >= 3 and y.startswith(x)):
            return False
    return full >= 1


def _one_typo_in_context(a: _Prepared, b: _Prepared) -> bool:
    """One word one letter off (``pryce`` / ``price``) among two or more identical distinctive words."""
    only_a, only_b = a.tokens - b.tokens, b.tokens - a.tokens
    if len(only_a) != 1 or len(only_b) != 1:
        return False
    shared = [t for t in a.tokens & b.tokens if t not in GENERIC and len(t) > 2]
    (x,), (y,) = only_a, only_b
    return len(shared) >= 2 and Levenshtein.distance(x, y) == 1


def _close_words(t: str, u: str) -> bool:
    """A typo in a long word, or one word cut short (``wizard`` / ``wizarding``)."""
    if max(len(t), len(u)) >= 7 and fuzz.ratio(t, u) >= 85:
        return True
    short, long_ = (t, u) if len(t) <= len(u) else (u, t)
    return len(short) >= 6 and long_.startswith(short)


# --- blocking -------------------------------------------------------------------------------------

def _keys(p: _Prepared) -> set[str]:
    keys: set[str] = set()
    if p.party.tax_id:
        keys.add("t:" + p.party.tax_id)
    if p.domain:
        keys.add("d:" + p.domain)
    if p.norm:
        keys.add("n:" + p.norm)
        keys.add("c:" + p.norm.replace(" ", ""))
        for t in name_tokens(p.norm):
            keys.add("w:" + t)
            if len(t) >= 5:
                keys.add("p:" + t[:4])  # catches typos after the 4th letter
        if p.acro and len(p.acro) >= 2:
            keys.add("a:" + p.acro)  # paired only with a one-word name equal to it (IBM)
    keys.update("r:" + r for r in p.party.refs)
    if p.party.source_id:
        keys.add("r:" + p.party.source_id)
    keys.add("r:" + p.party.id)
    return keys


def candidate_pairs(items: Sequence[_Prepared], cap: int = BLOCK_CAP) -> set[tuple[int, int]]:
    blocks: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(items):
        for k in _keys(p):
            blocks[k].append(i)
    pairs: set[tuple[int, int]] = set()
    for key, members in blocks.items():
        if key.startswith("a:"):
            singles = [i for i in blocks.get("c:" + key[2:], ()) if len(items[i].words) == 1]
            if len(members) * len(singles) <= cap * cap:
                pairs.update((min(i, j), max(i, j)) for i in members for j in singles if i != j)
            continue
        if len(members) < 2 or (len(members) > cap and not key.startswith(("t:", "r:"))):
            continue
        pairs.update(combinations(members, 2))
    return pairs


# --- resolution -----------------------------------------------------------------------------------

def resolve(
    accounts: Iterable[Party],
    payers: Iterable[Party] = (),
    auto: Decimal = AUTO,
    review: Decimal = REVIEW,
) -> IdentityResult:
    """Cluster accounts, attach payers; pure and independent of input order."""
    items = _mark_homonyms(_drop_shared_domains([_prepare(p) for p in sorted(accounts, key=lambda p: p.id)]))
    index = {p.party.id: i for i, p in enumerate(items)}
    links: list[Link] = []
    for i, j in candidate_pairs(items):
        link = score(items[i], items[j], auto)
        if link is not None and link.confidence >= review:
            links.append(link)
    links.sort(key=lambda lk: (-lk.confidence, lk.left, lk.right))

    parent = list(range(len(items)))
    taxes: list[set[str]] = [{p.party.tax_id} if p.party.tax_id else set() for p in items]

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    member_link: dict[str, Link | None] = {p.party.id: None for p in items}
    pending_reviews: list[Link] = []
    for link in links:
        a, b = find(index[link.left]), find(index[link.right])
        if link.confidence < auto:
            pending_reviews.append(link)
            continue
        if a == b:
            _keep_best(member_link, link)
            continue
        if len(taxes[a] | taxes[b]) > 1:  # would put two different tax ids in one cluster
            conflict = dict(link.evidence, tax_ids=sorted(taxes[a] | taxes[b]))
            pending_reviews.append(Link(link.left, link.right, link.method, min(link.confidence, auto - Decimal("0.05")),
                                        conflict))
            continue
        root, child = (a, b) if a < b else (b, a)
        parent[child] = root
        taxes[root] |= taxes[child]
        _keep_best(member_link, link)

    cluster_members: dict[int, list[str]] = defaultdict(list)
    for p in items:
        cluster_members[find(index[p.party.id])].append(p.party.id)
    cluster_of = {m: min(ms) for ms in cluster_members.values() for m in ms}
    reviews = [lk for lk in pending_reviews if cluster_of[lk.left] != cluster_of[lk.right]]
    # one review per pair of clusters: the strongest
    seen: set[tuple[str, str]] = set()
    unique_reviews = []
    for lk in reviews:
        key = tuple(sorted((cluster_of[lk.left], cluster_of[lk.right])))
        if key not in seen:
            seen.add(key)  # type: ignore[arg-type]
            unique_reviews.append(lk)

    result = IdentityResult(cluster_of, member_link, unique_reviews)
    _attach_payers(result, items, sorted(payers, key=lambda p: p.id), auto, review)
    return result


def _keep_best(member_link: dict[str, Link | None], link: Link) -> None:
    for m in (link.left, link.right):
        cur = member_link.get(m)
        if cur is None or (link.confidence, cur.left, cur.right) > (cur.confidence, link.left, link.right):
            member_link[m] = link


def _attach_payers(
    result: IdentityResult, accounts: list[_Prepared], payers: list[Party], auto: Decimal, review: Decimal
) -> None:
    if not payers:
        return
    blocks: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(accounts):
        for k in _keys(p):
            if k[0] in "ndcwp":
                blocks[k].append(i)
            elif k[0] == "a":  # a payer "IBM" meets "International Business Machines"
                blocks["c:" + k[2:]].append(i)
    for payer in payers:
        pp = _prepare(payer)
        cands: set[int] = set()
        for k in _keys(pp):
            members = blocks.get(k, ())
            if k[0] in "ndcwp" and len(members) <= BLOCK_CAP:
                cands.update(members)
        best: dict[str, Link] = {}  # cluster -> best link
        for i in sorted(cands):
            link = score(pp, accounts[i], auto)
            if link is None or link.confidence < review:
                continue
            acc = accounts[i].party.id
            lk = Link(payer.id, acc, link.method, link.confidence, link.evidence)
            cluster = result.cluster_of[acc]
            if cluster not in best or (lk.confidence, acc) > (best[cluster].confidence, best[cluster].right):
                best[cluster] = lk
        if not best:
            continue
        ranked = sorted(best.values(), key=lambda lk: (-lk.confidence, lk.right))
        top = ranked[0]
        tied = [lk for lk in ranked if lk.confidence == top.confidence]
        if top.confidence >= auto and len(tied) == 1:
            result.payer_links.append(top)
        else:
            for lk in ranked[:3]:
                ev = dict(lk.evidence, ambiguous=len(tied) > 1) if len(tied) > 1 else lk.evidence
                result.payer_reviews.append(Link(lk.left, lk.right, lk.method, min(lk.confidence, auto - Decimal("0.05"))
                                                 if len(tied) > 1 else lk.confidence, ev))


# --- the stage: read accounts and payers, write cross_ref and identity_candidate --------------------

_TAX_KEY = re.compile(r"(?i)(^|[^a-z])(tax|vat|ein|uscc|gst|abn|tin|nif|cif|siren|cnpj|ust)([^a-z]|$)|tax_?id|taxnumber")
_TAX_STRIP = re.compile(r"[\s.\-/]")


def normalize_tax(value: Any) -> str | None:
    """A tax id as compared: upper case, no spaces, dots, dashes or slashes (``DE 123.456.789``)."""
    if value is None or isinstance(value, bool):
        return None
    text = _TAX_STRIP.sub("", str(value)).upper()
    return text if len(text) >= 4 and any(c.isdigit() for c in text) else None


def tax_id_of(tax_id: Any, attributes: Mapping[str, Any] | None) -> str | None:
    """The account's tax id whichever field it came from: the mapped ``tax_id``, else an attribute whose
    key names a tax id (a custom field mapped into ``attributes``: ``vat``, ``tax_id__c``, ``uscc``...)."""
    own = normalize_tax(tax_id)
    if own or not attributes:
        return own
    for key in sorted(attributes):
        if _TAX_KEY.search(key):
            found = normalize_tax(attributes[key])
            if found:
                return found
    return None


def _refs(attributes: Mapping[str, Any] | None) -> tuple[str, ...]:
    if not attributes:
        return ()
    out = []
    for key in ("account_ref", "crm_account_ref"):
        v = attributes.get(key)
        if v:
            out.append(str(v))
    return tuple(out)


def load_parties(conn: sa.Connection) -> tuple[list[Party], list[Party]]:
    acc = tables.table_for("account")
    pay = tables.table_for("payment")
    accounts = [
        Party(
            id=r.id, name=r.name or "", source_id=r.source_id, tax_id=tax_id_of(r.tax_id, r.attributes),
            domain=r.domain or (r.email.rsplit("@", 1)[1].lower() if r.email and "@" in r.email else None),
            country=r.country, refs=_refs(r.attributes),
        )
        for r in conn.execute(
            sa.select(acc.c.id, acc.c.name, acc.c.source_id, acc.c.tax_id, acc.c.domain, acc.c.email,
                      acc.c.country, acc.c.attributes).where(acc.c.deleted_at.is_(None))
        )
    ]
    payers = [
        Party(id=r.id, name=r.payer_name, entity="payment", source_id=r.source_id)
        for r in conn.execute(
            sa.select(pay.c.id, pay.c.payer_name, pay.c.source_id).where(
                pay.c.deleted_at.is_(None), pay.c.account_id.is_(None), pay.c.payer_name.is_not(None)
            )
        )
    ]
    return accounts, payers


def run_identity(store: Any, auto: Decimal | None = None, review: Decimal | None = None,
                 config: Any = None) -> dict[str, int]:
    """Resolve identities over the whole store and replace the ``account``/``payment`` cross-refs
    (under the store's ``identity`` lock: a second run waits for the first).

    Thresholds: ``auto``/``review``, else ``config.reconcile`` (the :class:`ltc.app.config.Config` the
    application layer passes), else :data:`AUTO`/:data:`REVIEW` (the same as ltc.yaml's defaults).
    """
    from canonical.locks import stage_lock

    with stage_lock(store.engine, "identity"):
        return _run_identity(store, auto, review, config)


def _run_identity(store: Any, auto: Decimal | None, review: Decimal | None, config: Any) -> dict[str, int]:
    from canonical.store import now

    if config is not None:
        auto = auto or config.reconcile.identity_auto_threshold
        review = review or config.reconcile.identity_review_threshold
    auto = auto or AUTO
    review = review or REVIEW
    with store.engine.connect() as conn:
        accounts, payers = load_parties(conn)
    result = resolve(accounts, payers, auto, review)
    ts = now()
    xref_rows = []
    for acc_id, cluster in sorted(result.cluster_of.items()):
        link = result.member_link.get(acc_id)
        xref_rows.append({
            "entity": "account", "member_id": acc_id, "cluster_id": cluster,
            "method": link.method if link else "self", "confidence": link.confidence if link else Decimal(1),
            "evidence": dict(link.evidence, linked_to=link.right if link.left == acc_id else link.left) if link else {},
            "created_at": ts,
        })
    for lk in result.payer_links:
        xref_rows.append({
            "entity": "payment", "member_id": lk.left, "cluster_id": result.cluster_of[lk.right],
            "method": lk.method, "confidence": lk.confidence, "evidence": dict(lk.evidence, account_id=lk.right),
            "created_at": ts,
        })
    cand_rows = [
        {"entity": "account", "left_id": lk.left, "right_id": lk.right, "method": lk.method,
         "confidence": lk.confidence, "evidence": lk.evidence, "created_at": ts}
        for lk in result.reviews
    ] + [
        {"entity": "payment", "left_id": lk.left, "right_id": lk.right, "method": lk.method,
         "confidence": lk.confidence, "evidence": lk.evidence, "created_at": ts}
        for lk in result.payer_reviews
    ]
    with store.engine.begin() as conn:
        conn.execute(tables.cross_ref.delete().where(tables.cross_ref.c.entity.in_(["account", "payment"])))
        conn.execute(tables.identity_candidate.delete())
        for i in range(0, len(xref_rows), 5000):
            conn.execute(tables.cross_ref.insert(), xref_rows[i : i + 5000])
        for i in range(0, len(cand_rows), 5000):
            conn.execute(tables.identity_candidate.insert(), cand_rows[i : i + 5000])
    clusters = len(set(result.cluster_of.values()))
    return {
        "accounts": len(accounts), "clusters": clusters, "linked_accounts": len(accounts) - clusters,
        "payers": len(payers), "payers_linked": len(result.payer_links),
        "review_candidates": len(cand_rows),
    }

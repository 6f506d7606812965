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

Scale: only records that share a blocking key (tax id, reference, domain, name, each distinctive name
word and its first 4 letters, acronym) are compared, blocks over ``BLOCK_CAP`` records aside. A name-word
block's pairs grow with the square of its size, so of those only the pairs that :func:`score` could link at
the review threshold are scored: the same domain, abbreviation key or acronym, or a name similarity reaching it,
found a whole array of pairs at a time (numpy, rapidfuzz ``cpdist``), names that differ only by their numbers
left out (:func:`_linkable`). The links are exactly those of scoring every pair; the cost per record stays
about constant. Payers that score alike (same name, system, tax id, domain, country) are scored once.

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
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from typing import Any

import numpy as np
import sqlalchemy as sa
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from canonical import tables
from canonical.interpreter import no_gc
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
    return _Prepared(p, norm, tuple(words), frozenset(words), acronym(norm), tuple(_DIGITS.findall(norm)), places,
                     _own_domain(p))


def _own_domain(p: Party) -> str | None:
    """The party's domain, lower case, unless it is a free-mail one."""
    return p.domain.lower() if p.domain and p.domain.lower() not in FREE_MAIL else None


SHARED_DOMAIN_MIN = 3
FUZZY_MIN = 0.7  # the least similarity of a ``fuzzy`` link
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
    if not exact and not same_domain and sim < FUZZY_MIN and len(a.words) != len(b.words) \
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
    elif sim >= FUZZY_MIN:
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
#
# Only records that share a blocking key (:func:`_keys`) are compared. What a block contributes depends on
# the kind of its key:
UNCAPPED_KEYS = ("t:", "r:")  # tax id, reference: every pair, whatever the size of the block
WHOLE_KEYS = ("n:", "c:", "d:")  # name, name without spaces, domain: every pair of a block of up to BLOCK_CAP
FILTERED_KEYS = ("w:", "p:")  # name word, its first 4 letters: of a block of up to BLOCK_CAP, the pairs that
#                               :func:`score` could link at the review threshold (:func:`_linkable`), found in C
# "a:" (acronym): its records against the one-word names equal to it (``c:``), up to BLOCK_CAP² pairs.
# A payer meets the accounts of its WHOLE_KEYS and FILTERED_KEYS blocks (an account's "a:" counting as "c:").


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


def candidate_pairs(items: Sequence[_Prepared], review: Decimal = REVIEW, cap: int = BLOCK_CAP) -> list[tuple[int, int]]:
    """The pairs ``(i, j)``, ``i < j``, of records to score, ascending (:meth:`_Blocks.pairs`)."""
    return _Blocks.of(items).pairs(review, cap)


@dataclass(frozen=True, slots=True)
class _Blocks:
    """The records of each blocking key (ascending), and the records' features."""

    items: Sequence[_Prepared]
    members: dict[str, list[int]]
    features: _Features

    @classmethod
    def of(cls, items: Sequence[_Prepared]) -> _Blocks:
        members: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(items):
            for k in _keys(p):
                members[k].append(i)
        return cls(items, members, _Features.of(items))

    def pairs(self, review: Decimal, cap: int = BLOCK_CAP) -> list[tuple[int, int]]:
        """The pairs ``(i, j)``, ``i < j``, of records to score, ascending.

        The pairs of a name-word block that :func:`_linkable` rules out are left out: :func:`score` would not link
        them at ``review``, so the links at ``review`` or above are those of scoring every pair of every block."""
        whole: list[list[int]] = []
        filtered: list[list[int]] = []
        acronyms: list[tuple[int, int]] = []
        for key, members in self.members.items():
            kind = key[:2]
            if kind == "a:":
                acronyms += _acronym_pairs(self.items, members, self.members.get("c:" + key[2:], []), cap)
            elif kind in UNCAPPED_KEYS or len(members) <= cap:
                (filtered if kind in FILTERED_KEYS else whole).append(members)
        wi, wj = _pairs_within(whole)
        fi, fj = _pairs_within(filtered)
        keep = _linkable(self.features, fi, fj, review)
        ai, aj = np.array(acronyms, dtype=np.int64).reshape(-1, 2).T
        n = len(self.items)
        codes = np.unique(np.concatenate([wi, fi[keep], ai]) * n + np.concatenate([wj, fj[keep], aj]))
        return list(zip((codes // n).tolist(), (codes % n).tolist(), strict=True))

    def for_payers(self) -> dict[str, list[int]]:
        """The accounts a payer meets by each key: WHOLE_KEYS and FILTERED_KEYS blocks; an acronym's accounts are
        in its ``c:`` block too (a payer "IBM" meets "International Business Machines")."""
        out = {k: m for k, m in self.members.items() if k[:2] in WHOLE_KEYS or k[:2] in FILTERED_KEYS}
        for k, m in self.members.items():
            if k[:2] == "a:":
                out["c:" + k[2:]] = out.get("c:" + k[2:], []) + m
        return out


def _acronym_pairs(items: Sequence[_Prepared], members: list[int], compact: list[int], cap: int) -> list[tuple[int, int]]:
    """An acronym's records against the one-word names equal to it (``ibm``), unless that makes over cap² pairs."""
    singles = [i for i in compact if len(items[i].words) == 1]
    if len(members) * len(singles) > cap * cap:
        return []
    return [(min(i, j), max(i, j)) for i in members for j in singles if i != j]


def _pairs_within(blocks: Iterable[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, ``i < j``, of each block (its members ascending), as two index arrays."""
    by_size: dict[int, list[list[int]]] = defaultdict(list)
    for members in blocks:
        if len(members) >= 2:
            by_size[len(members)].append(members)
    left, right = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for size, group in by_size.items():
        rows = np.array(group, dtype=np.int64)
        a, b = np.triu_indices(size, 1)
        left.append(rows[:, a].ravel())
        right.append(rows[:, b].ravel())
    return np.concatenate(left), np.concatenate(right)


def _pairs_across(owners: list[int], blocks: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Each owner against every member of its block, as two index arrays."""
    sizes = np.fromiter(map(len, blocks), dtype=np.int64, count=len(blocks))
    members = np.fromiter(chain.from_iterable(blocks), dtype=np.int64, count=int(sizes.sum()))
    return np.repeat(np.array(owners, dtype=np.int64), sizes), members


@dataclass(frozen=True, slots=True)
class _Features:
    """What :func:`score` reads of records, as arrays: equal values have equal codes (one vocabulary for all
    columns, so an acronym compares with a name without spaces), ``-1`` is none."""

    vocab: dict[Hashable, int]
    names: np.ndarray  # the normalized names themselves (objects)
    norm: np.ndarray
    compact: np.ndarray  # the name without spaces
    acro: np.ndarray
    domain: np.ndarray
    abbrev: np.ndarray  # the first 3 letters of each word, for 2+ words: equal for an abbreviation (_abbreviated)
    digits: np.ndarray  # the numbers in the name
    letters: np.ndarray  # the words that are not numbers

    @classmethod
    def of(cls, items: Sequence[_Prepared], vocab: dict[Hashable, int] | None = None) -> _Features:
        vocab = {} if vocab is None else vocab

        def codes(values: Iterable[Hashable | None]) -> np.ndarray:
            return np.fromiter((-1 if v is None else vocab.setdefault(v, len(vocab)) for v in values),
                               dtype=np.int64, count=len(items))

        return cls(
            vocab,
            names=np.array([p.norm for p in items], dtype=object),
            norm=codes(p.norm or None for p in items),
            compact=codes(p.norm.replace(" ", "") for p in items),
            acro=codes(p.acro for p in items),
            domain=codes(p.domain for p in items),
            abbrev=codes(" ".join(w[:3] for w in p.words) if len(p.words) >= 2 else None for p in items),
            digits=codes(p.digits or None for p in items),
            letters=codes(" ".join(w for w in p.words if not w.isdigit()) for p in items),
        )

    def extended(self, items: Sequence[_Prepared]) -> _Features:
        """These records' features followed by those of ``items``, in the same vocabulary."""
        more = _Features.of(items, self.vocab)
        return _Features(self.vocab, *(np.concatenate([getattr(self, f), getattr(more, f)])
                                       for f in ("names", "norm", "compact", "acro", "domain", "abbrev", "digits",
                                                 "letters")))


def _linkable(f: _Features, i: np.ndarray, j: np.ndarray, review: Decimal) -> np.ndarray:
    """Which pairs ``(i[k], j[k])`` :func:`score` could link at ``review`` or above, a reference or a tax id aside:
    those with the same name, domain or abbreviation key, one name the other's acronym, or names similar enough for a
    kept ``fuzzy`` link; but not two names that differ only by their numbers (capped to NUMBERED_SIBLINGS)."""
    def same(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return (u[i] == v[j]) & (u[i] >= 0)

    keep = same(f.norm, f.norm) | same(f.domain, f.domain) | same(f.abbrev, f.abbrev) \
        | same(f.acro, f.compact) | same(f.compact, f.acro)
    if review > NUMBERED_SIBLINGS:
        siblings = (f.digits[i] >= 0) & (f.digits[j] >= 0) & (f.digits[i] != f.digits[j]) \
            & (f.letters[i] == f.letters[j])
        open_ = ~keep & ~siblings
        keep &= ~siblings
    else:
        open_ = ~keep
    k = np.flatnonzero(open_)
    keep[k[_similar(f.names[i[k]], f.names[j[k]], review)]] = True
    return keep


def _similar(a: np.ndarray, b: np.ndarray, review: Decimal) -> np.ndarray:
    """Which name pairs reach the similarity of a ``fuzzy`` link kept at ``review``: ``max(ratio, token_sort_ratio)``
    of at least FUZZY_MIN and ``review``, less a hair (:func:`score` rounds the similarity to 4 places)."""
    hit = np.zeros(len(a), dtype=bool)
    if not len(a):
        return hit
    cutoff = 100 * max(FUZZY_MIN, float(review)) - 0.01
    for scorer in (fuzz.ratio, fuzz.token_sort_ratio):
        rest = np.flatnonzero(~hit)
        hit[rest] = process.cpdist(a[rest], b[rest], scorer=scorer, score_cutoff=cutoff, dtype=np.float64) >= cutoff
    return hit


# --- resolution -----------------------------------------------------------------------------------

def resolve(
    accounts: Iterable[Party],
    payers: Iterable[Party] = (),
    auto: Decimal = AUTO,
    review: Decimal = REVIEW,
    cap: int = BLOCK_CAP,
) -> IdentityResult:
    """Cluster accounts, attach payers; pure and independent of input order. ``cap``: the size of a blocking key's
    block above which the key is too common to compare on."""
    with no_gc():  # many small objects that live until the end, no reference cycles (a third of the time at 100k)
        return _resolve(accounts, payers, auto, review, cap)


def _resolve(accounts: Iterable[Party], payers: Iterable[Party], auto: Decimal, review: Decimal,
             cap: int) -> IdentityResult:
    items = _mark_homonyms(_drop_shared_domains([_prepare(p) for p in sorted(accounts, key=lambda p: p.id)]))
    index = {p.party.id: i for i, p in enumerate(items)}
    links: list[Link] = []
    blocks = _Blocks.of(items)
    for i, j in blocks.pairs(review, cap):
        link = score(items[i], items[j], auto)
        if link is not None and link.confidence >= review:
            links.append(link)
    payer_list = sorted(payers, key=lambda p: p.id)
    # the payers meet the accounts by some keys only: the others' blocks (references, tax ids: a few per account)
    # go before the payer step, with the account pairs' links and the clustering's work (a gigabyte at 1M accounts)
    for_payers = _Blocks(items, blocks.for_payers(), blocks.features) if payer_list else None
    del blocks
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
    del links, pending_reviews, reviews, seen, unique_reviews, cluster_members, taxes, index
    if for_payers is not None:
        _attach_payers(result, for_payers, payer_list, auto, review, cap)
    return result


def _keep_best(member_link: dict[str, Link | None], link: Link) -> None:
    for m in (link.left, link.right):
        cur = member_link.get(m)
        if cur is None or (link.confidence, cur.left, cur.right) > (cur.confidence, link.left, link.right):
            member_link[m] = link


# --- payers ---------------------------------------------------------------------------------------

def _attach_payers(result: IdentityResult, accounts: _Blocks, payers: list[Party], auto: Decimal,
                   review: Decimal, cap: int = BLOCK_CAP) -> None:
    """Link each payer to its best account cluster, or make review candidates of its best matches. ``accounts``:
    the accounts' blocks that payers meet (:meth:`_Blocks.for_payers`) and their features.

    Payers that :func:`score` cannot tell apart (the same name, tax id, domain, country and system; neither a
    reference nor a tax id that could link them) share one scoring (:func:`_payer_signature`); the others are
    scored on their own."""
    if not payers:
        return
    blocks = accounts.members
    by_id = _ByIdentifier(accounts.items)
    signatures = [None if by_id.may_link(payer) else _payer_signature(payer) for payer in payers]
    shared: dict[tuple[str | None, ...], _Prepared] = {}
    for payer, sig in zip(payers, signatures, strict=True):
        if sig is not None and sig not in shared:
            shared[sig] = _prepare(payer)
    reps = list(shared.values())
    matches = {
        sig: _payer_matches(rep, cands, accounts.items, result.cluster_of, auto, review)
        for sig, rep, cands in zip(shared, reps, _payer_candidates(reps, accounts, blocks, review, cap), strict=True)
    }
    for payer, sig in zip(payers, signatures, strict=True):
        if sig is None:
            pp = _prepare(payer)
            ranked = _payer_matches(pp, _block_members(pp, blocks, cap), accounts.items, result.cluster_of, auto, review)
        else:
            ranked = matches[sig]
        links, reviews = _decide(payer.id, ranked, auto)
        result.payer_links += links
        result.payer_reviews += reviews


class _ByIdentifier:
    """Whether a reference or a tax id could link a payer to some account (:func:`score`'s steps 1 and 2)."""

    def __init__(self, accounts: Sequence[_Prepared]) -> None:
        self.refs = {r for p in accounts for r in p.party.refs}
        self.ids = {p.party.id for p in accounts} | {p.party.source_id for p in accounts if p.party.source_id}
        self.taxes = {p.party.tax_id for p in accounts if p.party.tax_id}

    def may_link(self, payer: Party) -> bool:
        return bool((payer.source_id and payer.source_id in self.refs) or payer.id in self.refs
                    or any(r in self.ids for r in payer.refs) or (payer.tax_id and payer.tax_id in self.taxes))


def _payer_signature(payer: Party) -> tuple[str | None, ...]:
    """All that :func:`score` reads of a payer but its references: its system (the id's prefix), name, tax id,
    domain and country."""
    return (payer.id.split(":", 1)[0], normalize_name(payer.name) if payer.name else "", payer.tax_id,
            _own_domain(payer), payer.country)


def _block_members(pp: _Prepared, blocks: Mapping[str, list[int]], cap: int = BLOCK_CAP) -> list[int]:
    """Every account of the payer's blocks of up to ``cap`` accounts."""
    cands: set[int] = set()
    for k in _keys(pp):
        members = blocks.get(k, ())
        if len(members) <= cap:
            cands.update(members)
    return sorted(cands)


def _payer_candidates(reps: list[_Prepared], accounts: _Blocks, blocks: Mapping[str, list[int]], review: Decimal,
                      cap: int = BLOCK_CAP) -> list[list[int]]:
    """Per payer, the accounts of :func:`_block_members` less the name-word pairs :func:`_linkable` rules out."""
    owners: dict[bool, list[int]] = {False: [], True: []}
    members: dict[bool, list[list[int]]] = {False: [], True: []}
    for g, rep in enumerate(reps):
        for k in _keys(rep):
            block = blocks.get(k)
            if block is not None and len(block) <= cap:
                owners[k[:2] in FILTERED_KEYS].append(g)
                members[k[:2] in FILTERED_KEYS].append(block)
    wg, wa = _pairs_across(owners[False], members[False])
    fg, fa = _pairs_across(owners[True], members[True])
    n = max(len(accounts.items), 1)
    keep = _linkable(accounts.features.extended(reps), fg + len(accounts.items), fa, review)
    codes = np.unique(np.concatenate([wg, fg[keep]]) * n + np.concatenate([wa, fa[keep]]))
    bounds = np.searchsorted(codes, np.arange(len(reps) + 1) * n)
    cands = (codes % n).tolist()
    return [cands[bounds[g]:bounds[g + 1]] for g in range(len(reps))]


def _payer_matches(pp: _Prepared, cands: list[int], accounts: Sequence[_Prepared], cluster_of: Mapping[str, str],
                   auto: Decimal, review: Decimal) -> list[Link]:
    """The payer's best link at ``review`` or above to each account cluster, strongest first."""
    best: dict[str, Link] = {}  # cluster -> best link
    for i in cands:
        link = score(pp, accounts[i], auto)
        if link is None or link.confidence < review:
            continue
        acc = accounts[i].party.id
        lk = Link(pp.party.id, acc, link.method, link.confidence, link.evidence)
        cluster = cluster_of[acc]
        if cluster not in best or (lk.confidence, acc) > (best[cluster].confidence, best[cluster].right):
            best[cluster] = lk
    return sorted(best.values(), key=lambda lk: (-lk.confidence, lk.right))


def _decide(payer_id: str, ranked: list[Link], auto: Decimal) -> tuple[list[Link], list[Link]]:
    """``([link], [])`` when one cluster is the payer's best at ``auto`` or above; else ``([], reviews)``: the best 3,
    capped below ``auto`` and marked ``ambiguous`` when the best are tied."""
    if not ranked:
        return [], []
    top = ranked[0]
    tied = len(ranked) > 1 and ranked[1].confidence == top.confidence  # ranked: strongest first
    if top.confidence >= auto and not tied:
        return [_payer_link(payer_id, top)], []
    if not tied:
        return [], [_payer_link(payer_id, lk) for lk in ranked[:3]]
    return [], [_payer_link(payer_id, lk, min(lk.confidence, auto - Decimal("0.05")), ambiguous=True)
                for lk in ranked[:3]]


def _payer_link(payer_id: str, lk: Link, confidence: Decimal | None = None, **evidence: Any) -> Link:
    """The payer's own copy of a link (payers that score alike share the scoring, not the result)."""
    own = {k: list(v) if isinstance(v, list) else v for k, v in lk.evidence.items()}
    return Link(payer_id, lk.right, lk.method, lk.confidence if confidence is None else confidence, own | evidence)


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

    with stage_lock(store.engine, "identity"), no_gc():  # the parties, links and rows: many small acyclic objects
        return _run_identity(store, auto, review, config)


def _run_identity(store: Any, auto: Decimal | None, review: Decimal | None, config: Any) -> dict[str, int]:
    from canonical.store import insert_rows, now

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
        insert_rows(conn, tables.cross_ref, xref_rows)
        insert_rows(conn, tables.identity_candidate, cand_rows)
    clusters = len(set(result.cluster_of.values()))
    return {
        "accounts": len(accounts), "clusters": clusters, "linked_accounts": len(accounts) - clusters,
        "payers": len(payers), "payers_linked": len(result.payer_links),
        "review_candidates": len(cand_rows),
    }

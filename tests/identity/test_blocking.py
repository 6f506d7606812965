"""Candidate generation: a name-word block scores only the pairs that could link at the review threshold, and the
results are those of scoring every pair of every block, whatever the thresholds and the block cap."""

from __future__ import annotations

import random
import string
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from canonical import identity
from canonical.identity import IdentityResult, Party, resolve


def filler_names(n: int, seed: int = 7) -> list[str]:
    """``n`` names sharing the word "Zephyr", otherwise unlike each other (random 9-letter words)."""
    rng = random.Random(seed)
    return [f"Zephyr {''.join(rng.choices(string.ascii_lowercase, k=9))}" for _ in range(n)]


def accounts_of(names: list[str]) -> list[Party]:
    return [Party(id=f"crm:account:{k}", name=name, source_id=str(k)) for k, name in enumerate(names)]


def scoring(monkeypatch: pytest.MonkeyPatch, accounts: list[Party], **kw: Any) -> tuple[IdentityResult, set[frozenset[str]]]:
    """The result, and the pairs of names that were scored."""
    scored: set[frozenset[str]] = set()
    real = identity.score

    def spy(a: Any, b: Any, auto: Decimal = identity.AUTO) -> identity.Link | None:
        scored.add(frozenset((a.party.name, b.party.name)))
        return real(a, b, auto)

    monkeypatch.setattr(identity, "score", spy)
    return resolve(accounts, **kw), scored


def every_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    """Score every pair of every block (up to the cap), each payer on its own: the exhaustive reference."""
    monkeypatch.setattr(identity, "_linkable", lambda f, i, j, review: i >= 0)
    monkeypatch.setattr(identity._ByIdentifier, "may_link", lambda self, payer: True)


def test_fuzzy_pair_in_a_big_word_block_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    # "kartography"/"cartography" share no word and no 4-letter prefix: only the 152-record "zephyr" block holds them
    accounts = accounts_of([*filler_names(150), "Zephyr Kartography", "Zephyr Cartography"])
    result, scored = scoring(monkeypatch, accounts)
    assert result.cluster_of["crm:account:150"] == result.cluster_of["crm:account:151"]
    assert result.member_link["crm:account:150"].method == "fuzzy"  # type: ignore[union-attr]
    assert len(scored) < 10  # not the block's 11,476 pairs


def test_abbreviation_in_a_big_word_block_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    # similarity 76: below review; linked as an abbreviation (same words, some cut to 3+ letters)
    accounts = accounts_of([*filler_names(150), "Soc Gen Zephyr", "Societe Generale Zephyr"])
    result, scored = scoring(monkeypatch, accounts)
    assert frozenset(("Soc Gen Zephyr", "Societe Generale Zephyr")) in scored
    assert result.member_link["crm:account:150"].method == "abbreviation"  # type: ignore[union-attr]
    assert result.cluster_of["crm:account:150"] == result.cluster_of["crm:account:151"]


def test_pairs_under_the_review_threshold_are_not_scored(monkeypatch: pytest.MonkeyPatch) -> None:
    siblings = frozenset(("Zephyr Store 12", "Zephyr Store 13"))  # differ only by their numbers: at most 0.70
    accounts = accounts_of(filler_names(150) + sorted(siblings))
    result, scored = scoring(monkeypatch, accounts)
    assert siblings not in scored and not result.reviews
    assert not any(frozenset(("Zephyr Store 12", f)) in scored for f in filler_names(150))
    # a review threshold they reach: scored, and a review candidate
    result, scored = scoring(monkeypatch, accounts, review=Decimal("0.60"))
    assert siblings in scored
    assert ("crm:account:150", "crm:account:151", Decimal("0.70")) in {
        (lk.left, lk.right, lk.confidence) for lk in result.reviews}


@pytest.mark.parametrize("review", ["0.60", "0.70", "0.75", "0.80", "0.86", "0.95"])
def test_same_result_as_scoring_every_pair_at_any_review_threshold(monkeypatch: pytest.MonkeyPatch, review: str) -> None:
    names = [*filler_names(40), "Zephyr Kartography", "Zephyr Cartography", "Soc Gen Zephyr", "Societe Generale Zephyr",
                                "Zephyr Store 12", "Zephyr Store 13", "Zephyr Stores 12", "Zephyr Kartograph Intl"]
    accounts = accounts_of(names)
    payers = [Party(id=f"bank:payment:{k}", name=name, entity="payment") for k, name in enumerate(names[38:] * 2)]
    got = resolve(accounts, payers, review=Decimal(review))
    every_pair(monkeypatch)
    assert got == resolve(accounts, payers, review=Decimal(review))


WORDS = ["acme", "zephyr", "kartography", "cartography", "cartografy", "societe", "soc", "generale", "gen", "store",
         "stores", "north", "vega", "cedar", "textiles", "international", "business", "machines", "ibm", "japan",
         "france", "holdings", "pied", "piper", "pipper", "globex", "i", "b", "m"]
NAMES = st.builds(lambda words, number, suffix: " ".join(words) + (f" {number}" if number else "") + suffix,
                  st.lists(st.sampled_from(WORDS), min_size=1, max_size=3), st.sampled_from([None, 1, 2, 12]),
                  st.sampled_from(["", " Inc", " GmbH", " Intl"]))
RECORDS = st.tuples(st.sampled_from(["crm", "erp", "stripe"]), NAMES, st.sampled_from([None, None, "DE1111", "DE2222"]),
                    st.sampled_from([None, None, "acme.com", "zephyr.io", "gmail.com"]),
                    st.sampled_from([None, "US", "DE"]), st.sampled_from(["", "", "0", "3"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(RECORDS, min_size=2, max_size=24), st.lists(RECORDS, max_size=10),
       st.sampled_from(["0.60", "0.70", "0.80", "0.86"]), st.sampled_from(["0.90", "0.92"]), st.sampled_from([3, 5, 200]))
def test_same_result_as_scoring_every_pair(records: list[Any], payer_records: list[Any], review: str, auto: str,
                                           cap: int) -> None:
    """Any thresholds, any block cap (blocks at the cap's edge: a small word block whose name or domain block is
    over it), payers sharing a name with references and tax ids."""
    accounts = [Party(id=f"{system}:account:{k}", name=name, source_id=str(k), tax_id=tax, domain=domain,
                      country=country, refs=(ref,) if ref else ())
                for k, (system, name, tax, domain, country, ref) in enumerate(records)]
    payers = [Party(id=f"{system}:payment:{k}", name=name, entity="payment", source_id=ref, tax_id=tax, domain=domain,
                    country=country)
              for k, (system, name, tax, domain, country, ref) in enumerate(payer_records + payer_records[:3])]
    kw = {"auto": Decimal(auto), "review": Decimal(review), "cap": cap}
    got = resolve(accounts, payers, **kw)  # type: ignore[arg-type]
    with pytest.MonkeyPatch.context() as mp:
        every_pair(mp)
        assert got == resolve(accounts, payers, **kw)  # type: ignore[arg-type]


def test_cap_edges_and_payers_alike_but_for_their_system(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small word block whose domain block is over the cap (the pair is a candidate through the word alone), an
    acronym of a name of several words, and payers that differ only by their system (``score`` treats one name within one system differently)."""
    accounts = [
        Party(id="crm:account:0", name="Acme Robotics", domain="acme.com"),
        Party(id="erp:account:1", name="Acme Finance", domain="acme.com"),
        Party(id="stripe:account:2", name="Zorg Widgets", domain="acme.com"),
        Party(id="crm:account:3", name="Blorp Things", domain="acme.com"),
        Party(id="erp:account:4", name="Vega Cedar", domain="vega.io"),
        Party(id="crm:account:5", name="Xy Xa Ya Qa"),  # acronym "xxyq" of "X Xy Q" (3 words): only "xy" pairs them
        Party(id="erp:account:6", name="X Xy Q"),
    ]
    payers = [Party(id=f"{system}:payment:{k}", name="Vega Cedar", entity="payment", domain="cedar.io")
              for k, system in enumerate(["erp", "bank", "erp", "bank"])]
    got = resolve(accounts, payers, cap=3)
    assert {"crm:account:0", "erp:account:1"} in [{lk.left, lk.right} for lk in got.reviews]
    assert {"crm:account:5", "erp:account:6"} in [{lk.left, lk.right} for lk in got.reviews]
    assert {lk.left for lk in got.payer_links} == {"bank:payment:1", "bank:payment:3"}
    assert {lk.left for lk in got.payer_reviews} == {"erp:payment:0", "erp:payment:2"}
    every_pair(monkeypatch)
    assert got == resolve(accounts, payers, cap=3)

"""Identity resolution: evidence order, hard negatives, order independence, payers, the store stage."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from canonical import tables
from canonical.identity import Party, resolve, run_identity
from canonical.store import Store
from ltc.app.config import Config, ReconcileConfig


def acc(pid: str, name: str, **kw: object) -> Party:
    return Party(id=pid, name=name, source_id=pid.rsplit(":", 1)[-1], **kw)  # type: ignore[arg-type]


ACCOUNTS = [
    acc("salesforce:account:001A", "Acme Corporation", country="US", domain="acme.example"),
    acc("tryton:account:2", "ACME Corp", refs=("001A",)),
    acc("stripe:account:cus_1", "Acme Corp.", domain="acme.example"),
    acc("odoo:account:7", "Acme Japan KK", country="JP", domain="acme.example"),
    acc("salesforce:account:001B", "Globex GmbH", country="DE", tax_id="DE111111111"),
    acc("odoo:account:8", "Globex GmbH", country="DE", tax_id="DE222222222"),
    acc("stripe:account:cus_2", "Globex", tax_id="DE111111111"),
    acc("hubspot:account:5", "Initech LLC", country="US"),
    acc("odoo:account:9", "Initech", country="FR"),
    acc("tryton:account:3", "Vandelay Industries"),
    acc("odoo:account:10", "Vandalay Industries"),
]


def clusters(result_cluster_of: dict[str, str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for m, c in result_cluster_of.items():
        groups.setdefault(c, set()).add(m)
    return {frozenset(g) for g in groups.values()}


def test_links_and_hard_negatives() -> None:
    result = resolve(ACCOUNTS)
    cl = result.cluster_of
    # reference, name and domain evidence put the Acme records together; the Japanese subsidiary stays out
    assert cl["tryton:account:2"] == cl["salesforce:account:001A"] == cl["stripe:account:cus_1"]
    assert cl["odoo:account:7"] != cl["salesforce:account:001A"]
    assert result.member_link["tryton:account:2"] is not None
    assert {lk.method for lk in (result.member_link["tryton:account:2"],) if lk} <= {"reference", "name"}
    # same name, different tax ids: never linked; the Stripe record joins the one with its tax id
    assert cl["salesforce:account:001B"] == cl["stripe:account:cus_2"]
    assert cl["odoo:account:8"] != cl["salesforce:account:001B"]
    # same name in two countries: not linked, but a review candidate
    assert cl["hubspot:account:5"] != cl["odoo:account:9"]
    review_pairs = {(lk.left, lk.right) for lk in result.reviews}
    assert ("hubspot:account:5", "odoo:account:9") in review_pairs
    assert any("odoo:account:8" in pair for pair in review_pairs)
    assert all(lk.confidence < Decimal("0.92") for lk in result.reviews)
    # a typo in a long word links
    assert cl["tryton:account:3"] == cl["odoo:account:10"]
    # cluster id: the smallest member id
    assert cl["salesforce:account:001A"] == min(
        m for m, c in cl.items() if c == cl["salesforce:account:001A"])


def test_two_tax_ids_never_share_a_cluster_even_through_a_chain() -> None:
    a = acc("a:account:1", "Phoenix Holdings", tax_id="X1")
    b = acc("b:account:1", "Phoenix Holdings")  # no tax id: links to both by name
    c = acc("c:account:1", "Phoenix Holdings", tax_id="X2")
    result = resolve([a, b, c])
    cl = result.cluster_of
    assert cl[a.id] != cl[c.id]
    assert len(result.reviews) >= 1


def test_thresholds_come_from_the_caller() -> None:
    pair = [acc("a:account:1", "Initech"), acc("b:account:1", "Initec")]
    assert len(clusters(resolve(pair).cluster_of)) == 1
    strict = resolve(pair, auto=Decimal("0.99"), review=Decimal("0.5"))
    assert len(clusters(strict.cluster_of)) == 2 and len(strict.reviews) == 1


def test_payers_attach_to_the_account_cluster_and_ambiguity_is_a_review() -> None:
    payers = [
        Party(id="camt053:payment:1", name="ACME CORP", entity="payment"),
        Party(id="camt053:payment:2", name="INITECH", entity="payment"),  # two Initechs: ambiguous
        Party(id="camt053:payment:3", name="JOHN DOE", entity="payment"),
    ]
    result = resolve(ACCOUNTS, payers)
    links = {lk.left: lk for lk in result.payer_links}
    assert result.cluster_of[links["camt053:payment:1"].right] == result.cluster_of["salesforce:account:001A"]
    assert "camt053:payment:2" not in links
    assert {lk.left for lk in result.payer_reviews} == {"camt053:payment:2"}
    assert "camt053:payment:3" not in links


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False))
def test_result_does_not_depend_on_input_order(rnd: random.Random) -> None:
    expected = resolve(ACCOUNTS)
    shuffled = list(ACCOUNTS)
    rnd.shuffle(shuffled)
    got = resolve(shuffled)
    assert got.cluster_of == expected.cluster_of
    assert [(lk.left, lk.right, lk.confidence) for lk in got.reviews] == [
        (lk.left, lk.right, lk.confidence) for lk in expected.reviews]
    assert got.member_link == expected.member_link


def test_blocking_keeps_large_inputs_fast() -> None:
    import time

    rng = random.Random(3)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    parties = [acc(f"s:account:{i}", f"{rng.choice(words)} {rng.choice(words)} {i} Ltd") for i in range(2000)]
    twin = parties[17].name.replace(" Ltd", " Limited").upper()
    parties.append(acc("t:account:x", twin))
    start = time.process_time()
    result = resolve(parties)
    assert time.process_time() - start < 30
    assert result.cluster_of["t:account:x"] == result.cluster_of["s:account:17"]
    # names differing only by their number never link automatically
    assert len(set(result.cluster_of.values())) == 2000


def test_run_identity_writes_cross_ref_and_candidates(store: Store) -> None:
    from tests_identity_data import land_chain  # type: ignore[import-not-found]

    from mappings.engine import run_mapping

    land_chain(store)
    run_mapping(store)
    config = Config(reconcile=ReconcileConfig(identity_auto_threshold=Decimal("0.92"),
                                              identity_review_threshold=Decimal("0.80")))
    counts = run_identity(store, config=config)
    assert counts["accounts"] == 5 and counts["payers"] == 1 and counts["payers_linked"] == 1
    with store.engine.connect() as conn:
        xref = {r.member_id: r for r in conn.execute(sa.select(tables.cross_ref))}
        cands = list(conn.execute(sa.select(tables.identity_candidate)))
    sf = xref["salesforce:account:001000000000001AAA"]
    assert xref["stripe:account:cus_Acme0001"].cluster_id == sf.cluster_id
    assert xref["tryton:account:2"].cluster_id == sf.cluster_id
    assert xref["stripe:account:cus_Acme0001"].method == "reference"
    assert xref["camt053:payment:STMT-2026-04-10/E1/0"].cluster_id == sf.cluster_id
    assert xref["camt053:payment:STMT-2026-04-10/E1/0"].entity == "payment"
    assert xref["salesforce:account:001000000000002AAA"].cluster_id != sf.cluster_id
    assert all(isinstance(r.confidence, Decimal) for r in xref.values())
    # re-running replaces, it does not duplicate
    run_identity(store, config=config)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.cross_ref)).scalar_one() == len(xref)
        assert len(list(conn.execute(sa.select(tables.identity_candidate)))) == len(cands)


def test_a_domain_shared_by_many_accounts_of_one_system_is_not_evidence() -> None:
    """Demo finding: 50 Stripe customers "Customer 000".."Customer 049" all billed at one domain made
    every pair a review candidate. A domain three accounts of one system share identifies none."""
    from canonical.identity import Party, resolve

    shared = [Party(id=f"stripe:account:cus_{i:03d}", name=f"Customer {i:03d}", domain="example.test")
              for i in range(6)]
    result = resolve(shared)
    assert result.reviews == [] and len(set(result.cluster_of.values())) == 6
    # two accounts of different systems at one domain still count
    pair = [Party(id="sf:account:001A", name="Globex Corporation", domain="globex.test"),
            Party(id="stripe:account:cus_9", name="Globex Corp", domain="globex.test")]
    res = resolve(pair)
    assert res.cluster_of["sf:account:001A"] == res.cluster_of["stripe:account:cus_9"]


def test_run_identity_that_fails_leaves_the_previous_cross_ref(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The delete and the inserts are one transaction: a failure while writing keeps the previous run's rows."""
    from tests_identity_data import land_chain

    import canonical.store
    from mappings.engine import run_mapping

    land_chain(store)
    run_mapping(store)
    run_identity(store)

    def dump() -> list[tuple]:
        with store.engine.connect() as conn:
            return sorted(tuple(r) for r in conn.execute(sa.select(tables.cross_ref)))

    before = dump()
    assert before
    real = canonical.store.insert_rows

    def fail_on_candidates(conn: sa.Connection, table: sa.Table, rows: list) -> None:
        if table is tables.identity_candidate:
            raise RuntimeError("disk full")
        real(conn, table, rows)

    monkeypatch.setattr(canonical.store, "insert_rows", fail_on_candidates)
    try:
        run_identity(store)
    except RuntimeError as e:
        assert str(e) == "disk full"
    else:
        raise AssertionError("the failure was swallowed")
    assert dump() == before

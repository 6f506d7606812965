"""Identity never merges two legal entities: a shared domain is evidence, not a verdict; two different
tax ids never share a cluster, whichever field the tax id came from, also through a chain of links."""

from __future__ import annotations

from canonical.identity import Party, resolve, tax_id_of


def test_group_companies_sharing_a_domain_stay_a_review_candidate() -> None:
    got = resolve([Party(id="crm:account:1", name="Acme Robotics GmbH", domain="acme.com"),
                   Party(id="erp:account:2", name="Acme Finance GmbH", domain="acme.com")])
    assert got.cluster_of["crm:account:1"] != got.cluster_of["erp:account:2"]
    (review,) = got.reviews
    assert review.method == "domain" and "a distinctive word differs" in review.evidence["capped"]


def test_one_name_with_a_qualifier_on_a_shared_domain_still_links() -> None:
    got = resolve([Party(id="crm:account:1", name="Adventure Works", domain="adventure-works.com"),
                   Party(id="erp:account:2", name="Adventure Works Cycles", domain="adventure-works.com")])
    assert got.cluster_of["crm:account:1"] == got.cluster_of["erp:account:2"]


def test_tax_id_from_a_custom_field_counts_like_the_mapped_one() -> None:
    assert tax_id_of(None, {"Tax_Number__c": "de 123.456.789"}) == "DE123456789"
    assert tax_id_of(None, {"uscc": "91440300MA5XXXXX1Y"}) == "91440300MA5XXXXX1Y"
    assert tax_id_of("GB-999 9999 73", {"vat": "DE1"}) == "GB999999973"
    assert tax_id_of(None, {"industry": "Software 2000"}) is None
    crm = Party(id="sf:account:1", name="Initech", tax_id=tax_id_of(None, {"vat_id__c": "DE 811 111 111"}))
    erp = Party(id="erp:account:2", name="Initech GmbH", tax_id=tax_id_of("DE 822 222 222", None))
    got = resolve([crm, erp])
    assert got.cluster_of[crm.id] != got.cluster_of[erp.id]
    assert got.reviews and got.reviews[0].evidence["tax_ids"] == ["DE811111111", "DE822222222"]


def test_clusters_are_checked_transitively_on_tax_ids() -> None:
    # A~B by domain, B~C by name; A and C disagree on tax id: A and C never share a cluster
    a = Party(id="a:account:1", name="Initech Systems", domain="initech.com", tax_id="US111111111")
    b = Party(id="b:account:2", name="Initech", domain="initech.com")
    c = Party(id="c:account:3", name="Initech", tax_id="US222222222")
    for order in ([a, b, c], [c, b, a], [b, c, a]):
        got = resolve(order)
        assert got.cluster_of[a.id] != got.cluster_of[c.id]
        assert got.cluster_of[b.id] in (got.cluster_of[a.id], got.cluster_of[c.id])
        assert got.reviews  # the link that was refused is left for a person

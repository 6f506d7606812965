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


def test_homonyms_of_one_system_are_told_apart_by_domain_not_by_name() -> None:
    # two CRM companies with one name (homonyms at different domains); the ERP party shares the second's domain
    a = Party(id="crm:account:1", name="Guangzhou Jiahe Electronics Co., Ltd.", domain="jiahe490.example.cn")
    b = Party(id="crm:account:2", name="Guangzhou Jiahe Electronics Co., Ltd.", domain="jiahe913.example.cn")
    erp = Party(id="erp:account:9", name="Guangzhou Jiahe Electronics Co Ltd", domain="jiahe913.example.cn")
    got = resolve([a, b, erp])
    assert got.cluster_of[b.id] == got.cluster_of[erp.id]
    assert got.cluster_of[a.id] != got.cluster_of[erp.id]
    assert got.reviews  # left for a person, with why it was not linked
    assert all(lk.evidence.get("capped") for lk in got.reviews)


def test_an_equal_name_still_links_when_the_name_is_unique() -> None:
    got = resolve([Party(id="crm:account:1", name="Acme GmbH", domain="acme.de"),
                   Party(id="erp:account:2", name="ACME GmbH", domain="acme.com")])
    assert got.cluster_of["crm:account:1"] == got.cluster_of["erp:account:2"]


def test_reordered_words_link_below_an_equal_name_and_not_across_domains() -> None:
    crm = Party(id="crm:account:1", name="Vega Cedar Textiles GmbH", domain="vegacedartextiles.example")
    same = Party(id="erp:account:2", name="Vega Cedar Textiles GmbH", domain="vegacedartextiles.example",
                 tax_id="DE906569661")
    other = Party(id="erp:account:3", name="Cedar Vega Textiles GmbH", domain="cedarvegatextiles.example",
                  tax_id="DE973391563")
    for order in ([crm, same, other], [other, crm, same]):
        got = resolve(order)
        assert got.cluster_of[crm.id] == got.cluster_of[same.id]
        assert got.cluster_of[other.id] != got.cluster_of[crm.id]

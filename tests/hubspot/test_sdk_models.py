"""The emulator speaks HubSpot: the real hubspot-api-client (urllib3, ``host=``) deserializes every
response the connector relies on into its own models, with client-side validation switched on
(required fields and enum values are checked)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from hubspot import HubSpot
from hubspot.crm.associations.v4 import BatchInputPublicFetchAssociationsBatchRequest
from hubspot.crm.associations.v4.models import (
    BatchResponsePublicAssociationMultiWithLabel,
    CollectionResponseMultiAssociatedObjectWithLabelForwardPaging,
)
from hubspot.crm.deals import (
    CollectionResponseSimplePublicObjectWithAssociationsForwardPaging,
    CollectionResponseWithTotalSimplePublicObjectForwardPaging,
    PublicObjectSearchRequest,
    SimplePublicObjectWithAssociations,
)
from hubspot.crm.deals.exceptions import ApiException
from hubspot.crm.owners import CollectionResponsePublicOwnerForwardPaging
from hubspot.crm.pipelines import CollectionResponsePipelineNoPaging
from hubspot.crm.properties import CollectionResponsePropertyNoPaging

from sandbox.hubspot import TOKEN, HubSpotEmulator
from sandbox.server import serve


@pytest.fixture(scope="module")
def sdk() -> Iterator[tuple[HubSpot, HubSpotEmulator]]:
    emu = HubSpotEmulator(size=250, custom_properties=3)
    with serve(emu.app) as server:
        yield HubSpot(access_token=TOKEN, host=server.url, client_side_validation=True), emu


def test_list_page_and_single_read(sdk: tuple[HubSpot, HubSpotEmulator]) -> None:
    client, emu = sdk
    page = client.crm.deals.basic_api.get_page(limit=100, properties=["dealname", "amount"],
                                               associations=["companies"], archived=False)
    assert isinstance(page, CollectionResponseSimplePublicObjectWithAssociationsForwardPaging)
    assert len(page.results) == 100 and page.paging.next.after
    first = page.results[0]
    assert isinstance(first.updated_at, datetime) and first.updated_at.tzinfo is not None
    assert isinstance(first.properties["amount"], str)
    assert first.associations["companies"].results[0].type == "deal_to_company"
    everything = client.crm.deals.get_all(properties=["dealname"])  # the SDK's own paging loop
    assert len(everything) == len(emu.live_ids("deals"))
    one = client.crm.deals.basic_api.get_by_id(first.id, properties=["dealname"])
    assert isinstance(one, SimplePublicObjectWithAssociations) and one.id == first.id


def test_search_response(sdk: tuple[HubSpot, HubSpotEmulator]) -> None:
    client, _ = sdk
    request = PublicObjectSearchRequest(
        filter_groups=[{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "0"}]}],
        sorts=[{"propertyName": "hs_object_id", "direction": "ASCENDING"}], properties=["dealname"], limit=200)
    found = client.crm.deals.search_api.do_search(public_object_search_request=request)
    assert isinstance(found, CollectionResponseWithTotalSimplePublicObjectForwardPaging)
    assert found.total == 250 and len(found.results) == 200 and found.paging.next.after == "200"
    ids = [int(r.id) for r in found.results]
    assert ids == sorted(ids)
    with pytest.raises(ApiException) as err:
        client.crm.deals.search_api.do_search(public_object_search_request=PublicObjectSearchRequest(
            limit=200, after="10000"))
    assert err.value.status == 400


def test_associations_v4(sdk: tuple[HubSpot, HubSpotEmulator]) -> None:
    client, emu = sdk
    deal = emu.live_ids("deals")[4]
    batch = client.crm.associations.v4.batch_api.get_page(
        "deals", "companies", BatchInputPublicFetchAssociationsBatchRequest(inputs=[{"id": str(deal)}]))
    assert isinstance(batch, BatchResponsePublicAssociationMultiWithLabel)
    [row] = batch.results
    assert row._from.id == str(deal)
    assert {t.type_id for t in row.to[0].association_types} == {5, 341}
    one = client.crm.associations.v4.basic_api.get_page("deals", str(deal), "line_items")
    assert isinstance(one, CollectionResponseMultiAssociatedObjectWithLabelForwardPaging)
    assert one.results[0].association_types[0].type_id == 19


def test_pipelines_properties_owners(sdk: tuple[HubSpot, HubSpotEmulator]) -> None:
    client, _ = sdk
    pipelines = client.crm.pipelines.pipelines_api.get_all("deals")
    assert isinstance(pipelines, CollectionResponsePipelineNoPaging)
    won = next(s for s in pipelines.results[0].stages if s.id == "closedwon")
    assert won.metadata == {"isClosed": "true", "probability": "1.0"}
    props = client.crm.properties.core_api.get_all("deals")
    assert isinstance(props, CollectionResponsePropertyNoPaging)
    assert {p.name for p in props.results if not p.hubspot_defined} == {
        f"custom_field_{i:04d}_" + "x" * 12 for i in range(3)}
    owners = client.crm.owners.owners_api.get_page(limit=5)
    assert isinstance(owners, CollectionResponsePublicOwnerForwardPaging)
    assert len(owners.results) == 5 and owners.paging.next.after

"""The HubSpot emulator's writes in HubSpot's shapes, checked through the real hubspot-api-client
(client-side validation on): batch update (200 / 207 Multi-Status / the 100 limit / invalid values),
the properties API (groups and properties, 409 on an existing name), the stamps an update bumps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.deals import BatchInputSimplePublicObjectBatchInput
from hubspot.crm.deals.exceptions import ApiException
from hubspot.crm.deals.models import (
    BatchResponseSimplePublicObject,
    BatchResponseSimplePublicObjectWithErrors,
)
from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException
from hubspot.crm.properties.models import (
    CollectionResponsePropertyGroupNoPaging,
    ModelProperty,
    PropertyGroup,
)

from sandbox.hubspot import TOKEN, HubSpotEmulator
from sandbox.server import serve


@pytest.fixture
def sdk() -> Iterator[tuple[HubSpot, HubSpotEmulator]]:
    emu = HubSpotEmulator(size=150, companies=5)
    with serve(emu.app) as server:
        yield HubSpot(access_token=TOKEN, host=server.url, client_side_validation=True), emu


def _create_property(client: HubSpot, obj: str, name: str, ptype: str = "number", field: str = "number") -> Any:
    return client.crm.properties.core_api.create(obj, property_create=PropertyCreate(
        name=name, label=name, type=ptype, field_type=field, group_name="ltc"))


def test_groups_and_properties_are_created_once(sdk: tuple[HubSpot, HubSpotEmulator]) -> None:
    client, emu = sdk
    group = client.crm.properties.groups_api.create("deals", property_group_create=PropertyGroupCreate(
        name="ltc", label="LTC finance status", display_order=-1))
    assert isinstance(group, PropertyGroup) and group.name == "ltc"
    groups = client.crm.properties.groups_api.get_all("deals")
    assert isinstance(groups, CollectionResponsePropertyGroupNoPaging) and "ltc" in {g.name for g in groups.results}
    prop = _create_property(client, "deals", "ltc_open_balance")
    assert isinstance(prop, ModelProperty) and prop.group_name == "ltc" and prop.type == "number"
    with pytest.raises(PropertiesApiException) as exists:
        _create_property(client, "deals", "ltc_open_balance")
    assert exists.value.status == 409 and "OBJECT_ALREADY_EXISTS" in str(exists.value.body)
    with pytest.raises(PropertiesApiException) as no_group:
        client.crm.properties.core_api.create("deals", property_create=PropertyCreate(
            name="ltc_x", label="x", type="string", field_type="text", group_name="nope"))
    assert no_group.value.status == 400
    assert "ltc_open_balance" in {p.name for p in client.crm.properties.core_api.get_all("deals").results}
    assert emu.statuses[201] == 2


def test_batch_update_200_then_207_with_the_refused_ids(sdk: tuple[HubSpot, HubSpotEmulator]) -> None:
    client, emu = sdk
    client.crm.properties.groups_api.create("deals", property_group_create=PropertyGroupCreate(name="ltc", label="LTC"))
    _create_property(client, "deals", "ltc_open_balance")
    ids = emu.live_ids("deals")[:4]
    before = emu.objects["deals"][ids[0]].props["hs_lastmodifieddate"]
    ok = client.crm.deals.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=[
        {"id": str(i), "properties": {"ltc_open_balance": "12.50"}} for i in ids[:2]]))
    assert isinstance(ok, BatchResponseSimplePublicObject) and ok.status == "COMPLETE"
    assert {r.id for r in ok.results} == {str(i) for i in ids[:2]}
    rec = emu.objects["deals"][ids[0]]
    assert rec.props["ltc_open_balance"] == "12.50" and rec.props["hs_lastmodifieddate"] > str(before)

    emu.write_faults[("deals", ids[2])] = ("VALIDATION_ERROR", "Deal is locked by an approval process")
    emu.archive("deals", [ids[3]])
    raw = client.crm.deals.batch_api.update_with_http_info(BatchInputSimplePublicObjectBatchInput(inputs=[
        {"id": str(i), "properties": {"ltc_open_balance": "1"}} for i in (ids[0], ids[2], ids[3], 99999999)]))
    partial, status, _headers = raw
    assert status == 207 and isinstance(partial, BatchResponseSimplePublicObjectWithErrors)
    assert partial.num_errors == 3 and [r.id for r in partial.results] == [str(ids[0])]
    by_category = {e.category: e for e in partial.errors}
    assert by_category["OBJECT_NOT_FOUND"].context["ids"] == [str(ids[3]), "99999999"]
    assert by_category["VALIDATION_ERROR"].message == "Deal is locked by an approval process"


def test_batch_update_refuses_the_whole_batch_for_bad_input(sdk: tuple[HubSpot, HubSpotEmulator]) -> None:
    client, emu = sdk
    ids = emu.live_ids("deals")

    def update(inputs: list[dict[str, Any]]) -> ApiException:
        with pytest.raises(ApiException) as err:
            client.crm.deals.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=inputs))
        return err.value

    too_many = update([{"id": str(i), "properties": {"dealname": "x"}} for i in ids[:101]])
    assert too_many.status == 400 and "VALIDATION_ERROR" in str(too_many.body)
    unknown = update([{"id": str(ids[0]), "properties": {"ltc_nope": "1"}}])
    assert unknown.status == 400 and "PROPERTY_DOESNT_EXIST" in str(unknown.body)
    not_a_number = update([{"id": str(ids[0]), "properties": {"amount": "lots"}}])
    assert not_a_number.status == 400 and "INVALID_DECIMAL" in str(not_a_number.body)
    read_only = update([{"id": str(ids[0]), "properties": {"hs_lastmodifieddate": "0"}}])
    assert read_only.status == 400 and "READ_ONLY_VALUE" in str(read_only.body)
    assert emu.objects["deals"][ids[0]].props["dealname"] != "x"

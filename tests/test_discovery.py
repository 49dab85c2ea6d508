"""Discovery endpoints (RFC 7644 §4): each document alone equals its entry in the list; Bulk.

The documents are built once per process and served as stored bytes, so these tests also check
that a look-up by id (in any case) and the list agree, and that a caller is known before any
answer is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import GROUP_URN, USER_URN, ScimClient

ScimError = Callable[..., dict[str, Any]]

LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


@pytest.mark.parametrize(("endpoint", "count"), [("/Schemas", 3), ("/ResourceTypes", 2)])
async def test_each_document_equals_its_list_entry(
    scim: ScimClient, endpoint: str, count: int
) -> None:
    listed = await scim.get(endpoint)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["schemas"] == [LIST]
    assert body["totalResults"] == len(body["Resources"]) == count
    for entry in body["Resources"]:
        for asked in (entry["id"], entry["id"].upper(), entry["id"].lower()):
            one = await scim.get(f"{endpoint}/{asked}")
            assert one.status_code == 200, one.text
            assert one.headers["content-type"].startswith("application/scim+json")
            assert one.json() == entry
    again = await scim.get(endpoint)
    assert again.content == listed.content


@pytest.mark.parametrize("urn", [USER_URN, GROUP_URN])
async def test_the_user_and_group_schemas_list_external_id(scim: ScimClient, urn: str) -> None:
    """Microsoft's gallery validation (Entra's Schema_Discoverability_Test) fails a `/Schemas`
    whose User or Group lacks `externalId`; RFC 7643 §3.1 lets a schema list the common
    attributes. `id` and `meta` stay unlisted: the validation does not ask for them."""
    schema = (await scim.get(f"/Schemas/{urn}")).json()
    listed = [a for a in schema["attributes"] if a["name"] in ("id", "externalId", "meta")]
    assert listed == [
        {
            "name": "externalId",
            "type": "string",
            "multiValued": False,
            "description": listed[0]["description"],
            "required": False,
            "caseExact": True,
            "mutability": "readWrite",
            "returned": "default",
            "uniqueness": "none",
        }
    ]
    assert "provisioning client" in listed[0]["description"]


async def test_service_provider_config_is_the_same_each_time(scim: ScimClient) -> None:
    first = await scim.get("/ServiceProviderConfig")
    assert first.status_code == 200, first.text
    assert first.json()["pagination"]["cursor"] is True
    second = await scim.get("/ServiceProviderConfig")
    assert second.content == first.content


@pytest.mark.parametrize(
    "path", ["/Schemas/urn:example:nothing", "/ResourceTypes/Device", "/ResourceTypes/Users"]
)
async def test_an_unknown_document_is_404_for_a_caller_and_401_for_anyone_else(
    scim: ScimClient, path: str, scim_error: ScimError
) -> None:
    error = scim_error(await scim.get(path), 404)
    assert path.rsplit("/", 1)[1] in error["detail"]
    scim_error(await scim.with_token(None).get(path), 401)
    scim_error(await scim.with_token("shub_not-a-token").get(path), 401)


async def test_me_is_501_for_a_caller_whatever_the_method(
    scim: ScimClient, scim_error: ScimError
) -> None:
    """RFC 7644 §3.11: a service provider without /Me answers 501; a token here is no user."""
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        body = None if method in ("GET", "DELETE") else {"schemas": [], "userName": "me"}
        error = scim_error(await scim.request(method, "/Me", body), 501)
        assert "/Users/" in error["detail"], method
        scim_error(await scim.with_token(None).request(method, "/Me", body), 401)
    refused = await scim.request("GET", "/Me", headers={"Accept": "application/xml"})
    scim_error(refused, 406)


async def test_bulk_is_501_for_a_caller_after_its_accept_is_checked(
    scim: ScimClient, scim_error: ScimError
) -> None:
    """ServiceProviderConfig says bulk is unsupported; RFC 7644 §3.7 then asks for 501."""
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []}
    scim_error(await scim.post("/Bulk", body), 501)
    scim_error(await scim.with_token(None).post("/Bulk", body), 401)
    refused = await scim.request("POST", "/Bulk", body, headers={"Accept": "application/xml"})
    scim_error(refused, 406)

"""The generic_scim dialect: strictly RFC 7643/7644, every supported attribute including photos.

The `tenant` workspace's connector uses `generic_scim` (what "Other SCIM client" gives). Runs on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from tests.conftest import ScimClient, assert_scim_error, user_body

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def test_generic_mapping_covers_the_ten_profile_fields() -> None:
    from hub.core.dialects import PROFILE_FIELDS
    from plugins.generic_scim import GENERIC_MAPPING

    assert set(GENERIC_MAPPING) == set(PROFILE_FIELDS)
    assert GENERIC_MAPPING["photo_url"] == 'photos[type eq "photo"].value'


async def test_generic_update_with_photos_sets_it(scim: ScimClient) -> None:
    """A generic SCIM client manages photos: create, PUT and PATCH set and clear them."""
    photo = [{"type": "photo", "value": "https://cdn.example.com/a.jpg"}]
    created = await scim.post("/Users", user_body("photo@example.com", photos=photo))
    assert created.status_code == 201
    assert created.json()["photos"] == photo
    uid = created.json()["id"]
    other = [{"type": "photo", "value": "https://cdn.example.com/b.jpg"}]
    put = await scim.put(f"/Users/{uid}", user_body("photo@example.com", photos=other))
    assert put.json()["photos"] == other
    patched = await scim.patch(
        f"/Users/{uid}",
        {
            "schemas": [PATCH_OP],
            "Operations": [
                {
                    "op": "replace",
                    "path": 'photos[type eq "photo"].value',
                    "value": "https://c/c.jpg",
                }
            ],
        },
    )
    assert patched.json()["photos"] == [{"type": "photo", "value": "https://c/c.jpg"}]
    put = await scim.put(f"/Users/{uid}", user_body("photo@example.com"))
    assert "photos" not in put.json()  # a PUT without photos clears them (RFC 7644 §3.5.1)


async def test_generic_is_strict(scim: ScimClient) -> None:
    """No IdP leniency: string booleans and unlisted extensions are refused."""
    uid = (await scim.post("/Users", user_body())).json()["id"]
    body = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "active", "value": "False"}],
    }
    assert_scim_error(await scim.patch(f"/Users/{uid}", body), 400, "invalidValue")
    unlisted = user_body(**{ENTERPRISE: {"department": "x"}})
    assert_scim_error(await scim.post("/Users", unlisted), 400, "invalidValue")

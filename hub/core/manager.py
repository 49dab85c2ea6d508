"""A user's manager (the Enterprise User extension's `manager`, RFC 7643 §4.3) and its `$ref`.

RFC 7643 §4.3 gives `manager` three sub-attributes: `value`, the manager's id; `$ref`, "the URI
of the SCIM resource representing the User's manager"; and the readOnly `displayName`
(`canonicalise` drops it). IdPs send the id only (Entra ID a bare string, `patch`), so the hub
writes `$ref` itself, from `value`, in the document it stores: a GET renders the stored text as
it is (`users.render_raw`), and deriving it there would cost every read. The reference is
relative, as RFC 7643 §2.3.7 allows and its own example shows (§8.3:
``"$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d"``): resolved against the user's
`meta.location` it names the manager's, and it stays right when the hub's host or base path
changes.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import quote, urljoin

from hub.core.schema import ENTERPRISE_SCHEMA

#: An id that needs no percent-encoding in a URI path segment (RFC 3986 §2.3 unreserved):
#: the hub's own ids and the GUIDs IdPs use. Others are encoded (`quote`, ~1 µs).
_UNRESERVED: Final = re.compile(r"[A-Za-z0-9._~-]+")


def manager_ref(user_id: str) -> str:
    """The `$ref` of the manager whose id is `user_id`: ``../Users/<id>``, relative (§2.3.7)."""
    segment = user_id if _UNRESERVED.fullmatch(user_id) else quote(user_id, safe="")
    return f"../Users/{segment}"


def with_manager_ref(doc: dict[str, Any], base: str) -> dict[str, Any]:
    """`doc`, a canonical User document, with its manager's `$ref` following `manager.value`.

    A `$ref` the client sent that names another resource than `value` does (Entra's tutorial
    sends ``http://localhost/scim/Users/<id>``) is replaced by the derived one; one naming the
    same, resolved against the user's location ``{base}/Users/<id>`` (RFC 3986 §5.2), is kept
    as sent: strict clients (scim2-tester) send the absolute URI and expect it back. A manager
    without a `value` has no `$ref` (a `$ref` alone names no manager the hub could check). An
    empty `value` refers to nobody: it is no manager, as a PATCH setting it removes one
    (`patch`). `doc` is not changed; the parts that change are copied (a PATCH's document
    shares the others with the stored one).

    Costs a user without the extension one dict look-up; one with a manager whose `$ref` is
    right already (a PATCH of other attributes), three and a regex match.
    """
    extension = doc.get(ENTERPRISE_SCHEMA)
    if extension.__class__ is not dict:
        return doc
    manager = extension.get("manager")
    if manager.__class__ is not dict:
        return doc
    value = manager.get("value")
    ref = manager_ref(value) if value.__class__ is str and value else None
    held = manager.get("$ref")
    if held == ref and value != "":
        return doc
    if ref is not None and held.__class__ is str and _same_resource(held, ref, base):
        return doc
    made: dict[str, Any] = {}
    for key, item in manager.items():
        if key == "$ref" or (key == "value" and item == ""):
            continue
        made[key] = item
        if key == "value" and ref is not None:
            made["$ref"] = ref  # next to the id it is made from, as RFC 7643 §8.3 shows it
    changed, result = dict(extension), dict(doc)  # copies keep the keys' order
    _set_or_drop(changed, "manager", made)
    _set_or_drop(result, ENTERPRISE_SCHEMA, changed)
    return result


def _same_resource(sent: str, ref: str, base: str) -> bool:
    """Whether `sent` names the user `ref` does, resolved against a user's location (§5.2).

    The absolute form (what scim2-tester sends) is compared as text; only another form pays
    for `urljoin` (~10 µs).
    """
    absolute = f"{base}/Users/{ref.removeprefix('../Users/')}"
    if sent == absolute:
        return True
    try:  # every user's location is in "{base}/Users/"; its last segment is no matter
        return urljoin(f"{base}/Users/", sent) == absolute
    except ValueError:  # urljoin refuses some malformed URIs ("http://[")
        return False


def _set_or_drop(target: dict[str, Any], key: str, value: dict[str, Any]) -> None:
    """`target[key] = value`, or no `key` when `value` is empty (unassigned, RFC 7643 §2.5)."""
    if value:
        target[key] = value
    else:
        del target[key]

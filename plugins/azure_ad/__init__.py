"""Microsoft Entra ID (Azure AD) dialect: its default attribute mapping and its quirks.

Sources (Microsoft Learn):

* [TUTORIAL] "Tutorial: Develop and plan provisioning for a SCIM endpoint in Microsoft Entra ID"
  — the requests the provisioning service sends (test connection, create, get by query, update
  multi- and single-valued attributes, disable, delete; group create/update/members/delete) and
  its default attribute mapping.
* [KNOWN-ISSUES] "Known issues and resolutions with SCIM 2.0 protocol compliance of the Microsoft
  Entra user provisioning service" — the ``aadOptscim062020`` flag appended to the tenant URL and
  the PATCH forms sent with and without it.
* [BYOA-22] Azure/AzureAD-BYOA-Provisioning-Samples issue 22 — Microsoft's SCIM library read a
  single-valued PATCH value as ``[{"$ref": null, "value": …}]``; the Learn Q&A "Why is Entra ID
  sending 'Add' operations … for multi-value attributes" shows a custom multi-valued attribute
  sent as ``[{"value": "1"}]``.

What the hub core already does the RFC way and Entra relies on (tested by replay in
``tests/test_entra_replay.py``): every list query answers 200 with a ListResponse, zero results
included (a 404 on a query quarantines the job); value-filter paths (``emails[type eq "work"]
.value``) on Add/Replace create the element when none matches; ``members[value eq "…"]`` and a
``members`` Remove carrying a value list drop only those members; ``excludedAttributes=members``;
lookups by ``externalId`` and by work email (``emails[type eq "work"].value eq "…"``, a form
outside RFC 7644's filter grammar that the filter parser reads as a value path); DELETE keeps the
user, inactive.
"""

from __future__ import annotations

import functools
import re
from typing import Any, TypeVar

from hub.hookspecs import Dialect, JSONObject, RequestContext, hookimpl, with_extensions_listed

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
_ENTERPRISE_KEY = ENTERPRISE.lower()

#: Card profile field -> the SCIM attribute Entra fills by default ([TUTORIAL], "Design your user
#: and group schema": userPrincipalName, displayName, givenName, surname, jobTitle, department,
#: companyName -> organization, telephoneNumber -> work phone, mobile -> mobile phone, mail).
#: Entra sends no photo, so ``photo_url`` is not mapped: a card photo is never fed by Entra.
ENTRA_MAPPING = {
    "display_name": "displayName",
    "first_name": "name.givenName",
    "last_name": "name.familyName",
    "job_title": "title",
    "department": f"{ENTERPRISE}:department",
    "company_name": f"{ENTERPRISE}:organization",
    "office_phone": 'phoneNumbers[type eq "work"].value',
    "mobile_phone": 'phoneNumbers[type eq "mobile"].value',
    "email": 'emails[type eq "work"].value',
}

#: Entra never sends profile photos (DESIGN.md): the hub ignores ``photos`` in Entra requests and a
#: PUT keeps the stored value, so an Entra update can never erase an uploaded photo.
ENTRA_UNMANAGED = ("photos",)

#: what a bounded key cache (`_kept`) remembers
_Answer = TypeVar("_Answer")
_BOOLEAN_NAMES = frozenset({"active", "primary"})
_STRING_BOOLEANS = {"true": True, "false": False}
_LONGEST_BOOLEAN = len("false")


def _boolean(value: Any) -> Any:
    """``"True"``/``"False"`` (any case) -> bool; anything else unchanged."""
    if isinstance(value, str):
        return _STRING_BOOLEANS.get(value.lower(), value)
    return value


def _fix_booleans(value: Any) -> Any:
    """Turn Entra's string booleans into JSON booleans wherever a boolean attribute is named.

    [KNOWN-ISSUES], "Flags to alter the SCIM behavior": without ``aadOptscim062020`` Entra
    disables a user with ``{"op": "Replace", "path": "active", "value": "False"}``; it also
    sends ``"primary": "True"`` in multi-valued elements. ``active`` and ``primary`` are the
    boolean attributes of the User schema Entra maps.

    Objects are fixed in place and `value` is returned: a request body is decoded for this
    request alone, and `normalise` may return its input. Copying every object and list of every
    body cost more than the rest of the normalisation.
    """
    if isinstance(value, dict):
        _fix_object(value)
    elif isinstance(value, list):
        _fix_array(value)
    return value


def _fix_object(value: dict[str, Any]) -> None:
    # `_BOOLEAN_KEYS` is read here rather than through `_key_names_boolean`: this runs for every
    # key of every body, and the calls cost ~12% of the walk of an Entra user.
    known = _BOOLEAN_KEYS
    for key, item in value.items():
        kind = item.__class__
        if kind is str:
            # Only "true" and "false" (any case) change: a longer string needs no key check.
            if len(item) <= _LONGEST_BOOLEAN:
                names = known.get(key)
                if names is None:
                    names = _key_names_boolean(key)
                if names:
                    # `_boolean`, inline; the same key: the dict keeps its size
                    value[key] = _STRING_BOOLEANS.get(item.lower(), item)
        elif kind is dict or kind is list:
            names = known.get(key)
            if names is None:
                names = _key_names_boolean(key)
            if names:
                continue
            if kind is dict:
                _fix_object(item)
            else:
                _fix_array(item)


def _fix_array(value: list[Any]) -> None:
    for item in value:
        kind = item.__class__
        if kind is dict:
            _fix_object(item)
        elif kind is list:
            _fix_array(item)
        elif isinstance(item, _CONTAINERS):  # a subclass: as the walk always took them
            _fix_booleans(item)


def _key_names_boolean(key: str) -> bool:
    known = _BOOLEAN_KEYS.get(key)
    if known is None:
        known = _kept(_BOOLEAN_KEYS, key, _names_boolean(key))
    return known


def _kept(answers: dict[str, _Answer], key: str, answer: _Answer) -> _Answer:
    """`answer`, remembered under `key` while `answers` holds fewer than `_KEYS_KEPT` keys.

    The bound: keys are what clients send, and a cache of every key ever sent would grow
    without end.
    """
    if len(answers) < _KEYS_KEPT:
        answers[key] = answer
    return answer


_CONTAINERS = (dict, list)
#: key -> does it name a boolean: the same few keys arrive in every request (a dictionary look-up
#: is cheaper than `_names_boolean`'s cache, and this runs for every key of every body)
_BOOLEAN_KEYS: dict[str, bool] = {}
_KEYS_KEPT = 1024


@functools.lru_cache(maxsize=1024)  # PATCH paths repeat too
def _names_boolean(path: str) -> bool:
    """Does this key or path end in a boolean attribute (``active``, ``emails[…].primary``)?"""
    last = path.rsplit(".", 1)[-1].rsplit(":", 1)[-1]
    return last.lower() in _BOOLEAN_NAMES


#: ``primary eq "True"`` inside a path's value filter: Entra compares booleans to strings there too.
_STRING_BOOLEAN_FILTER = re.compile(r'\b(active|primary)(\s+(?:eq|ne)\s+)"(true|false)"', re.I)


def _fix_path(path: str) -> str:
    """``roles[primary eq "True"].display`` -> ``roles[primary eq true].display``.

    Microsoft's SCIM Validator (Entra's own test of an endpoint) sends this path in its "Patch
    User - Add Attributes Verbose" test, with a string where the filter needs a boolean.
    """
    if '"' not in path:
        return path
    return _STRING_BOOLEAN_FILTER.sub(lambda m: f"{m[1]}{m[2]}{m[3].lower()}", path)


#: The last name of a resource type's schema URN, lower-cased (``urn:…:2.0:User``).
_RESOURCE_NAMES = frozenset({"user", "group"})
_URN_INITIALS = ("u", "U")


def _colon_after_urn(path: str) -> str:
    """``urn:…:enterprise:2.0:User.department`` -> ``urn:…:enterprise:2.0:User:department``.

    [KNOWN-ISSUES], "SCIM 2.0 compliance issues and status": the provisioning job that predates
    the SCIM job (``customappsso``) wrote "extension attributes use dot "." notation before
    attribute names instead of colon ":" notation". Read as RFC 7644 §3.10 reads the dot, the URN
    would end at ``2.0`` and the attribute would be ``User`` with a ``department`` inside: a
    stray extension stored in place of the department. Only a dot right after a URN's ``User``
    or ``Group`` changes, so ``…:User:manager.value`` stays as sent. Returns `path` itself when
    nothing changes.
    """
    if path[:1] not in _URN_INITIALS or path[:4].lower() != "urn:":
        return path
    head, _, last = path.rpartition(":")
    name, dot, rest = last.partition(".")
    if not dot or name.lower() not in _RESOURCE_NAMES:
        return path
    if head.rpartition(":")[2].lower() in _RESOURCE_NAMES:
        return path  # ``…:2.0:User:group.x``: an attribute named group, in colon notation
    return f"{head}:{name}:{rest}"


def _fix_keys(value: Any, resource_type: str = "User") -> Any:
    """A path-less operation's value with `_fix_path` applied to each of its keys.

    With ``aadOptscim062020`` Entra sends several attributes in one path-less replace, each key a
    path ([KNOWN-ISSUES]), so ``roles[primary eq "True"].display`` arrives as a key too, an
    extension attribute may arrive dotted (`_colon_after_urn`), and an Enterprise attribute may
    be named without its URN as a path may (`_qualified`; read as sent, ``{"department": …}``
    was stored as a stray core attribute).
    """
    if type(value) is not dict:
        return value
    users = resource_type == "User"
    if not any(
        '"' in key
        or (key[:1] in _URN_INITIALS and _colon_after_urn(key) is not key)
        or (users and _names_enterprise(key))
        for key in value
    ):
        return value
    return {_fixed_key(key, users): item for key, item in value.items()}


def _fixed_key(key: str, users: bool) -> str:
    fixed = _colon_after_urn(_fix_path(key)) if key[:1] in _URN_INITIALS else _fix_path(key)
    return f"{ENTERPRISE}:{fixed}" if users and _names_enterprise(fixed) else fixed


def _names_enterprise(key: str) -> bool:
    """Does this key name an Enterprise attribute without its URN (``department``)?"""
    known = _ENTERPRISE_KEYS.get(key)
    if known is None:
        head = re.split(r"[.\[]", key, maxsplit=1)[0]
        known = _kept(_ENTERPRISE_KEYS, key, head.lower() in _ENTERPRISE_NAMES)
    return known


#: key -> does it name an Enterprise attribute without its URN (as `_BOOLEAN_KEYS`)
_ENTERPRISE_KEYS: dict[str, bool] = {}


def _without_filter(path: str) -> str:
    """``emails[type eq "work"].primary`` -> ``emails.primary`` (the attribute a path names)."""
    if "[" not in path or "]" not in path:
        return path
    return path.split("[", 1)[0] + path.rsplit("]", 1)[-1]


def _fix_enterprise(body: JSONObject) -> JSONObject:
    """A POST/PUT body's Enterprise attributes nested under their URN, a bare manager id wrapped.

    [TUTORIAL], "Handling provisioning and deprovisioning of users", Example 2 creates a user
    with ``"department"`` and ``"manager"`` at the top of the body, next to the core attributes,
    as Example 5 names ``manager`` in a PATCH path: no core User attribute has such a name
    (`_qualified`), so they are moved into the Enterprise extension's object (what it holds
    itself wins). Read as sent, they were stored as core attributes the card never reads.

    [TUTORIAL] maps ``manager`` to ``urn:…:enterprise:2.0:User:manager`` and sends the manager's
    bare id, wrapped here as ``{"value": id}``: RFC 7643 §4.3 makes ``manager`` complex. (PATCH
    forms are handled by the core engine.)
    """
    extension_key = None
    names = None
    known = _BODY_KEYS  # read here, not through `_body_key`: as in `_fix_object`
    for key in body:
        kind = known.get(key)
        if kind is None:
            kind = _body_key(key)
        if kind is _EXTENSION_KEY:  # the three answers are sentinels: compared by identity
            extension_key = key
        elif kind is _ENTERPRISE_NAME:
            names = [key] if names is None else [*names, key]
    if names is not None:
        extension = body.get(extension_key) if extension_key is not None else {}
        if isinstance(extension, dict):
            extension_key = extension_key or ENTERPRISE
            body[extension_key] = {**{name: body.pop(name) for name in names}, **extension}
    if extension_key is None:
        return body
    extension = body[extension_key]
    if isinstance(extension, dict):
        for name, value in extension.items():
            if name.lower() == "manager" and isinstance(value, str):
                # An empty id is no manager (None: unassigned, RFC 7643 §2.5).
                body[extension_key] = {**extension, name: {"value": value} if value else None}
                break
    return body


def _body_key(key: str) -> str:
    """What a body's top-level key is to `_fix_enterprise`.

    The Enterprise extension's URN (`_EXTENSION_KEY`), an Enterprise attribute's bare name
    (`_ENTERPRISE_NAME`), or neither (`_NEITHER`), in any case.
    """
    lowered = key.lower()
    kind = (
        _EXTENSION_KEY
        if lowered == _ENTERPRISE_KEY
        else _ENTERPRISE_NAME
        if lowered in _ENTERPRISE_NAMES
        else _NEITHER
    )
    return _kept(_BODY_KEYS, key, kind)


_EXTENSION_KEY = "extension"
_ENTERPRISE_NAME = "enterprise name"
_NEITHER = "neither"
#: key -> `_body_key`'s answer (as `_BOOLEAN_KEYS`): the same few keys arrive in every body
_BODY_KEYS: dict[str, str] = {}


#: The single-valued attributes of RFC 7643's User (§4.1.1), Enterprise User (§4.3) and Group
#: (§4.2) schemas, lower-cased. Only these are unwrapped: an
#: extension the hub does not know may hold a multi-valued attribute (Entra sends a custom
#: multi-valued attribute as ``[{"value": "1"}]`` too).
_SINGLE_VALUED = frozenset(
    {
        "username",
        "name",
        "displayname",
        "nickname",
        "profileurl",
        "title",
        "usertype",
        "preferredlanguage",
        "locale",
        "timezone",
        "active",
        "externalid",
        "employeenumber",
        "costcenter",
        "organization",
        "division",
        "department",
        "manager",
    }
)
_KNOWN_SCHEMAS = frozenset(
    {
        "urn:ietf:params:scim:schemas:core:2.0:user",
        "urn:ietf:params:scim:schemas:core:2.0:group",
        ENTERPRISE.lower(),
    }
)
#: The keys of a value object that wraps one value (Microsoft's SCIM library wrote ``$ref``).
_WRAPPER_KEYS = frozenset({"value", "$ref"})


def _unwrapped(path: str, value: Any) -> Any:
    """``[{"value": "Babs"}]`` -> ``"Babs"`` when `path` names a single-valued attribute.

    A single-valued attribute is one of `_SINGLE_VALUED`, or the sub-attribute after a value
    filter (``emails[type eq "work"].value``).

    The form Microsoft's own SCIM library read ([BYOA-22]: ``{"$ref": null, "value": "User X"}``),
    so a provisioning job still on the older PATCH behaviour (``AzureAdScimPatch2017``,
    [KNOWN-ISSUES]) may send it. No single-valued attribute takes a list, so reading the one
    value out cannot change a valid request; two values stay an error. The same list holding no
    value, ``[]``, is no value: null, which RFC 7643 §2.5 makes the same state as an empty array.
    """
    if type(value) is not list or len(value) > 1:
        return value
    if value:
        element = value[0]
        if type(element) is not dict or "value" not in element:
            return value
        if not element.keys() <= _WRAPPER_KEYS:
            return value
    urn, _, attribute = path.rpartition(":")
    if urn and urn.lower() not in _KNOWN_SCHEMAS:
        return value
    if "[" in attribute:
        # ``emails[type eq "work"].value``: every sub-attribute of the RFC's multi-valued
        # attributes is single-valued, so the one after a value filter is too.
        after = attribute.rpartition("]")[2]
        if after[:1] != "." or "[" in after:
            return value
    elif attribute.split(".", 1)[0].lower() not in _SINGLE_VALUED:
        return value
    return value[0]["value"] if value else None


#: Enterprise User attributes (RFC 7643 §4.3): no core User attribute shares a name with one.
_ENTERPRISE_NAMES = frozenset(
    {"employeenumber", "costcenter", "organization", "division", "department", "manager"}
)


def _qualified(path: str, resource_type: str) -> str:
    """``manager`` -> ``urn:…:enterprise:2.0:User:manager`` (any Enterprise attribute, any case).

    [TUTORIAL], "Handling provisioning and deprovisioning of users", Example 5 updates a
    manager with ``{"op": "Add", "path": "manager", "value": [{"$ref": …, "value": …}]}``:
    an Enterprise attribute named without its URN, which RFC 7644 §3.10 asks for. No core User
    attribute has such a name, so the path can only mean the Enterprise one.
    """
    head = re.split(r"[.\[]", path, maxsplit=1)[0]
    if resource_type != "User" or head.lower() not in _ENTERPRISE_NAMES:
        return path
    return f"{ENTERPRISE}:{path}"


def _fix_operation(operation: Any, resource_type: str = "User") -> Any:
    """Normalise one PATCH operation: lower-case ``op``, string booleans to booleans.

    String booleans are fixed in the value and in the path's value filter (`_fix_path`); a
    single-valued attribute's value wrapped in a list is unwrapped (`_unwrapped`).

    [KNOWN-ISSUES]: without the flag Entra sends ``"op": "Replace"``/``"Add"``/``"Remove"``
    (capitalised) and ``"value": "False"`` for ``active``; with the flag it sends
    ``{"op": "replace", "value": {"active": false}}`` — both forms land here as RFC 7644 §3.5.2.
    """
    if not isinstance(operation, dict):
        return operation
    fixed = dict(operation)
    path = None
    for key, value in operation.items():
        lowered = key.lower()
        if lowered == "op" and isinstance(value, str):
            fixed[key] = value.lower()
        elif lowered == "path" and isinstance(value, str):
            if value[:1] in _URN_INITIALS:
                value = _colon_after_urn(value)
            path = fixed[key] = _qualified(_fix_path(value), resource_type)
    for key, value in operation.items():
        if key.lower() != "value":
            continue
        if path is not None:
            value = _unwrapped(path, value)
        if path is not None and _names_boolean(_without_filter(path)):
            fixed[key] = _boolean(value)
        elif path is not None:
            fixed[key] = _fix_booleans(value)
        else:
            fixed[key] = _fix_booleans(_fix_keys(value, resource_type))
    return fixed


def normalise(body: JSONObject, context: RequestContext) -> JSONObject:
    """Rewrite an Entra request body into RFC 7643/7644 form (see the module docstring)."""
    if context.method == "PATCH":
        return {
            key: [_fix_operation(op, context.resource_type) for op in value]
            if key.lower() == "operations" and isinstance(value, list)
            else value
            for key, value in body.items()
        }
    # MicrosoftDocs/azure-docs#65648: Entra sends a custom extension's object (the namespace of
    # an attribute the admin added to the mapping) without listing its URN in `schemas`, which
    # RFC 7643 §3 wants; listed here, as the okta dialect does, it is stored instead of refused.
    fixed = _fix_booleans(body)
    return with_extensions_listed(
        _fix_enterprise(fixed) if context.resource_type == "User" else fixed
    )


#: A filter value as Entra writes one: an RFC string, or a bare word (``jyoung``, ``true``).
_VALUE = r'"(?:[^"\\]|\\.)*"|[^\s"()\[\]]+'
#: One comparison: ``externalId eq jyoung``, ``Manager eq "2819c223-…"``.
_COMPARISON = re.compile(
    rf"\s*([A-Za-z0-9_.:$-]+)\s+(eq|ne|co|sw|ew|gt|ge|lt|le)\s+({_VALUE})\s*",
    re.IGNORECASE,
)
_NOT_STRINGS = re.compile(r"true|false|null|-?\d+(\.\d+)?([eE][+-]?\d+)?", re.IGNORECASE)
_AND = re.compile(r"and\s+", re.IGNORECASE)
#: An Enterprise attribute's name without its URN (not after ``:``), the only thing a quoted
#: filter may need rewritten: asked first, so ``userName eq "…"`` is not parsed here.
_BARE_ENTERPRISE = re.compile(
    r"(?<![\w:.$-])(employeeNumber|costCenter|organization|division|department|manager)"
    r"(?![\w:$-])",
    re.IGNORECASE,
)


def _names_enterprise_bare(text: str) -> bool:
    """Say whether `text` names an Enterprise attribute without its URN (`_BARE_ENTERPRISE`).

    A filter holding none of `_ENTERPRISE_NAMES` is not searched with the pattern, whose
    look-behind at every position cost ~18,000 instructions a `userName eq` look-up.
    """
    if not text.isascii():
        # The pattern's case folding also takes U+017F for s and U+0131 for i: searched.
        return _BARE_ENTERPRISE.search(text) is not None
    lowered = text.lower()
    for name in _ENTERPRISE_NAMES:
        if name in lowered:
            return _BARE_ENTERPRISE.search(text) is not None
    return False


def _conjunction(text: str) -> list[re.Match[str]] | None:
    """The comparisons of `text` if it is comparisons joined by ``and``, else None.

    A quoted value may hold anything, `` and `` included: it is matched whole, as a string.
    """
    found: list[re.Match[str]] = []
    at = 0
    while True:
        match = _COMPARISON.match(text, at)
        if match is None:
            return None
        found.append(match)
        at = match.end()
        if at == len(text):
            return found
        joined = _AND.match(text, at) if text[at - 1].isspace() else None
        if joined is None:
            return None
        at = joined.end()


def _quoted(match: re.Match[str], resource_type: str) -> str | None:
    """One comparison in RFC form (string value quoted, Enterprise name qualified), or None.

    None when the comparison is RFC form already. ``manager eq 2819c223-…`` compares the
    manager's id: ``manager`` is complex (RFC 7643 §4.3), so the comparison is on its ``value``.
    """
    name, operator, value = match[1], match[2], match[3]
    qualified = _qualified(name, resource_type)
    if qualified is not name and name.lower() == "manager":
        qualified += ".value"
    if value[0] != '"' and not _NOT_STRINGS.fullmatch(value):
        value = f'"{value}"'
    elif qualified is name:
        return None
    return f"{qualified} {operator} {value}"


def normalise_query(query: dict[str, str], context: RequestContext) -> dict[str, str]:
    """``filter=externalId eq jyoung`` -> ``filter=externalId eq "jyoung"``.

    [TUTORIAL], "Handling provisioning and deprovisioning of users", Example 1 queries a user with
    an unquoted value, which RFC 7644's grammar does not allow (a string is quoted); Example 4
    asks whether a user has a given manager with ``filter=id eq 54D382A4-… and manager eq
    2819c223-…&attributes=id``: bare values again, and the Enterprise ``manager`` named without
    its URN. The same query with its values quoted as RFC 7644 writes strings (``Id eq "…" and
    Manager eq "…"``) still names ``manager`` bare. A filter made of comparisons joined by
    ``and`` is rewritten: each bare value that is neither a boolean, null nor a number is
    quoted, and an Enterprise attribute's name is qualified as `_qualified` qualifies a PATCH
    path. No core User attribute has such a name, so no filter the RFC reads is changed.
    """
    key = "filter" if "filter" in query else next((k for k in query if k.lower() == "filter"), None)
    text = query.get(key) if key is not None else None
    if not text or ('"' in text and not _names_enterprise_bare(text)):
        return query
    comparisons = _conjunction(text)
    if comparisons is None:
        return query
    parts = [_quoted(match, context.resource_type) for match in comparisons]
    if all(part is None for part in parts):
        return query
    assert key is not None
    rewritten = (
        match[0].strip() if part is None else part
        for match, part in zip(comparisons, parts, strict=True)
    )
    return {**query, key: " and ".join(rewritten)}


@hookimpl
def register_idps() -> list[Dialect]:
    """Provide the Entra ID dialect."""
    return [
        Dialect(
            name="azure_ad",
            display_name="Microsoft Entra ID",
            mapping=ENTRA_MAPPING,
            unmanaged=ENTRA_UNMANAGED,
            normalise=normalise,
            normalise_query=normalise_query,
        )
    ]

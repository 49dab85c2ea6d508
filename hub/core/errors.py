"""Domain errors, one class per RFC 7644 §3.12 `scimType` plus the plain HTTP statuses.

Core raises these; the HTTP layer renders each as a SCIM Error document. `detail` always says
what the client should fix.
"""

from __future__ import annotations


class ScimError(Exception):
    """Base of every error the hub reports to a client."""

    status: int = 400
    scim_type: str | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidFilter(ScimError):
    """The filter syntax was invalid or the filter names an attribute the hub cannot filter."""

    scim_type = "invalidFilter"


class TooMany(ScimError):
    """The query would return or process more results than the hub allows."""

    scim_type = "tooMany"


class Uniqueness(ScimError):
    """A unique attribute value is already in use."""

    status = 409
    scim_type = "uniqueness"


class Mutability(ScimError):
    """The request tries to change an attribute that cannot be changed."""

    scim_type = "mutability"


class InvalidSyntax(ScimError):
    """The request body is not a valid SCIM message."""

    scim_type = "invalidSyntax"


class InvalidPath(ScimError):
    """A PATCH path is not valid."""

    scim_type = "invalidPath"


class NoTarget(ScimError):
    """A PATCH path matched nothing where a match is required."""

    scim_type = "noTarget"


class InvalidValue(ScimError):
    """A required value is missing or a value is of the wrong type."""

    scim_type = "invalidValue"


class InvalidCursor(ScimError):
    """A `cursor` is not one this hub issued for this list (RFC 9865 §2.1 `invalidCursor`)."""

    scim_type = "invalidCursor"


class InvalidCount(ScimError):
    """A `count` outside 1..maxPageSize on a cursor-paged query (RFC 9865 §2.1 `invalidCount`)."""

    scim_type = "invalidCount"


class InvalidVersion(ScimError):
    """The SCIM protocol version is not supported."""

    scim_type = "invalidVers"


class Sensitive(ScimError):
    """The request would put sensitive data in a URI."""

    scim_type = "sensitive"


class Unauthorized(ScimError):
    """No valid credentials: missing, unknown, revoked, or belonging to something disabled."""

    status = 401


class InvalidToken(Unauthorized):
    """A bearer token was sent but is unknown, revoked, or belongs to something disabled.

    RFC 6750 §3.1: its challenge says `error="invalid_token"`, so an OAuth client knows to get
    another token rather than to send one (a request without a token gets no error code).
    """

    bearer_error = "invalid_token"


class Forbidden(ScimError):
    """Authenticated, but this action is not allowed."""

    status = 403


class NotFound(ScimError):
    """No such resource in the caller's workspace (other workspaces are never revealed)."""

    status = 404


class Conflict(ScimError):
    """The request conflicts with the state of the resource."""

    status = 409


class PreconditionFailed(ScimError):
    """An `If-Match` version does not match the resource's current version."""

    status = 412


class PayloadTooLarge(ScimError):
    """The request body is larger than the advertised maximum."""

    status = 413


class Unavailable(ScimError):
    """The database cannot be reached; the client should retry later."""

    status = 503


class PluginFailure(ScimError):
    """A plugin raised while handling this request."""

    status = 500

    def __init__(self, plugin: str, error: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} failed: {type(error).__name__}: {error}")
        self.plugin = plugin

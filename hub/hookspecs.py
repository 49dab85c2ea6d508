"""The plugin contract: every hook a scim-hub plugin may implement.

Plugins import `hookimpl` (and the public types re-exported here) from this module, never
`pluggy` directly, and never any other module of the hub.

Hooks are synchronous and pure: pluggy does not await, so an ``async def`` implementation would
return a coroutine that silently "wins". Event hooks that need I/O hand work to a queue of their
own.

Phases:

* **Start-up** — `register_idps` is called once to build the typed IdP registry. The *dialect
  hooks* are the callables of each returned `Dialect` (``normalise``, ``normalise_query``,
  ``render``) plus its data (``mapping``, ``unmanaged``, ``settings``): for every SCIM request the
  hub asks only the dialect of the connector that made it, never every plugin, and never calls a
  hook per attribute. An exception in a dialect hook fails only that request, with a SCIM 500
  naming the plugin.
* **Events** — broadcast to every plugin after the change they describe has committed. An
  exception in one is logged with the plugin's name and never undoes the change nor stops the
  other plugins from hearing it.

A plugin that fails to import, implements a hook not defined here, or returns something invalid
from `register_idps` is reported as broken (`scim-hub plugins`) and left out; the rest of the hub
keeps working.
"""

from __future__ import annotations

import pluggy

from hub.core.dialects import (
    PROFILE_FIELDS,
    STANDARD_MAPPING,
    Dialect,
    JSONObject,
    RequestContext,
    with_extensions_listed,
)

PROJECT = "scim_hub"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "PROFILE_FIELDS",
    "STANDARD_MAPPING",
    "Dialect",
    "JSONObject",
    "RequestContext",
    "hookimpl",
    "hookspec",
    "with_extensions_listed",
]


# --- start-up -------------------------------------------------------------------------------


@hookspec
def register_idps() -> list[Dialect]:  # type: ignore[empty-body]
    """Declare the IdP dialects this plugin provides.

    When: once, when the plugin manager is built at start-up (server and CLI).
    Receives: nothing.
    Returns: a list of `Dialect` values; an empty list if the plugin adds none. Each names the
    IdP (``name``, ``display_name``), maps card profile fields to SCIM attribute paths
    (``mapping``), lists the attributes the IdP does not manage (``unmanaged``), and may supply
    ``normalise`` / ``normalise_query`` (requests into RFC form), ``render`` (responses into what
    the IdP expects) and a ``settings`` struct read from ``SCIM_HUB_PLUGIN_<PLUGIN>_<FIELD>``.
    ``extends`` names other dialects whose ``normalise`` (and ``normalise_query``) runs first:
    one plugin reuses another's quirks by name, never by importing it.
    Combination: every plugin's lists are concatenated into the registry; two dialects with the
    same `name` are a start-up error naming both plugins. A list that is not valid (unknown
    profile field, unparsable path) marks the plugin broken and leaves all its dialects out.
    """


# --- events (after commit) ------------------------------------------------------------------


@hookspec
def user_provisioned(workspace: str, connector: str, user: JSONObject) -> None:
    """A user was created over SCIM.

    When: after the transaction that created the user has committed.
    Receives: the workspace id, the connector id, and the user's SCIM resource as returned.
    Returns: nothing. Combination: broadcast to every plugin; an exception is logged with the
    plugin's name and never undoes the change.
    """


@hookspec
def user_updated(workspace: str, connector: str, user: JSONObject) -> None:
    """A user was changed over SCIM (PUT or PATCH) and is still active.

    When: after the change committed.
    Receives: the workspace id, the connector id, and the user's SCIM resource after the change.
    Returns: nothing. Combination: broadcast; exceptions are logged and ignored.
    """


@hookspec
def user_deprovisioned(workspace: str, connector: str, user: JSONObject, deleted: bool) -> None:
    """A user was deactivated (`active=false`) or deleted over SCIM.

    When: after the change committed.
    Receives: the workspace id, the connector id, the user's last SCIM resource, and whether it
    was a DELETE (True) or a deactivation (False).
    Returns: nothing. Combination: broadcast; exceptions are logged and ignored.
    """


@hookspec
def user_reactivated(workspace: str, connector: str, user: JSONObject) -> None:
    """A deprovisioned user was provisioned again (same userName or externalId) or set active.

    When: after the change committed.
    Receives: the workspace id, the connector id, and the user's SCIM resource.
    Returns: nothing. Combination: broadcast; exceptions are logged and ignored.
    """


@hookspec
def card_created(workspace: str, connector: str, user: JSONObject, card: JSONObject) -> None:
    """A user's business card was created (at provisioning, in the user's transaction).

    When: after the transaction that created the user and the card has committed.
    Receives: the workspace id, the connector id, the user's SCIM resource, and the card as the
    admin API shows it (`id`, `user`, `active`, `template`, `fields` with each field's `value`,
    `source`, `locked` and `linked`).
    Returns: nothing. Combination: broadcast; exceptions are logged and ignored.
    """


@hookspec
def template_applied(workspace: str, user: JSONObject, template: JSONObject) -> None:
    """A template was applied to a user's card.

    When: after commit, when the first matching template applied at provisioning, or when an
    admin assigned a template to a card by hand.
    Receives: the workspace id, the user's SCIM resource, and the template as the admin API shows
    it (`id`, `name`, `rule`, `position`, `fields`).
    Returns: nothing. Combination: broadcast; exceptions are logged and ignored.
    """

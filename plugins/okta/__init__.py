"""Okta dialect. Its quirks arrive with the IdP plugins issue (#4)."""

from __future__ import annotations

from hub.hookspecs import Dialect, hookimpl


@hookimpl
def register_idps() -> list[Dialect]:
    """Provide the Okta dialect."""
    return [Dialect(name="okta", display_name="Okta")]

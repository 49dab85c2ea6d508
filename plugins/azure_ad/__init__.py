"""Microsoft Entra ID (Azure AD) dialect. Its quirks arrive with the IdP plugins issue (#4)."""

from __future__ import annotations

from hub.hookspecs import Dialect, hookimpl


@hookimpl
def register_idps() -> list[Dialect]:
    """Provide the Entra ID dialect."""
    return [Dialect(name="azure_ad", display_name="Microsoft Entra ID")]

"""Identifiers: random, unguessable, so nothing can be learnt across workspaces."""

from __future__ import annotations

import uuid


def new_id() -> str:
    """Return a new random resource id (UUID 4 text)."""
    return str(uuid.uuid4())

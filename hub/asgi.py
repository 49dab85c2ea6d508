"""ASGI entry point for uvicorn workers: settings come from the environment."""

from __future__ import annotations

from litestar import Litestar

from hub.app import create_app
from hub.logging import configure_logging
from hub.settings import load_settings


def create() -> Litestar:
    """Build the app from `SCIM_HUB_*` settings (called by uvicorn in each worker)."""
    settings = load_settings()
    configure_logging(settings)
    return create_app(settings, freeze_start_up=True)

"""A serving process takes its start-up objects out of the garbage collector's full collections.

`hub.asgi.create` (what `scim-hub serve` runs in each worker) builds the app with
`freeze_start_up=True`: once start-up is done, a full collection walks what requests leave
behind, not the ~150,000 objects start-up built (which stopped the event loop 100 to 160 ms each
time). An app built for a test does not freeze anything: a test process builds many apps, and
frozen cycles are never collected.
"""

from __future__ import annotations

import gc

import pytest
from litestar.testing import AsyncTestClient

from hub import asgi
from hub.app import create_app
from hub.settings import Settings
from tests.conftest import TEST_BASE_URL


@pytest.mark.usefixtures("restored_logging")  # `hub.asgi.create` configures logging
async def test_a_serving_process_freezes_its_start_up(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "SCIM_HUB_DATABASE_URL": settings.database_url,
        "SCIM_HUB_BASE_URL": TEST_BASE_URL,
        "SCIM_HUB_OUTBOX_DIR": settings.outbox_dir,
        "SCIM_HUB_SECRET_FILE": settings.secret_file,
        "SCIM_HUB_LOG_LEVEL": "warning",
    }.items():
        monkeypatch.setenv(name, value)
    before = gc.get_freeze_count()  # tests/conftest.py freezes what collection left
    try:
        async with AsyncTestClient(app=asgi.create(), base_url=TEST_BASE_URL) as client:
            frozen = gc.get_freeze_count() - before
            print(f"frozen at start-up: {frozen}; left to the collector: {len(gc.get_objects())}")
            # Start-up builds ~9,500 lasting objects since handlers are parsed once per process.
            assert frozen > 5_000, f"only {frozen} objects frozen"
            # What a full collection still walks: far fewer objects than start-up left.
            assert len(gc.get_objects()) < frozen / 4
            assert (await client.get("/healthz")).status_code == 200
    finally:
        gc.unfreeze()  # and freeze again, as conftest.py does (this app stays frozen: one app)
        gc.collect()
        gc.freeze()


async def test_an_app_built_for_a_test_freezes_nothing(settings: Settings) -> None:
    before = gc.get_freeze_count()
    async with AsyncTestClient(app=create_app(settings), base_url=TEST_BASE_URL) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert gc.get_freeze_count() <= before  # frozen objects freed by refcount leave it

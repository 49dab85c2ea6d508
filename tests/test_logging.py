"""The log lines `configure_logging` sets up: one JSON object a line, whatever is logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from hub.logging import configure_logging
from hub.settings import load_settings

# configure_logging binds the test's stderr, which closes after it.
pytestmark = pytest.mark.usefixtures("restored_logging")


def _configure(tmp_path: Path, log_format: str) -> None:
    settings = load_settings(
        environ={"SCIM_HUB_LOG_LEVEL": "info", "SCIM_HUB_LOG_FORMAT": log_format},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}",
        base_url="http://127.0.0.1:8000",
    )
    configure_logging(settings)


def test_json_lines_hold_any_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _configure(tmp_path, "json")
    structlog.contextvars.bind_contextvars(request_id="r1")
    log = structlog.get_logger("test")
    try:
        log.info("plain", path="/scim/v2/Users/é", status=200, ms=0.5)
        log.info("odd", thing=object(), newline="a\nb", nul="x\x00y")
        log.info("surrogate", value="a\ud800b")  # UTF-8 cannot encode it; JSON's \\u escape can
        log.debug("hidden")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = capsys.readouterr().err.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == ["plain", "odd", "surrogate"]
    plain, odd, surrogate = events
    assert plain["path"] == "/scim/v2/Users/é"
    assert plain["request_id"] == "r1"
    assert plain["level"] == "info"
    assert plain["timestamp"].endswith("Z")
    assert odd["thing"].startswith("<object object at")
    assert (odd["newline"], odd["nul"]) == ("a\nb", "x\x00y")
    assert surrogate["value"] == "a\ud800b"


def test_console_format_is_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _configure(tmp_path, "console")
    structlog.get_logger("test").info("shown", key="value")
    err = capsys.readouterr().err
    for word in ("shown", "key", "value"):
        assert word in err
    assert not err.lstrip().startswith("{")

"""The benchmark harness cannot rot: a tiny run against the hub and the floor, no thresholds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.load import PHASES

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.server
def test_bench_smoke_hub_and_floor(tmp_path: Path) -> None:
    out = tmp_path / "bench.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--servers",
            "hub,floor",
            "--phase-timeout",
            "20",
            "--tmpdir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = out.read_text().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["errors_total"] == 0
    assert result["failed_servers"] == []
    assert set(result["servers"]) == {"hub", "floor"}
    for name, server in result["servers"].items():
        assert list(server["phases"]) == list(PHASES), name
        for phase, figures in server["phases"].items():
            assert figures["errors"] == 0, (name, phase, figures["error_samples"])
            assert figures["requests"] > 0, (name, phase)
            assert figures["rps"] > 0, (name, phase)
            assert not figures["timed_out"], (name, phase)
    assert set(result["ratios"]["hub/floor"]) == set(PHASES)

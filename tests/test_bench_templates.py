"""The template-edit benchmark cannot rot: a few hundred seeded cards, no thresholds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.server
def test_template_edit_bench_smoke(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.templates", "--smoke", "--tmpdir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    result = json.loads([x for x in done.stdout.splitlines() if x.startswith("{")][-1])
    assert result["seed"]["cards"] is True
    assert result["seed"]["templated"] == result["inheriting"] == 300
    assert result["setup_errors"] == 0, result["setup_error_samples"]
    for name in ("edit", "drop_field"):
        phase = result["phases"][name]
        assert phase["answered"] is True, phase
        assert phase["errors"] == 0, phase["error_samples"]
        assert phase["verified"] == result["sample"] >= 20
        assert phase["wall_ms"] > 0
    assert result["admin_edited"] == result["admin_unlocked"] == 5
    assert result["metrics_check"]["match"] is True, result["metrics_check"]

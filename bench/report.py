"""Turning phase results into the text table, the ratios and the JSON line."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

# Issue 5 targets, hub req/s relative to the peer and the floor (informative here, never asserted).
PEER_TARGET = {"list": 10.0}
PEER_TARGET_DEFAULT = 2.5
#: Reads against the floor's same phase (its one SELECT a request).
FLOOR_TARGET = {"get": 0.5, "filter": 0.5}
#: Writes against "the floor's insert rate" (issue 5): its create phase, one INSERT a request.
FLOOR_INSERT_TARGET = {"create": 0.4, "patch": 0.4, "deactivate": 0.4}
P99_TARGET_MS = 50.0


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _speed(phase: dict[str, Any], measure: str) -> float:
    """How fast a server ran a phase: req/s, or requests per million instructions."""
    if measure == "rps":
        return float(phase.get("rps", 0))
    instructions = phase.get("instructions_per_req", 0)
    return 1e6 / instructions if instructions else 0.0


def ratios(servers: dict[str, dict[str, Any]], measure: str = "rps") -> dict[str, dict[str, float]]:
    """hub/peer and hub/floor speed per phase, for the phases both ran without error.

    `measure` "rps" compares req/s; "instructions" compares requests per instruction (the
    other server's instructions per request over the hub's, `--instructions`): what the req/s
    ratio is when every server is bound by its CPU. "hub/floor insert" sets each write phase
    against the floor's insert rate (its create phase), the measure issue 5 names for writes;
    "hub/floor" sets it against the floor's same phase, for PATCH and deactivation one raw
    UPDATE a request, faster than its INSERT.
    """
    out: dict[str, dict[str, float]] = {}
    hub = {p: _speed(r, measure) for p, r in servers.get("hub", {}).get("phases", {}).items()}
    for other in ("peer", "floor"):
        theirs = servers.get(other, {}).get("phases", {})
        pair: dict[str, float] = {}
        for phase, mine in hub.items():
            speed = _speed(theirs[phase], measure) if phase in theirs else 0.0
            if speed > 0:
                pair[phase] = round(mine / speed, 3)
        if pair:
            out[f"hub/{other}"] = pair
    floor_create = servers.get("floor", {}).get("phases", {}).get("create")
    inserts = _speed(floor_create, measure) if floor_create else 0.0
    if inserts > 0:
        written = {p: round(hub[p] / inserts, 3) for p in FLOOR_INSERT_TARGET if p in hub}
        if written:
            out["hub/floor insert"] = written
    return out


def scaling(servers: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """req/s of the hub with N workers over the hub with 1 worker, per phase ("hub-Nw/hub")."""
    one = servers.get("hub", {}).get("phases", {})
    out: dict[str, dict[str, float]] = {}
    for label, server in servers.items():
        if not label.startswith("hub-") or "phases" not in server:
            continue
        pair = {
            phase: round(mine["rps"] / one[phase]["rps"], 3)
            for phase, mine in server["phases"].items()
            if phase in one and one[phase]["rps"] > 0
        }
        if pair:
            out[f"{label}/hub"] = pair
    return out


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def text_table(result: dict[str, Any]) -> str:
    counted = "instruction_ratios" in result
    header = (
        f"{'server':<6} {'phase':<10} {'req':>6} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8}"
        f" {'p99 ms':>8} {'errors':>6} {'cpu s':>7} {'cpu ms/req':>10}"
        + (f" {'instr/req':>11}" if counted else "")
    )
    lines = [header, "-" * len(header)]
    for name, server in result["servers"].items():
        if "error" in server:
            lines.append(f"{name:<6} FAILED: {server['error'].splitlines()[0]}")
            continue
        for phase, r in server["phases"].items():
            lines.append(
                f"{name:<6} {phase:<10} {r['requests']:>6} {_fmt(r['rps']):>9}"
                f" {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['p99_ms']:>8.2f}"
                f" {r['errors']:>6} {r['cpu_s']:>7.2f} {r['cpu_ms_per_req']:>10.3f}"
                + (f" {r.get('instructions_per_req', 0):>11,}" if counted else "")
            )
    smoke = result["args"].get("smoke", False)
    lines += _ratio_lines(result.get("ratios", {}), smoke, "req/s")
    if "instruction_ratios" in result:
        lines += _ratio_lines(result["instruction_ratios"], smoke, "instructions per request")
    for key, pair in result.get("scaling", {}).items():
        lines.append("")
        lines.append(
            f"scaling {key} (req/s): " + ", ".join(f"{p} {v:.2f}x" for p, v in pair.items())
        )
    return "\n".join(lines)


def _ratio_lines(pairs: dict[str, dict[str, float]], smoke: bool, measure: str) -> list[str]:
    """The ratios against issue 5's targets, as text lines (none without ratios)."""
    if not pairs:
        return []
    head = (
        f"{'phase':<10} {'hub/peer':>9} {'target':>7} {'hub/floor':>10} {'target':>7}"
        f" {'hub/floor insert':>16} {'target':>7}"
    )
    lines = ["", f"ratios of {measure}:", head, "-" * len(head)]
    phases = list(dict.fromkeys(p for pair in pairs.values() for p in pair))
    for phase in phases:
        cells = [f"{phase:<10}"]
        for key, targets, default, width in (
            ("hub/peer", PEER_TARGET, PEER_TARGET_DEFAULT, 9),
            ("hub/floor", FLOOR_TARGET, None, 10),
            ("hub/floor insert", FLOOR_INSERT_TARGET, None, 16),
        ):
            value = pairs.get(key, {}).get(phase)
            target = targets.get(phase, default)
            cells.append(f"{'-' if value is None else f'{value:.2f}x':>{width}}")
            if target is None or value is None:
                cells.append(f"{'':>7}")
            else:
                mark = "" if smoke else (" ok" if value >= target else " LOW")
                cells.append(f"{f'{target:g}x{mark}':>7}")
        lines.append(" ".join(cells))
    if not smoke:
        lines.append(
            "(targets from issue 5: writes against the floor's insert rate, its create"
            f" phase; p99 target < {P99_TARGET_MS:g} ms in every phase)"
        )
    return lines


def markdown_table(result: dict[str, Any]) -> str:
    """The same figures as Markdown, for BENCHMARKS.md."""
    counted = "instruction_ratios" in result
    rows = [
        "| server | phase | requests | req/s | p50 ms | p95 ms | p99 ms | errors | CPU s"
        " | CPU ms/req |" + (" instructions/req |" if counted else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if counted else ""),
    ]
    for name, server in result["servers"].items():
        if "error" in server:
            rows.append(f"| {name} | failed: {server['error'].splitlines()[0]} |||||||||")
            continue
        for phase, r in server["phases"].items():
            rows.append(
                f"| {name} | {phase} | {r['requests']} | {_fmt(r['rps'])} | {r['p50_ms']:.2f}"
                f" | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['cpu_s']:.2f}"
                f" | {r['cpu_ms_per_req']:.3f} |"
                + (f" {r.get('instructions_per_req', 0):,} |" if counted else "")
            )
    for title, pairs in (
        ("req/s", result.get("ratios", {})),
        ("instructions per request", result.get("instruction_ratios", {})),
    ):
        if not pairs:
            continue
        keys = ("hub/peer", "hub/floor", "hub/floor insert")
        rows += ["", f"| phase ({title}) | {' | '.join(keys)} |", "|---|---:|---:|---:|"]
        for phase in dict.fromkeys(p for pair in pairs.values() for p in pair):
            cells = [pairs.get(key, {}).get(phase) for key in keys]
            shown = ["-" if value is None else f"{value:.2f}x" for value in cells]
            rows.append(f"| {phase} | {' | '.join(shown)} |")
    for key, pair in result.get("scaling", {}).items():
        rows += ["", f"| phase | {key} (req/s) |", "|---|---:|"]
        rows += [f"| {phase} | {value:.2f}x |" for phase, value in pair.items()]
    return "\n".join(rows)


def json_line(result: dict[str, Any]) -> str:
    return json.dumps(result, separators=(",", ":"), sort_keys=False)


def write_json(result: dict[str, Any], path: Path, append: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w") as f:
        f.write(json_line(result) + "\n")


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.report [FILE]``: the Markdown tables of the last JSON line of FILE."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).resolve().parent / "results" / "latest.json"
    result = json.loads(path.read_text().strip().splitlines()[-1])
    print(markdown_table(result))


if __name__ == "__main__":
    main()

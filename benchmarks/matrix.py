"""Runs scenarios x systems, one fresh process each, and derives the ratios.

A (scenario, system) result is the JSON line of its process (`benchmarks.harness`)
with ``status`` "ok", "n/a" (the system lacks the feature), "capped" (a run would take
longer than the cap) or "error". Before a larger N of the same workload, the cost of the
last N measured is projected (µs/task x N, a lower bound): when it exceeds the cap the
point is reported "capped" without being run, so a slow system's growth curve stops at
the largest N it finishes within the cap.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from .harness import CAP_S
from .scenarios import PEER_OF, REDIS_NOT_AVAILABLE, SYSTEMS, Scenario

MODULES = {
    "asyncio": "bench_asyncio",
    "graflow-async": "bench_ours",
    "graflow": "bench_graflow",
    "langgraph": "bench_langgraph",
    "langgraph+memory": "bench_langgraph",
}
SLACK_S = 600.0  # on top of the runs' caps: building a 1M-task workflow, importing, peers' start-up


def command(system: str, kind: str, n: int, repeat: int, cap: float) -> list[str]:
    """The scenario process of `system`: our venv's interpreter or the peer's."""
    args = ["-m", f"benchmarks.{MODULES[system]}", kind, str(n), str(repeat), str(cap)]
    if system == "langgraph+memory":
        args.append("memory")
    if system in PEER_OF:
        from .peers import PEERS, ensure

        return [str(ensure(PEERS[PEER_OF[system]])), *args]
    return [sys.executable, *args]


def run_process(cmd: list[str], timeout: float) -> dict[str, Any]:
    """Run a scenario process in a temp dir; its last JSON line, or an error record."""
    from .peers import environment

    with tempfile.TemporaryDirectory(prefix="bench-") as cwd:
        try:
            done = subprocess.run(cmd, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "error", "error": f"killed after {timeout:g} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"status": "error", "error": (done.stderr.strip() or done.stdout.strip())[-1500:]}
    return dict(json.loads(lines[-1]))


def run_one(scenario: Scenario, system: str, *, quick: bool, cap: float) -> dict[str, Any]:
    n, repeat = scenario.size(quick), scenario.runs(quick)
    try:
        if scenario.runner == "redis":
            if system in ("langgraph", "langgraph+memory"):
                return {"status": "n/a", "reason": REDIS_NOT_AVAILABLE}
            from .redis_matrix import measure_system

            return measure_system(system, scenario.kind, n, repeat, cap)
        return run_process(command(system, scenario.kind, n, repeat, cap), cap * (repeat + 1) + SLACK_S)
    except Exception as exc:  # a peer venv that cannot be created, workers that do not start: one cell fails
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}


class Matrix:
    """Results by scenario and system, with the projection that caps large N."""

    def __init__(self, *, quick: bool, cap: float = CAP_S, systems: tuple[str, ...] = SYSTEMS) -> None:
        self.quick, self.cap, self.systems = quick, cap, systems
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self._last: dict[tuple[str, str, str], tuple[int, float]] = {}  # (runner, kind, system) -> (n, µs)

    def projected_s(self, scenario: Scenario, system: str) -> float | None:
        last = self._last.get((scenario.runner, scenario.kind, system))
        n = scenario.size(self.quick)
        if last is None or last[0] >= n or scenario.unit != "µs/task":
            return None
        return last[1] * n / 1e6

    def run(self, scenario: Scenario, system: str) -> dict[str, Any]:
        projected = self.projected_s(scenario, system)
        if projected is not None and projected > self.cap:
            last_n = self._last[(scenario.runner, scenario.kind, system)][0]
            result: dict[str, Any] = {
                "status": "capped",
                "reason": (
                    f"not run: at its cost per task for N = {last_n:,} one run would take >= {projected:.0f} s "
                    f"(cap {self.cap:g} s)"
                ),
            }
        else:
            result = run_one(scenario, system, quick=self.quick, cap=self.cap)
        result["n"] = scenario.size(self.quick)
        if result.get("status") == "ok" and scenario.unit == "µs/task":
            self._last[(scenario.runner, scenario.kind, system)] = (result["n"], result["value"])
        self.results.setdefault(scenario.name, {})[system] = result
        return result

    def run_all(self, scenarios: list[Scenario], progress: Callable[[Scenario, str, dict[str, Any]], None]) -> None:
        for scenario in scenarios:
            for system in self.systems:
                progress(scenario, system, self.run(scenario, system))


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """For each system measured: its figure over the floor's (``floor``) and over each
    other system's (by name). 3.0 means three times the cost per task."""
    values = {s: r["value"] for s, r in results.items() if r.get("status") == "ok"}
    out: dict[str, dict[str, float]] = {}
    for system, value in values.items():
        row = {other: value / v for other, v in values.items() if other != system and v > 0}
        if "asyncio" in row:
            row["floor"] = row.pop("asyncio")
        out[system] = row
    return out

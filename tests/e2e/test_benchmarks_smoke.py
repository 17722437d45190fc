"""`make bench`'s plumbing on a tiny run of graflow-async and plain asyncio: real scenario
processes, the JSON, the Markdown table and the PNGs. No timing is asserted, and no
peer venv is created (the peers need PyPI)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import ROOT, output, run_module
from benchmarks.matrix import Matrix, ratios
from benchmarks.scenarios import SCENARIOS, Scenario, select

SYSTEMS = ("asyncio", "graflow-async")


def test_a_tiny_run_writes_json_markdown_and_plots(tmp_path):
    from benchmarks import plots  # matplotlib is in the dev extra: missing, the test fails

    chosen = select(["chain-1k", "fan-1k"])
    matrix = Matrix(quick=True, systems=SYSTEMS)
    matrix.run_all(chosen, lambda *_: None)
    doc = output.document(
        chosen,
        matrix.results,
        quick=True,
        settings={"repeat": 2},
        details={},
        header={"machine": output.machine(), "versions": output.versions(SYSTEMS)},
    )
    output.write_json(doc, tmp_path / "latest.json")
    written = json.loads((tmp_path / "latest.json").read_text())

    assert [row["name"] for row in written["scenarios"]] == ["chain-1k", "fan-1k"]
    for row in written["scenarios"]:
        for system in SYSTEMS:
            result = row["results"][system]
            assert result["status"] == "ok", result
            assert result["value"] > 0 and result["peak_rss_mib"] > 0 and len(result["runs"]) == 2
        assert set(row["ratios"]["graflow-async"]) == {"floor"}
    assert written["machine"]["cpus"] >= 1 and "graflow-async" in written["versions"]
    assert output.markdown_table(written, SYSTEMS).count("\n") == 4  # header, rule, two rows
    for png in plots.write(written, SYSTEMS, tmp_path):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratios_are_over_the_floor_and_over_each_other_system():
    got = ratios(
        {
            "asyncio": {"status": "ok", "value": 2.0},
            "graflow-async": {"status": "ok", "value": 6.0},
            "graflow": {"status": "ok", "value": 60.0},
            "langgraph": {"status": "n/a"},
        }
    )
    assert got["graflow-async"] == {"floor": 3.0, "graflow": 0.1}
    assert got["graflow"] == {"floor": 30.0, "graflow-async": 10.0}
    assert "langgraph" not in got


def test_a_larger_n_projected_over_the_cap_is_not_run():
    small = Scenario("fan-a", "fan", 1_000, 1_000, "fan {n}")
    large = Scenario("fan-b", "fan", 1_000_000, 1_000_000, "fan {n}")
    matrix = Matrix(quick=False, cap=60.0)
    matrix._last[("local", "fan", "graflow")] = (small.n, 100.0)  # 100 µs/task: 1M tasks take >= 100 s
    assert matrix.projected_s(large, "graflow") == pytest.approx(100.0)
    result = matrix.run(large, "graflow")
    assert result["status"] == "capped" and "cap 60 s" in result["reason"]


def test_every_scenario_and_suite_is_listed():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--list"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for scenario in SCENARIOS:
        assert scenario.name in out
    assert "checkpoints" in out and "graflow-redis" in out


def test_the_durable_suite_measures_both_modes_and_a_takeover():
    """`benchmarks.durable` with tiny N: every figure it reports is there and positive."""
    r = run_module("durable", *"--fan 50 --chain 10 --local-chain 20 --facts 2000 --repeat 1 --local-repeat 1".split())
    for part in (r["redis"]["fan"], r["redis"]["chain"], r["local"]):
        assert part["plain_s"] > 0 and part["durable_s"] > 0 and part["ratio"] == part["durable_s"] / part["plain_s"]
    assert r["takeover"]["tasks"] == 1000 and r["takeover"]["recover_s"] > 0
    assert set(r["bars"]) == {"redis_fan", "redis_chain", "local_chain", "takeover_100k"}

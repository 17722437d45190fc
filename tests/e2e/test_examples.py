"""The examples run by hand as documented, in a fresh directory, and tell their story."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_example(
    name: str, *args: str, cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(extra_env or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.pop("GRAFLOW_CHECKPOINT_KEY", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
    )


def test_training_resumes_from_the_saved_epoch(tmp_path: Path) -> None:
    proc = run_example("train_with_checkpoints.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout

    first, _, after = out.partition("== resuming ==")
    assert "crashed: task 'train' failed: MachineLost" in first
    epochs_before = [int(e) for e in re.findall(r"epoch +(\d+)/10", first)]
    assert epochs_before == list(range(1, 9))  # crashed during epoch 8

    saved = re.search(r"resumed from the checkpoint of epoch (\d+)", after)
    assert saved is not None, out
    k = int(saved.group(1))
    assert k == 6  # the last checkpoint before the crash (every 3 epochs)
    epochs_after = [int(e) for e in re.findall(r"epoch +(\d+)/10", after)]
    assert epochs_after == list(range(k + 1, 11))  # continued, not from epoch 1

    assert out.count("load_data: ") == 1  # not loaded again
    assert re.search(r"completed; evaluate -> \{'accuracy': 0\.9\d+, 'final_loss': 0\.1\d+\}", out)
    assert "load_data ran 1 time(s), train 2 time(s)" in out

    run_dir = re.search(r"== first run (train-[0-9a-f]+)", out)
    assert run_dir is not None
    stored = sorted(p.name for p in (tmp_path / ".graflow" / "checkpoints" / run_dir.group(1)).iterdir())
    # epochs 3 and 6, then 9 after resuming; the resumed run completed (a later resume needs force)
    assert stored == ["1.ckpt", "2.ckpt", "3.ckpt", "completed"]


def test_training_store_option(tmp_path: Path) -> None:
    proc = run_example("train_with_checkpoints.py", "--store", "elsewhere", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resumed from epoch 6: trained epochs 7-10" in proc.stdout
    assert not (tmp_path / ".graflow").exists()
    assert len(list((tmp_path / "elsewhere").rglob("*.ckpt"))) == 3


def _agent_story(out: str) -> None:
    assert "round 1: plan researches latency, throughput, failure modes" in out
    assert "check: 7 facts, want 12: planning again" in out  # a loop back by goto
    assert "round 2: plan researches cost, operability, security" in out
    assert "check: 14 facts: done" in out
    summary = re.search(r"summary: 14 facts on 6 topics: (.+)", out)
    assert summary is not None, out
    assert sorted(summary.group(1).split(", ")) == sorted(
        ["latency", "throughput", "failure modes", "cost", "operability", "security"]
    )
    assert "rounds: 2; tasks added at runtime: 6" in out


def test_the_agent_loop_fans_out_at_runtime_and_loops_until_done(tmp_path: Path) -> None:
    proc = run_example("agent_loop.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _agent_story(proc.stdout)
    assert f"(from pid {os.getpid()})" not in proc.stdout  # it ran in the example's own process


def test_the_agent_loop_runs_the_same_on_redis_workers(tmp_path: Path, workers: Any, redis_url: str) -> None:
    [worker] = workers.start(1, "--import", "examples.agent_loop")
    proc = run_example("agent_loop.py", "--redis-url", redis_url, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + worker.output()
    assert "round 1" not in proc.stdout  # the tasks (and their prints) ran on the worker
    _agent_story(worker.output() + proc.stdout)


def test_the_example_counts_primes_in_processes(tmp_path: Path) -> None:
    proc = run_example("custom_handler.py", "--stop", "20000", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2262 primes below 20,000 (4 slices)" in proc.stdout and "separate processes" in proc.stdout


def test_a_durable_payment_recovered_after_its_driver_was_killed_charges_the_card_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # where the example keeps its state
    (tmp_path / "tmp").mkdir()
    proc = run_example("durable_payments.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout

    run_id = re.search(r"durable run (pay-[0-9a-f]{8})", out)
    assert run_id is not None, out
    key = f"{run_id.group(1)}/charge/1"
    killed, _, recovered = out.partition("== recover ")
    assert "killed while charge waits" in killed
    # journaled in the driver: never again; running when it was killed: again, under the same key
    assert out.count("reserve: ") == 1 and "[driver] reserve: 2 items" in killed
    assert f"[driver] charge: attempt 1, idempotency key {key}" in killed
    assert f"[recover] charge: attempt 1, idempotency key {key}" in recovered
    assert (
        out.count("gateway: charged") == 1
        and f"[driver] gateway: charged tok_visa_4242 36.00 EUR as ch_1 (key {key})" in out
    )
    assert f"[recover] gateway: key {key} seen before: returns ch_1" in recovered
    assert "[recover] receipt: 36.00 EUR paid by tok_visa_4242 (ch_1)" in recovered and "[recover] ship: " in recovered
    assert f"== run {run_id.group(1)}: completed; close -> 'order closed: ch_1, receipt-A-1042, TRK-A-1042' ==" in out
    assert f"gateway ledger: 1 charge(s)\n  {key}: ch_1 tok_visa_4242 36.00 EUR\nthe card was charged once" in out
    assert list((tmp_path / "tmp").iterdir()) == []  # its temporary state is removed


def test_the_nightly_report_schedule_starts_one_run_per_tick(tmp_path: Path) -> None:
    proc = run_example("nightly_report.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "nightly-report: 0 2 * * * Europe/Berlin" in out
    reports = re.findall(r"^(nightly-demo@(\S+)): report for (\S+): 3 orders, 120\.00 EUR$", out, re.M)
    assert len(reports) == 3, out
    run_ids = [r[0] for r in reports]
    assert len(set(run_ids)) == 3 and run_ids == sorted(run_ids)
    for _, tick, night in reports:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", tick) and night == tick  # the run's own tick
    assert list(tmp_path.iterdir()) == []  # it worked in a temporary directory


def test_llm_calls_under_limits_get_no_429_and_show_throttled_on_the_run_page(tmp_path: Path) -> None:
    faster = {"LLM_RATE": "12", "LLM_WINDOW": "1.5"}  # 12 calls per 1.5 s per key, not 60 a minute
    proc = run_example("llm_rate_limited.py", "--calls", "60", cwd=tmp_path, extra_env=faster)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "status: completed" in proc.stdout
    assert "calls answered: 60; refused with 429: 0" in proc.stdout
    assert "{'sk-A': 5, 'sk-B': 5} (limit 5)" in proc.stdout
    throttled = re.search(r"most throttled at once on the run page: (\d+)", proc.stdout)
    assert throttled and int(throttled.group(1)) >= 10, proc.stdout
    took = re.search(r"completed after ([\d.]+)s", proc.stdout)
    assert took and float(took.group(1)) >= 2 * 1.5  # each key's 30 calls needed 3 windows

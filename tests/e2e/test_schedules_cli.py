"""``--schedule`` on the command line (SPEC 11), in real subprocesses: a bad SPEC or a
bad cron expression is a usage error (exit code 2, argparse's message) naming the
schedule, before anything is imported or connected; ``serve --schedule`` runs the
schedule in-process and lists it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from worker_processes import PYTHONPATH

ROOT = Path(__file__).resolve().parents[2]
NOWHERE = "redis://127.0.0.1:9/0"  # never reached: the command line is refused first


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    return subprocess.run(
        [sys.executable, "-m", "graflow_async", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", ["worker", "serve"])
@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("nightly=61 2 * * *=schedule_flows:hello", ["'nightly'", "'61 2 * * *'", "Bad minute"]),
        ("nightly=0 2 * *=schedule_flows:hello", ["'nightly'", "'0 2 * *'", "five fields"]),
        ("nightly=@fortnightly=schedule_flows:hello", ["'nightly'", "'@fortnightly'"]),
        ("often=every:0=schedule_flows:hello", ["'often'", "every"]),
        ("often=every:soon=schedule_flows:hello", ["'often'", "every:soon"]),
        ("nightly=@daily=schedule_flows", ["'nightly'", "MODULE:ATTR"]),
        ("just-a-name", ["'just-a-name'", "NAME=CRON=MODULE:ATTR"]),
    ],
)
def test_a_bad_schedule_is_a_usage_error_naming_it(command: str, spec: str, named: list[str], tmp_path: Path) -> None:
    target = ["--redis-url", NOWHERE] if command == "worker" else ["--port", "0"]
    proc = cli(command, *target, "--schedule", "fine=every:60=schedule_flows:hello", "--schedule", spec, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "usage:" in proc.stderr and "argument --schedule" in proc.stderr  # argparse's own message
    for part in named:
        assert part in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_schedule_whose_workflow_cannot_be_imported_is_a_usage_error(tmp_path: Path) -> None:
    proc = cli("worker", "--redis-url", NOWHERE, "--schedule", "n=@daily=no_such_module:wf", cwd=tmp_path)
    assert proc.returncode == 2 and "no_such_module" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("serve", "--schedule", "n=@daily=schedule_flows:hello", "--schedule-timezone", "Mars/Base", cwd=tmp_path)
    assert proc.returncode == 2 and "Mars/Base" in proc.stderr
    proc = cli("serve", "--schedule", "n=@daily=schedule_flows:hello", "--schedule", "n=@hourly=schedule_flows:hello")
    assert proc.returncode == 2 and "two --schedule are named 'n'" in proc.stderr


def test_serve_runs_a_schedule_in_process_and_lists_it(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "GRAFLOW_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "graflow_async", "serve", "--port", "0", "--schedule"]
    command += ["hi=every:0.5=schedule_flows:hello", "--checkpoint-store", str(tmp_path / "ckpt")]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving on http://" in line, line
        base = line.split("http://", 1)[1].split("/", 1)[0]
        deadline = time.monotonic() + 20
        while True:
            with urllib.request.urlopen(f"http://{base}/api/schedules", timeout=5) as response:
                body = json.load(response)
            last = body["schedules"][0]["last_run"]
            if last and last["status"] == "completed":
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
        assert body["count"] == 1 and body["schedules"][0]["every"] == 0.5
        assert last["run_id"].startswith("hi@") and (tmp_path / "ckpt" / last["run_id"]).is_dir()
        with urllib.request.urlopen(f"http://{base}{last['url']}", timeout=5) as response:
            assert last["run_id"] in response.read().decode()
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0

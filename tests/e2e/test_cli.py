"""`python -m graflow_async run`: exit codes and messages, in a real subprocess."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graflow_async", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_module(tmp_path: Path, body: str) -> None:
    (tmp_path / "flows.py").write_text(textwrap.dedent(body))


def test_run_completes_the_demo_workflow() -> None:
    proc = cli("run", "examples.release_pipeline:release", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "completed, 6 tasks completed" in proc.stdout
    assert "released 3 artifacts" in proc.stdout


def test_a_failing_run_exits_1_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        """
        from graflow_async import task, workflow

        @task
        async def explode():
            raise RuntimeError("disk full")

        with workflow("broken") as wf:
            wf.add(explode)
    """,
    )
    proc = cli("run", "flows:wf", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "failed: TaskFailedError: task 'explode' failed: RuntimeError: disk full" in proc.stderr


def test_a_function_returning_a_workflow_is_accepted(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        """
        from graflow_async import task, workflow

        @task
        async def answer():
            return 42

        def make():
            with workflow("made") as wf:
                wf.add(answer)
            return wf
    """,
    )
    proc = cli("run", "flows:make", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "output: 42" in proc.stdout


def test_usage_and_import_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    write_module(tmp_path, "x = 1\n")
    cases = [
        (("run", "no_such_module:wf"), "cannot import 'no_such_module'"),
        (("run", "flows:missing"), "has no attribute 'missing'"),
        (("run", "flows:x"), "is int, not a workflow"),
        (("run", "flows"), "expected MODULE:ATTR"),
    ]
    # Each command is a process of its own: they run side by side.
    with ThreadPoolExecutor(len(cases) + 1) as pool:
        unknown = pool.submit(cli, "frobnicate", cwd=tmp_path)
        procs = list(pool.map(lambda case: cli(*case[0], cwd=tmp_path), cases))
    for (args, message), proc in zip(cases, procs, strict=True):
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr
        assert "Traceback" not in proc.stderr
    assert unknown.result().returncode == 2

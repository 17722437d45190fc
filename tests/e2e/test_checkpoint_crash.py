"""A real process killed right after its checkpoint (SPEC section 6), resumed in this
process without passing the workflow and through ``python -m graflow_async resume``;
the CLI's answer to a corrupt checkpoint."""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from graflow_async import resume
from graflow_async.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
KEY_ENV = "GRAFLOW_CHECKPOINT_KEY"


CRASHING_MODULE = """
import asyncio
import os
import pathlib

from graflow_async import run, task, workflow

HERE = pathlib.Path(__file__).parent


def note(line):
    with (HERE / "ran.log").open("a") as log:
        log.write(line + "\\n")


@task
async def extract():
    note("extract")
    return [1, 2, 3]


@task(inject_context=True)
async def transform(context, extract):
    note(f"transform resumed={context.resumed_metadata}")
    if context.resumed_metadata is None:
        await context.channel.set("rows", len(extract))
        location = await context.checkpoint(metadata={"stage": "transform"})
        (HERE / "location.txt").write_text(location)
        if os.environ.get("CRASH_AFTER_CHECKPOINT") == "1":
            os._exit(17)  # no cleanup, no finally blocks: the process is simply gone
    return [x * 10 for x in extract]


@task
async def load(transform, rows):
    note("load")
    return f"loaded {sum(transform)} from {rows} rows"


with workflow("etl") as pipeline:
    extract >> transform >> load


async def main():
    return await run(pipeline)
"""


async def python(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 45)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CRASH_AFTER_CHECKPOINT", KEY_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**env, **extra}


@pytest.fixture
def crashed_process(tmp_path: Path) -> Any:
    """Runs a module-level workflow in a child process that dies by ``os._exit(17)``
    right after its checkpoint; returns ``(module name, checkpoint location)``."""
    name = f"crashy_etl_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(CRASHING_MODULE)

    async def crash() -> tuple[str, str]:
        code = f"import asyncio, {name}; asyncio.run({name}.main())"
        rc, out, err = await python("-c", code, cwd=tmp_path, env=child_env(CRASH_AFTER_CHECKPOINT="1"))
        assert rc == 17, (out, err)
        location = (tmp_path / "location.txt").read_text()
        return name, location

    yield crash
    sys.modules.pop(name, None)


def ran(tmp_path: Path) -> Counter[str]:
    return Counter((tmp_path / "ran.log").read_text().splitlines())


async def test_killed_process_resumes_in_process_without_passing_the_workflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crashed_process: Any
) -> None:
    name, location = await crashed_process()
    checkpoint = Path(location)
    assert checkpoint.is_file()
    assert checkpoint.parent.parent == tmp_path.resolve() / ".graflow" / "checkpoints"
    assert ran(tmp_path) == {"extract": 1, "transform resumed=None": 1}
    assert (await load_checkpoint(location))["workflow_ref"] == f"{name}:pipeline"

    monkeypatch.delenv("CRASH_AFTER_CHECKPOINT", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = await resume(location)  # imports f"{name}:pipeline" itself

    assert result.output == "loaded 60 from 3 rows"
    assert result.run_id == checkpoint.parent.name
    assert result.channel == {"rows": 3}
    assert ran(tmp_path) == {
        "extract": 1,  # not again
        "transform resumed=None": 1,
        "transform resumed={'stage': 'transform'}": 1,
        "load": 1,
    }


async def test_killed_process_resumes_through_the_cli(tmp_path: Path, crashed_process: Any) -> None:
    _, location = await crashed_process()
    rc, out, err = await python("-m", "graflow_async", "resume", location, cwd=tmp_path, env=child_env())
    assert rc == 0, err
    run_id = Path(location).parent.name
    assert f"run {run_id}: completed, 3 tasks completed" in out
    assert "output: 'loaded 60 from 3 rows'" in out
    assert ran(tmp_path) == {
        "extract": 1,
        "transform resumed=None": 1,
        "transform resumed={'stage': 'transform'}": 1,
        "load": 1,
    }


async def test_cli_resume_of_a_corrupt_checkpoint_exits_1_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps({"run_id": "x"}))
    rc, _, err = await python("-m", "graflow_async", "resume", str(bad), cwd=tmp_path, env=child_env())
    assert rc == 1
    assert "Traceback" not in err
    assert "CheckpointError" in err and "pickle" in err

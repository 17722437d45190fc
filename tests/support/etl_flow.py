"""The ``extract >> transform >> load`` workflow the checkpoint tests crash and resume,
on file stores (tests/unit/test_checkpoint_resume.py) and on S3
(tests/integration/test_checkpoint_resume_s3.py)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from graflow_async import TaskFailedError, Workflow, run, task, workflow


class Crash(Exception):
    """Stands for the process dying right after a checkpoint, in in-process tests."""


def etl(calls: Counter[str], seen: dict[str, Any], locations: list[str], *, checkpoints: int = 1) -> Workflow:
    """``extract >> transform >> load``: on its first run `transform` checkpoints
    `checkpoints` times (metadata ``{"stage": "transform", "n": i}``) and then crashes."""

    @task
    async def extract() -> list[int]:
        calls["extract"] += 1
        return [1, 2, 3]

    @task(inject_context=True)
    async def transform(context, extract: list[int]) -> list[int]:
        calls["transform"] += 1
        seen["transform"] = context.resumed_metadata
        if context.resumed_metadata is None:
            await context.channel.set("rows", len(extract))
            for n in range(1, checkpoints + 1):
                locations.append(await context.checkpoint(metadata={"stage": "transform", "n": n}))
            raise Crash("the machine went away")
        return [x * 10 for x in extract]

    @task(inject_context=True)
    async def load(context, transform: list[int], rows: int, seed: int) -> str:
        calls["load"] += 1
        seen["load"] = context.resumed_metadata
        await context.channel.set("loaded", True)
        return f"loaded {sum(transform)} from {rows} rows (seed {seed})"

    with workflow("etl") as wf:
        extract >> transform >> load
    return wf


async def crashed_run(wf: Workflow, **options: Any) -> None:
    with pytest.raises(TaskFailedError) as failed:
        await run(wf, **options)
    assert isinstance(failed.value.cause, Crash)

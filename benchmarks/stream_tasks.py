"""A task that streams its chunks, or does the same work without streaming them, for
`benchmarks.streams` (workers import this module)."""

from __future__ import annotations

from typing import Any

from graflow_async import Workflow, task, workflow


@task(inject_context=True)
async def producer(context: Any, n: int, streaming: bool) -> int:
    total = 0
    for i in range(n):
        chunk = f"token {i}"
        if streaming:
            await context.stream(chunk)
        else:
            total += len(chunk)
    return total


def streaming_wf(n: int, streaming: bool) -> Workflow:
    with workflow(f"producer-{n}-{streaming}") as wf:
        wf.add(producer(task_id="producer", n=n, streaming=streaming))
    return wf

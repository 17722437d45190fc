"""Tasks for the remote-context benchmark (`benchmarks.remote_context`).

Workers import this module (``--import benchmarks.remote_context_tasks``); the same
task objects also run in-process for the local figures, so both sides measure the same
code. Each timed task returns its timings and the pid of the process that ran it.
"""

from __future__ import annotations

import os
import time
from typing import Any

from graflow_async import Workflow, chain, task, workflow


@task
async def part(i: int) -> dict[str, Any]:
    """A small result, so that a checkpoint holds a few results and little else."""
    return {"i": i, "note": f"part {i}"}


@task(inject_context=True)
async def saver(context: Any, saves: int) -> dict[str, Any]:
    """Calls `context.checkpoint()` `saves` times, timing each call (perf_counter)."""
    timings: list[float] = []
    location = None
    for _ in range(saves):
        started = time.perf_counter()
        location = await context.checkpoint(metadata={"benchmark": True})
        timings.append(time.perf_counter() - started)
    return {"timings": timings, "location": location, "pid": os.getpid()}


@task(inject_context=True)
async def asker(context: Any, requests: int) -> dict[str, Any]:
    """Asks `requests` text questions one after another. The answerer puts
    `repr(time.monotonic())` in each answer's `text` just before `respond`; the
    latency is from then to `request_feedback` returning here (`time.monotonic()` is
    system-wide on Linux, so stamps taken in different processes compare)."""
    latencies: list[float] = []
    for i in range(requests):
        answer = await context.request_feedback("text", f"question {i}", timeout=60)
        latencies.append(time.monotonic() - float(answer.text))
    return {"latencies": latencies, "pid": os.getpid()}


def checkpoint_wf(parts: int, saves: int) -> Workflow:
    """`parts` small tasks, then `saver` checkpointing `saves` times."""
    with workflow(f"remote-context-ckpt{parts}") as wf:
        chain(*(part(task_id=f"p{i}", i=i) for i in range(parts)), saver(task_id="saver", saves=saves))
    return wf


def feedback_wf(requests: int) -> Workflow:
    """One task asking `requests` questions in turn."""
    with workflow("remote-context-feedback") as wf:
        wf.add(asker(task_id="asker", requests=requests))
    return wf

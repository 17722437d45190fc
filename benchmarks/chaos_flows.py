"""The workflow `benchmarks.chaos` kills the driver of: a best-effort group with failures
and retries, a feedback question, a goto loop, a checkpoint and a strict fan, 219 tasks.

Every attempt notes that it started (``task_id cycle attempt wall-time pid``, one line
appended to the file ``CHAOS_MARKS`` names), so the harness can tell which attempts ran
more than once and when. Workers import this module (``--import benchmarks.chaos_flows``).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

from graflow_async import BestEffortGroupPolicy, RetryPolicy, TaskContext, parallel, task, workflow

MEMBERS, LEAVES, CYCLES = 60, 150, 5


def mark(context: TaskContext) -> None:
    line = f"{context.task_id} {context.cycle_count} {context.attempt} {time.time():.6f} {os.getpid()}\n"
    fd = os.open(os.environ["CHAOS_MARKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write with O_APPEND: lines of many processes never mix
    finally:
        os.close(fd)


async def pause(most: float) -> None:
    await asyncio.sleep(random.random() * most)


@task(inject_context=True)
async def start(context: TaskContext) -> int:
    mark(context)
    return 1


@task(inject_context=True, retry_policy=RetryPolicy(max_retries=2, initial_interval=0.05, backoff_factor=1.0))
async def member(context: TaskContext, start: int, n: int) -> int:
    mark(context)
    await pause(0.02)
    if n % 10 == 3:
        raise ValueError(f"member {n} always fails")  # best-effort: the group goes on
    if n % 10 == 5 and context.attempt == 1:
        raise ConnectionError(f"member {n} fails its first attempt")  # retried
    return n


@task(inject_context=True)
async def ask(context: TaskContext) -> bool:
    mark(context)
    answer = await context.request_feedback("approval", "ship it?", timeout=120.0)
    return bool(answer.approved)


@task(inject_context=True)
async def loop(context: TaskContext, ask: bool, data: int = 0) -> int:
    mark(context)
    await pause(0.02)
    if data < CYCLES - 1:
        context.next_iteration(data + 1)
    return data


@task(inject_context=True)
async def save(context: TaskContext, loop: int) -> str:
    mark(context)
    await context.checkpoint(metadata={"loop": loop})
    return "saved"


@task(inject_context=True)
async def leaf(context: TaskContext, save: str, n: int) -> int:
    mark(context)
    await pause(0.01)
    return n * n


@task(inject_context=True)
async def finish(context: TaskContext, ask: bool, loop: int) -> str:
    mark(context)
    return f"approved={ask} loops={loop + 1}"


with workflow("chaos") as CHAOS:
    members = parallel(*(member(task_id=f"member{n}", n=n) for n in range(MEMBERS))).with_execution(
        policy=BestEffortGroupPolicy()
    )
    leaves = parallel(*(leaf(task_id=f"leaf{n}", n=n) for n in range(LEAVES)))
    start >> members >> ask >> loop >> save >> leaves >> finish


def expected_results() -> dict[str, Any]:
    """What every run of CHAOS ends with, crashes or not (failed members have no result)."""
    out: dict[str, Any] = {"start": 1, "ask": True, "loop": CYCLES - 1, "save": "saved"}
    out |= {f"member{n}": n for n in range(MEMBERS) if n % 10 != 3}
    out |= {f"leaf{n}": n * n for n in range(LEAVES)}
    out["finish"] = f"approved=True loops={CYCLES}"
    return out

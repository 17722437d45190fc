"""Trivial tasks and workflows for the Redis Streams benchmark (`benchmarks.redis_streams`).

Workers import this module (``--import benchmarks.redis_tasks``) and run only the
``@task`` objects it defines: the instances built in a loop by ``noop(task_id=f"t{i}")``
all resolve to ``benchmarks.redis_tasks:noop``.
"""

from __future__ import annotations

import time

from graflow_async import Workflow, chain, parallel, task, workflow


@task
async def noop() -> int:
    return 1


@task
async def started() -> float:
    """Returns when it started, by the system-wide monotonic clock (comparable across
    processes on Linux)."""
    return time.monotonic()


@task
async def gated() -> int:
    """Notes that it started (``<BENCH_GATE>.started``), then waits for the file
    ``BENCH_GATE`` (a benchmark kills its driver meanwhile)."""
    import asyncio
    import os
    from pathlib import Path

    gate = Path(os.environ["BENCH_GATE"])
    Path(f"{gate}.started").touch()
    while not gate.exists():  # noqa: ASYNC110 - another process makes the file
        await asyncio.sleep(0.01)
    return 1


def gated_fan_wf(n: int) -> Workflow:
    """src >> parallel(n trivial tasks) >> a sink that waits for a gate: n + 2 tasks."""
    with workflow(f"gated-fan{n}") as wf:
        src, sink = noop(task_id="src"), gated(task_id="sink")
        src >> parallel(*(noop(task_id=f"t{i}") for i in range(n))) >> sink
    return wf


def fan_wf(n: int) -> Workflow:
    """src >> parallel(n trivial tasks) >> sink: n + 2 tasks."""
    with workflow(f"redis-fan{n}") as wf:
        src, sink = noop(task_id="src"), noop(task_id="sink")
        src >> parallel(*(noop(task_id=f"t{i}") for i in range(n))) >> sink
    return wf


def chain_wf(n: int) -> Workflow:
    """n trivial tasks one after another."""
    with workflow(f"redis-chain{n}") as wf:
        chain(*(noop(task_id=f"t{i}") for i in range(n)))
    return wf


def latency_wf(n: int) -> Workflow:
    """A chain of n tasks, each returning the monotonic time it started."""
    with workflow(f"redis-latency{n}") as wf:
        chain(*(started(task_id=f"s{i}") for i in range(n)))
    return wf

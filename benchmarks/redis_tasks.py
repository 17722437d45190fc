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

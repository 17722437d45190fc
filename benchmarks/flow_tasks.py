"""Tasks under limits for `benchmarks.flow_control` (workers import this module). Each
returns its start and end by the wall clock (one machine: comparable across workers),
so the benchmark judges the limits from the tasks' own times."""

from __future__ import annotations

import asyncio
import time

from graflow_async import Concurrency, RateLimit, Workflow, parallel, task, workflow

WIDE = 1000  # a concurrency limit wider than 2 workers' slots: it never makes a task wait


@task
async def free() -> int:
    return 1


@task(limits=[Concurrency(WIDE, name="bench-wide")])
async def wide() -> int:
    return 1


@task(limits=[Concurrency(2, key="{k}")])
async def keyed(k: int) -> tuple[float, float]:
    t0 = time.time()
    await asyncio.sleep(0.005)
    return (t0, time.time())


@task(limits=[RateLimit(20, per=1.0, name="bench-rate")])
async def rated() -> float:
    return time.time()


@task
async def backlog_item(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return time.time()


@task(priority=9)
async def urgent() -> float:
    return time.time()


def fan(n: int, limited: bool) -> Workflow:
    """src >> n trivial tasks (under a limit that never binds, or none) >> sink."""
    body = wide if limited else free
    with workflow(f"flow-fan{n}{'-limited' if limited else ''}") as wf:
        free(task_id="src") >> parallel(*(body(task_id=f"t{i}") for i in range(n))) >> free(task_id="sink")
    return wf


def keyed_fan(n: int, keys: int) -> Workflow:
    """`n` tasks over `keys` keys, each key's tasks sent together (so that its limit binds)."""
    with workflow(f"flow-keyed{n}") as wf:
        parallel(*(keyed(task_id=f"k{i}", k=i * keys // n) for i in range(n)))
    return wf


def rated_fan(n: int) -> Workflow:
    with workflow(f"flow-rated{n}") as wf:
        parallel(*(rated(task_id=f"r{i}") for i in range(n)))
    return wf


def backlog(n: int, seconds: float) -> Workflow:
    with workflow(f"flow-backlog{n}") as wf:
        parallel(*(backlog_item(task_id=f"b{i}", seconds=seconds) for i in range(n)))
    return wf


def urgent_one() -> Workflow:
    with workflow("flow-urgent") as wf:
        wf.add(urgent)
    return wf


# --- judging the limits from the tasks' own times (the benchmark's and the tests') -------------------
def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most (start, end) spans running at one instant (an end before a start at the same time)."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def most_in_window(starts: list[float], per: float) -> int:
    """The most starts in any window of `per` seconds."""
    starts = sorted(starts)
    most, lo = 0, 0
    for hi, t in enumerate(starts):
        while t - starts[lo] >= per:
            lo += 1
        most = max(most, hi - lo + 1)
    return most

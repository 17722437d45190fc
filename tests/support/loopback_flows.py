"""A workflow for the loopback transport (tests/support/loopback_transport.py).

Its tasks run on an executor that finds them by import path, as a worker would, so
they are defined at module level; every one of them talks to its run through the
context, across the transport.
"""

from __future__ import annotations

from typing import Any

from graflow_async import Workflow, task, workflow


@task(inject_context=True)
async def prepare(context: Any) -> int:
    await context.channel.set("config", {"factor": 3})
    await context.channel.append("log", "prepare")
    await context.channel.incr("count")
    return 5


@task(inject_context=True)
async def double(context: Any, prepare: int) -> int:
    """`prepare` is the result of task prepare."""
    await context.channel.append("log", "double")
    await context.channel.incr("count")
    return prepare * 2


@task(inject_context=True)
async def triple(context: Any, prepare: int) -> int:
    config = await context.channel.get("config")
    await context.channel.append("log", "triple")
    await context.channel.incr("count", 2)
    return prepare * config["factor"]


@task(inject_context=True)
async def combine(context: Any, double: int, triple: int) -> int:
    total = double + triple
    await context.channel.set("total", total)
    context.next_task(extra(task_id="extra", value=total))  # added at runtime, sent as a spec
    return total


@task(inject_context=True)
async def extra(context: Any, value: int) -> int:
    await context.channel.append("log", "extra")
    return value + 1


def flow() -> Workflow:
    """prepare >> (double | triple) >> combine, which adds extra: 5, 10 | 15, 25, 26."""
    with workflow("loopback") as wf:
        prepare >> (double | triple) >> combine
    return wf

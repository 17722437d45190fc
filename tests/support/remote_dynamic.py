"""Tasks that use the whole context on Redis workers: checkpoints, feedback, the
channel's atomic operations and dynamic control flow (SPEC sections 3, 7 and 9).

Workers import this module (``--import remote_dynamic``); every task reports the pid
of the process that ran it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from graflow_async import GraphError, parallel, task


@task(inject_context=True)
async def remote_checkpoint(context: Any) -> dict[str, Any]:
    """Saves a checkpoint; fails right after on the first run, succeeds once resumed."""
    if context.resumed_metadata is not None:
        return {"resumed": context.resumed_metadata, "pid": os.getpid()}
    location = await context.checkpoint(metadata={"saved_by": os.getpid()})
    raise RuntimeError(f"crash after saving {location}")


@task(inject_context=True)
async def remote_ask(context: Any, wait: float) -> dict[str, Any]:
    answer = await context.request_feedback("approval", "ship it?", timeout=wait, metadata={"pid": os.getpid()})
    return {"approved": answer.approved, "by": answer.responded_by, "pid": os.getpid()}


@task
async def after_ask(remote_ask: dict[str, Any]) -> str:
    return "shipped" if remote_ask["approved"] else "held"


@task(inject_context=True)
async def remote_count(context: Any, times: int = 20) -> int:
    for _ in range(times):
        await context.channel.incr("count")
        await context.channel.append("pids", os.getpid())
        await asyncio.sleep(0)
    return os.getpid()


@task
async def square_it(n: int) -> dict[str, int]:
    return {"value": n * n, "pid": os.getpid()}


@task(inject_context=True)
async def remote_fan_out(context: Any, n: int) -> list[str]:
    group = parallel(*[square_it(task_id=f"sq{i}", n=i) for i in range(n)])
    return context.next_task(group)


@task(inject_context=True)
async def total(context: Any) -> int:
    keys = [k for k in await context.channel.keys() if k == "n"]
    n = await context.channel.get(keys[0])
    return sum(i * i for i in range(n))


@task(inject_context=True)
async def remote_draft(context: Any) -> int:
    return await context.channel.incr("drafts")


@task(inject_context=True)
async def remote_review(context: Any, remote_draft: int) -> dict[str, Any]:
    if remote_draft < 3:
        context.next_task(remote_draft_task, goto=True)
    return {"draft": remote_draft, "pid": os.getpid()}


remote_draft_task = remote_draft


@task(inject_context=True)
async def remote_iterate(context: Any, data: list[int] | None = None) -> list[int]:
    seen = [*(data or []), context.cycle_count]
    if context.can_iterate():
        context.next_iteration(seen)
    return seen


@task(inject_context=True)
async def remote_adds_a_closure(context: Any) -> str:
    @task
    async def inner() -> None:
        return None

    try:
        context.next_task(inner)
    except GraphError as exc:
        return str(exc)
    return "added"


@task(inject_context=True)
async def remote_terminate(context: Any) -> str:
    context.terminate_workflow("enough")
    return "terminated"


@task
async def remote_boom() -> None:
    await asyncio.sleep(0.1)
    raise ValueError("the run fails while a sibling still sleeps")


@task(inject_context=True)
async def remote_late_write(context: Any) -> None:
    await asyncio.sleep(1.0)
    await context.channel.set("late", True)  # the run has ended by now

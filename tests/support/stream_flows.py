"""Tasks that stream (SPEC 12), in-process and on Redis workers (``--import stream_flows``)."""

from __future__ import annotations

import asyncio
from typing import Any

from graflow_async import RetryPolicy, Workflow, parallel, task, workflow


@task(inject_context=True)
async def talk(context: Any, n: int, word: str = "tok") -> int:
    """Streams `n` chunks ``<word><i>``, yielding to the loop now and then."""
    for i in range(n):
        await context.stream(f"{word}{i}")
        if i % 50 == 0:
            await asyncio.sleep(0)
    return n


@task(inject_context=True, retry_policy=RetryPolicy(max_retries=1, initial_interval=0.01))
async def flaky_talk(context: Any) -> str:
    """Streams two chunks, then fails on its first attempt."""
    await context.stream({"attempt": context.attempt, "part": 1})
    await context.stream({"attempt": context.attempt, "part": 2})
    if context.attempt == 1:
        raise RuntimeError("first attempt fails after streaming")
    return "ok"


@task(inject_context=True)
async def bad_chunk(context: Any) -> None:
    await context.stream(object())


def talk_wf(n: int) -> Workflow:
    with workflow(f"talk-{n}") as wf:
        wf.add(talk(task_id="talk", n=n))
    return wf


def duet_wf(n: int) -> Workflow:
    with workflow(f"duet-{n}") as wf:
        parallel(talk(task_id="left", n=n, word="L"), talk(task_id="right", n=n, word="R"))
    return wf


def flaky_wf() -> Workflow:
    with workflow("flaky-talk") as wf:
        wf.add(flaky_talk)
    return wf


def bad_wf() -> Workflow:
    with workflow("bad-chunk") as wf:
        wf.add(bad_chunk)
    return wf

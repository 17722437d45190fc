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


# --- in another process, through the handler's relay (examples/custom_handler.py) ------------------
import examples.custom_handler  # noqa: E402,F401  (registers the "subprocess" handler)


@task(handler="subprocess", inject_context=True)
async def talk_elsewhere(context: Any, n: int) -> int:
    for i in range(n):
        await context.stream(f"far{i}")
    return n


@task(handler="subprocess", inject_context=True)
async def forged_chunk(context: Any) -> None:
    """Sends the handler a chunk past the cap, as a task that skips the library's own
    check would (it reaches the relay as it is)."""
    await context._port.call(context._message, "stream", {"data": b"x" * (2 << 20)})


def elsewhere_wf(n: int) -> Workflow:
    with workflow("elsewhere") as wf:
        wf.add(talk_elsewhere(task_id="far", n=n))
    return wf


def forged_wf() -> Workflow:
    with workflow("forged") as wf:
        wf.add(forged_chunk)
    return wf


# --- a durable run whose driver dies mid-stream ------------------------------------------------------
@task(inject_context=True)
async def talk_across(context: Any) -> int:
    """Streams a0..a99, waits for the file ``GFT_STREAM_GATE`` (its driver is killed and the
    run adopted meanwhile), then streams b0..b99."""
    import os
    from pathlib import Path

    for i in range(100):
        await context.stream(f"a{i}")
    gate = Path(os.environ["GFT_STREAM_GATE"])
    while not gate.exists():
        await asyncio.sleep(0.02)
    for i in range(100):
        await context.stream(f"b{i}")
    return 200


with workflow("talk-across") as talk_across_wf:
    talk_across_wf.add(talk_across)

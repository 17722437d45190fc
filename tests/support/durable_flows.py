"""A durable workflow for `tests/integration/test_durable_local.py`: its tasks note each
run (task and pid) in the directory ``GFT_DURABLE_DIR`` names, so the test can tell what
ran in the driver it SIGKILLs and what ran again after `recover`."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from graflow_async import RetryPolicy, TaskContext, run, task, workflow


def note(what: str) -> None:
    with open(Path(os.environ["GFT_DURABLE_DIR"]) / "notes", "a") as f:
        f.write(f"{what}:{os.getpid()}\n")


@task(inject_context=True)
async def fetch(context: TaskContext) -> int:
    note("fetch")
    await context.channel.incr("fetched")
    return 2


@task
def double(fetch: int) -> int:
    note("double")
    return fetch * 2


@task(inject_context=True)
async def slow(context: TaskContext, double: int) -> int:
    """Counts itself in the channel, then waits for the gate file (the test kills the
    driver meanwhile): a crashed run's channel counts it once, as a crash-free one does."""
    await context.channel.incr("slowed")
    note("slow")  # after the run answered: a driver killed from now on has nothing of it in flight but the wait
    await gated()
    return double + 1


async def gated() -> None:
    gate = Path(os.environ["GFT_DURABLE_DIR"]) / "gate"
    deadline = time.monotonic() + 60
    while not gate.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


@task
def side(double: int) -> int:
    note("side")
    return double * 10


@task
def total(slow: int, side: int) -> int:
    note("total")
    return slow + side


with workflow("durable-demo") as DEMO:
    fetch >> double >> (slow | side) >> total


@task(inject_context=True)
async def save_first(context: TaskContext) -> str:
    note("save_first")
    return await context.checkpoint(metadata={"by": "save_first"})


@task(inject_context=True)
async def save_later(context: TaskContext, slow: int) -> str:
    note("save_later")
    return await context.checkpoint(metadata={"by": "save_later"})


@task
def side_of(save_first: str) -> int:
    note("side")
    return 1


@task
async def slow_after(save_first: str) -> int:
    note("slow")
    await gated()
    return 2


with workflow("durable-saving") as SAVING:
    save_first >> (slow_after(task_id="slow") | side_of(task_id="side")) >> save_later


@task(inject_context=True, retry_policy=RetryPolicy(max_retries=1, initial_interval=3.0))
async def flaky(context: TaskContext) -> int:
    """Fails its first attempt: its retry comes 3 s later (the test kills the driver meanwhile)."""
    note(f"flaky{context.attempt}@{time.time():.3f}")
    if context.attempt == 1:
        raise ConnectionError("the first attempt fails")
    return context.attempt


with workflow("durable-retrying") as RETRYING:
    RETRYING.add(flaky)


async def drive(run_id: str, checkpoints: str, flow: Any) -> None:
    """Drive `flow` durably: on the Redis of ``GFT_REDIS_URL`` when it is set, else in-process.
    ``GFT_COMPACT_EVERY``: compact the journal that often (facts), to test snapshots."""
    if os.environ.get("GFT_COMPACT_EVERY"):
        import importlib

        importlib.import_module("graflow_async.run.recording").COMPACT_EVERY = int(os.environ["GFT_COMPACT_EVERY"])
    url = os.environ.get("GFT_REDIS_URL")
    if not url:
        feedback = str(Path(os.environ["GFT_DURABLE_DIR"]) / "feedback")  # its run record goes there
        await run(
            flow, run_id=run_id, checkpoint_store=checkpoints, feedback_store=feedback, durable=True, owner_lease=2.0
        )
        return
    from graflow_async.transports.redis import RedisStreamsTransport

    async with RedisStreamsTransport(url, namespace=os.environ.get("GFT_NAMESPACE", "graflow")) as transport:
        result = await run(flow, run_id=run_id, transport=transport, checkpoint_store=checkpoints, owner_lease=2.0)
    print(f"output={result.output}", flush=True)


if __name__ == "__main__":  # python -m durable_flows RUN_ID CHECKPOINTS [NAME]: the driver the test kills
    import durable_flows as me  # the module itself, not __main__: workers find its tasks by import path

    flows = {"SAVING": me.SAVING, "RETRYING": me.RETRYING}
    asyncio.run(me.drive(sys.argv[1], sys.argv[2], flows.get("".join(sys.argv[3:4]), me.DEMO)))

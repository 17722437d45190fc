"""Tasks and workflows that run on Redis workers in the tests.

Worker processes import this module (``--import remote_flows`` with ``tests/support/`` on
PYTHONPATH) and find every task here by its import path, so everything a worker runs
is defined at module level. Tasks report the process that ran them (``os.getpid()``)
so the tests can tell worker runs from local ones.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from graflow_async import RetryPolicy, Workflow, chain, parallel, task, workflow


# --- where did it run ---------------------------------------------------------------------
@task
async def where() -> int:
    """The pid of the process that ran it."""
    return os.getpid()


@task(inject_context=True)
async def where_and_channel(context: Any) -> dict[str, Any]:
    """Its pid, and what the channel holds under ``note`` (written by another task)."""
    return {"pid": os.getpid(), "note": await context.channel.get("note")}


@task(inject_context=True)
async def write_note(context: Any) -> int:
    await context.channel.set("note", f"from {os.getpid()}")
    return os.getpid()


@task
async def nap(seconds: float = 0.3) -> int:
    await asyncio.sleep(seconds)
    return os.getpid()


# --- the pipeline: parameters, channel, sync functions, groups ------------------------------
@task(inject_context=True)
async def start(context: Any, seed: int) -> int:
    """`seed` comes from the channel (initial_channel); writes to the channel too."""
    await context.channel.set("started_by", os.getpid())
    await context.channel.set("factor", 3)
    assert await context.channel.get("missing", "dflt") == "dflt"
    return seed * 2


@task
def square(start: int) -> dict[str, Any]:
    """A plain function (a worker thread runs it); `start` is the result of task start."""
    return {"value": start * start, "pid": os.getpid()}


@task
async def scaled(start: int, factor: int, offset: int = 100) -> int:
    """`factor` from the channel, `offset` its default."""
    return start * factor + offset


@task(inject_context=True)
async def summary(context: Any, square: dict[str, Any], scaled: int) -> dict[str, Any]:
    keys = sorted(await context.channel.keys())  # no order is promised (memory: insertion; Redis: sorted)
    await context.channel.set("total", square["value"] + scaled)
    await context.channel.delete("factor")
    return {
        "total": square["value"] + scaled,
        "keys": keys,
        "attempt": context.attempt,
        "run_id": context.run_id,
        "task_id": context.task_id,
        "channel": type(context.channel).__name__,
    }


def pipeline() -> Workflow:
    """start >> (square | scaled) >> summary; seed=5 gives total 100 + 130 = 230."""
    with workflow("remote-pipeline") as wf:
        start >> (square | scaled) >> summary
    return wf


# --- retries, failures, control --------------------------------------------------------------
@task(inject_context=True, retry_policy=RetryPolicy(max_retries=3, initial_interval=0.01, backoff_factor=1.0))
async def flaky(context: Any, fail_times: int = 2) -> dict[str, int]:
    """Fails on its first `fail_times` attempts."""
    if context.attempt <= fail_times:
        raise ConnectionError(f"attempt {context.attempt} failed")
    return {"attempt": context.attempt, "pid": os.getpid()}


@task
async def boom(message: str = "it broke") -> None:
    raise ValueError(message)


@task
def sync_boom(message: str = "sync broke") -> None:
    raise KeyError(message)


@task
async def after_group() -> str:
    return "after"


def retrying() -> Workflow:
    with workflow("remote-retrying") as wf:
        flaky >> after_group
    return wf


def failing_group(policy: str) -> Workflow:
    """(where | boom | sync_boom) with `policy`, then after_group."""
    with workflow(f"remote-group-{policy}") as wf:
        group = (where | boom | sync_boom).with_execution(policy=policy).set_group_name("members")
        group >> after_group
    return wf


@task(inject_context=True)
async def canceller(context: Any) -> str:
    context.cancel_workflow("stopped by a worker task")
    return "cancelled"


@task
async def never_runs() -> str:
    return "ran"


def cancelling() -> Workflow:
    with workflow("remote-cancelling") as wf:
        canceller >> never_runs
    return wf


# --- parallel load over several workers ----------------------------------------------------------
def fan(n: int, seconds: float) -> Workflow:
    """n naps in parallel."""
    with workflow(f"remote-fan{n}") as wf:
        wf.add(*(nap(task_id=f"nap{i}", seconds=seconds) for i in range(n)))
    return wf


# --- routing one group to workers ------------------------------------------------------------
def routed(backend_config: dict[str, Any]) -> Workflow:
    """local_a >> ((remote_b >> remote_c) | remote_d) on Redis workers >> local_e.

    `write_note` runs locally and writes the channel; the remote members read it.
    """
    from graflow_async import CoordinationBackend

    with workflow("remote-routed") as wf:
        local_a = write_note(task_id="local_a")
        remote_b = where(task_id="remote_b")
        remote_c = where_and_channel(task_id="remote_c")
        remote_d = where(task_id="remote_d")
        local_e = where_and_channel(task_id="local_e")
        group = ((remote_b >> remote_c) | remote_d).with_execution(
            backend=CoordinationBackend.REDIS, backend_config=backend_config
        )
        local_a >> group >> local_e
    return wf


# --- faults ------------------------------------------------------------------------------------
class Trap:
    """Unpickling it would create the file `path`: the tests put pickles of it in Redis
    to prove that no pickle is ever loaded."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


@task
async def slow_once(marker: str) -> dict[str, Any]:
    """On its first delivery writes its pid to `marker` and sleeps (the test kills the
    worker); on a later one returns at once, saying who ran it and when."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        await asyncio.sleep(60)
    return {"pid": os.getpid(), "finished": time.time()}


@task
async def kill_my_worker(marker_dir: str) -> None:
    """Kills the process running it, every time (it leaves one file per delivery)."""
    Path(marker_dir, f"delivery-{os.getpid()}").write_text("")
    os.kill(os.getpid(), signal.SIGKILL)


@task
async def sleep_then_mark(seconds: float, started: str) -> int:
    """Says it started (file `started`), then sleeps `seconds`."""
    Path(started).write_text(str(os.getpid()))
    await asyncio.sleep(seconds)
    return os.getpid()


@task
async def parent_of_slow(slow: Any, fast: int) -> dict[str, Any]:
    """Needs both `slow` and `fast`: it must run once, after both."""
    return {"slow": slow, "fast": fast}


@task
async def slow(seconds: float = 1.0) -> str:
    await asyncio.sleep(seconds)
    return "slow"


@task
async def fast() -> int:
    return 7


def join() -> Workflow:
    """(slow | fast) >> parent_of_slow, without a group policy in the way: two chains."""
    with workflow("remote-join") as wf:
        slow >> parent_of_slow
        fast >> parent_of_slow
    return wf


@task(inject_context=True)
async def count_step(context: Any, seconds: float = 0.25) -> int:
    """Adds one to the channel's ``count`` after `seconds`; returns the new count."""
    await asyncio.sleep(seconds)
    count = await context.channel.get("count", 0) + 1
    await context.channel.set("count", count)
    return count


def counting(n: int, seconds: float) -> Workflow:
    with workflow(f"remote-counting{n}") as wf:
        chain(*(count_step(task_id=f"step{i}", seconds=seconds) for i in range(n)))
    return wf


@task(inject_context=True)
async def echo_channel(context: Any, tag: str) -> dict[str, Any]:
    """Returns `tag` (from the channel) after a short sleep, and writes it back."""
    await asyncio.sleep(0.2)
    await context.channel.set("echo", tag)
    return {"tag": tag, "run_id": context.run_id}


def echo() -> Workflow:
    with workflow("remote-echo") as wf:
        echo_channel >> after_group
    return wf


# --- threads ----------------------------------------------------------------------------------
@task
def thread_name(hold: float = 0.05) -> str:
    """A plain function: the name of the worker thread that ran it (after holding it a while)."""
    import threading

    time.sleep(hold)
    return threading.current_thread().name


# --- run incarnations (tests/integration/test_run_incarnations.py) -----------------------------------
@task
async def tally(path: str, wait_for: str = "", seconds: float = 0.0) -> int:
    """Adds a line to `path` each time it runs (how many times it ran); first waits until
    the file `wait_for` exists (or `seconds`)."""
    if wait_for:
        Path(f"{wait_for}.waiting").write_text(str(os.getpid()))  # the test may go on
        deadline = time.monotonic() + 30
        while not Path(wait_for).exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    await asyncio.sleep(seconds)
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    return len(Path(path).read_text().splitlines())


@task(inject_context=True)
async def save_point(context: Any) -> str:
    return await context.checkpoint(metadata={"at": "save_point"})


@task
async def fail_first(marker: str) -> str:
    """Fails the first time it runs (leaving `marker`), succeeds after."""
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("the first incarnation fails here")
    return "ran again"


def fails_after_a_checkpoint(marker: str) -> Workflow:
    with workflow("fails-after-a-checkpoint") as wf:
        save_point(task_id="save_point") >> fail_first(task_id="fail_first", marker=marker)
    return wf


def tallied(path: str, wait_for: str = "", seconds: float = 0.0) -> Workflow:
    with workflow("tallied") as wf:
        wf.add(tally(task_id="tally", path=path, wait_for=wait_for, seconds=seconds))
    return wf


def tally_fan(n: int, path: str, seconds: float) -> Workflow:
    """n tallies side by side, each taking `seconds`."""
    with workflow(f"tally-fan{n}") as wf:
        wf.add(parallel(*(tally(task_id=f"t{i}", path=path, seconds=seconds) for i in range(n))))
    return wf

"""Cancelling `await run(...)` cancels the whole run and leaves nothing behind (SPEC section 2)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from graflow_async import RetryPolicy, TaskFailedError, parallel, run, task, workflow


def graflow_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("graflow-task")]


async def settle() -> None:
    """Give done-callbacks and finished tasks a couple of loop iterations."""
    for _ in range(3):
        await asyncio.sleep(0)


def sleepers(log: list[str], started: asyncio.Event | None = None, count: int = 2):
    """`count` async tasks that sleep long and record being cancelled."""
    running = 0

    def make(name):
        @task(name)
        async def t():
            nonlocal running
            running += 1
            if started is not None and running == count:
                started.set()
            try:
                await asyncio.sleep(10)  # still running when the run is cancelled
            except asyncio.CancelledError:
                log.append(f"{name} cancelled")
                raise
            log.append(f"{name} finished")

        return t

    return [make(f"s{i}") for i in range(count)]


async def test_wait_for_timeout_cancels_every_task_and_leaves_no_asyncio_task():
    log: list[str] = []
    never = []
    a, b = sleepers(log)

    @task
    async def after():
        never.append(1)

    with workflow("w") as wf:
        (a | b) >> after
    await settle()
    before = asyncio.all_tasks()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run(wf), 0.1)
    assert time.monotonic() - started < 1.0
    await settle()
    assert sorted(log) == ["s0 cancelled", "s1 cancelled"]
    assert never == []
    assert asyncio.all_tasks() == before


async def test_task_cancel_cancels_every_task_of_the_run():
    log: list[str] = []
    started = asyncio.Event()
    tasks = sleepers(log, started, count=3)
    with workflow("w") as wf:
        parallel(*tasks)
    await settle()
    before = asyncio.all_tasks()
    runner = asyncio.create_task(run(wf))
    await asyncio.wait_for(started.wait(), 2)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert runner.cancelled()
    await settle()
    assert sorted(log) == ["s0 cancelled", "s1 cancelled", "s2 cancelled"]
    assert asyncio.all_tasks() == before


async def test_cancel_during_retry_backoff_leaves_nothing_behind():
    calls = []

    @task(retry_policy=RetryPolicy(max_retries=3, initial_interval=5))
    async def flaky():
        calls.append(1)
        raise OSError("down")

    with workflow("w") as wf:
        wf.add(flaky)
    await settle()
    before = asyncio.all_tasks()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run(wf), 0.1)
    await settle()
    assert calls == [1]
    assert asyncio.all_tasks() == before


async def test_cancel_waits_for_a_running_sync_task_thread():
    state: dict[str, float] = {}
    sync_started = threading.Event()

    @task
    def blocking():
        sync_started.set()
        time.sleep(0.3)  # a thread still busy when the run is cancelled
        state["sync_done"] = time.monotonic()

    @task
    async def never_runs(blocking):
        state["successor"] = 1.0

    with workflow("w") as wf:
        blocking >> never_runs
    await settle()
    before = asyncio.all_tasks()
    runner = asyncio.create_task(run(wf))
    assert await asyncio.to_thread(sync_started.wait, 2)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    returned = time.monotonic()
    assert "sync_done" in state, "run() returned while the sync task's thread was still running"
    assert state["sync_done"] <= returned
    assert "successor" not in state
    await settle()
    assert graflow_threads() == []
    assert asyncio.all_tasks() == before


async def test_wait_for_with_sync_and_async_tasks_leaves_no_threads():
    log: list[str] = []
    (sleeper,) = sleepers(log, count=1)

    @task
    def short_sync():
        time.sleep(0.15)  # still running at the 0.05 s timeout
        return "sync"

    with workflow("w") as wf:
        wf.add(sleeper, short_sync)
    await settle()
    before = asyncio.all_tasks()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run(wf), 0.05)
    await settle()
    assert log == ["s0 cancelled"]
    assert graflow_threads() == []
    assert asyncio.all_tasks() == before


async def test_completed_runs_leave_nothing_behind():
    @task
    def sync_step():
        return 1

    @task
    async def async_step(sync_step):
        return sync_step + 1

    with workflow("w") as wf:
        sync_step >> async_step
    await settle()
    before = asyncio.all_tasks()
    for _ in range(3):
        assert (await run(wf)).output == 2
    await settle()
    assert asyncio.all_tasks() == before
    assert graflow_threads() == []


async def test_a_run_can_be_cancelled_while_another_continues():
    log: list[str] = []
    started = asyncio.Event()
    (sleeper,) = sleepers(log, started, count=1)

    @task
    async def quick():
        await asyncio.sleep(0.1)  # still running when the other run is cancelled
        return "quick"

    with workflow("slow") as slow_wf:
        slow_wf.add(sleeper)
    with workflow("fast") as fast_wf:
        fast_wf.add(quick)
    doomed = asyncio.create_task(run(slow_wf))
    survivor = asyncio.create_task(run(fast_wf))
    await started.wait()
    doomed.cancel()
    result = await survivor
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert result.output == "quick"
    assert log == ["s0 cancelled"]


async def test_repeated_cancel_still_waits_for_a_running_sync_thread():
    state: dict[str, float] = {}
    sync_started, sync_finished = threading.Event(), threading.Event()

    @task
    def blocking():
        sync_started.set()
        time.sleep(0.3)  # a thread still busy through both cancellations
        state["sync_done"] = time.monotonic()
        sync_finished.set()

    with workflow("w") as wf:
        wf.add(blocking)
    runner = asyncio.create_task(run(wf))
    assert await asyncio.to_thread(sync_started.wait, 2)
    runner.cancel()
    await settle()  # the first cancellation has landed: the run unwinds, waiting for the thread
    runner.cancel()  # e.g. an enclosing timeout firing while the run is unwinding
    with pytest.raises(asyncio.CancelledError):
        await runner
    finished_in_time = "sync_done" in state
    await asyncio.to_thread(sync_finished.wait, 2)  # let the thread end before the next test
    assert finished_in_time, "run() returned while the sync task's thread was still running"
    await settle()
    assert graflow_threads() == []


async def test_a_task_whose_own_await_is_cancelled_fails_instead_of_hanging():
    @task
    async def victim():
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, fut.cancel)
        await fut  # raises CancelledError inside the task, though the run was not cancelled

    with workflow("w") as wf:
        wf.add(victim)
    with pytest.raises(TaskFailedError) as info:
        await asyncio.wait_for(run(wf), 2)  # TimeoutError here means the run hung
    assert info.value.task_id == "victim"
    assert isinstance(info.value.cause, asyncio.CancelledError)

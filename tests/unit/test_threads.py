"""Where plain (sync) task functions run: the run's thread pool, sized by
``run(max_threads=...)`` and the worker's ``--threads`` (on worker processes:
integration/test_workers.py), or inline on the event loop with ``handler="inline"``."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

from graflow_async import RetryPolicy, TaskFailedError, parallel, run, task, workflow
from graflow_async.execute.threads import RunThreadPool, shutdown, thread_pool
from graflow_async.handlers import TaskCall, call_function


def blocking_fan(n: int, body: Any) -> Any:
    with workflow(f"fan{n}") as wf:
        wf.add(parallel(*(task(body, id=f"t{i}") for i in range(n))))
    return wf


async def test_max_threads_lets_that_many_blocking_tasks_overlap() -> None:
    barrier = threading.Barrier(200, timeout=10)

    def wait_for_all() -> int:
        return barrier.wait()  # BrokenBarrierError unless all 200 run at once

    result = await run(blocking_fan(200, wait_for_all), max_threads=200)
    assert sorted(result.results.values()) == list(range(200))


async def test_max_threads_bounds_how_many_run_at_once() -> None:
    lock = threading.Lock()
    running, peak, names = [0], [0], set()

    def counted() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            names.add(threading.current_thread().name)
        threading.Event().wait(0.02)
        with lock:
            running[0] -= 1

    await run(blocking_fan(12, counted), max_threads=2)
    assert peak[0] <= 2
    assert len(names) <= 2
    assert all(name.startswith("graflow-task") for name in names)


async def test_two_threads_do_run_two_tasks_at_once() -> None:
    barrier = threading.Barrier(2, timeout=10)
    result = await run(blocking_fan(2, barrier.wait), max_threads=2)
    assert sorted(result.results.values()) == [0, 1]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "4", True])
async def test_max_threads_must_be_a_positive_whole_number(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_threads"):
        await run(blocking_fan(1, lambda: None), max_threads=bad)


def test_worker_threads_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    from graflow_async.cli.main import EXIT_USAGE, main

    assert main(["worker", "--redis-url", "redis://localhost:1/0", "--threads", "0"]) == EXIT_USAGE
    assert "--threads" in capsys.readouterr().err


# --- handler="inline": plain functions on the event loop -------------------------------------------
async def test_an_inline_plain_function_runs_on_the_loop_thread() -> None:
    seen: dict[str, Any] = {}

    @task(handler="inline")
    def cheap(x: int = 2) -> int:
        seen["thread"] = threading.current_thread()
        seen["loop"] = asyncio.get_running_loop()  # it runs inside the loop: there is one
        return x * 21

    @task
    def threaded(cheap: int) -> int:
        seen["threaded"] = threading.current_thread()
        return cheap

    with workflow("inline") as wf:
        cheap >> threaded
    result = await run(wf)
    assert result.output == 42
    assert seen["thread"] is threading.current_thread()
    assert seen["loop"] is asyncio.get_running_loop()
    assert seen["threaded"] is not threading.current_thread()


async def test_inline_tasks_take_a_context_fail_and_retry_like_others() -> None:
    attempts: list[int] = []

    @task(handler="inline", inject_context=True, retry_policy=RetryPolicy(max_retries=2, initial_interval=0))
    def flaky(context: Any) -> str:
        attempts.append(context.attempt)
        if context.attempt < 3:
            raise RuntimeError("not yet")
        return context.task_id

    @task(handler="inline")
    async def awaited(flaky: str) -> str:  # async functions are awaited, as with "direct"
        await asyncio.sleep(0)  # a real await inside the inline task
        return flaky + "!"

    with workflow("inline-retry") as wf:
        flaky >> awaited
    result = await run(wf, default_max_retries=0)
    assert attempts == [1, 2, 3]
    assert result.output == "flaky!"

    @task(handler="inline")
    def broken() -> None:
        raise ValueError("boom")

    with workflow("inline-fail") as failing:
        failing.add(broken)
    with pytest.raises(TaskFailedError) as info:
        await run(failing)
    assert isinstance(info.value.cause, ValueError)


async def test_inline_with_a_timeout_goes_through_the_inline_handler() -> None:
    @task(handler="inline", timeout=5)
    def quick() -> str:
        return threading.current_thread().name

    with workflow("inline-timeout") as wf:
        wf.add(quick)
    assert (await run(wf)).output == threading.current_thread().name


# --- the pool itself ---------------------------------------------------------------------------------
async def test_a_custom_handler_calling_call_function_uses_the_runs_threads() -> None:
    class Threaded:
        async def run(self, call: TaskCall) -> Any:
            return await call_function(call.func, call.args, call.kwargs)

    @task(handler=Threaded())
    def where() -> str:
        return threading.current_thread().name

    with workflow("custom") as wf:
        wf.add(where)
    assert (await run(wf)).output.startswith("graflow-task")


async def test_the_pool_serves_submit_and_drops_queued_jobs_on_shutdown() -> None:
    pool = RunThreadPool(1)
    gate = threading.Event()
    first = pool.submit(gate.wait, 10)
    queued = pool.submit(lambda: "never")
    queued_call = pool.call(asyncio.get_running_loop(), lambda: "never")
    shutting = asyncio.ensure_future(shutdown(pool))
    await asyncio.sleep(0.01)  # a window in which the shutdown must keep waiting
    assert not shutting.done()  # waits for the running job
    gate.set()
    await shutting
    assert first.result() is True
    assert queued.cancelled()
    assert queued_call.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
    assert not [t for t in threading.enumerate() if t.name.startswith(pool._prefix)]


async def test_a_plain_functions_error_and_context_variables_cross_the_thread() -> None:
    pool = RunThreadPool(2)
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
    var.set("from the loop")
    token = thread_pool.set(pool)
    try:
        assert await call_function(var.get, (), {}) == "from the loop"
        with pytest.raises(KeyError):
            await call_function({}.__getitem__, ("missing",), {})
    finally:
        thread_pool.reset(token)
        await shutdown(pool)


# --- in-process attempts without a coroutine of their own (local_attempts) -------------------------
async def test_a_fan_out_larger_than_a_chunk_starts_every_task_without_waiting_for_others() -> None:
    from graflow_async.execute.local_attempts import CHUNK

    n = 2 * CHUNK + 5
    started, everyone = [0], asyncio.Event()

    async def member() -> int:
        started[0] += 1
        if started[0] == n:
            everyone.set()
        await everyone.wait()  # only returns once all n are running at the same time
        return 1

    with workflow("wide") as wf:
        wf.add(parallel(*(task(member, id=f"m{i}") for i in range(n))))
    result = await asyncio.wait_for(run(wf), 30)
    assert sum(result.results.values()) == n


@pytest.mark.parametrize("handler", ["direct", "inline"])
@pytest.mark.parametrize("is_async", [True, False])
async def test_every_local_path_reports_values_and_failures(handler: str, is_async: bool) -> None:
    from graflow_async import HandlerError, TaskFailedError

    def plain(x: int) -> int:
        if x < 0:
            raise HandlerError("no engine") if x == -1 else ValueError("negative")
        return x * 2

    async def coro(x: int) -> int:
        return plain(x)

    fn = coro if is_async else plain
    calls: list[int] = []

    def counted(x: int) -> Any:
        calls.append(x)
        return fn(x)

    if is_async:

        async def counted(x: int) -> Any:  # type: ignore[no-redef]
            calls.append(x)
            return await coro(x)

    def flow(x: int, **bound: Any) -> Any:
        with workflow("paths") as wf:
            base = task(counted, id="t", handler=handler, retry_policy=RetryPolicy(max_retries=1, initial_interval=0))
            wf.add(base(task_id="t1", x=x, **bound))
        return wf

    assert (await run(flow(21))).output == 42
    calls.clear()
    with pytest.raises(TaskFailedError) as info:
        await run(flow(-2))
    assert isinstance(info.value.__cause__, ValueError) and calls == [-2, -2]  # retried once
    calls.clear()
    with pytest.raises(HandlerError):
        await run(flow(-1))
    assert calls == [-1]  # a HandlerError is not retried
    with pytest.raises(TaskFailedError) as info:
        await run(flow(1, unknown=3))  # an argument the function does not take
    assert isinstance(info.value.__cause__, TypeError)


async def test_inline_tasks_past_a_chunk_all_run_in_the_runs_context() -> None:
    """More inline tasks than start at once (the rest start a chunk per loop turn, in the
    executor's context, as the first chunk does): each runs once, and sees the run's
    thread pool as the current one."""
    from graflow_async.execute.local_attempts import CHUNK

    pools: list[Any] = []

    def member(i: int) -> Any:
        @task(id=f"m{i}", handler="inline")
        def record() -> int:
            pools.append(thread_pool.get(None))
            return i

        return record

    with workflow("inline-fan") as wf:
        parallel(*(member(i) for i in range(3 * CHUNK + 5)))
    result = await run(wf, max_threads=3)
    assert sorted(result.results.values()) == list(range(3 * CHUNK + 5))
    assert len(pools) == 3 * CHUNK + 5
    assert len({id(p) for p in pools}) == 1 and isinstance(pools[0], RunThreadPool)
    assert pools[0].max_workers == 3

"""Where plain (sync) task functions run: the run's thread pool, sized by
``run(max_threads=...)`` and the worker's ``--threads``, or inline on the event loop
with ``handler="inline"``."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import remote_flows
from worker_processes import RUN_TIMEOUT, Workers

from graflow_async import parallel, run, task, workflow
from graflow_async.transports.redis_streams import RedisStreamsTransport


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


async def test_worker_threads_sizes_the_workers_pool(workers: Workers, redis_url: str) -> None:
    workers.start(1, "--threads", "1", "--concurrency", "8")
    with workflow("threads") as wf:
        wf.add(parallel(*(remote_flows.thread_name(task_id=f"t{i}") for i in range(6))))
    async with RedisStreamsTransport(redis_url, connect_timeout=2) as transport:
        result = await run(wf, transport=transport)
    names = set(result.results.values())
    assert len(names) == 1 and next(iter(names)).startswith("graflow-task")


def test_worker_threads_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    from graflow_async.cli import EXIT_USAGE, main

    assert main(["worker", "--redis-url", "redis://localhost:1/0", "--threads", "0"]) == EXIT_USAGE
    assert "--threads" in capsys.readouterr().err

"""How a worker runs its executor: under a `Supervisor`, with heartbeats and a grace period
on the run's clock (so waits of an hour take no time in a test)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

from clocks import FastClock

from graflow_async import task
from graflow_async.clock import use_clock
from graflow_async.execute.executor import Executor
from graflow_async.execute.worker import run_until_stopped
from graflow_async.transports import MemoryTransport
from graflow_async.transports.base import Delivery
from graflow_async.wire.messages import TaskMessage


class PullTransport(MemoryTransport):
    """A memory transport used the way a worker uses Redis: pulled, with leases."""

    def __init__(self) -> None:
        super().__init__()
        self.touched: list[list[str]] = []
        self._ids = itertools.count(1)

    def attach(self, queue: str, consumer: Callable[[Sequence[Any]], None]) -> None:  # type: ignore[override]
        return None

    async def receive(self, queue: str, *, max_messages: int = 0, timeout: float | None = None) -> list[Delivery]:
        got = await super().receive(queue, max_messages=max_messages, timeout=timeout)
        return [Delivery(str(next(self._ids)), d.message) for d in got]

    async def touch(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        self.touched.append([d.id for d in deliveries])


@task
async def sleeper(seconds: float) -> str:
    await asyncio.sleep(seconds)  # a task still running when the worker is told to stop
    return "slept"


def message(seconds: float, lease: float = 30.0) -> TaskMessage:
    return TaskMessage(
        "run", "sleeper", 0, 1, "run:replies", {"seconds": seconds}, None, None, sleeper, lease_timeout=lease
    )


async def test_heartbeats_extend_the_lease_at_a_third_of_it_on_the_runs_clock() -> None:
    async with PullTransport() as transport:
        executor = Executor(transport, "tasks", context_queue="ctx", remote=True)
        await transport.send("tasks", [message(0.3, lease=9.0)])
        with use_clock(FastClock()) as clock:
            async with asyncio.TaskGroup() as tg:
                running = tg.create_task(executor.run())
                replies = await transport.receive("run:replies", timeout=5)
                executor.stop()
            await running
    assert [d.message.value for d in replies] == ["slept"]
    assert 3.0 in clock.delays  # a third of the 9 s lease, taken on the fast clock
    assert len(transport.touched) >= 3 and transport.touched[0] == ["1"]


async def test_heartbeats_come_at_least_every_10_s_whatever_the_lease() -> None:
    async with PullTransport() as transport:
        executor = Executor(transport, "tasks", context_queue="ctx", remote=True)
        await transport.send("tasks", [message(0.2, lease=1e300)])
        with use_clock(FastClock()) as clock:
            async with asyncio.TaskGroup() as tg:
                running = tg.create_task(executor.run())
                await transport.receive("run:replies", timeout=5)
                executor.stop()
            await running
    assert 10.0 in clock.delays and max(clock.delays) == 10.0
    assert transport.touched


async def test_past_the_grace_period_running_tasks_are_cancelled_and_the_worker_returns() -> None:
    async with PullTransport() as transport:
        executor = Executor(transport, "tasks", context_queue="ctx", remote=True)
        await transport.send("tasks", [message(600.0)])
        stop = asyncio.Event()
        with use_clock(FastClock()) as clock:
            begun = time.monotonic()
            async with asyncio.TaskGroup() as tg:
                worker = tg.create_task(run_until_stopped(executor, stop, grace_period=3600.0))
                while executor.running == 0:
                    await asyncio.sleep(0.01)
                stop.set()
            await worker
        assert time.monotonic() - begun < 5  # an hour's grace, on the fast clock
    assert 3600.0 in clock.delays
    assert executor.running == 0 and executor.done == 0


async def test_within_the_grace_period_running_tasks_finish_and_reply() -> None:
    async with PullTransport() as transport:
        executor = Executor(transport, "tasks", context_queue="ctx", remote=True)
        await transport.send("tasks", [message(0.2)])
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_until_stopped(executor, stop, grace_period=30.0))
            while executor.running == 0:
                await asyncio.sleep(0.01)
            stop.set()
        replies = await transport.receive("run:replies", timeout=1)
    assert [d.message.value for d in replies] == ["slept"] and executor.done == 1

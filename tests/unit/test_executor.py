"""The executor is an actor over its task queue: handed each batch in-process, in the
sending run's turn; reading deliveries on a worker, as many as it has room for."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from graflow_async import task
from graflow_async.actors import Actor
from graflow_async.execute.executor import Executor
from graflow_async.execute.task_queue import TaskQueue
from graflow_async.transports import MemoryTransport
from graflow_async.transports.base import Delivery
from graflow_async.wire.messages import TaskMessage

calls: list[int] = []


@task(handler="inline")
def probe(n: int) -> int:
    calls.append(n)
    return n


@task
async def nap(n: int) -> int:
    await asyncio.sleep(0.01)  # a task that takes a while
    return n


def message(t: Any, n: int) -> TaskMessage:
    return TaskMessage("run", t.id, n, 1, "run:replies", {"n": n}, None, None, t)


async def test_in_process_the_executor_is_handed_its_tasks_in_the_senders_turn() -> None:
    calls.clear()
    async with MemoryTransport() as transport:
        executor = Executor(transport, "run:tasks", context_queue="run:context")
        assert isinstance(executor, Actor)
        running = asyncio.create_task(executor.run())
        async with asyncio.timeout(5):
            while not transport.send_nowait("run:tasks", [message(probe, 0)]):
                await asyncio.sleep(0)  # until it has attached
        assert transport.send_nowait("run:tasks", [message(probe, 1), message(probe, 2)])
        assert calls == [0, 1, 2]  # run by the time the send returned: no wake-up of the executor between
        replies = await transport.receive("run:replies", timeout=5)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert [d.message.value for d in replies] == [0, 1, 2]


class Shared(MemoryTransport):
    """A task queue read the way workers read Redis: pulled, never handed over."""

    in_process = False

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[int] = []
        self._ids = itertools.count(1)

    def attach(self, queue: str, consumer: Callable[[Sequence[Any]], None]) -> Callable[[], None]:
        if queue.endswith(":tasks"):
            raise AssertionError("a shared task queue is never handed over")
        return super().attach(queue, consumer)

    async def receive(self, queue: str, *, max_messages: int = 0, timeout: float | None = None) -> list[Delivery]:
        if queue.endswith(":tasks"):
            self.asked.append(max_messages)
        got = await super().receive(queue, max_messages=max_messages, timeout=timeout)
        return [Delivery(str(next(self._ids)), d.message) for d in got]


async def test_on_a_worker_the_executor_reads_no_more_than_it_has_room_for() -> None:
    async with Shared() as transport:
        executor = Executor(transport, "run:tasks", context_queue="w:context", remote=True, concurrency=2)
        await transport.send("run:tasks", [message(nap, n) for n in range(5)])
        running = asyncio.create_task(executor.run())
        got: list[Delivery] = []
        while len(got) < 5:
            got += await transport.receive("run:replies", timeout=5)
        assert isinstance(executor._inbox, TaskQueue)
        executor.stop()
        await asyncio.wait_for(running, 5)
    assert sorted(d.message.value for d in got) == [0, 1, 2, 3, 4]
    assert transport.asked and max(transport.asked) <= 2  # never more deliveries than free slots
    assert executor.done == 5 and executor.running == 0

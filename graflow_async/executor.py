"""The executor: an actor that consumes a task queue and runs each task it receives.

For a local run the runner starts one in-process on the memory transport; a Redis
worker process runs the same actor over Redis Streams. Each received `TaskMessage`
becomes a child task that calls the task's handler, then sends a `TaskReply` to the
message's reply queue and acks the message.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .actors import Actor, Inbox, Supervisor
from .exceptions import TaskTimeoutError
from .handlers import TaskCall, call_function, get_handler, thread_pool
from .messages import TaskMessage, TaskReply
from .tasks import Task
from .transports.base import Delivery, Transport, TransportInbox


class RunThreadPool(ThreadPoolExecutor):
    """The threads a run's plain functions use; remembers whether it started any."""

    used = False

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        self.used = True
        return super().submit(*args, **kwargs)


def _task_of(message: TaskMessage) -> Task:
    if message.task is None:
        raise LookupError(f"message for task {message.task_id!r} carries no task")
    return message.task


class Executor(Actor[Delivery]):
    """Runs the tasks that arrive on `queue` of `transport`.

    `concurrency` bounds how many run at once (None: no bound); `find_task` maps a
    message to its `Task` (in-process messages carry it; workers import it).
    """

    def __init__(
        self,
        transport: Transport,
        queue: str,
        *,
        concurrency: int | None = None,
        find_task: Callable[[TaskMessage], Task] = _task_of,
    ) -> None:
        self.transport = transport
        self.queue = queue
        self.find_task = find_task
        self._slots = asyncio.Semaphore(concurrency) if concurrency else None
        self._children: Supervisor | None = None
        self._context: contextvars.Context | None = None

    async def run(self, inbox: Inbox[Delivery] | None = None) -> None:
        """Consume the queue until cancelled or the transport closes; in-flight tasks
        are awaited on a clean stop and cancelled on cancellation.

        When the transport can hand messages over directly (`Transport.attach`, the
        memory transport), the executor takes them as they are sent instead of
        pulling, which saves a trip through the event loop per task.
        """
        pool = RunThreadPool(thread_name_prefix="graflow-task")
        token = thread_pool.set(pool)
        self._context = contextvars.copy_context()  # children see the run's pool
        try:
            async with Supervisor(f"executor {self.queue}") as children:
                self._children = children
                detach = self.transport.attach(self.queue, self._take) if inbox is None else None
                if detach is None:
                    await super().run(inbox or TransportInbox(self.transport, self.queue, settle=False))
                else:
                    try:
                        await asyncio.get_running_loop().create_future()  # until cancelled
                    finally:
                        detach()
        finally:
            thread_pool.reset(token)
            self._children = None
            await _shutdown(pool)

    async def on_batch(self, messages: list[Delivery]) -> None:
        children = self._children
        assert children is not None
        for delivery in messages:
            if self._slots is not None:
                await self._slots.acquire()  # pull no more than we can run
            children.spawn(
                self._execute(delivery.message, delivery, self._slots is not None),
                context=self._context,
            )

    def _take(self, messages: Sequence[TaskMessage]) -> None:
        children = self._children
        assert children is not None
        for message in messages:
            children.spawn(self._execute(message, None, False), context=self._context)

    async def _execute(self, msg: TaskMessage, delivery: Delivery | None, holds_slot: bool) -> None:
        """Run one attempt, reply, and ack `delivery` (None: handed over, nothing to ack)."""
        if self._slots is not None and not holds_slot:
            await self._slots.acquire()
        start = time.perf_counter()
        try:
            try:
                task = self.find_task(msg)
                if msg.timeout is not None:
                    value = await _call_with_timeout(task, msg, msg.timeout)
                elif task.is_async and task.handler == "direct":  # the common case, inline
                    if task.inject_context:
                        value = await task.func(msg.context, **msg.kwargs)
                    else:
                        value = await task.func(**msg.kwargs)
                else:
                    value = await _call(task, msg)
            except asyncio.CancelledError as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the run is cancelling this task
                # something the task awaited was cancelled: that is the task failing
                reply = TaskReply(msg.run_id, msg.node, msg.attempt, False, None, exc,
                                  time.perf_counter() - start)
            except Exception as exc:
                reply = TaskReply(msg.run_id, msg.node, msg.attempt, False, None, exc,
                                  time.perf_counter() - start)
            else:
                ctx = msg.context
                reply = TaskReply(msg.run_id, msg.node, msg.attempt, True, value, None,
                                  time.perf_counter() - start, ctx._control if ctx else None)
            await self.transport.send(msg.reply_to, (reply,))
            if delivery is not None:
                await self.transport.ack(self.queue, (delivery,))
        finally:
            if self._slots is not None:
                self._slots.release()


async def _call(task: Task, msg: TaskMessage) -> Any:
    args = (msg.context,) if task.inject_context else ()
    handler = task.handler
    if handler == "direct":  # the common case, without building a TaskCall
        if task.is_async:
            return await task.func(*args, **msg.kwargs)
        return await call_function(task.func, args, msg.kwargs)
    call = TaskCall(msg.task_id, msg.run_id, msg.attempt, task.func, msg.kwargs,
                    msg.context if task.inject_context else None, task.handler_kwargs)
    return await get_handler(handler).run(call)


async def _call_with_timeout(task: Task, msg: TaskMessage, timeout: float) -> Any:
    try:
        async with asyncio.timeout(timeout) as scope:
            return await _call(task, msg)
    except TimeoutError as exc:
        if scope.expired():
            raise TaskTimeoutError(msg.task_id, timeout, exc) from exc
        raise


async def _shutdown(pool: RunThreadPool) -> None:
    """Drop queued thread jobs and wait, off the loop, for running ones to return.

    A running Python function cannot be interrupted; a cancelled run waits for its
    threads (even through repeated cancellation, which it re-raises afterwards) so
    that nothing of it is left running.
    """
    pool.shutdown(wait=False, cancel_futures=True)
    if not pool.used:
        return
    joined = asyncio.get_running_loop().run_in_executor(None, pool.shutdown, True)
    cancelled: asyncio.CancelledError | None = None
    while not joined.done():
        try:
            await asyncio.shield(joined)
        except asyncio.CancelledError as exc:
            cancelled = exc
    if cancelled is not None:
        raise cancelled

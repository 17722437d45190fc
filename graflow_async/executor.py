"""The executor: an actor that consumes a task queue and runs each task it receives.

For a local run the runner starts one in-process on the memory transport; a Redis
worker process runs the same actor over Redis Streams. Each received `TaskMessage`
becomes a child task that calls the task's handler, then sends a `TaskReply` to the
message's reply queue and acks the message (after the reply is written: a worker that
dies in between leaves the message to be delivered again, never lost).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .actors import Supervisor
from .events import LibraryLog
from .exceptions import TaskTimeoutError
from .handlers import TaskCall, call_function, get_handler, thread_pool
from .messages import TaskMessage, TaskReply
from .tasks import Task
from .transports.base import Delivery, Transport

log = LibraryLog()


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


def _context_of(message: TaskMessage) -> Any:
    return message.context


class Executor:
    """Runs the tasks that arrive on `queue` of `transport`.

    `concurrency` bounds how many run at once (None: no bound); `find_task` maps a
    message to its `Task` (in-process messages carry it; workers import it) and
    `make_context` builds the context of a task that asks for one.
    """

    def __init__(
        self,
        transport: Transport,
        queue: str,
        *,
        concurrency: int | None = None,
        find_task: Callable[[TaskMessage], Task] = _task_of,
        make_context: Callable[[TaskMessage], Any] = _context_of,
    ) -> None:
        self.transport = transport
        self.queue = queue
        self.find_task = find_task
        self.make_context = make_context
        self.capacity = concurrency
        self.done = 0
        self.failed = 0
        self._inflight: dict[str, Delivery] = {}
        self._running = 0
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._receiving: asyncio.Future[list[Delivery]] | None = None
        self._children: Supervisor | None = None
        self._context: contextvars.Context | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Stop taking tasks; those running finish (their owner waits for them)."""
        self._stopping = True
        self._slot_freed.set()
        if self._receiving is not None:
            self._receiving.cancel()  # stop claiming now, not when the current poll ends

    async def run(self) -> None:
        """Consume the queue until stopped or cancelled; a stop waits for running tasks,
        a cancellation cancels them.

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
                detach = self.transport.attach(self.queue, self._take)
                if detach is None:
                    await self._pull(children)
                else:
                    try:
                        await asyncio.get_running_loop().create_future()  # until cancelled
                    finally:
                        detach()
        finally:
            thread_pool.reset(token)
            self._children = None
            await _shutdown(pool)

    # --- pulling (workers) -------------------------------------------------------------
    async def _pull(self, children: Supervisor) -> None:
        heartbeat = children.spawn(self._heartbeats(), name="heartbeats")
        try:
            while not self._stopping:
                free = 512 if self.capacity is None else self.capacity - self._running
                if free <= 0:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                deliveries = await self._receive(min(free, 512))
                for delivery in deliveries:
                    await self._accept(delivery, children)
        finally:
            heartbeat.cancel()

    async def _receive(self, max_messages: int) -> list[Delivery]:
        """The next deliveries; none when `stop` cut the wait short."""
        receiving = asyncio.ensure_future(self.transport.receive(self.queue, max_messages=max_messages, timeout=1.0))
        self._receiving = receiving
        try:
            return await receiving
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._stopping and receiving.cancelled() and not (current is not None and current.cancelling()):
                return []
            raise
        finally:
            self._receiving = None

    async def _accept(self, delivery: Delivery, children: Supervisor) -> None:
        msg = delivery.message
        if not isinstance(msg, TaskMessage):
            await self._dead_letter(delivery, "not a task message")
            return
        if msg.max_deliveries and delivery.delivery_count > msg.max_deliveries:
            reason = (f"dead-lettered after {delivery.delivery_count} deliveries "
                      f"(max_deliveries={msg.max_deliveries}): the workers running it died or stalled")
            await self._dead_letter(delivery, reason)
            reply = TaskReply(msg.run_id, msg.node, msg.attempt, False, None, RuntimeError(reason),
                              retryable=False)
            await self.transport.send(msg.reply_to, (reply,))
            return
        self._inflight[delivery.id] = delivery
        self._running += 1
        children.spawn(self._execute(msg, delivery), context=self._context)

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        dead_letter = getattr(self.transport, "dead_letter", None)
        if dead_letter is not None:
            await dead_letter(self.queue, delivery, reason)
        else:
            await self.transport.ack(self.queue, (delivery,))

    async def _heartbeats(self) -> None:
        """Extend the claim on running tasks at a third of their lease."""
        touch = getattr(self.transport, "touch", None)
        if touch is None:
            return
        while True:
            leases = [d.message.lease_timeout or 30.0 for d in self._inflight.values()]
            await asyncio.sleep(min(leases, default=3.0) / 3)
            if self._inflight:
                try:
                    await touch(self.queue, list(self._inflight.values()))
                except Exception as exc:  # a missed beat is not fatal; the next one may land
                    log.warning("heartbeat failed", error=repr(exc))

    # --- taking (in-process) ---------------------------------------------------------------
    def _take(self, messages: Sequence[TaskMessage]) -> None:
        children = self._children
        assert children is not None
        for message in messages:
            children.spawn(self._execute(message, None), context=self._context)

    # --- running one attempt ----------------------------------------------------------------
    async def _execute(self, msg: TaskMessage, delivery: Delivery | None) -> None:
        """Run one attempt, reply, and ack `delivery` (None: handed over, nothing to ack)."""
        start = time.perf_counter()
        try:
            reply = await self._attempt(msg, start)
            if delivery is None:
                await self.transport.send(msg.reply_to, (reply,))
            else:  # acked only once the reply is written: a crash in between redelivers
                await self.transport.send_and_ack(msg.reply_to, (reply,), self.queue, (delivery,))
                if reply.ok:
                    self.done += 1
                else:
                    self.failed += 1
        finally:
            if delivery is not None:
                self._inflight.pop(delivery.id, None)
                self._running -= 1
                self._slot_freed.set()

    async def _attempt(self, msg: TaskMessage, start: float) -> TaskReply:
        context = msg.context
        try:
            try:
                task = self.find_task(msg)
            except Exception as exc:  # this worker cannot run it: retrying will not change that
                return TaskReply(msg.run_id, msg.node, msg.attempt, False, None, exc, 0.0, retryable=False)
            if task.inject_context and context is None:
                context = self.make_context(msg)
            if msg.timeout is not None:
                value = await _call_with_timeout(task, msg, context, msg.timeout)
            elif task.is_async and task.handler == "direct":  # the common case, inline
                if task.inject_context:
                    value = await task.func(context, **msg.kwargs)
                else:
                    value = await task.func(**msg.kwargs)
            else:
                value = await _call(task, msg, context)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the run is cancelling this task
            # something the task awaited was cancelled: that is the task failing
            return TaskReply(msg.run_id, msg.node, msg.attempt, False, None, exc, time.perf_counter() - start)
        except Exception as exc:
            return TaskReply(msg.run_id, msg.node, msg.attempt, False, None, exc, time.perf_counter() - start)
        return TaskReply(msg.run_id, msg.node, msg.attempt, True, value, None,
                         time.perf_counter() - start, context._control if context is not None else None)


async def _call(task: Task, msg: TaskMessage, context: Any) -> Any:
    args = (context,) if task.inject_context else ()
    handler = task.handler
    if handler == "direct":
        if task.is_async:
            return await task.func(*args, **msg.kwargs)
        return await call_function(task.func, args, msg.kwargs)
    call = TaskCall(msg.task_id, msg.run_id, msg.attempt, task.func, msg.kwargs,
                    context if task.inject_context else None, task.handler_kwargs)
    return await get_handler(handler).run(call)


async def _call_with_timeout(task: Task, msg: TaskMessage, context: Any, timeout: float) -> Any:
    try:
        async with asyncio.timeout(timeout) as scope:
            return await _call(task, msg, context)
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

"""The executor: an actor over a task queue that runs each task it receives.

Its mailbox is its task queue (`task_queue.TaskQueue`): for a local run the run actor
starts one in-process on the memory transport, which hands it each batch of task
messages as the run sends it (`Executor.take`); a Redis worker process runs the same
actor over a Redis stream, reading deliveries as it has room for them
(`Executor.on_batch`). Each attempt is a child of the executor, under its
`Supervisor` (a plain function's attempt, a job of the executor's thread pool, which it
also shuts down): it runs (`attempt.run_attempt`, or `local_attempts` in-process), then
sends a `TaskReply` to the message's reply queue and acks the delivery (after the reply
is written: a worker that dies in between leaves the message to be delivered again,
never lost).

A task that asks for its context gets one built from its message; its requests to
the run leave through the executor's `ContextPort`, whose replies come back on the
executor's own context queue.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from graflow_async.actors import Actor, Inbox, Supervisor
from graflow_async.clock import Backoff, current_clock, within
from graflow_async.define.limits import LimitKeyError
from graflow_async.define.tasks import Task
from graflow_async.exceptions import TransportError
from graflow_async.execute.attempt import failed, run_attempt
from graflow_async.execute.context_port import REMOTE_ANSWER_TIMEOUT, ContextPort
from graflow_async.execute.ended import EndedRuns, incarnation
from graflow_async.execute.local_attempts import LocalAttempts
from graflow_async.execute.task_queue import TaskQueue
from graflow_async.execute.threads import RunThreadPool, shutdown, thread_pool
from graflow_async.execute.throttle import Throttle
from graflow_async.logs import LibraryLog
from graflow_async.options import whole
from graflow_async.transports.base import Delivery, Incarnation, Transport
from graflow_async.wire.messages import TaskMessage, TaskReply

if TYPE_CHECKING:
    from graflow_async.execute.metrics import Metrics

log = LibraryLog()
MAX_BATCH = 512
MAX_WAITING = 1000  # throttled attempts a worker holds claimed at most: it reads no more meanwhile
MIN_BEAT, MAX_BEAT = 0.1, 10.0  # seconds between heartbeats, whatever the leases


def _task_of(message: TaskMessage) -> Task:
    if message.task is None:
        raise LookupError(f"message for task {message.task_id!r} carries no task")
    return message.task


class Executor(Actor[Any]):
    """Runs the tasks that arrive on `queue` of `transport`.

    `concurrency` bounds how many run at once (None: no bound); `find_task` maps a
    message to its `Task` (in-process messages carry it; workers import it). Context
    replies come back on `context_queue`; `remote` says the runs it serves live in
    other processes (a worker's case), which get `answer_timeout` seconds to answer.
    `observer` (a worker's metrics) is told of each attempt as it starts and once its
    reply is written.
    `max_threads` sizes the pool plain (sync) task functions run in (None:
    `ThreadPoolExecutor`'s default).
    """

    def __init__(
        self,
        transport: Transport,
        queue: str,
        *,
        context_queue: str,
        remote: bool = False,
        concurrency: int | None = None,
        find_task: Callable[[TaskMessage], Task] = _task_of,
        answer_timeout: float = REMOTE_ANSWER_TIMEOUT,
        observer: Metrics | None = None,
        max_threads: int | None = None,
    ) -> None:
        self.transport = transport
        self.queue = queue
        self.port = ContextPort(transport, context_queue, remote=remote, answer_timeout=answer_timeout)
        self.find_task = find_task
        self.observer = observer
        self.capacity = None if concurrency is None else whole("concurrency", concurrency, minimum=1)
        self.max_threads = None if max_threads is None else whole("max_threads", max_threads, minimum=1)
        self.done = 0
        self.failed = 0
        self.skipped = 0  # tasks of runs that had ended
        self.stopped: list[Delivery] = []  # deliveries whose tasks were cancelled, unsettled
        self._inflight: dict[tuple[str, int], Delivery] = {}
        self._running = 0
        self._slot_freed = asyncio.Event()
        self._inbox: Inbox[Any] | None = None
        self._children: Supervisor | None = None
        self._local: LocalAttempts | None = None  # starts in-process attempts (see local_attempts)
        self._context: contextvars.Context | None = None
        self._wait_threads = True
        self._heartbeat: asyncio.Task[None] | None = None
        self._beat = asyncio.Event()
        self._beat_every = MAX_BEAT
        self._throttle: Throttle | None = None  # attempts under limits (made with the first)
        self._ended_runs = EndedRuns(transport)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def running(self) -> int:
        """Tasks taken from the queue and not yet settled."""
        return self._running

    def abandon_threads(self) -> None:
        """When `run` ends, do not wait for plain functions still running in threads (a
        worker past its grace period: they cannot be interrupted, and must not hold it)."""
        self._wait_threads = False

    def stop(self) -> None:
        """Stop taking tasks; those running finish, and `run` returns."""
        super().stop()
        self._slot_freed.set()
        if self._inbox is not None:
            self._inbox.close()  # stop claiming now, not when the current read ends

    async def run(self, inbox: Inbox[Any] | None = None) -> None:
        """The actor over `inbox` (default: `queue` of `transport`) until stopped or
        cancelled; a stop waits for running tasks (which may still talk to their runs), a
        cancellation cancels them. Every attempt is a child of this call."""
        pool = RunThreadPool(self.max_threads, thread_name_prefix="graflow-task")
        token = thread_pool.set(pool)
        self._context = contextvars.copy_context()  # children see the run's pool
        limits = self.transport.limits() if self.transport.in_process else None
        local = self._local = LocalAttempts(
            self.transport, pool, self._context, self.find_task, self._spawn_attempt, limits
        )
        self._inbox = inbox if inbox is not None else TaskQueue(self.transport, self.queue)
        try:
            async with Supervisor(f"executor {self.queue}") as children:
                self._children = local.children = children
                await self.transport.open_queue(self.port.queue)
                detach_replies = self.transport.attach(self.port.queue, self.port.deliver)
                if detach_replies is None:
                    children.spawn(self.port.pump(), name=f"context replies {self.port.queue}")
                try:
                    await super().run(self._inbox)
                    await self._settle()
                finally:
                    local.closed = True  # what is queued or comes back from now on is dropped
                    if detach_replies is not None:
                        detach_replies()
                children.cancel_children()  # the helpers; tasks are done by now
        finally:
            local.closed = True
            local.give_back_all()
            thread_pool.reset(token)
            self._children = None
            await shutdown(pool, wait=self._wait_threads)

    async def _settle(self) -> None:
        """Stopped: let running tasks finish, heartbeats going."""
        while self._running:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        if self._heartbeat is not None:
            self._heartbeat.cancel()

    # --- handed over (in-process) ----------------------------------------------------------
    def take(self, messages: Sequence[TaskMessage]) -> None:
        """Start the attempts of `messages`, in the sending run's turn (see local_attempts)."""
        if self.observer is None:
            assert self._local is not None
            self._local.take(messages)
        else:
            for message in messages:
                self._spawn_attempt(message, self.find_task(message))

    def _spawn_attempt(self, message: TaskMessage, task: Task) -> None:
        assert self._children is not None
        self._children.spawn(self._execute(message, task, None, limited=bool(task.limits)), context=self._context)

    # --- read (workers) ----------------------------------------------------------------------
    def batch_limit(self) -> int:
        room = MAX_BATCH if self.capacity is None else min(self.capacity - self._running, MAX_BATCH)
        return max(min(room, MAX_WAITING - self._waiting()), 1)

    def _waiting(self) -> int:
        """Attempts here waiting for their limits (claimed, holding no slot)."""
        return 0 if self._throttle is None else self._throttle.waiting

    def _full(self) -> bool:
        """No room to take more: every slot taken, or `MAX_WAITING` attempts throttled."""
        slots = self.capacity is not None and self._running >= self.capacity
        return (slots or self._waiting() >= MAX_WAITING) and not self._stopping

    async def on_batch(self, deliveries: list[Delivery]) -> None:
        """Start the tasks of `deliveries`, then wait for room for more. An error here does
        not end the executor (a worker is a server): it backs off and goes on."""
        queue = self._inbox if isinstance(self._inbox, TaskQueue) else None  # one of ours: outages waited out
        try:
            # a transport in this process knows no ended run (its runs end with their queues)
            ended = await self._ended(deliveries) if deliveries and not self.transport.in_process else set()
            for delivery in deliveries:
                await self._accept(delivery, ended)
        except Exception as exc:  # what was not taken stays pending: delivered again after its lease
            if queue is None or self.transport.closed:
                raise
            await queue.failed(exc)
            return
        if queue is not None:
            queue.succeeded()
        while self._full():
            self._slot_freed.clear()
            await self._slot_freed.wait()

    async def _ended(self, deliveries: list[Delivery]) -> set[Incarnation]:
        """The run incarnations that have ended, among those the deliveries name (`ended`)."""
        return await self._ended_runs.among(
            {incarnation(d.message) for d in deliveries if isinstance(d.message, TaskMessage)}
        )

    async def _skip(self, delivery: Delivery) -> None:
        """A task of a run that has ended (cancelled or failed): settle it, never run it."""
        msg = delivery.message
        log.info("skipped a task of a run that has ended", task_id=msg.task_id, run_id=msg.run_id)
        self.skipped += 1
        await self.transport.ack(self.queue, (delivery,))

    async def _accept(self, delivery: Delivery, ended: set[Incarnation]) -> None:
        """Run `delivery`'s task, or settle it without running it: not a task, delivered too
        often, a task this executor may not run (dead-lettered), its run has ended (skipped),
        or already running here (a copy of what this executor holds)."""
        msg = delivery.message
        if delivery.key in self._inflight:
            return  # reclaimed from ourselves: it runs already
        if not isinstance(msg, TaskMessage):
            await self.transport.dead_letter(self.queue, delivery, "not a task message")
            return
        if msg.max_deliveries and delivery.delivery_count > msg.max_deliveries:
            reason = (
                f"dead-lettered after {delivery.delivery_count} deliveries "
                f"(max_deliveries={msg.max_deliveries}): the workers running it died or stalled"
            )
            await self.transport.dead_letter(self.queue, delivery, reason)
            await self._answer(msg, failed(msg, RuntimeError(reason), retryable=False))
            return
        try:
            task = self.find_task(msg)
        except Exception as exc:  # not a task this executor may run: never run, kept for an operator
            log.warning("refused a task", queue=self.queue, id=delivery.id, task_id=msg.task_id, reason=str(exc))
            await self.transport.dead_letter(self.queue, delivery, f"refused: {exc}")
            await self._answer(msg, failed(msg, exc, retryable=False))
            return
        if ended and incarnation(msg) in ended:
            await self._skip(delivery)
            return
        self._inflight[delivery.key] = delivery
        limited = bool(task.limits)
        if not limited:  # one under limits takes its slot here once they let it start
            self._running += 1
        assert self._children is not None
        if self._heartbeat is None:
            self._heartbeat = self._children.spawn(self._heartbeats(), name="heartbeats")
        elif (msg.lease_timeout or 30.0) / 3 < self._beat_every:
            self._beat.set()  # a shorter lease than those running: beat sooner
        self._children.spawn(self._execute(msg, task, delivery, limited=limited), context=self._context)

    async def _answer(self, msg: TaskMessage, reply: TaskReply) -> None:
        """Tell a run its task will not run; a run that cannot be told is gone."""
        try:
            await self.transport.send(msg.reply_to, (reply,))
        except TransportError as exc:
            log.warning("could not tell a run about its task", task_id=msg.task_id, error=str(exc))

    async def _heartbeats(self) -> None:
        """Extend the claim on running tasks at a third of the shortest lease among them
        (between 0.1 and 10 s); a task that comes in with a shorter lease shortens the wait."""
        clock = current_clock()
        while True:
            leases = [d.message.lease_timeout or 30.0 for d in self._inflight.values()]
            self._beat_every = min(max(min(leases, default=3.0) / 3, MIN_BEAT), MAX_BEAT)
            self._beat.clear()
            try:
                await within(clock, self._beat.wait(), self._beat_every)
                continue  # woken by a shorter lease: wait the shorter time, then beat
            except TimeoutError:
                pass
            if self._inflight:
                try:
                    await self.transport.touch(self.queue, list(self._inflight.values()))
                    if self._throttle is not None and self._throttle.held:
                        await self._throttle.renew()
                except Exception as exc:  # a missed beat is not fatal; the next one may land
                    log.warning("heartbeat failed", error=repr(exc))

    # --- running one attempt ----------------------------------------------------------------
    async def _execute(self, msg: TaskMessage, task: Task, delivery: Delivery | None, *, limited: bool = False) -> None:
        """Run one attempt, reply, and ack `delivery` (None: handed over, nothing to ack).
        `limited`: the attempt first waits for its limits (`throttle`), holding no slot."""
        counted = delivery is not None and not limited  # taking one of the executor's slots
        admitted = False
        try:
            if limited:
                try:
                    admitted = await self._admitted(msg, task, delivery)
                finally:
                    self._slot_freed.set()  # one fewer throttled: room to read again
                if not admitted:
                    return
                if delivery is not None:
                    self._running += 1
                    counted = True
            await self._attempt(msg, task, delivery)
        finally:
            if admitted:
                assert self._throttle is not None
                await self._throttle.release(msg)
            if delivery is not None:
                self._inflight.pop(delivery.key, None)
            if counted:
                self._running -= 1
                self._slot_freed.set()

    async def _admitted(self, msg: TaskMessage, task: Task, delivery: Delivery | None) -> bool:
        """Wait until the limits of `msg`'s attempt let it start: True. False when it was
        settled instead: its limit key cannot be formatted (it fails), or its run ended."""
        throttle = self._throttle
        if throttle is None:
            assert self._children is not None
            spawn, remote = self._children.spawn, not self.transport.in_process
            throttle = self._throttle = Throttle(
                self.transport.limits(), self.port, spawn, self._run_ended if remote else None
            )
        try:
            if await throttle.admit(msg, task, msg.lease_timeout or 30.0):
                return True
        except LimitKeyError as exc:  # fails, never retried: the same arguments give the same key
            await self._written(msg, failed(msg, exc, retryable=False), delivery)
            return False
        except TransportError as exc:  # left pending: delivered again after its lease
            log.warning("could not take a task's limits", task_id=msg.task_id, error=str(exc))
            return False
        except Exception as exc:  # a fault of the limits themselves fails the task, never the executor
            log.error("could not take a task's limits", task_id=msg.task_id, error=repr(exc)[:300])
            await self._written(msg, failed(msg, exc, retryable=False), delivery)
            return False
        except asyncio.CancelledError:
            if delivery is not None:
                self.stopped.append(delivery)  # stopped while it waited: to be handed back
            raise
        if delivery is not None:
            await self._skip(delivery)
        return False

    async def _run_ended(self, msg: TaskMessage) -> bool:
        return bool(await self.transport.ended({incarnation(msg)}))

    async def _attempt(self, msg: TaskMessage, task: Task, delivery: Delivery | None) -> None:
        observer = self.observer
        if observer is not None:
            observer.started(msg)
        try:
            try:
                reply = await run_attempt(msg, task, self.port)
            except asyncio.CancelledError:
                if delivery is not None:
                    self.stopped.append(delivery)  # its task was stopped: to be handed back
                raise
            if self.port.remote:
                await self.port.streams.flush()  # what it streamed goes before its outcome
            try:
                await self._written(msg, reply, delivery)
            except TypeError as exc:  # the reply cannot travel: a result the wire cannot carry
                reply = failed(msg, TypeError(str(exc)), reply.duration, retryable=False)
                await self._written(msg, reply, delivery)
            if observer is not None:
                observer.finished(msg, reply)
        except TransportError as exc:  # not written: left pending, delivered again after its lease
            log.warning("could not write a task's reply", task_id=msg.task_id, error=str(exc))

    async def _written(self, msg: TaskMessage, reply: TaskReply, delivery: Delivery | None) -> None:
        """Write the reply and settle the delivery. A write the transport refused (Redis at
        ``maxmemory``, say) is tried again with backoff while the task's lease lasts (its
        heartbeats go on meanwhile), unless its run has ended; then it raises, and the task
        stays pending, to be delivered again after its lease."""
        clock, backoff = current_clock(), Backoff(0.2, 5.0)
        deadline = clock.time() + (msg.lease_timeout or 30.0)
        while True:
            try:
                await self._reply(msg, reply, delivery)
                return
            except TransportError as exc:
                if delivery is None or self.transport.closed or clock.time() >= deadline:
                    raise
                log.warning("a task's reply was refused; trying again", task_id=msg.task_id, error=str(exc))
            await backoff.sleep()
            if await self.transport.ended({incarnation(msg)}):
                await self._skip(delivery)
                return

    async def _reply(self, msg: TaskMessage, reply: TaskReply, delivery: Delivery | None) -> None:
        if delivery is None:
            await self.transport.send(msg.reply_to, (reply,))
            return
        # acked only once the reply is written: a crash in between redelivers
        await self.transport.send_and_ack(msg.reply_to, (reply,), self.queue, (delivery,))
        if reply.ok:
            self.done += 1
        else:
            self.failed += 1

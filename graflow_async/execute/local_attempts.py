"""Attempts of in-process tasks that need no coroutine of their own.

An executor fed directly by the memory transport (`Transport.attach`) starts the
common attempts without the ``_execute`` -> `run_attempt` coroutines around them:

- an async function (handler ``direct`` or ``inline``): one child task awaits it and
  replies;
- a plain function on ``direct``: a job of the run's thread pool, whose thread hands
  the outcome back with one ``call_soon_threadsafe``;
- a plain function on ``inline``: called at once, in the executor's context, as its
  message is taken (the reply still reaches the run through its mailbox, so the run's
  plan is never re-entered).

Only attempts without a context, a timeout or a trace go this way; the others go
through `run_attempt`, and so does every attempt on a worker (it has a delivery to
settle). The reply is the same either way: its value, or its failure (not retried for
a `HandlerError`; a coroutine cancelled from inside is a failure, one the run cancels
sends nothing). What is saved per attempt: for an async function two coroutines of
the three that wrap it, and the reply's own coroutine; for a plain function, the task
and every coroutine.

At most `CHUNK` messages of a batch start at once; the rest follow, `CHUNK` per loop
iteration, so a 300,000-task fan-out of quick tasks never holds more than a few
thousand of them started and unfinished at a time (memory, and objects the garbage
collector would walk over and over). They all still start without waiting for each
other.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from graflow_async.actors import Supervisor
from graflow_async.define.limits import LimitKeyError, Want, wants
from graflow_async.define.tasks import Task
from graflow_async.exceptions import HandlerError, TransportError
from graflow_async.execute.attempt import failed
from graflow_async.execute.threads import DROPPED, RunThreadPool
from graflow_async.logs import LibraryLog
from graflow_async.transports.base import Transport
from graflow_async.transports.limits import Limits
from graflow_async.wire.messages import TaskMessage, TaskReply

log = LibraryLog()
CHUNK = 128
GENERAL, AWAIT, THREAD, INLINE = range(4)


def path_of(msg: TaskMessage, task: Task) -> int:
    """How an attempt of `task` starts: `AWAIT`, `THREAD`, `INLINE`, or `GENERAL`
    (through `run_attempt`)."""
    if task.inject_context or msg.timeout is not None or msg.trace is not None:
        return GENERAL
    handler = task.handler
    if handler == "direct":
        return AWAIT if task.is_async else THREAD
    if handler == "inline":
        return AWAIT if task.is_async else INLINE
    return GENERAL


class LocalAttempts:
    """Starts an in-process executor's attempts (see the module docstring). `general`
    starts one through `run_attempt`."""

    def __init__(
        self,
        transport: Transport,
        pool: RunThreadPool,
        context: contextvars.Context,
        find_task: Callable[[TaskMessage], Task],
        general: Callable[[TaskMessage, Task], None],
        limits: Limits | None = None,
    ) -> None:
        self.transport = transport
        self.pool = pool
        self.context = context
        self.find_task = find_task
        self.general = general
        self.limits = limits  # where attempts under limits take them (those admitted at once start here)
        self._held: dict[tuple[str, int, int, int], tuple[Want, ...]] = {}  # attempt -> the limits it took here
        self.children: Supervisor | None = None
        self.closed = False
        self._loop = asyncio.get_running_loop()
        # batches not started yet, each with the index of its next message: messages are
        # read (and, from a `dispatch.LocalMessages`, made) only as they start
        self._backlog: deque[list[Any]] = deque()
        self._entered = False  # running in `context` (where attempts start) now

    def take(self, messages: Sequence[TaskMessage]) -> None:
        if self._backlog:
            self._backlog.append([messages, 0])
        elif self._entered:
            self._take(messages)
        else:
            self.context.run(self._take, messages)

    def _take(self, messages: Sequence[TaskMessage]) -> None:
        n, entered = len(messages), self._entered
        self._entered = True
        try:
            for i in range(min(n, CHUNK)):
                self._start(messages[i])
        finally:
            self._entered = entered
        if n > CHUNK:
            self._backlog.append([messages, CHUNK])
            self._loop.call_soon(self._drain, context=self.context)

    def _drain(self) -> None:
        backlog = self._backlog
        if self.closed:
            backlog.clear()
            return
        self._entered = True
        try:
            self._drain_chunk(backlog)
        finally:
            self._entered = False

    def _drain_chunk(self, backlog: deque[list[Any]]) -> None:
        budget = CHUNK
        try:
            while budget and backlog:
                entry = backlog[0]
                messages, start = entry
                stop = min(len(messages), start + budget)
                entry[1] = stop
                if stop == len(messages):
                    backlog.popleft()
                for i in range(start, stop):
                    self._start(messages[i])
                budget -= stop - start
        except Exception as exc:  # a bug here must fail the run, not leave it waiting
            self._raise(exc)
            return
        if backlog:
            self._loop.call_soon(self._drain, context=self.context)

    def _start(self, msg: TaskMessage) -> None:
        task = self.find_task(msg)
        path = path_of(msg, task)
        if task.limits and path != GENERAL and not self._took(msg, task):
            path = GENERAL  # it waits for its limits (or fails: its key cannot be made)
        if path == AWAIT:
            assert self.children is not None
            self.children.spawn(self._awaited(msg, task), context=self.context)
        elif path == THREAD:
            job = functools.partial(self.context.copy().run, task.func, **msg.kwargs)
            self.pool.call_then(self._loop, job, self._threaded, (msg, time.perf_counter()))
        elif path == INLINE:
            self._inline(msg, task)
        else:
            self.general(msg, task)

    def _took(self, msg: TaskMessage, task: Task) -> bool:
        """Whether the attempt of `msg` holds its limits at once (given back with its reply)."""
        if self.limits is None:
            return False
        try:
            asked = task.fixed_wants or wants(task.id, task.limits, msg.kwargs)
        except LimitKeyError:
            return False
        holder = (msg.run_id, msg.node, msg.cycle, msg.attempt)
        if not self.limits.take_now(holder, asked, msg.priority):
            return False
        self._held[holder] = asked
        return True

    def give_back_all(self) -> None:
        """The executor ends: what its attempts still hold (cancelled with their run) goes back."""
        held, self._held = self._held, {}
        if self.limits is not None:
            for holder, asked in held.items():
                self.limits.give_back_now(holder, asked)

    # --- outcomes ------------------------------------------------------------------------------
    async def _awaited(self, msg: TaskMessage, task: Task) -> None:
        start = time.perf_counter()
        try:
            value = await task.func(**msg.kwargs)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the run is cancelling it
            self._reply(msg, failed(msg, exc, time.perf_counter() - start))  # cancelled from inside
            return
        except Exception as exc:
            self._reply(msg, _failure(msg, exc, time.perf_counter() - start))
            return
        self._reply(msg, _success(msg, value, time.perf_counter() - start))

    def _threaded(self, tag: tuple[TaskMessage, float], value: Any, error: BaseException | None) -> None:
        msg, start = tag
        if error is None:
            self._reply(msg, _success(msg, value, time.perf_counter() - start))
        elif error is DROPPED:
            return  # the pool shut down before it ran: the run is over
        elif isinstance(error, Exception):
            self._reply(msg, _failure(msg, error, time.perf_counter() - start))
        else:
            self._raise(error)

    def _inline(self, msg: TaskMessage, task: Task) -> None:
        if self.closed:
            return
        start = time.perf_counter()
        try:
            value = task.func(**msg.kwargs)
        except Exception as exc:
            self._reply(msg, _failure(msg, exc, time.perf_counter() - start))
            return
        except BaseException as exc:
            self._raise(exc)
            return
        self._reply(msg, _success(msg, value, time.perf_counter() - start))

    def _raise(self, error: BaseException) -> None:
        """What is not an Exception (KeyboardInterrupt, ...) fails the executor, as it would
        from `run_attempt`."""
        if not self.closed and self.children is not None:
            self.children.spawn(_reraise(error))

    def _reply(self, msg: TaskMessage, reply: TaskReply) -> None:
        if self._held:
            holder = (msg.run_id, msg.node, msg.cycle, msg.attempt)
            asked = self._held.pop(holder, None)
            if asked is not None and self.limits is not None:
                self.limits.give_back_now(holder, asked)
        if self.closed:
            return
        if not self.transport.send_nowait(msg.reply_to, (reply,)):
            assert self.children is not None
            self.children.spawn(self._send(msg, reply), context=self.context)

    async def _send(self, msg: TaskMessage, reply: TaskReply) -> None:
        try:
            await self.transport.send(msg.reply_to, (reply,))
        except TransportError as exc:
            log.warning("could not write a task's reply", task_id=msg.task_id, error=str(exc))


def _success(msg: TaskMessage, value: Any, duration: float) -> TaskReply:
    return TaskReply(
        msg.run_id,
        msg.node,
        msg.attempt,
        True,
        value,
        None,
        duration,
        (),
        True,
        False,
        msg.cycle,
        msg.task_id,
        msg.epoch,
    )


def _failure(msg: TaskMessage, error: Exception, duration: float) -> TaskReply:
    # a handler that cannot run the task (an engine out of reach) is not retried
    return failed(msg, error, duration, retryable=not isinstance(error, HandlerError))


async def _reraise(error: BaseException) -> None:
    raise error

"""One attempt of a task, as an executor runs it: call the function through its
handler (with its context when it asks for one, within its timeout) and say how it
went as a `TaskReply`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from graflow_async.define.tasks import Task
from graflow_async.exceptions import HandlerError, TaskTimeoutError
from graflow_async.execute.context import TaskContext
from graflow_async.execute.context_port import ContextPort
from graflow_async.execute.handlers import TaskCall, get_handler
from graflow_async.execute.threads import call_in_thread
from graflow_async.execute.tracing import attempt_span, finish_attempt
from graflow_async.feedback.hitl import FeedbackSuspended
from graflow_async.wire.messages import TaskMessage, TaskReply


async def run_attempt(msg: TaskMessage, task: Task, port: ContextPort) -> TaskReply:
    """Run `msg`'s attempt of `task`; never raises except when the attempt is cancelled.
    A traced run's attempt is a span, a child of the run's (see tracing.py)."""
    if msg.trace is None:
        return await _attempt(msg, task, port)
    with attempt_span(msg) as span:
        reply = await _attempt(msg, task, port)
        finish_attempt(span, reply)
        return reply


async def _attempt(msg: TaskMessage, task: Task, port: ContextPort) -> TaskReply:
    start = time.perf_counter()
    context = TaskContext(port, msg) if task.inject_context else None
    try:
        if msg.timeout is not None:
            value = await _call_with_timeout(task, msg, context, msg.timeout)
        elif task.is_async and (task.handler == "direct" or task.handler == "inline"):  # the common case
            value = await (task.func(context, **msg.kwargs) if context is not None else task.func(**msg.kwargs))
        else:
            value = await _call(task, msg, context)
    except asyncio.CancelledError as exc:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the run is cancelling this task
        # something the task awaited was cancelled: that is the task failing
        return failed(msg, exc, time.perf_counter() - start)
    except FeedbackSuspended as exc:
        return TaskReply(
            msg.run_id,
            msg.node,
            msg.attempt,
            False,
            None,
            exc,
            time.perf_counter() - start,
            suspended=True,
            cycle=msg.cycle,
            task_id=msg.task_id,
            epoch=msg.epoch,
        )
    except HandlerError as exc:  # the handler cannot run the task (an engine out of reach): not retried
        return failed(msg, exc, time.perf_counter() - start, retryable=False)
    except Exception as exc:
        return failed(msg, exc, time.perf_counter() - start)
    directives = context.directives if context is not None else ()
    return TaskReply(
        msg.run_id,
        msg.node,
        msg.attempt,
        True,
        value,
        None,
        time.perf_counter() - start,
        directives,
        cycle=msg.cycle,
        task_id=msg.task_id,
        epoch=msg.epoch,
    )


def failed(msg: TaskMessage, error: BaseException, duration: float = 0.0, *, retryable: bool = True) -> TaskReply:
    return TaskReply(
        msg.run_id,
        msg.node,
        msg.attempt,
        False,
        None,
        error,
        duration,
        retryable=retryable,
        cycle=msg.cycle,
        task_id=msg.task_id,
        epoch=msg.epoch,
    )


async def _call(task: Task, msg: TaskMessage, context: TaskContext | None) -> Any:
    args = (context,) if context is not None else ()
    handler = task.handler
    if handler == "direct" or handler == "inline":
        if task.is_async:
            return await task.func(*args, **msg.kwargs)
        if handler == "inline":  # a plain function the task asked to run on the loop
            return task.func(*args, **msg.kwargs)
        return await call_in_thread(task.func, args, msg.kwargs)  # in a thread of the run's pool
    # copies: a handler may change what it is given, and these may be shared by many tasks
    call = TaskCall(
        msg.task_id, msg.run_id, msg.attempt, task.func, dict(msg.kwargs), context, dict(task.handler_kwargs)
    )
    return await get_handler(handler).run(call)


async def _call_with_timeout(task: Task, msg: TaskMessage, context: TaskContext | None, timeout: float) -> Any:
    try:
        async with asyncio.timeout(timeout) as scope:
            return await _call(task, msg, context)
    except TimeoutError as exc:
        if scope.expired():
            raise TaskTimeoutError(msg.task_id, timeout, exc) from exc
        raise

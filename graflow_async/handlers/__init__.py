"""Task handlers: how a task's function is actually run.

A handler is any object with ``async def run(self, call: TaskCall) -> Any``. The
built-in ``direct`` handler awaits async functions in the event loop and runs plain
functions in a worker thread of the run's pool; ``inline`` calls plain functions on
the event loop itself (for cheap ones: no thread hop, but a slow one stalls every
other task of the process while it runs). Register your own with
`register_handler(name, handler)` or pass an instance as ``@task(handler=...)``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from graflow_async.define.tasks import _is_async
from graflow_async.exceptions import HandlerError
from graflow_async.threads import RunThreadPool


@dataclass(frozen=True, slots=True)
class TaskCall:
    """One attempt of a task, as a handler receives it."""

    task_id: str
    run_id: str
    attempt: int
    func: Callable[..., Any]  # the undecorated function
    kwargs: dict[str, Any]  # resolved arguments
    context: Any = None  # the TaskContext when the task injects it, else None
    options: dict[str, Any] = field(default_factory=dict)  # the task's handler_kwargs

    @property
    def args(self) -> tuple[Any, ...]:
        return (self.context,) if self.context is not None else ()


@runtime_checkable
class TaskHandler(Protocol):
    async def run(self, call: TaskCall) -> Any: ...


# The thread pool that plain (sync) task functions run in; the executor of each run
# sets it so that a run's threads are its own and are waited for when it ends.
thread_pool: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "graflow_async_thread_pool", default=None
)


async def call_function(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Await `func` if it is async; otherwise run it in the run's thread pool."""
    if _is_async(func):
        return await func(*args, **kwargs)
    return await call_in_thread(func, args, kwargs)


def call_in_thread(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> asyncio.Future[Any]:
    """The future of plain function `func` run in the run's thread pool (with a copy of
    the caller's context variables)."""
    loop = asyncio.get_running_loop()
    job = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    pool = thread_pool.get()
    if type(pool) is RunThreadPool:
        return pool.call(loop, job)
    return loop.run_in_executor(pool, job)


class DirectHandler:
    """Runs the function in this process (the default handler, ``"direct"``)."""

    async def run(self, call: TaskCall) -> Any:
        return await call_function(call.func, call.args, call.kwargs)


class InlineHandler:
    """Calls the function on the event loop, awaiting what it returns if awaitable
    (``"inline"``). For plain functions that return at once: a slow one blocks the loop,
    and a timeout cannot interrupt it."""

    async def run(self, call: TaskCall) -> Any:
        value = call.func(*call.args, **call.kwargs)
        if inspect.isawaitable(value):
            value = await value
        return value


_registry: dict[str, TaskHandler] = {"direct": DirectHandler(), "inline": InlineHandler()}
_lazy: dict[str, str] = {"docker": "graflow_async.handlers.docker:DockerHandler"}


def register_handler(name: str, handler: TaskHandler) -> None:
    """Make `handler` available as ``@task(handler=name)``."""
    if not isinstance(name, str) or not name:
        raise HandlerError(f"a handler name must be a non-empty string, got {name!r}")
    if not callable(getattr(handler, "run", None)):
        raise HandlerError(f"handler {name!r} must have an async run(call) method")
    _registry[name] = handler


def get_handler(spec: str | TaskHandler) -> TaskHandler:
    """The handler a task names (or the instance it gives); HandlerError if unknown."""
    if not isinstance(spec, str):
        if callable(getattr(spec, "run", None)):
            return spec
        raise HandlerError(f"{spec!r} is not a task handler (it needs an async run(call) method)")
    handler = _registry.get(spec)
    if handler is not None:
        return handler
    if spec in _lazy:
        import importlib

        module, _, attr = _lazy[spec].partition(":")
        try:
            handler = getattr(importlib.import_module(module), attr)()
        except ImportError as exc:
            raise HandlerError(f"handler {spec!r} is not available: {exc}") from exc
        _registry[spec] = handler
        return handler
    known = ", ".join(sorted({*_registry, *_lazy}))
    raise HandlerError(f"unknown task handler {spec!r} (known: {known})")


__all__ = [
    "DirectHandler", "InlineHandler", "TaskCall", "TaskHandler", "call_function", "get_handler", "register_handler",
]

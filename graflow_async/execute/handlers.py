"""Task handlers: how a task's function is actually run (the registry and the built-in
ones; `graflow_async.handlers` adds the docker handler and re-exports these).

A handler is any object with ``async def run(self, call: TaskCall) -> Any``. The
built-in ``direct`` handler awaits async functions in the event loop and runs plain
functions in a worker thread of the run's pool; ``inline`` calls plain functions on
the event loop itself (for cheap ones: no thread hop, but a slow one stalls every
other task of the process while it runs). Register your own with
`register_handler(name, handler)` or pass an instance as ``@task(handler=...)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from graflow_async.exceptions import HandlerError
from graflow_async.execute.threads import call_function
from graflow_async.logs import LibraryLog

_log = LibraryLog()


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


@runtime_checkable
class Housekeeping(Protocol):
    """A handler with chores a long-lived process (a worker) runs periodically, such as
    removing what processes that died left behind (the docker handler's orphans)."""

    async def housekeeping(self) -> None: ...


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
_lazy: dict[str, Callable[[], TaskHandler]] = {}  # made on first use (an optional extra's import)


def register_handler(name: str, handler: TaskHandler) -> None:
    """Make `handler` available as ``@task(handler=name)``."""
    if not isinstance(name, str) or not name:
        raise HandlerError(f"a handler name must be a non-empty string, got {name!r}")
    if not callable(getattr(handler, "run", None)):
        raise HandlerError(f"handler {name!r} must have an async run(call) method")
    _registry[name] = handler


def register_lazy(name: str, make: Callable[[], TaskHandler]) -> None:
    """Make ``@task(handler=name)`` call `make()` for its handler when first used (a
    built-in handler whose extra may not be installed)."""
    _lazy[name] = make


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
        try:
            handler = _lazy[spec]()
        except ImportError as exc:
            raise HandlerError(f"handler {spec!r} is not available: {exc}") from exc
        _registry[spec] = handler
        return handler
    known = ", ".join(sorted({*_registry, *_lazy}))
    raise HandlerError(f"unknown task handler {spec!r} (known: {known})")


async def housekeeping() -> None:
    """Each handler in use does its chores (`Housekeeping`); a failing one is logged."""
    for name, handler in list(_registry.items()):
        if isinstance(handler, Housekeeping):
            try:
                await handler.housekeeping()
            except Exception as exc:  # a chore never ends the process
                _log.warning(
                    "a handler's housekeeping failed", handler=name, error=f"{type(exc).__name__}: {exc}"[:200]
                )


__all__ = [
    "DirectHandler",
    "Housekeeping",
    "InlineHandler",
    "TaskCall",
    "TaskHandler",
    "get_handler",
    "housekeeping",
    "register_handler",
    "register_lazy",
]

"""Supervisor: the owner of a group of child tasks, under structured concurrency.

    async with Supervisor("run-42") as sup:
        sup.spawn(MyActor().run(inbox))       # an actor over its mailbox
        sup.spawn(some_coroutine())           # a plain child
        ...
    # here every child has finished or was cancelled; nothing outlives the block

Rules (those of ``asyncio.TaskGroup``):
- leaving the block waits for every child; call ``cancel_children()`` first if you
  want them gone rather than finished;
- a child that raises cancels its siblings and the block's body, and the error is
  raised from the ``async with`` (the exception itself when one child failed, an
  ``ExceptionGroup`` when several did);
- cancelling the task that runs the block cancels every child, waits for them to
  unwind, and propagates the cancellation.

It is not built on ``asyncio.TaskGroup`` because it needs ``cancel_children()``, and
tracking children beside a TaskGroup costs a second done-callback (a second
loop callback) per child, which shows on a 10,000-task fan-out.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


class Supervisor:
    """Owns child tasks (actors' loops among them); see the module docstring for the rules."""

    __slots__ = (
        "_aborting",
        "_children",
        "_errors",
        "_idle",
        "_loop",
        "_parent",
        "_parent_cancelled",
        "_running",
        "name",
    )

    def __init__(self, name: str = "supervisor") -> None:
        self.name = name
        self._children: set[asyncio.Task[Any]] = set()
        self._errors: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._parent: asyncio.Task[Any] | None = None
        self._idle: asyncio.Future[None] | None = None
        self._running = False
        self._aborting = False
        self._parent_cancelled = False  # we cancelled the parent because a child failed

    async def __aenter__(self) -> Supervisor:
        if self._running:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._loop = asyncio.get_running_loop()
        self._parent = asyncio.current_task()
        if self._parent is None:
            raise RuntimeError("a Supervisor must be used inside a task")
        self._running = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._parent is not None and self._loop is not None
        outer_cancel: BaseException | None = None
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            self._abort()  # the body failed: children go too
        if isinstance(exc, asyncio.CancelledError) and not self._parent_cancelled:
            outer_cancel = exc
            self._abort()
        while self._children:
            self._idle = self._loop.create_future()
            try:
                await self._idle
            except asyncio.CancelledError as cancel:
                outer_cancel = cancel if not self._parent_cancelled else outer_cancel
                self._abort()
            finally:
                self._idle = None
        self._running = False
        if self._parent_cancelled:
            self._parent_cancelled = False
            if self._parent.uncancel() == 0 and outer_cancel is None:
                pass  # the cancellation was ours; it ends here
        errors, self._errors = self._errors, []
        if errors:
            if len(errors) == 1:
                raise errors[0]
            raise BaseExceptionGroup(f"children of {self.name!r} failed", errors)
        if outer_cancel is not None:
            raise outer_cancel
        if isinstance(exc, asyncio.CancelledError):
            return True  # only our own cancellation of the parent: swallowed
        return None

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        """Start `coro` as a child task owned by this supervisor (in `context` if given,
        else in a copy of the caller's context)."""
        if not self._running or self._aborting:
            coro.close()
            raise RuntimeError(f"supervisor {self.name!r} is not accepting children")
        assert self._loop is not None
        child = self._loop.create_task(coro, name=name, context=context)
        self._children.add(child)
        child.add_done_callback(self._on_child_done)
        return child

    def cancel_children(self) -> None:
        """Cancel every running child; leaving the block then waits for them to unwind."""
        for child in list(self._children):
            child.cancel()

    @property
    def children(self) -> int:
        """How many children are still running."""
        return len(self._children)

    def _on_child_done(self, child: asyncio.Task[Any]) -> None:
        self._children.discard(child)
        if not self._children and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)
        if child.cancelled():
            return
        error = child.exception()
        if error is None:
            return
        self._errors.append(error)
        if not self._aborting:
            self._abort()
            parent = self._parent
            if self._idle is None and parent is not None and not parent.done():
                # The body is still running: interrupt it so the error surfaces now.
                self._parent_cancelled = True
                parent.cancel()

    def _abort(self) -> None:
        self._aborting = True
        self.cancel_children()

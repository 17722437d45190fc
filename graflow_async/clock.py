"""One source of time for retries, HITL waits, leases and grace periods, so tests can replace it.

The runtime never calls ``loop.time()``, ``time.time()`` or ``asyncio.sleep`` for policy
waits and leases directly; it asks `current_clock()`. Tests install a clock that runs
long waits in an instant with `use_clock`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock:
    """The event loop's monotonic clock (the default)."""

    def time(self) -> float:
        """Monotonic seconds, for deadlines and waits within this process."""
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        """Seconds since the epoch, for times other processes read (a lease kept in a store)."""
        return time.time()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay, callback, *args)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)


_clock: ContextVar[Clock] = ContextVar("graflow_async_clock", default=Clock())  # noqa: B039 (stateless)


def current_clock() -> Clock:
    return _clock.get()


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Use `clock` for everything started inside the block (it is a context variable)."""
    token = _clock.set(clock)
    try:
        yield clock
    finally:
        _clock.reset(token)


async def within(clock: Clock, aw: Awaitable[T], timeout: float | None) -> T:
    """What `aw` gives, or TimeoutError once `timeout` seconds have passed on `clock`
    (a fast test clock makes a long wait time out at once unless `aw` is ready)."""
    work = asyncio.ensure_future(aw)
    if timeout is None:
        return await work
    timer = asyncio.ensure_future(clock.sleep(timeout))
    try:
        done, _ = await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (work, timer):
            pending.cancel()
        await asyncio.gather(work, timer, return_exceptions=True)
    if work in done and not work.cancelled():
        return work.result()
    raise TimeoutError


class Backoff:
    """The waits of one retry loop: `first` seconds, growing by `factor` up to `cap`, each
    multiplied by a uniform factor in [1 - jitter, 1 + jitter] (so a fleet of workers that
    lost Redis together does not come back in step). `reset` after a success."""

    __slots__ = ("_next", "cap", "factor", "first", "jitter")

    def __init__(self, first: float = 0.05, cap: float = 2.0, *, factor: float = 2.0, jitter: float = 0.5) -> None:
        if not 0 < first <= cap or factor < 1 or not 0 <= jitter < 1:
            raise ValueError(f"bad backoff: first={first!r}, cap={cap!r}, factor={factor!r}, jitter={jitter!r}")
        self.first, self.cap, self.factor, self.jitter = first, cap, factor, jitter
        self._next = first

    def next(self) -> float:
        """The next wait, in seconds."""
        base = self._next
        self._next = min(base * self.factor, self.cap)
        return min(base * (1 + self.jitter * (2 * random.random() - 1)), self.cap)

    def reset(self) -> None:
        self._next = self.first

    async def sleep(self) -> None:
        """Wait the next wait on the current clock."""
        await current_clock().sleep(self.next())

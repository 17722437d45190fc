"""Test clocks: long policy waits (retry backoff) in an instant, with the delays recorded.

with use_clock(FastClock()) as clock:
    await run(wf)
assert clock.delays == [1.0, 2.0]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from graflow_async.clock import Cancellable, Clock


class FastClock(Clock):
    """A clock whose waits take no real time; it records every delay asked of it.

    `time()` and `wall()` are virtual: the loop's time (the epoch time) plus every delay
    slept so far, so code that measures elapsed time sees the waits as if they had happened.
    """

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._skipped = 0.0

    def time(self) -> float:
        return asyncio.get_running_loop().time() + self._skipped

    def wall(self) -> float:
        return time.time() + self._skipped

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Cancellable:
        self.delays.append(delay)
        self._skipped += max(delay, 0.0)
        return asyncio.get_running_loop().call_soon(callback, *args)

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        self._skipped += max(delay, 0.0)
        await asyncio.sleep(0)

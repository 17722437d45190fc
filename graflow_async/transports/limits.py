"""Where attempts wait for their limits (SPEC 11): `Limits`, one per place limits are
kept (in-process: one per event loop, `local_limits`; Redis: one per transport, shared
with every worker of the namespace through the server).

`acquire` asks (`_try`: the transport's admission, see `admission`) and, refused, waits
aside: a waiting attempt is a parked coroutine holding no worker slot, queued under
each limit it waits for, best first (highest priority, then oldest). When a slot is
given back (`release`, here or, on Redis, by another worker), the best waiter of that
limit tries again; one that gets in wakes the next (a freed slot is used up while
there is room), one that does not goes back to its place. A waiter for a rate window
tries again when the window allows it. A newcomer that a waiter ranks ahead of queues
behind it instead of taking the slot first. `sweep_every` (Redis): every so often the
best waiter of every limit tries again, for slots of dead workers whose lease lapsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import sys
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from graflow_async.actors.per_loop import PerLoop
from graflow_async.clock import current_clock, within
from graflow_async.define.limits import Want
from graflow_async.transports.admission import LimitBook


class _Waiter:
    __slots__ = ("idents", "name", "rank", "woken")

    def __init__(self, rank: tuple[int, int], idents: tuple[str, ...], names: tuple[str, ...]) -> None:
        self.rank = rank  # (-priority, arrival): smaller goes first
        self.idents = idents
        self.name = names
        self.woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class Limits:
    """Attempts waiting for their limits (see the module docstring). Subclasses give the
    admission itself: `_try`, `_give_back`, `renew`."""

    sweep_every: float | None = None  # seconds between retries of every limit's best waiter

    def __init__(self) -> None:
        self._queues: dict[str, list[tuple[tuple[int, int], int, _Waiter]]] = {}  # ident -> heap of waiters
        self._entries = itertools.count()  # ties between a waiter's old and new place: by entry
        self._arrivals = itertools.count()
        self.waiting: dict[str, int] = {}  # limit name -> attempts waiting (a gauge)

    # --- what a transport provides ------------------------------------------------------------
    async def _try(self, holder: str, wants: Sequence[Want], lease: float) -> float | None:
        """Admit `holder` (None), or seconds until trying again is worth it (inf: when freed)."""
        raise NotImplementedError

    async def _give_back(self, holder: str, wants: Sequence[Want]) -> list[str]:
        """Release `holder`'s slots: the idents with a slot free now."""
        raise NotImplementedError

    async def renew(self, held: Sequence[tuple[str, Sequence[Want]]], lease: float) -> None:
        """The holders of `held`, still running, keep their slots `lease` seconds more."""

    def take_now(self, holder: Hashable, wants: Sequence[Want], priority: int = 5) -> bool:
        """Admit `holder` without waiting for anything, when that can be decided here and
        nobody waits ahead of it (in-process); False: `acquire` it. Default: never."""
        return False

    async def take_first(self, holder: str, wants: Sequence[Want], *, priority: int = 5, lease: float = 30.0) -> bool:
        """One try, unless a waiter ranks ahead of `holder`: whether it holds `wants` now
        (False: `acquire` it)."""
        if self._waited_ahead(priority, wants):
            return False
        return await self._try(holder, wants, lease) is None

    def _waited_ahead(self, priority: int, wants: Sequence[Want]) -> bool:
        """Whether a waiter of `priority` or higher waits for one of `wants` (a newcomer
        goes behind it)."""
        return bool(self._queues) and self._behind((-priority, sys.maxsize), [w.ident for w in wants])

    def give_back_now(self, holder: Hashable, wants: Sequence[Want]) -> None:
        """`release` of what `take_now` took."""
        raise NotImplementedError

    # --- waiting --------------------------------------------------------------------------------
    async def acquire(
        self,
        holder: str,
        wants: Sequence[Want],
        *,
        priority: int = 5,
        lease: float = 30.0,
        on_wait: Callable[[], Any] | None = None,
    ) -> None:
        """Return once `holder` holds `wants`; `on_wait` is called when it first has to wait.
        Cancelling it gives its place up."""
        rank = (-priority, next(self._arrivals))
        idents = tuple(w.ident for w in wants)
        names = tuple(dict.fromkeys(w.name for w in wants))
        delay = math.inf if self._behind(rank, idents) else await self._try(holder, wants, lease)
        if delay is None:
            return
        if on_wait is not None:
            on_wait()
        for name in names:
            self.waiting[name] = self.waiting.get(name, 0) + 1
        try:
            while delay is not None:
                waiter = _Waiter(rank, idents, names)
                self._enqueue(waiter)
                try:
                    await _within(waiter.woken, delay)
                finally:
                    self._dequeue(waiter)
                delay = await self._try(holder, wants, lease)
        finally:
            for name in names:
                left = self.waiting.get(name, 1) - 1
                if left:
                    self.waiting[name] = left
                else:
                    self.waiting.pop(name, None)
        self.wake(idents)  # in: the next may fit too

    async def release(self, holder: str, wants: Sequence[Want]) -> None:
        """`holder` is done: its slots go back, and the best waiter of each tries again."""
        self.wake(await self._give_back(holder, wants))

    def wake(self, idents: Sequence[str]) -> None:
        """The best waiter of each of `idents` tries again."""
        for ident in idents:
            queue = self._queues.get(ident)
            while queue:
                waiter = queue[0][2]
                if waiter.woken.done():  # woken already, or gone
                    heapq.heappop(queue)
                    continue
                waiter.woken.set_result(None)
                break

    def waiting_idents(self) -> list[str]:
        return [ident for ident, queue in self._queues.items() if queue]

    def _behind(self, rank: tuple[int, int], idents: Sequence[str]) -> bool:
        """Whether a waiter ranking ahead of `rank` waits for one of `idents` (a newcomer
        then queues behind it)."""
        for ident in idents:
            queue = self._queues.get(ident)
            if queue and any(not w.woken.done() and r < rank for r, _, w in queue[:1]):
                return True
        return False

    def _enqueue(self, waiter: _Waiter) -> None:
        for ident in waiter.idents:
            heapq.heappush(self._queues.setdefault(ident, []), (waiter.rank, next(self._entries), waiter))
        self._queued(waiter)

    def _queued(self, waiter: _Waiter) -> None:
        """A waiter joined (a subclass starts what wakes waiters from elsewhere)."""

    def _dequeue(self, waiter: _Waiter) -> None:
        if not waiter.woken.done():
            waiter.woken.cancel()
        for ident in waiter.idents:
            queue = self._queues.get(ident)
            if queue is None:
                continue
            while queue and queue[0][2].woken.done():
                heapq.heappop(queue)
            if not queue:
                del self._queues[ident]


async def _within(future: asyncio.Future[None], delay: float) -> None:
    """Wait for `future`, at most `delay` seconds (inf: as long as it takes)."""
    if math.isinf(delay):
        await future
        return
    with contextlib.suppress(TimeoutError):
        await within(current_clock(), future, max(delay, 0.0))


class LocalLimits(Limits):
    """The limits of the runs of one event loop (`local_limits`), kept in a `LimitBook`."""

    def __init__(self) -> None:
        super().__init__()
        self.book = LimitBook()

    async def _try(self, holder: str, wants: Sequence[Want], lease: float) -> float | None:
        now = current_clock().time()
        retry = self.book.admit(holder, wants, now)
        return None if retry is None else retry - now

    async def _give_back(self, holder: str, wants: Sequence[Want]) -> list[str]:
        return self.book.release(holder, wants)

    def take_now(self, holder: Hashable, wants: Sequence[Want], priority: int = 5) -> bool:
        if self._waited_ahead(priority, wants):
            return False
        return self.book.admit(holder, wants, current_clock().time()) is None

    def give_back_now(self, holder: Hashable, wants: Sequence[Want]) -> None:
        self.wake(self.book.release(holder, wants))


_local = PerLoop(LocalLimits)


def local_limits() -> LocalLimits:
    """The limits shared by every run of the running event loop."""
    return _local.get()

"""What tasks stream while they run (SPEC 12): `context.stream(chunk)` in a task,
`run_stream(run_id)` to read it.

In-process a run's stream lives in memory with the run (`RunStream`, one per run of
the event loop, kept across a suspension and a resume in this process, and for a
while after the run ended). Each item is a `StreamItem` numbered from 1; at most `CAP`
are kept, the oldest dropped first, and a reader that falls behind is told how many it
missed (`StreamItem.missed` on the first item after the gap). On Redis, workers append
to a stream of the run on the server (`transports.redis.streams`), which any process
reads with ``run_stream(run_id, transport=...)``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import Any

from graflow_async.actors.per_loop import PerLoop
from graflow_async.transports.base import Transport
from graflow_async.wire.messages import StreamItem

CAP = 10_000  # items a run's stream keeps (in memory, and on Redis about as many)
KEPT_ENDED = 100  # ended runs whose streams this process keeps for late readers


class RunStream:
    """The items of one run in this process, and its readers' wake-up."""

    __slots__ = ("_items", "_waiter", "ended", "next")

    def __init__(self) -> None:
        self._items: deque[tuple[int, str, int, Any]] = deque()  # (number, task_id, attempt, data)
        self.next = 1  # the number of the next item
        self.ended = False
        self._waiter: asyncio.Future[None] | None = None

    def add(self, task_id: str, attempt: int, data: Any) -> None:
        items = self._items
        items.append((self.next, task_id, attempt, data))
        self.next += 1
        if len(items) > CAP:
            items.popleft()  # a reader behind it is told (`read`: missed)
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        """The readers waiting for more look again."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self, after: int) -> AsyncIterator[StreamItem]:
        """The items numbered after `after`, as they come, until the stream ends."""
        while True:
            items = self._items
            first = items[0][0] if items else self.next
            start = max(after + 1, first)
            missed = start - after - 1
            fresh = [items[i] for i in range(start - first, len(items))]  # from the tail: cheap to index
            for number, task_id, attempt, data in fresh:
                yield StreamItem(str(number), task_id, attempt, data, missed)
                missed = 0
                after = number
            after = max(after, start - 1)
            if self.ended and after >= self.next - 1:
                return
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)


class _Streams:
    """The run streams of one event loop."""

    def __init__(self) -> None:
        self.live: dict[str, RunStream] = {}
        self.ended: OrderedDict[str, RunStream] = OrderedDict()

    def open(self, run_id: str) -> RunStream:
        stream = self.live.get(run_id) or self.ended.pop(run_id, None)
        if stream is None:
            stream = RunStream()
        stream.ended = False
        self.live[run_id] = stream
        return stream

    def close(self, run_id: str, *, ended: bool) -> None:
        """The run's driving here stopped: its stream ends (`ended`) or stays open (a
        suspended run, to be resumed)."""
        stream = self.live.pop(run_id, None)
        if stream is None:
            return
        if ended:
            stream.end()
        self.ended[run_id] = stream
        while len(self.ended) > KEPT_ENDED:
            self.ended.popitem(last=False)

    def find(self, run_id: str) -> RunStream | None:
        return self.live.get(run_id) or self.ended.get(run_id)


_local = PerLoop(_Streams)


def local_streams() -> _Streams:
    """The run streams of the running event loop."""
    return _local.get()


async def run_stream(
    run_id: str, *, transport: Transport | None = None, after: str | None = None
) -> AsyncIterator[StreamItem]:
    """The items tasks of run `run_id` streamed (SPEC 12), from the start or after the
    item whose id is `after`, as they come; it ends when the run ends (a suspended run's
    stream stays open). Without `transport`: a run this process drives or drove (its
    stream lives in memory with the run; `LookupError` for another); with a Redis
    transport, any run of its namespace, until the run's keys expire."""
    if transport is not None and transport.keeps_streams:
        async for item in transport.read_stream(run_id, after):
            yield item
        return
    stream = local_streams().find(run_id)
    if stream is None:
        raise LookupError(f"run {run_id!r} streams nothing in this process (give the Redis transport it runs on)")
    start = 0
    if after is not None:
        if not after.isdigit():
            raise ValueError(f"after must be the id of an item of run {run_id!r}, got {after!r}")
        start = int(after)
    async for item in stream.read(start):
        yield item

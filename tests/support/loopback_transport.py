"""A third transport, for the tests: queues in this process that behave like remote ones.

`LoopbackTransport` keeps its queues in memory but passes every message through
`wire.envelope` (``encode`` on send, ``decode`` on receive), so nothing travels by
reference: a run on it dispatches tasks by import path to whatever executor serves
`keys.TASK_QUEUE`, exactly as a run on Redis does. It implements only the core of the
contract (`send`, `receive`, `ack`, `aclose`, `closed`) and `discard`; everything
else is `Transport`'s default, so running the conformance suite and a workflow over
it shows that the seam and its defaults are enough for a transport written elsewhere.

Deliveries stay pending until acked; claims do not lapse, so a pending delivery is
never delivered again (at-least-once holds trivially: nothing is lost either).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Sequence
from typing import Any

from graflow_async.exceptions import TransportError
from graflow_async.transports.base import Delivery, Transport
from graflow_async.wire import envelope


class _Queue:
    __slots__ = ("changed", "pending", "ready")

    def __init__(self) -> None:
        self.ready: deque[tuple[str, bytes]] = deque()  # sent, not yet delivered
        self.pending: dict[str, bytes] = {}  # delivered, not yet acked
        self.changed = asyncio.Event()  # set when something is sent, or the queue goes


class LoopbackTransport(Transport):
    """Named FIFO queues in memory, every message serialized with the wire format.

    `encoded` and `decoded` count the messages that went through `envelope.encode` and
    `envelope.decode`.
    """

    in_process = False

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self.encoded = 0
        self.decoded = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def pending(self, queue: str) -> int:
        """Deliveries of `queue` received and not yet acked."""
        q = self._queues.get(queue)
        return 0 if q is None else len(q.pending)

    def _open(self, queue: str) -> _Queue:
        if self._closed:
            raise TransportError("the loopback transport is closed")
        q = self._queues.get(queue)
        if q is None:
            q = self._queues[queue] = _Queue()
        return q

    async def send(self, queue: str, messages: Sequence[Any]) -> None:
        q = self._open(queue)
        for message in messages:
            data = envelope.encode(message)
            self.encoded += 1
            q.ready.append((str(next(self._ids)), data))
        if messages:
            q.changed.set()

    async def receive(self, queue: str, *, max_messages: int = 0, timeout: float | None = None) -> list[Delivery]:
        try:
            async with asyncio.timeout(timeout):
                q = self._open(queue)
                while not q.ready:
                    q.changed.clear()
                    await q.changed.wait()
                    q = self._open(queue)  # closed (raises) or discarded (a fresh queue) meanwhile
        except TimeoutError:
            return []
        count = len(q.ready) if max_messages <= 0 else min(max_messages, len(q.ready))
        out = []
        for _ in range(count):
            ident, data = q.ready.popleft()
            q.pending[ident] = data
            out.append(Delivery(ident, envelope.decode(data)))
            self.decoded += 1
        return out

    async def ack(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        q = self._queues.get(queue)
        if q is not None:
            for d in deliveries:
                q.pending.pop(d.id, None)

    async def discard(self, queue: str) -> None:
        q = self._queues.pop(queue, None)
        if q is not None:
            q.changed.set()  # its waiters move to a fresh queue of the same name

    async def aclose(self) -> None:
        self._closed = True
        queues, self._queues = self._queues, {}
        for q in queues.values():
            q.changed.set()  # pending receives raise TransportError

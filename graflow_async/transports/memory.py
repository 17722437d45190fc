"""The in-memory transport: one mailbox per queue, messages passed by reference."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from graflow_async.actors.mailbox import MailboxClosed, MailboxReceiver, MailboxSender, open_mailbox
from graflow_async.exceptions import TransportError
from graflow_async.transports.base import Delivery, Transport

_NO_ID = ""  # nothing to settle: acks are no-ops in memory


class MemoryTransport(Transport):
    """Queues in this process. `maxsize` bounds each queue; senders wait when full.

    Messages are not copied or serialized; acks settle nothing (a process that dies
    takes its queues with it).
    """

    in_process = True

    def __init__(self, maxsize: float = 65536) -> None:
        self.maxsize = maxsize
        self._queues: dict[str, tuple[MailboxSender[Any], MailboxReceiver[Any]]] = {}
        self._closed = False
        self._consumers: dict[str, Callable[[Sequence[Any]], None]] = {}

    def _queue(self, name: str) -> tuple[MailboxSender[Any], MailboxReceiver[Any]]:
        q = self._queues.get(name)
        if q is None:
            if self._closed:
                raise TransportError("the memory transport is closed")
            q = self._queues[name] = open_mailbox(self.maxsize)
        return q

    async def send(self, queue: str, messages: Sequence[Any]) -> None:
        consumer = self._consumers.get(queue)
        if consumer is not None:
            consumer(messages)
            return
        sender = self._queue(queue)[0]
        try:
            for m in messages:
                await sender.send(m)
        except MailboxClosed:
            raise TransportError(f"queue {queue!r} is closed") from None

    def send_nowait(self, queue: str, messages: Sequence[Any]) -> bool:
        consumer = self._consumers.get(queue)
        if consumer is None:
            return False
        consumer(messages)
        return True

    async def receive(self, queue: str, *, max_messages: int = 0, timeout: float | None = None) -> list[Delivery]:
        receiver = self._queue(queue)[1]
        try:
            if timeout is None:
                batch = await receiver.receive_batch(max_messages)
            else:
                try:
                    async with asyncio.timeout(timeout):
                        batch = await receiver.receive_batch(max_messages)
                except TimeoutError:
                    return []
        except MailboxClosed:
            raise TransportError(f"queue {queue!r} is closed") from None
        return [Delivery(_NO_ID, m) for m in batch]

    def attach(self, queue: str, consumer: Callable[[Sequence[Any]], None]) -> Callable[[], None]:
        """Deliver `queue`'s messages to `consumer` as they are sent (after what is queued)."""
        if queue in self._consumers:
            raise TransportError(f"queue {queue!r} already has a consumer attached")
        receiver = self._queue(queue)[1]
        queued = []
        while len(receiver):
            queued.append(receiver.receive_nowait())
        if queued:
            consumer(queued)
        self._consumers[queue] = consumer

        def detach() -> None:
            if self._consumers.get(queue) is consumer:
                del self._consumers[queue]

        return detach

    def inbox(self, queue: str) -> MailboxReceiver[Any]:
        return self._queue(queue)[1]  # the mailbox itself: nothing to settle

    @property
    def closed(self) -> bool:
        return self._closed

    async def ack(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        return None

    async def discard(self, queue: str) -> None:
        self._consumers.pop(queue, None)
        q = self._queues.pop(queue, None)
        if q is not None:
            q[0].close()

    async def aclose(self) -> None:
        self._closed = True
        self._consumers.clear()
        for sender, _ in self._queues.values():
            sender.close()
        self._queues.clear()

"""The executor's mailbox: its task queue on its transport.

In this process (the memory transport) the queue is the executor's alone, and its
messages are handed over as they are sent (`attach`): the executor starts each batch
in its sender's turn. On a worker the queue is shared, and the executor reads it
(`receive_batch`): as many deliveries as it has room for, waiting at most `POLL`
seconds at a time. No error of the queue ends a worker (it is a server): a read that
fails is tried again with backoff, and an outage is logged once when it begins and
once when it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from graflow_async.actors import MailboxClosed
from graflow_async.clock import Backoff
from graflow_async.logs import LibraryLog, Outage
from graflow_async.transports.base import Delivery, Transport

log = LibraryLog()
POLL = 1.0  # seconds a read waits for tasks before it is made again


class TaskQueue:
    """`queue` of `transport` as an executor's `Inbox` of `Delivery` (and, in-process, a
    `HandOver` of task messages). `close` ends it, cutting a read in progress short."""

    __slots__ = ("_backoff", "_closed", "_outage", "_receiving", "queue", "transport")

    def __init__(self, transport: Transport, queue: str) -> None:
        self.transport = transport
        self.queue = queue
        self._closed = False
        self._receiving: asyncio.Future[list[Delivery]] | None = None
        self._outage = Outage(log, f"the task queue {queue!r}")
        self._backoff = Backoff(0.1, 5.0)

    def attach(self, consumer: Callable[[Sequence[Any]], None]) -> Callable[[], None] | None:
        """Hand the queue's messages to `consumer` as they are sent, when the queue is this
        process's alone; None for a queue that workers share."""
        if not self.transport.in_process:
            return None
        return self.transport.attach(self.queue, consumer)

    async def receive_batch(self, max_items: int = 0) -> list[Delivery]:
        """The next deliveries (at most `max_items` when > 0; none after `POLL` seconds
        without any); `MailboxClosed` once closed. A failed read is waited out (see
        `failed`); TransportError once the transport is closed."""
        while True:
            if self._closed:
                raise MailboxClosed
            try:
                return await self._receive(max_items)
            except (MailboxClosed, asyncio.CancelledError):
                raise
            except Exception as exc:  # what was not taken stays pending: delivered again after its lease
                if self.transport.closed:
                    raise
                await self.failed(exc)

    async def _receive(self, max_items: int) -> list[Delivery]:
        receiving = asyncio.ensure_future(self.transport.receive(self.queue, max_messages=max_items, timeout=POLL))
        self._receiving = receiving
        try:
            return await receiving
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._closed and receiving.cancelled() and not (current is not None and current.cancelling()):
                raise MailboxClosed from None  # `close` cut the read short
            raise
        finally:
            self._receiving = None

    async def failed(self, error: Exception) -> None:
        """The queue failed (`error`): say so once per outage, then wait before the next try."""
        self._outage.begin(error, queue=self.queue)
        await self._backoff.sleep()

    def succeeded(self) -> None:
        """The queue works (again): say so if it had failed."""
        if self._outage.active:
            self._outage.end(queue=self.queue)
            self._backoff.reset()

    def close(self) -> None:
        self._closed = True
        if self._receiving is not None:
            self._receiving.cancel()  # stop claiming now, not when the current read ends

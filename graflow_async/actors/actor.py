"""Actors: state plus a loop over a mailbox.

An actor handles one batch of messages at a time, so its state needs no locks.
Subclass `Actor`, implement `on_batch` (or `on_message`), and run it as a child of a
`Supervisor` over its mailbox: ``sup.spawn(actor.run(inbox))``. The mailbox is any
`Inbox`: a `MailboxReceiver` (whose `MailboxSender` others hold), or a transport queue.
The loop ends when the mailbox is closed and drained, when the actor calls `stop()`,
or when its task is cancelled (an actor that is handed its messages, below, runs until
one of the last two).

An actor whose handling never awaits may also define `take`, and be handed its
messages instead of reading them: when its inbox can hand messages over
(`HandOver.attach`, as an in-process transport queue does), `run` attaches `take` and
each batch is handled in its sender's turn. Still one batch at a time and in order (a
synchronous call cannot interleave with another), and one wake-up of the actor fewer
per batch: this is the in-process executor's hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from graflow_async.actors.mailbox import MailboxClosed

M = TypeVar("M")
M_co = TypeVar("M_co", covariant=True)


class Inbox(Protocol[M]):
    """Where an actor's messages come from: a `MailboxReceiver`, or a transport queue
    (`Transport.inbox`). `receive_batch` raises `MailboxClosed` when nothing more will come."""

    async def receive_batch(self, max_items: int = 0) -> list[M]: ...

    def close(self) -> None: ...


class HandOver(Protocol[M_co]):
    """An inbox that can hand its messages to a consumer as they are sent (an in-process
    transport queue). `attach` returns the function that detaches the consumer, or None
    when this inbox cannot hand over now (the actor then reads it)."""

    def attach(self, consumer: Callable[[Sequence[M_co]], None]) -> Callable[[], None] | None: ...


class Actor(Generic[M]):
    """Base class. Override `on_batch` (or `on_message`); optionally `on_start`, `on_stop`,
    `batch_limit`, and `take` (see the module docstring).

    `on_batch` receives everything queued in one wake-up (cheaper under fan-in); by
    default it hands the messages to `on_message` one at a time.
    """

    #: handles a batch without awaiting, in the sender's turn (None: the actor reads its inbox)
    take: Callable[[Sequence[M]], None] | None = None
    _stopping: bool = False
    _stopped: asyncio.Future[None] | None = None

    async def on_start(self) -> None:
        """Called once before the first message."""

    async def on_message(self, message: M) -> None:
        raise NotImplementedError

    async def on_batch(self, messages: list[M]) -> None:
        for message in messages:
            await self.on_message(message)
            if self._stopping:
                return

    async def on_stop(self) -> None:
        """Called once when the loop ends (also on error or cancellation)."""

    def batch_limit(self) -> int:
        """The most messages the next batch may hold (0: everything queued)."""
        return 0

    def stop(self) -> None:
        """End the loop once the current batch is handled; the rest stays unread."""
        self._stopping = True
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def run(self, inbox: Inbox[M]) -> None:
        """The actor over `inbox`, until it is closed or the actor stops: handed its
        messages when it has a `take` and `inbox` can hand them over, else reading them."""
        try:
            await self.on_start()
            attach = getattr(inbox, "attach", None) if self.take is not None else None
            detach = attach(self.take) if attach is not None else None
            if detach is not None:
                try:
                    await self._until_stopped()
                finally:
                    detach()
                return
            while not self._stopping:
                try:
                    batch = await inbox.receive_batch(self.batch_limit())
                except MailboxClosed:
                    return
                await self.on_batch(batch)
        finally:
            inbox.close()
            await self.on_stop()

    async def _until_stopped(self) -> None:
        if self._stopping:
            return
        self._stopped = asyncio.get_running_loop().create_future()
        await self._stopped

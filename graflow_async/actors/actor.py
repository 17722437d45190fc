"""Actors: state plus a loop over a mailbox, reached only through an `ActorRef`.

An actor handles one message at a time, so its state needs no locks. Subclass
`Actor`, implement `on_message`, and start it with `Supervisor.spawn_actor`, which
gives it a mailbox and hands back the ref. The loop ends when the mailbox is closed
(``ref.stop()``) and drained, or when the actor calls `self.stop()`.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from graflow_async.actors.mailbox import MailboxClosed, MailboxSender

M = TypeVar("M")
class Inbox(Protocol[M]):
    """Where an actor's messages come from: a `MailboxReceiver`, or a transport queue
    (`Transport.inbox`). `receive_batch` raises `MailboxClosed` when nothing more will come."""

    async def receive_batch(self, max_items: int = 0) -> list[M]: ...

    def close(self) -> None: ...


class ActorRef(Generic[M]):
    """The address of an actor: the send end of its mailbox, and a name for logs."""

    __slots__ = ("_sender", "name")

    def __init__(self, sender: MailboxSender[M], name: str) -> None:
        self._sender = sender
        self.name = name

    def tell(self, message: M) -> None:
        """Deliver now; raises `MailboxFull` or `MailboxClosed` instead of waiting."""
        self._sender.send_nowait(message)

    async def send(self, message: M) -> None:
        """Deliver, waiting while the mailbox is full; `MailboxClosed` if the actor stopped."""
        await self._sender.send(message)

    def stop(self) -> None:
        """Close the mailbox: the actor handles what is queued, then its loop ends."""
        self._sender.close()

    @property
    def stopped(self) -> bool:
        return self._sender.closed

    def __repr__(self) -> str:
        return f"<ActorRef {self.name}>"


class Actor(Generic[M]):
    """Base class. Override `on_message` (or `on_batch`); optionally `on_start`, `on_stop`.

    `on_batch` receives everything queued in one wake-up (cheaper under fan-in); by
    default it hands the messages to `on_message` one at a time.
    """

    ref: ActorRef[M] | None = None
    _stopping: bool = False

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

    def stop(self) -> None:
        """End the loop once the current message is handled; the rest stays unread."""
        self._stopping = True

    async def run(self, inbox: Inbox[M]) -> None:
        """The actor loop. `Supervisor.spawn_actor` runs it; so can any owner of `inbox`."""
        try:
            await self.on_start()
            while not self._stopping:
                try:
                    batch = await inbox.receive_batch()
                except MailboxClosed:
                    return
                await self.on_batch(batch)
        finally:
            inbox.close()
            await self.on_stop()

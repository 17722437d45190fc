"""Mailboxes: bounded FIFO queues with a send end and a receive end.

``open_mailbox(maxsize)`` returns ``(sender, receiver)``. The actor that owns a
mailbox keeps the receiver; everyone else holds a sender. Closing the mailbox
(``close()`` on either end) wakes the receiver, which drains what is left and then gets
`MailboxClosed`; senders get `MailboxClosed` at once.

Why not ``asyncio.Queue`` or anyio memory streams? Both would do, but this is the
hot path of every task: anyio's ``receive`` always yields to the loop once more, and
neither lets a receiver take everything queued in one wake-up (``receive_batch``),
which is what lets an actor absorb a fan-in of 10,000 messages with a handful of
wake-ups. The whole thing is a deque and at most one waiting future per side.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class MailboxClosed(Exception):
    """The mailbox was closed: nothing more can be sent, and nothing is left to receive."""


class MailboxFull(Exception):
    """``send_nowait`` on a mailbox that holds `maxsize` messages."""


class _State(Generic[T]):
    __slots__ = ("closed", "items", "maxsize", "receiver_waiter", "sender_waiters")

    def __init__(self, maxsize: float) -> None:
        self.items: deque[T] = deque()
        self.maxsize = maxsize
        self.closed = False
        self.receiver_waiter: asyncio.Future[None] | None = None
        self.sender_waiters: deque[asyncio.Future[None]] = deque()

    def wake_receiver(self) -> None:
        waiter = self.receiver_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake_senders(self) -> None:
        free = self.maxsize - len(self.items)
        while self.sender_waiters and free > 0:
            waiter = self.sender_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.wake_receiver()
        for waiter in self.sender_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.sender_waiters.clear()


class MailboxSender(Generic[T]):
    """The send end. Cheap to share; every holder sends into the same mailbox."""

    __slots__ = ("_state",)

    def __init__(self, state: _State[T]) -> None:
        self._state = state

    def send_nowait(self, message: T) -> None:
        """Queue `message` now; `MailboxFull` if the mailbox is full, `MailboxClosed` if closed."""
        state = self._state
        if state.closed:
            raise MailboxClosed
        if len(state.items) >= state.maxsize:
            raise MailboxFull
        state.items.append(message)
        state.wake_receiver()

    async def send(self, message: T) -> None:
        """Queue `message`, waiting while the mailbox is full (backpressure)."""
        state = self._state
        while len(state.items) >= state.maxsize and not state.closed:
            waiter = asyncio.get_running_loop().create_future()
            state.sender_waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                state.wake_senders()  # pass our turn on
                raise
        self.send_nowait(message)

    def close(self) -> None:
        """Close the mailbox; the receiver drains what is queued, then sees `MailboxClosed`."""
        self._state.close()

    @property
    def closed(self) -> bool:
        return self._state.closed


class MailboxReceiver(Generic[T]):
    """The receive end, owned by exactly one consumer (an actor's loop)."""

    __slots__ = ("_state",)

    def __init__(self, state: _State[T]) -> None:
        self._state = state

    async def _wait(self) -> None:
        state = self._state
        while not state.items:
            if state.closed:
                raise MailboxClosed
            if state.receiver_waiter is not None:
                raise RuntimeError("a mailbox has one receiver; another task is already waiting")
            waiter = asyncio.get_running_loop().create_future()
            state.receiver_waiter = waiter
            try:
                await waiter
            finally:
                state.receiver_waiter = None

    async def receive(self) -> T:
        """The next message, waiting for one; `MailboxClosed` once closed and drained."""
        await self._wait()
        state = self._state
        message = state.items.popleft()
        if state.sender_waiters:
            state.wake_senders()
        return message

    async def receive_batch(self, max_items: int = 0) -> list[T]:
        """Every queued message (at most `max_items` when > 0), waiting for at least one."""
        await self._wait()
        state = self._state
        items = state.items
        if max_items <= 0 or len(items) <= max_items:
            batch = list(items)
            items.clear()
        else:
            batch = [items.popleft() for _ in range(max_items)]
        if state.sender_waiters:
            state.wake_senders()
        return batch

    def receive_nowait(self) -> T:
        """The next message if one is queued; `MailboxClosed` if closed and empty.

        Raises `asyncio.QueueEmpty` when open and empty.
        """
        state = self._state
        if not state.items:
            if state.closed:
                raise MailboxClosed
            raise asyncio.QueueEmpty
        message = state.items.popleft()
        if state.sender_waiters:
            state.wake_senders()
        return message

    def close(self) -> None:
        self._state.close()

    def __len__(self) -> int:
        return len(self._state.items)


def open_mailbox(maxsize: float = math.inf) -> tuple[MailboxSender[T], MailboxReceiver[T]]:
    """A new mailbox holding at most `maxsize` messages (``math.inf``: unbounded)."""
    if not maxsize > 0:
        raise ValueError(f"maxsize must be > 0, got {maxsize!r}")
    state: _State[T] = _State(maxsize)
    return MailboxSender(state), MailboxReceiver(state)

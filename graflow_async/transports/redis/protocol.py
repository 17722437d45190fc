"""One Redis connection speaking RESP2 through hiredis (redis-py's own C parser and
packer), as an asyncio protocol: commands written whole, answers handed to their
waiters in order.

What the server sends is not trusted: bytes that are not RESP, an answer nobody asked
for, or an unfinished answer past `max_reply_bytes` (a ``$99999999999`` length, say)
break the connection at once, failing its waiters with `MalformedReply`; it is never
read again. Nor is its silence: each command is sent with the time its answer may
take, and a watchdog (one timer per connection, not one per command) closes the
connection, failing its waiters with `Unavailable`, once the oldest answer is late.
hiredis bounds the nesting depth of an answer itself. An error reply is handed over as
a `ReplyError` value in its place, not raised: the layer above decides what it means.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis

from graflow_async.transports.redis.errors import MalformedReply, ReplyError, Unavailable

#: an answer still incomplete past this many buffered bytes is taken for garbage
MAX_REPLY_BYTES = 256 * 1024 * 1024


class LeanConnection(asyncio.Protocol):
    """One connection; `send` pipelines commands onto it without a lock."""

    def __init__(self, max_reply_bytes: int = MAX_REPLY_BYTES) -> None:
        self._reader = hiredis.Reader(protocolError=MalformedReply, replyError=ReplyError)
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._deadlines: deque[float] = deque()  # of each waiter, in the same order
        self._watchdog: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self._max_reply_bytes = max_reply_bytes
        self._unanswered = 0  # bytes fed since the last complete answer (about)
        self.broken = False
        self.client_id: int | None = None  # the server's id for it, when asked (CLIENT ID)
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # done once closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        self._unanswered += len(data)
        waiters = self._waiters
        while True:
            try:
                answer = reader.gets()
            except MalformedReply as exc:
                self._fail(MalformedReply(f"Redis sent bytes that are not a reply: {exc}"))
                return
            if answer is False:
                # hiredis keeps the finished parts of an unfinished answer as objects, not
                # bytes: count what was fed, not what it still buffers
                if self._unanswered > self._max_reply_bytes:
                    self._fail(MalformedReply(f"a Redis reply over {self._max_reply_bytes} bytes"))
                return
            self._unanswered = reader.len()
            if not waiters:  # an answer nobody asked for: the stream is out of step
                self._fail(MalformedReply("Redis sent an answer nobody asked for"))
                return
            waiter = waiters.popleft()
            self._deadlines.popleft()
            if not waiter.done():  # a caller that gave up leaves its place, and it is skipped
                waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(Unavailable(f"Redis closed the connection: {exc or 'end of stream'}"))
        if not self.gone.done():
            self.gone.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.broken = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._deadlines.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
        if self._transport is not None:
            self._transport.close()

    def send(self, commands: Sequence[tuple[Any, ...]], within: float) -> list[asyncio.Future[Any]]:
        """Write `commands` in one write; a future per answer (an error answer is a
        `ReplyError` as the future's result, not raised). Answers later than `within`
        seconds fail them all with `Unavailable`, and the connection."""
        if self.broken or self._transport is None or self._transport.is_closing():
            raise Unavailable("the Redis connection is closed")
        data = b"".join([hiredis.pack_command(command) for command in commands])
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._waiters.extend(futures)
        self._deadlines.extend([loop.time() + within] * len(futures))
        if self._watchdog is None:
            self._watchdog = loop.call_at(self._deadlines[0], self._watch)
        self._transport.write(data)
        return futures

    def _watch(self) -> None:
        """The oldest answer is due: late, the connection goes; else look again when the
        oldest one still awaited is due."""
        self._watchdog = None
        if not self._deadlines:
            return
        loop = asyncio.get_running_loop()
        if self._deadlines[0] <= loop.time():
            self._fail(Unavailable("Redis did not answer in time"))
            return
        self._watchdog = loop.call_at(self._deadlines[0], self._watch)

    def close(self) -> None:
        self._fail(Unavailable("the Redis connection was closed"))

    def abort(self) -> None:
        """Close at once, dropping whatever is unwritten (the server may never read it)."""
        self._fail(Unavailable("the Redis connection was closed"))
        if self._transport is not None:
            self._transport.abort()

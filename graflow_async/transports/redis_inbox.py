"""The inbox of a run (or of a worker's context answers) on a Redis stream.

A stream with one reader needs no consumer group: the inbox reads it with XREAD from
where it left off. It checks every entry's signature before decoding it, and notices
when its stream has vanished (a Redis restart without persistence): it makes the stream
again and hands its reader `QueueLost`, so that the reader sends again what it awaits
answers for.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from ..actors.mailbox import MailboxClosed
from ..events import LibraryLog
from ..exceptions import TransportError
from ..messages import QueueLost
from .redis_lean import entries
from .redis_util import text
from .wire import MalformedMessage

if TYPE_CHECKING:
    from .redis_streams import RedisStreamsTransport

log = LibraryLog()
POLL_MS = 500
CHECK_EVERY = 1.0  # seconds of silence between checks that the stream still exists


class ReplyInbox:
    """The `Inbox` of a run on a reply stream: batches of messages, in order."""

    def __init__(self, transport: RedisStreamsTransport, queue: str) -> None:
        self.transport = transport
        self.queue = queue
        self.stream = transport.keys.stream(queue)
        self.last_id: Any = "0"
        self._closed = False
        self._checked = time.monotonic()

    async def receive_batch(self, max_items: int = 0) -> list[Any]:
        while True:
            if self._closed or self.transport.closed:
                raise MailboxClosed
            found = await self._read(max_items)
            if found:
                self.last_id = found[-1][0]
                batch = self._decoded(found)
                if batch:
                    return batch
            elif time.monotonic() - self._checked >= CHECK_EVERY:
                self._checked = time.monotonic()
                if await self.transport.remake_if_lost(self.stream):
                    self.last_id = "0"
                    return [QueueLost(self.queue)]

    async def _read(self, max_items: int) -> list[tuple[Any, dict[bytes, bytes]]]:
        transport = self.transport
        try:
            answer = await transport._call("XREAD", functools.partial(
                transport.blocking, "XREAD", "COUNT", max_items or 512, "BLOCK", POLL_MS, "STREAMS",
                self.stream, self.last_id))
        except TransportError:
            if transport.closed:
                raise MailboxClosed from None
            raise
        return entries(answer)

    def _decoded(self, found: list[tuple[Any, dict[bytes, bytes]]]) -> list[Any]:
        batch = []
        for entry_id, fields in found:
            try:
                batch.append(self.transport.opened(self.stream, fields))
            except MalformedMessage as exc:  # never fatal for the reader
                log.warning("dropped a reply", stream=self.stream, id=text(entry_id), reason=str(exc))
        return batch

    def close(self) -> None:
        self._closed = True

"""The inboxes of a transport's single-reader streams, read by one XREAD.

A run's reply stream and a worker's context stream each have one reader, so they need
no consumer group: one task per transport reads every such stream with a single
blocking ``XREAD ... STREAMS s1 s2 ...`` from where each left off, and hands what it
reads to each stream's inbox. A web app driving 200 runs holds one blocking connection
for all their replies, not 200. A stream added while the read blocks cuts it short, so
a new run's first reply is not held up.

Between reads, about once a second, it checks what a run cannot see by itself:
- a stream that has been silent and has vanished (a Redis restart without persistence)
  is made again, and its inbox is handed `QueueLost`, so the run sends again what it
  awaits;
- task entries this transport sent (`Sent`) that are still unanswered a lease after
  they were sent are looked up: one that no longer exists and whose reply has not come
  after one more read is handed to its run as `TasksLost` (an XADD answered with
  success whose entry never reached the stream: a failover to a replica that missed it).

A run whose tasks stay unanswered past their lease while their entries are still there
may be waiting for replies Redis refuses to take (a worker's XADD under ``maxmemory``
with noeviction): the reader then probes whether Redis takes writes (an XADD with
NOMKSTREAM to a key that never exists); refused for `PATIENCE` seconds in a row, the
refusal goes to those runs as `QueueFailed`.

Outages are waited out by the connection layer. A refusal of the read (``WRONGTYPE``:
a stream's key was overwritten) is pinned on the stream(s) it concerns, whose inboxes get
`QueueFailed`; any other error that lasts `PATIENCE` seconds is handed to every inbox as
`QueueFailed` (a run fails with it; an executor keeps waiting) while reading goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from graflow_async.actors.mailbox import MailboxClosed, MailboxReceiver, MailboxSender, open_mailbox
from graflow_async.clock import Backoff, current_clock
from graflow_async.exceptions import TransportError
from graflow_async.logs import LibraryLog, Outage, as_text
from graflow_async.transports.redis import replies
from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.transports.redis.entries import Entries
from graflow_async.transports.redis.errors import Refused
from graflow_async.transports.redis.lean import Interrupt
from graflow_async.transports.redis.sent import CHECK_EVERY, Key, Sent
from graflow_async.wire.envelope import MalformedMessage
from graflow_async.wire.messages import Delivered, QueueFailed, QueueLost, TaskReply, TasksLost

log = LibraryLog()
POLL_MS = 500
PATIENCE = 8.0  # seconds a read (or, while runs wait, a write) may keep being refused before its readers are told
Consumer = Callable[[list[Any]], None]


class Subscription:
    """One stream read for one consumer: `consume` takes each batch as it arrives (and
    must not block). When the transport closes, `on_close` is called, or else the
    consumer is handed `QueueFailed`."""

    def __init__(
        self,
        reader: StreamReader,
        queue: str,
        stream: str,
        consume: Consumer,
        on_close: Callable[[], None] | None = None,
        marks: bool = False,
    ) -> None:
        self.reader = reader
        self.queue = queue
        self.stream = stream.encode()
        self.consume = consume
        self.on_close = on_close
        self.last_id: bytes = b"0"
        self.heard = current_clock().time()
        self.told_failure = False
        self.unreadable = False  # its key holds something else: left out of the reads
        self.marks = marks  # each batch ends with `Delivered` (a run's replies)

    def deliver(self, messages: list[Any]) -> None:
        try:
            self.consume(messages)
        except Exception as exc:  # a consumer's bug must not stop the reading of the others
            log.warning("a reply consumer failed", queue=self.queue, error=repr(exc))

    def closed_under(self) -> None:
        """The transport closed while this subscription was on."""
        if self.on_close is not None:
            self.on_close()
        else:
            self.deliver([QueueFailed(self.queue, TransportError("the Redis transport was closed"))])

    def close(self) -> None:
        self.reader.unsubscribe(self)


class StreamInbox:
    """A stream as the `Inbox` of its one reader: batches of messages, in order."""

    def __init__(self, reader: StreamReader, queue: str, stream: str) -> None:
        self._sender: MailboxSender[Any]
        self._receiver: MailboxReceiver[Any]
        self._sender, self._receiver = open_mailbox()
        self.queue = queue
        self.subscription = reader.subscribe(queue, stream, self._take, self._sender.close)

    def _take(self, messages: list[Any]) -> None:
        send = self._sender.send_nowait
        try:
            for message in messages:
                send(message)
        except MailboxClosed:
            pass

    async def receive_batch(self, max_items: int = 0) -> list[Any]:
        return await self._receiver.receive_batch(max_items)

    def close(self) -> None:
        self._sender.close()
        self.subscription.close()


class StreamReader:
    """Reads every subscribed stream of one transport (see the module's docstring)."""

    def __init__(self, conn: RedisConnection, entries: Entries, make_stream: Any, probe_key: str) -> None:
        self.conn = conn
        self.entries = entries
        self._probe_key = probe_key
        self._overdue: set[str] = set()  # queues awaiting tasks unanswered past their lease
        self._refused_since: float | None = None
        self.sent = Sent()
        self._make_stream = make_stream  # async (stream) -> None: makes it exist again
        self._inboxes: dict[str, Subscription] = {}  # by queue
        self._task: asyncio.Task[None] | None = None
        self._ending: set[asyncio.Task[None]] = set()  # cancelled, not yet done
        self._interrupt = Interrupt()
        self._checked = 0.0
        self._outage = Outage(log, "reading replies from redis")

    def subscribe(
        self,
        queue: str,
        stream: str,
        consume: Consumer,
        on_close: Callable[[], None] | None = None,
        *,
        marks: bool = False,
    ) -> Subscription:
        """Read `stream` (the stream of `queue`) from its start for `consume`; a queue has
        one subscription at a time (a new one replaces the old). `marks`: end each batch
        with a `Delivered` naming the last entry read."""
        inbox = Subscription(self, queue, stream, consume, on_close, marks)
        old = self._inboxes.get(queue)
        self._inboxes[queue] = inbox
        if old is not None:
            old.closed_under()
        if self._task is None:
            self._interrupt = Interrupt()
            self._task = asyncio.ensure_future(self._run(self._interrupt))
        else:
            self._interrupt.interrupt()  # the read in flight does not know this stream yet
        return inbox

    def unsubscribe(self, inbox: Subscription) -> None:
        if self._inboxes.get(inbox.queue) is inbox:
            del self._inboxes[inbox.queue]
        if not self._inboxes and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)

    async def settled(self) -> None:
        """Wait until reading tasks that were stopped have ended."""
        if self._ending:
            await asyncio.gather(*self._ending, return_exceptions=True)

    async def aclose(self) -> None:
        for inbox in list(self._inboxes.values()):
            inbox.closed_under()
            inbox.close()
        await self.settled()

    async def _run(self, interrupt: Interrupt) -> None:
        backoff = Backoff(0.1, 5.0)
        failing_since: float | None = None
        while self._inboxes:
            try:
                await self._read(interrupt)
                await self._check()
            except TransportError as exc:
                if self.conn.closed:
                    break
                now = current_clock().time()
                failing_since = now if failing_since is None else failing_since
                self._outage.begin(exc, streams=len(self._inboxes))
                failing = now - failing_since
                if not await self._pin(exc) and failing >= PATIENCE:
                    self._fail_all(exc)
                # the readers hear of it at PATIENCE, not at the first retry after it
                wait = backoff.next() if failing >= PATIENCE else min(backoff.next(), PATIENCE - failing)
                await current_clock().sleep(wait)
                continue
            if failing_since is not None:
                failing_since = None
                backoff.reset()
                self._outage.end()
        for inbox in list(self._inboxes.values()):  # the transport closed under them
            inbox.closed_under()
            inbox.close()

    async def _read(self, interrupt: Interrupt) -> None:
        inboxes = [i for i in self._inboxes.values() if not i.unreadable]
        if not inboxes:
            await current_clock().sleep(POLL_MS / 1000)
            return
        found = await self.conn.blocking(
            "XREAD",
            "COUNT",
            512,
            "BLOCK",
            POLL_MS,
            "STREAMS",
            *[i.stream for i in inboxes],
            *[i.last_id for i in inboxes],
            interrupt=interrupt,
            parse=replies.streams,
            block_ms=POLL_MS,
        )
        now = current_clock().time()
        by_stream = {i.stream: i for i in inboxes}
        for name, items in found.items():
            inbox = by_stream.get(name)
            if inbox is None or not items or self._inboxes.get(inbox.queue) is not inbox:
                continue
            inbox.last_id, inbox.heard = items[-1][0], now
            batch = self._opened(inbox, items)
            if inbox.marks:
                batch.append(Delivered(inbox.queue, inbox.last_id))
            inbox.deliver(batch)

    def _opened(self, inbox: Subscription, items: list[replies.Entry]) -> list[Any]:
        batch, stream = [], inbox.stream.decode()
        for entry_id, fields in items:
            try:
                message = self.entries.opened(stream, fields)
            except MalformedMessage as exc:  # never fatal for the reader
                log.warning("dropped a reply", stream=stream, id=as_text(entry_id), reason=str(exc))
                continue
            if type(message) is TaskReply:
                self.sent.settle(inbox.queue, (message.node, message.cycle, message.attempt))
            batch.append(message)
        return batch

    async def _check(self) -> None:
        now = current_clock().time()
        if now - self._checked < CHECK_EVERY:
            return
        self._checked = now
        silent = [i for i in self._inboxes.values() if now - i.heard >= CHECK_EVERY and not i.unreadable]
        if silent:
            there = await self.conn.pipeline([("EXISTS", i.stream) for i in silent])
            for inbox, exists in zip(silent, there, strict=True):
                inbox.heard = now
                if exists == 0 and self._inboxes.get(inbox.queue) is inbox:
                    log.warning(
                        "a stream vanished (a Redis restart without persistence?): making it again",
                        stream=inbox.stream.decode(),
                    )
                    await self._make_stream(inbox.stream.decode())
                    inbox.last_id = b"0"
                    inbox.deliver([QueueLost(inbox.queue)])
        await self._look_up_sent(now)
        await self._probe(now)

    async def _look_up_sent(self, now: float) -> None:
        due = self.sent.due(now)
        if not due:
            return
        found = await self.conn.pipeline(
            [("XRANGE", stream, i, i) for _, _, stream, i, _ in due], parse=replies.entries
        )
        lost: dict[str, list[Key]] = {}
        for item, answer in zip(due, found, strict=True):
            if isinstance(answer, Exception):
                raise answer
            if self.sent.looked_up(item, bool(answer), now):
                lost.setdefault(item[0], []).append(item[1])
            elif answer:
                self._overdue.add(item[0])
        for queue, keys in lost.items():
            log.warning(
                "task entries vanished from Redis unanswered; their run sends them again", queue=queue, count=len(keys)
            )
            inbox = self._inboxes.get(queue)
            if inbox is not None:
                inbox.deliver([TasksLost(queue, tuple(keys))])

    async def _probe(self, now: float) -> None:
        """While runs wait past their tasks' leases, learn whether Redis refuses writes."""
        self._overdue = {q for q in self._overdue if self.sent.waiting(q) and q in self._inboxes}
        if not self._overdue:
            self._refused_since = None
            return
        answer = await self.conn.once("XADD", self._probe_key, "NOMKSTREAM", "*", "probe", "1")
        if not isinstance(answer, Refused):
            self._refused_since = None
            return
        if self._refused_since is None:
            self._refused_since = now
            log.warning("Redis refuses writes while runs wait for replies", error=str(answer))
        if now - self._refused_since >= PATIENCE:
            for queue in self._overdue:
                error = TransportError(f"{answer} (for {PATIENCE:g}s, while the run waited for its tasks' replies)")
                self._inboxes[queue].deliver([QueueFailed(queue, error)])
            self._overdue.clear()

    async def _pin(self, exc: TransportError) -> bool:
        """A refusal that names a key's type is pinned on the streams that are not streams
        any more; their inboxes are told. True when that explains the failure."""
        if not (isinstance(exc, Refused) and exc.code == "WRONGTYPE"):
            return False
        inboxes = [i for i in self._inboxes.values() if not i.unreadable]
        kinds = await self.conn.pipeline([("TYPE", i.stream) for i in inboxes])
        bad = [
            (i, as_text(kind))
            for i, kind in zip(inboxes, kinds, strict=True)
            if as_text(kind) not in ("stream", "none")
        ]
        for inbox, kind in bad:
            error = TransportError(f"the key of queue {inbox.queue!r} holds a {kind}, not a stream: it was overwritten")
            inbox.unreadable = inbox.told_failure = True
            inbox.deliver([QueueFailed(inbox.queue, error)])
        return bool(bad)

    def _fail_all(self, exc: TransportError) -> None:
        for inbox in self._inboxes.values():
            if not inbox.told_failure:
                inbox.told_failure = True
                inbox.deliver([QueueFailed(inbox.queue, exc)])

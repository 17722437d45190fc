"""The Redis Streams transport: queues that outlive processes, for runs spread over workers.

The task queue is a stream ``<namespace>:tasks`` read through one consumer group, so an
entry goes to one worker and stays *pending* until acked. Workers ack a task after its
reply is written (in one MULTI/EXEC), extend their claim with heartbeats while it runs,
and reclaim entries whose claim lapsed (a dead worker's) once they have been idle for
the message's ``lease_timeout`` (`claims.py`). An entry delivered more than
``max_deliveries`` times, or one that is not a graflow-async envelope, goes to
``<namespace>:dead`` instead. A run's replies and a worker's context answers travel on
streams with one reader each, all read by one XREAD per transport (`reader.py`).

Every command goes through `RedisConnection` (`connection.py`), which waits out outages
and hands refusals to their sender; see there for the rules.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any

from graflow_async.clock import current_clock
from graflow_async.exceptions import TransportError
from graflow_async.logs import LibraryLog
from graflow_async.options import number, whole
from graflow_async.transports import keys
from graflow_async.transports.base import Delivery, Incarnation, Transport
from graflow_async.transports.redis import replies
from graflow_async.transports.redis.batch import Ack, Item, WriteBatcher, commands, needs_transaction
from graflow_async.transports.redis.claims import Claims
from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.transports.redis.entries import Entries
from graflow_async.transports.redis.errors import GroupsLost, Refused
from graflow_async.transports.redis.limits import RedisLimits
from graflow_async.transports.redis.owners import Owners
from graflow_async.transports.redis.priorities import PriorityStreams
from graflow_async.transports.redis.reader import POLL_MS, StreamInbox, StreamReader
from graflow_async.transports.redis.stats import task_queue_figures
from graflow_async.transports.redis.streams import RunStreams
from graflow_async.transports.signing import signer_for
from graflow_async.wire.envelope import MalformedMessage
from graflow_async.wire.messages import StreamItem, TaskMessage, TaskReply

log = LibraryLog()


class RedisStreamsTransport(Transport):
    """Queues as Redis streams (SPEC section 7). Use as ``async with``.

    `lease_timeout` and `max_deliveries` are stamped on every task this transport
    sends; workers honour the values carried by each task. `client` is used as is
    and not closed (it must not decode responses). `max_blocking` caps the
    connections held by blocking reads (one reads every reply stream; each task queue
    read by `receive` at once takes one more).
    """

    in_process = False
    keeps_journals = True
    keeps_streams = True

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        namespace: str = keys.DEFAULT_NAMESPACE,
        client: Any = None,
        lease_timeout: float = 30.0,
        max_deliveries: int = 5,
        connect_timeout: float = 5.0,
        consumer: str | None = None,
        max_connections: int = 32,
        max_blocking: int = 8,
        secret: str | bytes | Sequence[str | bytes] | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        lease_timeout = number("lease_timeout", lease_timeout, above=True)
        max_deliveries = whole("max_deliveries", max_deliveries, minimum=1)
        connect_timeout = number("connect_timeout", connect_timeout, above=True)
        max_connections = whole("max_connections", max_connections, minimum=1)
        max_blocking = whole("max_blocking", max_blocking, minimum=1)
        self.max_message_bytes = whole("max_message_bytes", max_message_bytes, minimum=1024)
        self.conn = RedisConnection(
            url,
            client=client,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            max_blocking=max_blocking,
        )
        self.url = self.conn.url
        self.keys = keys.Keys(namespace)
        self.namespace = namespace
        self.lease_timeout = float(lease_timeout)
        self.max_deliveries = int(max_deliveries)
        self.connect_timeout = connect_timeout
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.signer = signer_for(secret)  # None: entries are neither signed nor checked
        self.entries = Entries(self.signer, self.max_message_bytes, self.lease_timeout, self.max_deliveries)
        self.claims = Claims(self.conn, self.keys, self.consumer, self.entries)
        self.owners = Owners(self.conn, self.keys)
        self.reader = StreamReader(self.conn, self.entries, self._make_stream, self.keys.probe)
        self._groups: set[str] = set()
        self._writes = WriteBatcher(self._write_batch)
        self._limits = RedisLimits(self.conn, namespace)
        self.priorities = PriorityStreams(self.conn, self.keys, self.claims, self.consumer)
        self.streams = RunStreams(self.conn, self.keys, self._writes)

    # --- connection -------------------------------------------------------------------
    async def __aenter__(self) -> RedisStreamsTransport:
        await self.connect()
        return self

    async def connect(self) -> None:
        """Reach Redis once; `TransportError` naming the URL if that takes too long."""
        await self.conn.connect()

    @property
    def client(self) -> Any:
        """The redis-py client on the same server (for the feedback store's pub/sub)."""
        return self.conn.client

    @property
    def hot_path(self) -> str:
        """What carries the commands: "lean" (hiredis on asyncio protocol connections) or
        "redis-py" (a client given, TLS or RESP3)."""
        return self.conn.hot_path

    @property
    def closed(self) -> bool:
        return self.conn.closed

    async def stream_append(self, run_id: str, items: Sequence[tuple[str, int, Any]]) -> None:
        await self.streams.append(run_id, items)

    async def stream_end(self, run_id: str) -> None:
        await self.streams.end(run_id)

    def read_stream(self, run_id: str, after: str | None) -> AsyncIterator[StreamItem]:
        return self.streams.read(run_id, after)

    def limits(self) -> RedisLimits:
        """The limits of this namespace, on the server (`limits`)."""
        return self._limits

    async def aclose(self) -> None:
        if self.conn.closed:
            return
        await self._limits.aclose()
        await self.reader.aclose()
        await self.conn.aclose()

    # --- sending ----------------------------------------------------------------------
    async def send(self, queue: str, messages: Sequence[Any]) -> None:
        """XADD each message. A task's reply stream is made first; a refusal (``OOM``...)
        raises `Refused`, a `TransportError` naming it, after the others were sent."""
        _, refused = await self.send_after(None, [(queue, messages)])
        if refused is not None:
            raise refused

    async def send_after(
        self, first: tuple[Any, ...] | None, batches: Sequence[tuple[str, Sequence[Any]]]
    ) -> tuple[Any, Refused | None]:
        """Command `first` (a durable run's journal append), then the messages of each
        ``(queue, messages)`` of `batches`, in one round trip, in that order: `first`'s
        answer (a `Refused` as a value) and the first refusal of an XADD (the others were
        sent), both for the caller to judge."""
        if self.closed:
            raise TransportError("the Redis transport is closed")
        batch: list[tuple[Any, ...]] = [] if first is None else [first]
        sent: list[tuple[str, Any]] = []
        for queue, messages in batches:
            for m in messages:  # a task to the stream of its priority
                stream = self.keys.stream_at(queue, m.priority) if type(m) is TaskMessage else self.keys.stream(queue)
                batch.append(self.entries.xadd(stream, m))  # TypeError before anything is sent
                sent.append((stream, m))
            for reply_to in {m.reply_to for m in messages if isinstance(m, TaskMessage)}:
                await self._ensure_group(self.keys.stream(reply_to))
        answers = await self.conn.pipeline(batch, parse=replies.entry_id if first is None else None)
        head = None
        if first is not None:
            head, answers = answers[0], [_entry_id(a) for a in answers[1:]]
        now, refused = current_clock().time(), None
        for (stream, message), answer in zip(sent, answers, strict=True):
            if isinstance(answer, Refused):
                refused = refused or answer
            elif answer is not None and isinstance(message, TaskMessage):
                self.reader.sent.record(
                    message.reply_to,
                    (message.node, message.cycle, message.attempt),
                    stream,
                    answer,
                    message.lease_timeout or self.lease_timeout,
                    now,
                )
        return head, refused

    async def ack(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            await self._writes.write(self._acks(queue, deliveries))

    def _acks(self, queue: str, deliveries: Sequence[Delivery]) -> list[Item]:
        """The acks of `deliveries`, one per stream (priority) they came from."""
        if len(deliveries) == 1:  # a worker's usual ack: one reply's
            d = deliveries[0]
            return [Ack(self.keys.stream_at(queue, d.priority), self.keys.group, [d.id])]
        by_stream: dict[str, list[str]] = {}
        for d in deliveries:
            by_stream.setdefault(self.keys.stream_at(queue, d.priority), []).append(d.id)
        return [Ack(stream, self.keys.group, ids) for stream, ids in by_stream.items()]

    def _by_stream(self, queue: str, deliveries: Sequence[Delivery]) -> dict[str, list[Delivery]]:
        by_stream: dict[str, list[Delivery]] = {}
        for d in deliveries:
            by_stream.setdefault(self.keys.stream_at(queue, d.priority), []).append(d)
        return by_stream

    async def send_and_ack(
        self, queue: str, messages: Sequence[Any], ack_queue: str, deliveries: Sequence[Delivery]
    ) -> None:
        """The replies, then the acks, in one MULTI/EXEC (a worker's usual write): an ack never
        takes effect without its reply."""
        stream = self.keys.stream(queue)
        items: list[Item] = [self.entries.xadd(stream, m) for m in messages]
        if deliveries:
            items += self._acks(ack_queue, deliveries)
        await self._writes.write(items)

    async def _write_batch(self, writers: list[list[Item]]) -> list[BaseException | None]:
        batch, mine = commands(writers)
        if needs_transaction(batch):
            answers = await self.conn.transaction(batch)
        else:
            answers = await self.conn.pipeline(batch)
        outcomes: list[BaseException | None] = []
        for indices in mine:
            refused = [
                answers[i]
                for i in indices
                if isinstance(answers[i], Refused)
                and not (isinstance(answers[i], GroupsLost) and batch[i][0] in ("XACK", "XDEL"))
            ]
            outcomes.append(refused[0] if refused else None)  # an ack of a group that is gone: nothing to ack
        return outcomes

    # --- receiving (workers, through the consumer group) -------------------------------
    async def receive(self, queue: str, *, max_messages: int = 0, timeout: float | None = None) -> list[Delivery]:
        if self.closed:
            raise TransportError("the Redis transport is closed")
        stream = self.keys.stream(queue)
        for each in self.keys.priority_streams(queue):  # one stream per priority (`priorities`)
            await self._ensure_group(each)
        count = max_messages if max_messages > 0 else 512
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            block = POLL_MS if deadline is None else max(1, int((deadline - time.monotonic()) * 1000))
            block = min(block, POLL_MS)  # wake up now and then to reclaim and to notice closing
            try:
                reclaimed = await self.priorities.reclaim(queue, count)
                if reclaimed:
                    return reclaimed
                deliveries = await self.priorities.read(queue, count, block)
                await self.claims.keep_alive(stream)
                if not deliveries:
                    await self.claims.prune_consumers(stream)
            except GroupsLost:
                await self._regroup()
                continue
            if deliveries or (deadline is not None and time.monotonic() >= deadline):
                return deliveries

    async def touch(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        for stream, held in self._by_stream(queue, deliveries).items():
            await self.claims.touch(stream, held)

    async def dead_letter(self, queue: str, delivery: Delivery, reason: str) -> None:
        await self.claims.dead_letter(self.keys.stream_at(queue, delivery.priority), delivery, reason)

    async def release(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        for stream, held in self._by_stream(queue, deliveries).items():
            await self.claims.release(stream, held)

    async def leave(self, queue: str) -> None:
        """Remove this consumer from `queue`'s group if it holds nothing (a worker's clean exit),
        so queue figures stop counting it."""
        stream = self.keys.stream(queue)
        try:
            mine = await self.conn.call(
                "XPENDING", stream, self.keys.group, "-", "+", 1, self.consumer, parse=replies.pending_rows
            )
        except GroupsLost:
            return  # never read here: nothing to leave
        if not mine:
            await self.conn.pipeline(
                [
                    ("XGROUP", "DELCONSUMER", stream, self.keys.group, self.consumer),
                    ("DEL", self.keys.alive(self.consumer)),
                ]
            )

    # --- single-reader queues (a run's replies, a worker's context answers) -----------------
    def inbox(self, queue: str) -> StreamInbox:
        """`queue` read from where it left off by the transport's one XREAD: it has one reader,
        so nothing needs acking (the stream goes when the run ends). Yields `QueueLost`,
        `TasksLost` and `QueueFailed` besides messages (see `reader.py`)."""
        return StreamInbox(self.reader, queue, self.keys.stream(queue))

    def attach(self, queue: str, consumer: Callable[[Sequence[Any]], None]) -> Callable[[], None]:
        """Hand what arrives on `queue`, a queue with one reader (a run's replies, a worker's
        context answers; never the task queue), to `consumer` as the transport's one XREAD
        reads it, with `QueueLost`, `TasksLost` and `QueueFailed` among the messages, and
        after each batch of a run's replies a `Delivered` (for a durable run to let them go)."""
        marks = keys.is_reply_queue(queue)
        return self.reader.subscribe(queue, self.keys.stream(queue), consumer, marks=marks).close

    async def open_queue(self, queue: str) -> None:
        """Create `queue`'s stream, so that replies sent to it land (a worker's context
        stream, before its tasks send requests); again if it has vanished since."""
        stream = self.keys.stream(queue)
        self._groups.discard(stream)
        await self._ensure_group(stream)

    async def discard(self, queue: str) -> None:
        stream = self.keys.stream(queue)
        self._groups.discard(stream)
        self.reader.sent.forget(queue)
        await self.conn.call("DEL", stream)
        await self.reader.settled()

    async def ended(self, runs: Collection[Incarnation]) -> set[Incarnation]:
        """The runs that have ended, by their owner records (see `owners`): ended, another
        incarnation, or a driver whose lease lapsed."""
        if not runs:
            return set()
        return await self.owners.judge(runs, self.keys.stream)

    async def begin_run(self, run_id: str, lease: float) -> int:
        return await self.owners.begin(run_id, lease, owner=self.consumer)

    async def renew_run(self, run_id: str, epoch: int, lease: float) -> bool:
        return await self.owners.renew(run_id, epoch, lease, owner=self.consumer)

    async def end_run(self, run_id: str, epoch: int) -> None:
        if epoch:
            await self.owners.end(run_id, epoch)

    async def backlog(self, queue: str, limit: int = 1_000_000) -> list[TaskReply]:
        """The replies `queue` (a run's reply stream) holds now, oldest first, read without
        a consumer (a durable run taken over reads those that came while no driver lived).
        An entry that is not a trustworthy reply is left out."""
        stream, start, out = self.keys.stream(queue), "-", []
        for _ in range(max(1, limit // BACKLOG_CHUNK)):
            found = await self.conn.call("XRANGE", stream, start, "+", "COUNT", BACKLOG_CHUNK, parse=replies.entries)
            for _, fields in found:
                try:
                    message = self.entries.opened(stream, fields)
                except MalformedMessage:
                    continue
                if type(message) is TaskReply:
                    out.append(message)
            if len(found) < BACKLOG_CHUNK:
                break
            start = "(" + found[-1][0].decode()
        return out

    async def queue_stats(self) -> dict[str, Any]:
        """Length, pending entries and consumers of the task stream (its priority levels
        summed), and dead letters (`stats`)."""
        return await task_queue_figures(self.conn, self.keys)

    # --- streams and groups ---------------------------------------------------------------
    async def _ensure_group(self, stream: str) -> None:
        if stream in self._groups:
            return
        created, _ = await self.conn.pipeline(
            [
                ("XGROUP", "CREATE", stream, self.keys.group, "0", "MKSTREAM"),
                # A blocked XREADGROUP that gets nothing does not register its consumer, so an
                # idle worker would be missing from queue-stats and the metrics.
                ("XGROUP", "CREATECONSUMER", stream, self.keys.group, self.consumer),
            ]
        )
        if isinstance(created, Refused) and created.code != "BUSYGROUP":
            raise created
        self._groups.add(stream)

    async def _make_stream(self, stream: str) -> None:
        self._groups.discard(stream)
        await self._ensure_group(stream)

    async def _regroup(self) -> None:
        """The consumer groups are gone (Redis lost its data): make every stream this
        transport reads, and its group, again."""
        streams, self._groups = set(self._groups), set()
        log.warning(
            "redis lost its streams and groups (a restart without persistence?): making them again",
            url=self.url,
            streams=sorted(streams),
        )
        for stream in streams:
            await self._ensure_group(stream)


BACKLOG_CHUNK = 1000


def _entry_id(answer: Any) -> Any:
    return answer if isinstance(answer, Refused) else replies.entry_id(answer)

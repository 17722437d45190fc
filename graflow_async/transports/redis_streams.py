"""The Redis Streams transport: queues that outlive processes, for runs spread over workers.

Each queue is a stream ``<namespace>:<queue>`` read through one consumer group, so an
entry goes to one consumer and stays *pending* until acked. Workers ack a task after
its reply is written, extend their claim with heartbeats while it runs, and reclaim
entries whose claim lapsed (a dead worker's) once they have been idle for the
message's ``lease_timeout``. An entry delivered more than ``max_deliveries`` times, or
one that is not a graflow-async envelope, goes to ``<namespace>:dead`` instead.

Connection trouble after the first successful contact is waited out with backoff;
the first contact itself fails with `TransportError` naming the URL after
``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..events import LibraryLog
from ..exceptions import TransportError
from ..messages import ContextReply, ContextRequest, TaskMessage, TaskReply
from ..options import number, whole
from . import keys
from .base import Delivery, Transport
from .redis_batch import Ack, Command, Recorder, WriteBatcher, execute, queue_commands
from .redis_claims import Claims
from .redis_inbox import ReplyInbox
from .redis_lean import LeanRedis, entries
from .redis_util import describe, each_exists, pack_with_hiredis, xadd
from .signing import SIGNATURE, signer_for
from .wire import MalformedMessage, decode, encode

T = TypeVar("T")
_RETRYABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
# An idle consumer looks for lapsed claims every poll (at most every RECLAIM_EVERY s), so a
# dead worker's task is taken over within lease_timeout + _POLL_MS (SPEC: within lease + 1 s).
_REPLIES = (TaskReply, ContextRequest, ContextReply)  # sent only to streams that exist
_POLL_MS = 500
_OP_TIMEOUT = 10.0  # a command unanswered this long is taken for a lost connection (blocking reads wait <= _POLL_MS)
log = LibraryLog()


class GroupsLost(TransportError):
    """Redis answered NOGROUP: the streams and groups are gone (a restart without persistence)."""


class RedisStreamsTransport(Claims, Transport):
    """Queues as Redis streams (SPEC section 7). Use as ``async with``.

    `lease_timeout` and `max_deliveries` are stamped on every task this transport
    sends; workers honour the values carried by each task. `client` is used as is
    and not closed.
    """

    in_process = False

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        namespace: str = keys.DEFAULT_NAMESPACE,
        client: Redis | None = None,
        lease_timeout: float = 30.0,
        max_deliveries: int = 5,
        connect_timeout: float = 5.0,
        consumer: str | None = None,
        max_connections: int = 32,
        secret: str | bytes | Sequence[str | bytes] | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        lease_timeout = number("lease_timeout", lease_timeout, above=True)
        max_deliveries = whole("max_deliveries", max_deliveries, minimum=1)
        connect_timeout = number("connect_timeout", connect_timeout, above=True)
        max_connections = whole("max_connections", max_connections, minimum=1)
        self.max_message_bytes = whole("max_message_bytes", max_message_bytes, minimum=1024)
        self.url = url if client is None else describe(client)
        self.keys = keys.Keys(namespace)
        self.namespace = namespace
        self.lease_timeout = float(lease_timeout)
        self.max_deliveries = int(max_deliveries)
        self.connect_timeout = connect_timeout
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.signer = signer_for(secret)  # None: entries are neither signed nor checked
        self._owned = client is None
        # A bounded pool that makes a caller wait for a free connection (redis-py's default
        # pool raises MaxConnectionsError, which would pass for an outage). No socket
        # timeout: redis-py would send through asyncio.wait_for, which on Python 3.11 can
        # swallow a cancellation; `_call` bounds every command instead. No retries of its
        # own: `_call` waits out outages.
        self.client: Any = client or Redis.from_pool(pack_with_hiredis(BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=None, socket_connect_timeout=connect_timeout,
            socket_timeout=None, health_check_interval=10, retry=Retry(NoBackoff(), 0),
        )))
        # the hot path (XADD, XACK, XDEL, XREAD, XREADGROUP) on lean connections when we own
        # the client and the URL is plain TCP or a unix socket; redis-py otherwise
        self._lean = LeanRedis.for_url(url, connect_timeout) if client is None else None
        self._connected = False
        self._closed = False
        self._groups: set[str] = set()
        self._writes = WriteBatcher(self._pipeline)
        self._last_reclaim: dict[str, float] = {}
        self._last_prune: dict[str, float] = {}
        self._last_alive: dict[str, float] = {}

    # --- connection -------------------------------------------------------------------
    async def __aenter__(self) -> RedisStreamsTransport:
        await self.connect()
        return self

    async def connect(self) -> None:
        """Reach Redis once; `TransportError` naming the URL if that takes too long."""
        if self._connected:
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self.client.ping()
        except (TimeoutError, *_RETRYABLE, redis_errors.RedisError) as exc:
            raise TransportError(
                f"cannot reach Redis at {self.url} within {self.connect_timeout:g}s: {exc or type(exc).__name__}"
            ) from exc
        self._connected = True

    async def _call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run `op`; once connected, wait out outages with backoff instead of failing."""
        if not self._connected:
            await self.connect()
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        delay = 0.05
        for attempt in itertools.count(1):
            if self._closed:
                raise TransportError("the Redis transport is closed")
            try:
                async with asyncio.timeout(_OP_TIMEOUT):
                    result = await op()
                if task is not None and task.cancelling() > cancels:
                    # a client given with a socket_timeout sends with asyncio.wait_for, which
                    # on Python 3.11 drops a cancellation that lands as the send completes:
                    # honour it here, or a cancelled receive loop would go on forever.
                    raise asyncio.CancelledError
                return result
            except _RETRYABLE as exc:
                if self._closed:  # closed under a pending command: not an outage
                    raise TransportError("the Redis transport is closed") from exc
                if isinstance(exc, TimeoutError) and self._lean is not None:
                    self._lean.reset()  # unanswered for _OP_TIMEOUT: the server may be gone silently
                if attempt == 1 or attempt % 20 == 0:
                    log.warning("redis unavailable, retrying", url=self.url, op=what, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            except redis_errors.RedisError as exc:
                if "NOGROUP" in str(exc):
                    raise GroupsLost(f"Redis {what} at {self.url}: {exc}") from exc
                raise TransportError(f"Redis {what} failed at {self.url}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def hot_path(self) -> str:
        """What carries XADD, XACK, XREAD and XREADGROUP: "lean" (hiredis on asyncio
        protocol connections) or "redis-py" (a client given, TLS or RESP3)."""
        return "redis-py" if self._lean is None else "lean"

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._lean is not None:
            await self._lean.aclose()
        if self._owned:
            await self.client.aclose()

    # --- the contract -------------------------------------------------------------------
    async def send(self, queue: str, messages: Sequence[Any]) -> None:
        if self._closed:
            raise TransportError("the Redis transport is closed")
        stream = self.keys.stream(queue)
        # Replies never create their stream. A run's reply stream is made before its tasks
        # are sent and a worker's context stream when the worker starts; a reply or
        # request that comes after its reader has gone (and deleted its stream) is
        # dropped rather than left in a stream nobody reads.
        entries = [(self._fields(stream, self._stamp(m)), isinstance(m, _REPLIES)) for m in messages]
        for reply_to in {m.reply_to for m in messages if isinstance(m, TaskMessage)}:
            await self._ensure_group(self.keys.stream(reply_to))

        # one pipeline of its own, at once: a run sends each step's tasks in one call, so
        # waiting a loop turn for other writers (the reply batcher) would only add latency
        await self._pipeline([functools.partial(xadd, stream, data, reply) for data, reply in entries])

    async def _pipeline(self, commands: list[Any]) -> None:
        recorder = Recorder()
        queue_commands(recorder, commands)

        async def op() -> None:
            results = await self._execute(recorder.commands)
            for result in results:  # one writer's bad command must not fail the others of the batch
                if isinstance(result, redis_errors.ResponseError):
                    log.warning("a batched Redis command failed", url=self.url, error=str(result))

        await self._call("pipeline", op)

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Raw answers to `commands`, sent in one write (an error answer in its place)."""
        if self._lean is not None:
            return await self._lean.execute(commands)
        return await execute(self.client.connection_pool, commands)

    async def blocking(self, *command: Any) -> Any:
        """The raw answer to one blocking read (XREAD or XREADGROUP with BLOCK); an error raised."""
        if self._lean is not None:
            return await self._lean.blocking(command)
        [answer] = await execute(self.client.connection_pool, [command])
        if isinstance(answer, redis_errors.ResponseError):
            raise answer
        return answer

    def _fields(self, stream: str, data: bytes) -> dict[bytes, bytes]:
        if self.signer is None:
            return {b"m": data}
        return {b"m": data, SIGNATURE: self.signer.sign(stream, data)}

    def forged(self, stream: str, fields: dict[bytes, Any]) -> str | None:
        """Why an entry of `stream` is not to be trusted (a missing or wrong signature), or
        None. Checked before anything of the entry is decoded."""
        if self.signer is None:
            return None
        signature = fields.get(SIGNATURE)
        if signature is None:
            return "missing signature"
        if not self.signer.verify(stream, fields.get(b"m", b""), signature):
            return "wrong signature"
        return None

    def opened(self, stream: str, fields: dict[bytes, Any]) -> Any:
        """The message an entry of `stream` holds, once it is shown trustworthy: signed (with
        a secret), within the size limit, and well formed. `MalformedMessage` otherwise,
        nothing decoded before."""
        forged = self.forged(stream, fields)
        if forged is not None:
            raise MalformedMessage(forged)
        raw = fields.get(b"m", b"")
        if not isinstance(raw, bytes) or len(raw) > self.max_message_bytes:
            raise MalformedMessage(f"an entry of {len(raw) if isinstance(raw, bytes) else '?'} bytes, over "
                                   f"max_message_bytes={self.max_message_bytes}")
        return decode(raw)

    def _stamp(self, message: Any) -> bytes:
        if isinstance(message, TaskMessage) and message.lease_timeout is None:
            message = message._replace(lease_timeout=self.lease_timeout, max_deliveries=self.max_deliveries)
        data = encode(message)
        if len(data) > self.max_message_bytes:
            raise TypeError(f"a {type(message).__name__} of {len(data)} bytes cannot be sent: over "
                            f"max_message_bytes={self.max_message_bytes} (keep large data in a store, pass its key)")
        return data

    async def receive(self, queue: str, *, max_messages: int = 0, timeout: float | None = None) -> list[Delivery]:
        if self._closed:
            raise TransportError("the Redis transport is closed")
        stream = self.keys.stream(queue)
        await self._ensure_group(stream)
        count = max_messages if max_messages > 0 else 512
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            block = _POLL_MS if deadline is None else max(1, int((deadline - time.monotonic()) * 1000))
            block = min(block, _POLL_MS)  # wake up now and then to reclaim and to notice closing
            try:
                reclaimed = await self._reclaim(stream, count)
                if reclaimed:
                    return reclaimed
                answer = await self._call("XREADGROUP", functools.partial(
                    self.blocking, "XREADGROUP", "GROUP", self.keys.group, self.consumer,
                    "COUNT", count, "BLOCK", block, "STREAMS", stream, ">"))
            except GroupsLost:
                await self._regroup()
                continue
            deliveries = await self._deliveries(stream, entries(answer), {})
            await self._keep_alive(stream)
            if not deliveries:
                await self._prune_consumers(stream)
            if deliveries or (deadline is not None and time.monotonic() >= deadline):
                return deliveries

    async def ack(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        await self._writes.write([Ack(self.keys.stream(queue), self.keys.group, [d.id for d in deliveries])])

    async def send_and_ack(
        self, queue: str, messages: Sequence[Any], ack_queue: str, deliveries: Sequence[Delivery]
    ) -> None:
        """One pipeline: the replies first, then the acks (a worker's usual write)."""
        stream = self.keys.stream(queue)
        commands: list[Command | Ack] = [
            functools.partial(xadd, stream, self._fields(stream, self._stamp(m)), isinstance(m, _REPLIES))
            for m in messages
        ]
        if deliveries:
            commands.append(Ack(self.keys.stream(ack_queue), self.keys.group, [d.id for d in deliveries]))
        await self._writes.write(commands)

    def inbox(self, queue: str) -> ReplyInbox:
        """A run's reply stream (or a worker's context stream), read with XREAD from where
        it left off: it has one reader, so nothing needs acking (the stream goes when the
        run ends). Yields `QueueLost` when the stream vanished and was made again."""
        return ReplyInbox(self, queue)

    async def discard(self, queue: str) -> None:
        stream = self.keys.stream(queue)
        self._groups.discard(stream)
        await self._call("DEL", lambda: self.client.delete(stream))

    async def leave(self, queue: str) -> None:
        """Remove this consumer from `queue`'s group if it holds nothing (a worker's clean exit),
        so queue figures stop counting it."""
        stream = self.keys.stream(queue)

        async def op() -> None:
            try:
                mine = await self.client.xpending_range(
                    stream, self.keys.group, "-", "+", 1, consumername=self.consumer)
            except redis_errors.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    return  # never read here: nothing to leave
                raise
            if not mine:
                await self.client.xgroup_delconsumer(stream, self.keys.group, self.consumer)
                await self.client.delete(self.keys.alive(self.consumer))

        await self._call("XGROUP DELCONSUMER", op)

    async def _ensure_group(self, stream: str) -> None:
        if stream in self._groups:
            return

        async def op() -> None:
            try:
                await self.client.xgroup_create(stream, self.keys.group, id="0", mkstream=True)
            except redis_errors.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            # A blocked XREADGROUP that gets nothing does not register its consumer, so
            # an idle worker would be missing from queue-stats and the metrics.
            await self.client.xgroup_createconsumer(stream, self.keys.group, self.consumer)

        await self._call("XGROUP CREATE", op)
        self._groups.add(stream)

    async def _regroup(self) -> None:
        """The consumer groups are gone (Redis lost its data): make every stream this
        transport reads, and its group, again."""
        streams, self._groups = set(self._groups), set()
        log.warning("redis lost its streams and groups (a restart without persistence?): making them again",
                    url=self.url, streams=sorted(streams))
        for stream in streams:
            await self._ensure_group(stream)

    async def remake_if_lost(self, stream: str) -> bool:
        """Make `stream` again if it has vanished; whether it had."""
        if await self._call("EXISTS", functools.partial(self.client.exists, stream)):
            return False
        log.warning("a stream vanished (a Redis restart without persistence?): making it again", stream=stream)
        self._groups.discard(stream)
        await self._ensure_group(stream)
        return True

    # --- per-run and per-worker state ---------------------------------------------------------
    async def open_queue(self, queue: str) -> None:
        """Create `queue`'s stream, so that replies sent to it land (a worker's context
        stream, before its tasks send requests); again if it has vanished since."""
        stream = self.keys.stream(queue)
        self._groups.discard(stream)
        await self._ensure_group(stream)

    async def ended(self, reply_queues: Collection[str]) -> set[str]:
        """A run deletes its reply stream when it ends (cancelled, failed or completed):
        the queues whose stream is gone."""
        queues = [q for q in reply_queues if isinstance(q, str)]
        if not queues:
            return set()
        found = await self._call("EXISTS", lambda: each_exists(self.client, [self.keys.stream(q) for q in queues]))
        return {q for q, there in zip(queues, found, strict=True) if not there}

    def default_feedback_store(self) -> Any:
        """A `RedisFeedbackStore` on this server and namespace: the REST API and the UI of
        any app sharing the server see the questions of runs on this transport."""
        from ..feedback.redis import RedisFeedbackStore

        return RedisFeedbackStore(client=self.client, namespace=self.namespace)

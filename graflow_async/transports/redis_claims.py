"""Claims on a Redis consumer group's entries: heartbeats, reclaiming a dead worker's
entries once their lease has lapsed, handing entries back, dead letters, and knowing
which workers are alive. Mixed into `RedisStreamsTransport`.

An entry stays *pending* with the consumer that read it until acked. Its consumer
extends the claim by heartbeats (`touch`); an entry idle longer than the lease its task
carries is claimed by another consumer (XCLAIM re-checks the idleness, so two cannot
both win); one delivered more than ``max_deliveries`` times, or that is not a
graflow-async envelope, goes to ``<ns>:dead``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..clock import current_clock
from ..events import LibraryLog
from .base import Delivery
from .keys import Keys
from .redis_util import each_exists, lease_of, ranges, safe_encode, text
from .wire import MalformedMessage

T = TypeVar("T")
log = LibraryLog()
DELIVERED = b"d"  # deliveries of an entry before a worker released it (the entry was put back)
RECLAIM_EVERY = 0.25  # seconds between looks for lapsed claims, per stream
PRUNE_EVERY = 5.0  # seconds between looks for consumers of workers that are gone
ALIVE_EVERY, ALIVE_FOR = 2.0, 10.0  # a worker says it is alive this often, and it holds this long


class Claims:
    """The claim side of `RedisStreamsTransport` (which provides these attributes)."""

    client: Any
    keys: Keys
    consumer: str
    lease_timeout: float
    _last_reclaim: dict[str, float]
    _last_prune: dict[str, float]
    _last_alive: dict[str, float]

    async def _call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        raise NotImplementedError

    def forged(self, stream: str, fields: dict[bytes, Any]) -> str | None:
        raise NotImplementedError

    def _fields(self, stream: str, data: bytes) -> dict[bytes, bytes]:
        raise NotImplementedError

    def opened(self, stream: str, fields: dict[bytes, Any]) -> Any:
        raise NotImplementedError

    async def touch(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        """Extend this consumer's claim on those of `deliveries` it still holds (a heartbeat):
        one that another consumer reclaimed while this one was cut off stays with it."""
        if not deliveries:
            return
        stream, wanted = self.keys.stream(queue), {d.id for d in deliveries}

        async def op() -> None:
            pending = await self.client.xpending_range(
                stream, self.keys.group, "-", "+", max(len(wanted), 100), consumername=self.consumer)
            mine = [p["message_id"] for p in pending if text(p["message_id"]) in wanted]
            if mine:
                await self.client.xclaim(stream, self.keys.group, self.consumer, 0, mine, justid=True)

        await self._call("XCLAIM", op)

    async def dead_letter(self, queue: str, delivery: Delivery, reason: str, raw: bytes | None = None) -> None:
        """Move `delivery` to the dead-letter stream with `reason`, and settle it."""
        stream = self.keys.stream(queue)
        payload = raw if raw is not None else safe_encode(delivery.message)
        fields = {b"queue": queue, b"id": delivery.id, b"reason": reason, b"m": payload,
                  b"deliveries": delivery.delivery_count}

        async def op() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(self.keys.dead, fields)
                pipe.xack(stream, self.keys.group, delivery.id)
                pipe.xdel(stream, delivery.id)
                await pipe.execute()

        await self._call("dead-letter", op)
        log.warning("message dead-lettered", queue=queue, id=delivery.id, reason=reason)

    async def release(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        """Put each delivery back at the end of `queue` as a new entry (carrying the count
        of its deliveries so far) and settle the old one, in one transaction: another
        worker takes it at once, without waiting for its lease."""
        if not deliveries:
            return
        stream = self.keys.stream(queue)

        async def op() -> None:
            found = await ranges(self.client, stream, [d.id for d in deliveries])
            counts = {d.id: d.delivery_count for d in deliveries}
            async with self.client.pipeline(transaction=True) as pipe:
                for entry_id, fields in found:
                    ident = text(entry_id)
                    again = {**self._fields(stream, fields.get(b"m", b"")), DELIVERED: str(counts.get(ident, 1))}
                    pipe.xadd(stream, again)
                    pipe.xack(stream, self.keys.group, ident)
                    pipe.xdel(stream, ident)
                await pipe.execute()

        await self._call("release", op)

    async def _keep_alive(self, stream: str) -> None:
        """Say this consumer is alive (a key that soon expires), and that it reads `stream`
        (a consumer removed as dead while it was busy comes back): every few seconds."""
        now = current_clock().time()
        if now - self._last_alive.get(stream, -ALIVE_EVERY) < ALIVE_EVERY:
            return
        self._last_alive[stream] = now

        async def op() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.set(self.keys.alive(self.consumer), 1, ex=int(ALIVE_FOR))
                pipe.xgroup_createconsumer(stream, self.keys.group, self.consumer)
                await pipe.execute()

        await self._call("SET alive", op)

    async def _prune_consumers(self, stream: str) -> None:
        """Remove consumers that hold nothing and no longer say they are alive (workers that
        died, once their entries were reclaimed), so queue figures count live workers."""
        now = current_clock().time()
        if now - self._last_prune.get(stream, -PRUNE_EVERY) < PRUNE_EVERY:
            return
        self._last_prune[stream] = now
        consumers = await self._call("XINFO CONSUMERS", functools.partial(
            self.client.xinfo_consumers, stream, self.keys.group))
        idle = [text(c["name"]) for c in consumers if int(c["pending"]) == 0 and text(c["name"]) != self.consumer]
        if not idle:
            return
        alive = await self._call("EXISTS", lambda: each_exists(self.client, [self.keys.alive(n) for n in idle]))
        for name, there in zip(idle, alive, strict=True):
            if not there:
                await self._call("XGROUP DELCONSUMER", functools.partial(
                    self.client.xgroup_delconsumer, stream, self.keys.group, name))
                log.info("removed the consumer of a worker that is gone", stream=stream, consumer=name)

    async def _reclaim(self, stream: str, count: int) -> list[Delivery]:
        """Claim entries whose consumer stopped heartbeating, at most every RECLAIM_EVERY s per stream."""
        now = current_clock().time()
        if now - self._last_reclaim.get(stream, -RECLAIM_EVERY) < RECLAIM_EVERY:
            return []
        self._last_reclaim[stream] = now
        floor = min(1000, int(self.lease_timeout * 1000))  # no lease is shorter than ours, or 1 s
        pending = await self._call("XPENDING", lambda: self.client.xpending_range(
            stream, self.keys.group, "-", "+", count, idle=floor))
        if not pending:
            return []
        ids = [p["message_id"] for p in pending]
        idle = {text(p["message_id"]): int(p["time_since_delivered"]) for p in pending}
        times = {text(p["message_id"]): p["times_delivered"] for p in pending}
        entries = await self._call("XRANGE", lambda: ranges(self.client, stream, ids))
        expired = []
        for entry_id, fields in entries:
            trusted = self.forged(stream, fields) is None  # a forged entry's lease is not read
            lease = lease_of(fields.get(b"m") if trusted else None, self.lease_timeout)
            if idle.get(text(entry_id), 0) >= lease * 1000:
                expired.append((entry_id, int(lease * 1000)))
        claimed: list[tuple[Any, dict[bytes, bytes]]] = []
        for entry_id, min_idle in expired:  # XCLAIM re-checks idleness: two reclaimers cannot both win
            got = await self._call("XCLAIM", functools.partial(
                self.client.xclaim, stream, self.keys.group, self.consumer, min_idle, [entry_id]))
            claimed.extend(got)
        counts = {k: int(v) + 1 for k, v in times.items()}  # XCLAIM counted one more delivery
        if claimed:
            log.info("reclaimed entries", stream=stream, count=len(claimed))
        return await self._deliveries(stream, claimed, counts)

    async def _deliveries(
        self, stream: str, entries: list[tuple[Any, dict[bytes, bytes]]], counts: dict[str, int]
    ) -> list[Delivery]:
        out = []
        queue = self.keys.queue_of(stream)
        for entry_id, fields in entries:
            ident = text(entry_id)
            raw = fields.get(b"m", b"")
            try:
                message = self.opened(stream, fields)
            except MalformedMessage as exc:  # never executed, never fatal
                await self.dead_letter(queue, Delivery(ident, None, counts.get(ident, 1)), str(exc), raw)
                continue
            out.append(Delivery(ident, message, counts.get(ident, 1) + _earlier(fields)))
        return out


def _earlier(fields: dict[bytes, Any]) -> int:
    """Deliveries an entry had before it was released and put back (0 for a fresh one)."""
    raw = fields.get(DELIVERED)
    try:
        n = int(raw) if raw is not None else 0
    except (TypeError, ValueError):
        return 0
    return n if 0 <= n < 1_000_000 else 0

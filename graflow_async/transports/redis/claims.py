"""Claims on a consumer group's entries: heartbeats, reclaiming a dead worker's entries
once their lease has lapsed, handing entries back, dead letters, and knowing which
workers are alive.

An entry stays *pending* with the consumer that read it until acked. Its consumer
extends the claim by heartbeats (`touch`); an entry idle longer than the lease its task
carries is claimed by another consumer (XCLAIM re-checks the idleness, so two cannot
both win); one delivered more than ``max_deliveries`` times, or that is not a
graflow-async envelope, goes to ``<ns>:dead``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graflow_async.clock import current_clock
from graflow_async.logs import LibraryLog, as_text
from graflow_async.transports.base import Delivery
from graflow_async.transports.keys import Keys
from graflow_async.transports.redis import replies
from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.transports.redis.entries import Entries, safe_encode
from graflow_async.transports.redis.replies import Entry
from graflow_async.wire.envelope import MalformedMessage

log = LibraryLog()
DELIVERED = b"d"  # deliveries of an entry before a worker released it (the entry was put back)
RECLAIM_EVERY = 0.25  # seconds between looks for lapsed claims, per stream
PRUNE_EVERY = 5.0  # seconds between looks for consumers of workers that are gone
ALIVE_EVERY, ALIVE_FOR = 2.0, 10.0  # a worker says it is alive this often, and it holds this long


class Claims:
    """The claims of consumer `consumer` on the streams of `keys`' namespace."""

    def __init__(self, conn: RedisConnection, keys: Keys, consumer: str, entries: Entries) -> None:
        self.conn = conn
        self.keys = keys
        self.consumer = consumer
        self.entries = entries
        self._last_reclaim: dict[str, float] = {}
        self._last_prune: dict[str, float] = {}
        self._last_alive: dict[str, float] = {}

    async def touch(self, stream: str, deliveries: Sequence[Delivery]) -> None:
        """Extend this consumer's claim on those of `deliveries` it still holds (a heartbeat):
        one that another consumer reclaimed while this one was cut off stays with it."""
        if not deliveries:
            return
        wanted = {d.id for d in deliveries}
        rows = await self.conn.call(
            "XPENDING",
            stream,
            self.keys.group,
            "-",
            "+",
            max(len(wanted), 100),
            self.consumer,
            parse=replies.pending_rows,
        )
        mine = [ident for ident, *_ in rows if as_text(ident) in wanted]
        if mine:
            await self.conn.call("XCLAIM", stream, self.keys.group, self.consumer, 0, *mine, "JUSTID")

    async def dead_letter(self, stream: str, delivery: Delivery, reason: str, raw: bytes | None = None) -> None:
        """Move `delivery` to the dead-letter stream with `reason`, and settle it, at once."""
        payload = raw if isinstance(raw, bytes) else safe_encode(delivery.message)
        await self.conn.transaction(
            [
                (
                    "XADD",
                    self.keys.dead,
                    "*",
                    "queue",
                    self.keys.queue_of(stream),
                    "id",
                    delivery.id,
                    "reason",
                    reason[:2000],
                    "m",
                    payload,
                    "deliveries",
                    delivery.delivery_count,
                ),
                ("XACK", stream, self.keys.group, delivery.id),
                ("XDEL", stream, delivery.id),
            ]
        )
        log.warning("message dead-lettered", stream=stream, id=delivery.id, reason=reason[:300])

    async def release(self, stream: str, deliveries: Sequence[Delivery]) -> None:
        """Put each delivery back at the end of `stream` as a new entry (carrying the count
        of its deliveries so far) and settle the old one, in one transaction: another
        worker takes it at once, without waiting for its lease."""
        if not deliveries:
            return
        found = await self._ranges(stream, [d.id for d in deliveries])
        counts = {d.id: d.delivery_count for d in deliveries}
        commands: list[tuple[Any, ...]] = []
        for entry_id, fields in found:
            ident, payload = as_text(entry_id), fields.get(b"m", b"")
            if not isinstance(payload, bytes):
                continue
            commands.append(self.entries.xadd_raw(stream, payload, False, DELIVERED, str(counts.get(ident, 1))))
            commands += [("XACK", stream, self.keys.group, ident), ("XDEL", stream, ident)]
        if commands:
            await self.conn.transaction(commands)

    async def keep_alive(self, stream: str) -> None:
        """Say this consumer is alive (a key that soon expires), and that it reads `stream`
        (a consumer removed as dead while it was busy comes back): every few seconds."""
        now = current_clock().time()
        if now - self._last_alive.get(stream, -ALIVE_EVERY) < ALIVE_EVERY:
            return
        self._last_alive[stream] = now
        for answer in await self.conn.pipeline(
            [
                ("SET", self.keys.alive(self.consumer), 1, "EX", int(ALIVE_FOR)),
                ("XGROUP", "CREATECONSUMER", stream, self.keys.group, self.consumer),
            ]
        ):
            if isinstance(answer, Exception):
                raise answer

    async def prune_consumers(self, stream: str) -> None:
        """Remove consumers that hold nothing and no longer say they are alive (workers that
        died, once their entries were reclaimed), so queue figures count live workers."""
        now = current_clock().time()
        if now - self._last_prune.get(stream, -PRUNE_EVERY) < PRUNE_EVERY:
            return
        self._last_prune[stream] = now
        consumers = await self.conn.call("XINFO", "CONSUMERS", stream, self.keys.group, parse=replies.info_maps)
        idle = [name for c in consumers if c.get("pending") == 0 and (name := as_text(c.get("name"))) != self.consumer]
        if not idle:
            return
        alive = await self.conn.pipeline([("EXISTS", self.keys.alive(name)) for name in idle])
        for name, there in zip(idle, alive, strict=True):
            if there == 0:
                await self.conn.call("XGROUP", "DELCONSUMER", stream, self.keys.group, name)
                log.info("removed the consumer of a worker that is gone", stream=stream, consumer=name)

    async def reclaim(self, stream: str, count: int, priority: int = 5) -> list[Delivery]:
        """Claim entries whose consumer stopped heartbeating, at most every RECLAIM_EVERY s per stream."""
        now = current_clock().time()
        if now - self._last_reclaim.get(stream, -RECLAIM_EVERY) < RECLAIM_EVERY:
            return []
        self._last_reclaim[stream] = now
        floor = min(1000, int(self.entries.lease_timeout * 1000))  # no lease is shorter than ours, or 1 s
        rows = await self.conn.call(
            "XPENDING", stream, self.keys.group, "IDLE", floor, "-", "+", count, parse=replies.pending_rows
        )
        if not rows:
            return []
        idle = {ident: idle_ms for ident, _, idle_ms, _ in rows}
        found = await self._ranges(stream, [ident for ident, *_ in rows])
        claimed: list[Entry] = []
        for entry_id, fields in found:  # XCLAIM re-checks idleness: two reclaimers cannot both win
            trusted = self.entries.forged(stream, fields) is None  # a forged entry's lease is not read
            lease_ms = int((self.entries.lease_of(fields) if trusted else self.entries.lease_timeout) * 1000)
            if idle.get(entry_id, 0) >= lease_ms:
                claimed += await self.conn.call(
                    "XCLAIM", stream, self.keys.group, self.consumer, lease_ms, entry_id, parse=replies.entries
                )
        counts = {as_text(ident): times + 1 for ident, _, _, times in rows}  # XCLAIM counted one more delivery
        if claimed:
            log.info("reclaimed entries", stream=stream, count=len(claimed))
        return await self.deliveries(stream, claimed, counts, priority)

    async def deliveries(
        self, stream: str, found: list[Entry], counts: dict[str, int], priority: int = 5
    ) -> list[Delivery]:
        """The deliveries of entries read from `stream`; those that cannot be trusted or
        read are dead-lettered, never executed, never fatal."""
        out = []
        for entry_id, fields in found:
            ident = as_text(entry_id)
            try:
                message = self.entries.opened(stream, fields)
            except MalformedMessage as exc:
                raw = fields.get(b"m")
                await self.dead_letter(
                    stream,
                    Delivery(ident, None, counts.get(ident, 1), priority),
                    str(exc),
                    raw if isinstance(raw, bytes) else None,
                )
                continue
            out.append(Delivery(ident, message, counts.get(ident, 1) + _earlier(fields), priority))
        return out

    async def _ranges(self, stream: str, ids: list[Any]) -> list[Entry]:
        found = await self.conn.pipeline([("XRANGE", stream, i, i) for i in ids], parse=replies.entries)
        out: list[Entry] = []
        for answer in found:
            if isinstance(answer, Exception):
                raise answer
            out.extend(answer)
        return out


def _earlier(fields: dict[bytes, Any]) -> int:
    """Deliveries an entry had before it was released and put back (0 for a fresh one)."""
    raw = fields.get(DELIVERED)
    try:
        n = int(raw) if raw is not None else 0
    except (TypeError, ValueError):
        return 0
    return n if 0 <= n < 1_000_000 else 0

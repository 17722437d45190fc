"""A task queue's priority levels on Redis (SPEC 11): one stream per priority
(`Keys.stream_at`: the queue's own stream for the default 5), each read through the
workers' consumer group.

A worker takes the ready task of highest priority first, and within one priority the
oldest first: one script (`_READ`) reads the streams highest first, as many entries as
the worker has room for, so that a high-priority task never waits behind a backlog of
lower ones; when they are all empty, one blocking read waits on every stream at once.
Entries reclaimed from dead workers are taken highest priority first too.
"""

from __future__ import annotations

from graflow_async.transports.base import Delivery
from graflow_async.transports.keys import PRIORITIES, Keys
from graflow_async.transports.redis import replies
from graflow_async.transports.redis.claims import Claims
from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.transports.redis.scripts import Script

_READ = Script(
    """
local out, left = {}, tonumber(ARGV[3])
for _, key in ipairs(KEYS) do
  if left <= 0 then break end
  local got = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left, 'STREAMS', key, '>')
  if type(got) == 'table' and got[1] and #got[1][2] > 0 then
    out[#out + 1] = got[1]
    left = left - #got[1][2]
  end
end
return out
"""
)


class PriorityStreams:
    """The priority streams of the queues one consumer reads."""

    def __init__(self, conn: RedisConnection, keys: Keys, claims: Claims, consumer: str) -> None:
        self.conn = conn
        self.keys = keys
        self.claims = claims
        self.consumer = consumer

    async def reclaim(self, queue: str, count: int) -> list[Delivery]:
        """Entries of dead consumers, from the highest priority that has any."""
        for priority, stream in zip(PRIORITIES, self.keys.priority_streams(queue), strict=True):
            found = await self.claims.reclaim(stream, count, priority)
            if found:
                return found
        return []

    async def read(self, queue: str, count: int, block_ms: int) -> list[Delivery]:
        """Up to `count` new entries, highest priority first, waiting at most `block_ms`
        for one when there are none (a stream's missing group raises `GroupsLost`)."""
        streams = self.keys.priority_streams(queue)
        group = self.keys.group
        found = await _READ(self.conn, streams, [group, self.consumer, count], parse=replies.streams)
        if not found:
            found = await self.conn.blocking(
                "XREADGROUP",
                "GROUP",
                group,
                self.consumer,
                "COUNT",
                count,
                "BLOCK",
                block_ms,
                "STREAMS",
                *streams,
                *([">"] * len(streams)),
                parse=replies.streams,
                block_ms=block_ms,
            )
        out: list[Delivery] = []
        for priority, stream in zip(PRIORITIES, streams, strict=True):
            entries = found.get(stream.encode())
            if entries:
                out += await self.claims.deliveries(stream, entries, {}, priority)
        return out

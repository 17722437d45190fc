"""The task queue's figures (`queue-stats`, the metrics' stream gauges): its length,
entries pending and not yet delivered (the priority levels summed), its consumers, and
the dead letters."""

from __future__ import annotations

from typing import Any

from graflow_async.logs import as_text
from graflow_async.transports import keys as names
from graflow_async.transports.keys import Keys
from graflow_async.transports.redis import replies
from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.transports.redis.errors import Refused


async def task_queue_figures(conn: RedisConnection, keys: Keys) -> dict[str, Any]:
    stream = keys.stream(names.TASK_QUEUE)
    streams = keys.priority_streams(names.TASK_QUEUE)
    *lengths, dead = await conn.pipeline([*(("XLEN", s) for s in streams), ("XLEN", keys.dead)])
    infos = await conn.pipeline([("XINFO", "GROUPS", s) for s in streams])  # a missing one: refused
    groups = [
        next((g for g in replies.info_maps(info) if as_text(g.get("name")) == keys.group), {})
        for info in infos
        if not isinstance(info, Exception)
    ]
    try:
        consumers = await conn.call("XINFO", "CONSUMERS", stream, keys.group, parse=replies.info_maps)
    except Refused:  # no stream or no group yet: nothing is queued
        consumers = []
    return {
        "stream": stream,
        "length": sum(_count(n) for n in lengths),
        "pending": sum(_count(g.get("pending")) for g in groups),
        "lag": sum(_count(g.get("lag")) for g in groups),
        "dead_letters": _count(dead),
        "consumers": [
            {"name": as_text(c.get("name")), "pending": _count(c.get("pending")), "idle_ms": _count(c.get("idle"))}
            for c in consumers
        ],
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0

"""The floor of the Redis scenarios: a bare work queue on Redis Streams, plain asyncio
and redis-py, nothing else (no runtime, no checks, no leases, no retries).

    python -m benchmarks.redis_floor worker URL NAME
    python -m benchmarks.redis_floor driver KIND N REPEAT CAP URL

A worker reads task entries with ``XREADGROUP`` (blocking, ``NOACK``, up to 256 at a
time), calls a no-op for each and ``XADD``s a reply to the stream the entry names, one
pipeline per batch. The driver (``fan``: one task, then N pipelined ``XADD``s and
their N replies, then one task; ``chain``: N tasks one after another, each waiting for
its reply with a blocking ``XREAD``) prints one JSON line (`benchmarks.harness`).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

from .harness import emit, measure

TASKS = "floor:tasks"
GROUP = "floor"
BATCH = 1000


def _noop() -> int:
    return 1


async def ensure_group(client: Any) -> None:
    from redis.exceptions import ResponseError

    try:
        await client.xgroup_create(TASKS, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def worker(url: str, name: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    await ensure_group(client)
    while True:
        got = await client.xreadgroup(GROUP, name, {TASKS: ">"}, count=256, block=0, noack=True)
        async with client.pipeline(transaction=False) as pipe:
            for _stream, entries in got:
                for _entry_id, fields in entries:
                    pipe.xadd(fields[b"reply"], {b"id": fields[b"id"], b"value": str(_noop())})
            await pipe.execute()


class Driver:
    """Sends tasks and reads their replies on a reply stream of its own per run."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.replies = ""
        self.last = "0"

    async def start_run(self) -> None:
        if self.replies:
            await self.client.delete(self.replies)
        self.replies, self.last = f"floor:replies:{uuid.uuid4().hex}", "0"

    async def send(self, first: int, count: int) -> None:
        for start in range(first, first + count, BATCH):
            async with self.client.pipeline(transaction=False) as pipe:
                for i in range(start, min(first + count, start + BATCH)):
                    pipe.xadd(TASKS, {b"id": str(i), b"reply": self.replies})
                await pipe.execute()

    async def receive(self, count: int) -> None:
        while count:
            got = await self.client.xread({self.replies: self.last}, count=BATCH, block=0)
            for _stream, entries in got:
                count -= len(entries)
                self.last = entries[-1][0]

    async def fan(self, n: int) -> None:
        await self.start_run()
        for first, count in ((0, 1), (1, n), (n + 1, 1)):
            await self.send(first, count)
            await self.receive(count)

    async def chain(self, n: int) -> None:
        await self.start_run()
        for i in range(n):
            await self.send(i, 1)
            await self.receive(1)


def driver(kind: str, n: int, repeat: int, cap: float, url: str) -> None:
    from redis.asyncio import Redis

    with asyncio.Runner() as runner:
        client = Redis.from_url(url)
        runner.run(ensure_group(client))
        drive = Driver(client)
        run = drive.fan if kind == "fan" else drive.chain
        tasks = n + 2 if kind == "fan" else n
        result = measure(lambda: runner.run(run(n)), tasks=tasks, repeat=repeat, cap=cap)
        runner.run(client.aclose())
    emit(result, system="asyncio")


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        asyncio.run(worker(sys.argv[2], sys.argv[3]))
    else:
        kind_, n_, repeat_, cap_, url_ = sys.argv[2:7]
        driver(kind_, int(n_), int(repeat_), float(cap_), url_)

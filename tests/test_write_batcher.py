"""WriteBatcher: the writes of one event-loop turn go in one pipeline; each writer
returns when it has run, and one writer's cancellation is its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from graflow_async.exceptions import TransportError
from graflow_async.transports.redis_batch import WriteBatcher


async def test_the_writes_of_one_turn_run_as_one_batch_in_order() -> None:
    batches: list[list[Any]] = []

    async def run(batch: list[Any]) -> None:
        batches.append(batch)
        await asyncio.sleep(0.01)

    writer = WriteBatcher(run)
    await asyncio.gather(*(writer.write([i]) for i in range(5)))
    assert batches == [[0, 1, 2, 3, 4]]
    await writer.write(["next"])
    assert batches[-1] == ["next"]


async def test_a_cancelled_follower_does_not_cancel_the_batch() -> None:
    ran: list[list[Any]] = []
    gate = asyncio.Event()

    async def run(batch: list[Any]) -> None:
        await gate.wait()
        ran.append(batch)

    writer = WriteBatcher(run)
    leader = asyncio.create_task(writer.write(["a"]))
    follower = asyncio.create_task(writer.write(["b"]))
    other = asyncio.create_task(writer.write(["c"]))
    await asyncio.sleep(0.01)
    follower.cancel()
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(leader, other)
    assert ran == [["a", "b", "c"]]
    assert follower.cancelled()


async def test_a_failed_batch_fails_every_writer_and_a_cancelled_one_says_so() -> None:
    async def boom(batch: list[Any]) -> None:
        raise TransportError("down")

    writer = WriteBatcher(boom)
    results = await asyncio.gather(writer.write([1]), writer.write([2]), return_exceptions=True)
    assert all(isinstance(r, TransportError) and "down" in str(r) for r in results)

    async def stuck(batch: list[Any]) -> None:
        await asyncio.sleep(10)

    writer = WriteBatcher(stuck)
    leader = asyncio.create_task(writer.write([1]))
    follower = asyncio.create_task(writer.write([2]))
    await asyncio.sleep(0.01)
    leader.cancel()
    with pytest.raises(TransportError, match="interrupted"):
        await follower


async def test_execute_answers_each_command_in_place_and_keeps_the_connection_usable(redis_url: str) -> None:
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.exceptions import ResponseError

    from graflow_async.transports.redis_batch import Recorder, execute

    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1)
    client = Redis.from_pool(pool)
    try:
        await client.set("not-a-stream", "x")
        rec = Recorder()
        rec.xadd("batch:s", {b"m": b"1"})
        rec.xadd("not-a-stream", {b"m": b"2"})  # WRONGTYPE: an error in its place
        rec.xadd("batch:absent", {b"m": b"3"}, nomkstream=True)  # no stream made: nil
        answers = await execute(pool, rec.commands)
        assert isinstance(answers[0], bytes) and isinstance(answers[1], ResponseError) and answers[2] is None
        assert await client.xlen("batch:s") == 1 and not await client.exists("batch:absent")
        rec = Recorder()
        entry = answers[0]
        rec.xack("batch:s", "nobody", entry)
        rec.xdel("batch:s", entry)
        assert await execute(pool, rec.commands) == [0, 1]  # the one connection was handed back, fit
    finally:
        await client.delete("not-a-stream", "batch:s")
        await client.aclose()

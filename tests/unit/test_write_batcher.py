"""WriteBatcher: the writes of one event-loop turn go in one round trip; each writer
returns when it has run (or raises its own refusal), and one writer's cancellation is
its own. `commands` merges acks after the rest and wraps adds with acks in a transaction."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from graflow_async.exceptions import TransportError
from graflow_async.transports.redis.batch import Ack, WriteBatcher, commands, needs_transaction


async def test_the_writes_of_one_turn_run_as_one_batch_in_order() -> None:
    batches: list[list[Any]] = []

    async def run(batch: list[Any]) -> list[BaseException | None]:
        batches.append(batch)
        await asyncio.sleep(0.01)  # a round trip that takes a while
        return [None] * len(batch)

    writer = WriteBatcher(run)
    await asyncio.gather(*(writer.write([("SET", i)]) for i in range(5)))
    assert batches == [[[("SET", i)] for i in range(5)]]
    await writer.write([("SET", "next")])
    assert batches[-1] == [[("SET", "next")]]


async def test_each_writer_gets_its_own_outcome() -> None:
    async def run(batch: list[Any]) -> list[BaseException | None]:
        return [TransportError("refused") if items == [("BAD",)] else None for items in batch]

    writer = WriteBatcher(run)
    results = await asyncio.gather(
        writer.write([("OK",)]), writer.write([("BAD",)]), writer.write([("OK",)]), return_exceptions=True
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], TransportError)


def test_acks_are_merged_after_the_rest_and_each_writer_knows_its_commands() -> None:
    batch, mine = commands(
        [
            [("XADD", "r1", "*", "m", b"1"), Ack("t", "g", ["1-0"])],
            [Ack("t", "g", ["2-0"])],
            [("XADD", "r2", "*", "m", b"2")],
        ]
    )
    assert batch == [
        ("XADD", "r1", "*", "m", b"1"),
        ("XADD", "r2", "*", "m", b"2"),
        ("XACK", "t", "g", "1-0", "2-0"),
        ("XDEL", "t", "1-0", "2-0"),
    ]
    assert mine == [[0, 2, 3], [2, 3], [1]]
    assert needs_transaction(batch)
    assert not needs_transaction(batch[2:])  # acks alone
    assert not needs_transaction(batch[:2])  # adds alone


async def test_a_cancelled_follower_does_not_cancel_the_batch() -> None:
    ran: list[list[Any]] = []
    gate, entered = asyncio.Event(), asyncio.Event()

    async def run(batch: list[Any]) -> list[BaseException | None]:
        entered.set()
        await gate.wait()
        ran.append([item for items in batch for item in items])
        return [None] * len(batch)

    writer = WriteBatcher(run)
    leader = asyncio.create_task(writer.write(["a"]))
    follower = asyncio.create_task(writer.write(["b"]))
    other = asyncio.create_task(writer.write(["c"]))
    await entered.wait()  # the three writes are in one batch, under way
    follower.cancel()
    await asyncio.sleep(0)  # yield: the cancellation lands before the batch ends
    gate.set()
    await asyncio.gather(leader, other)
    assert ran == [["a", "b", "c"]]
    assert follower.cancelled()


async def test_a_failed_batch_fails_every_writer_and_a_cancelled_one_says_so() -> None:
    async def boom(batch: list[Any]) -> list[BaseException | None]:
        raise TransportError("down")

    writer = WriteBatcher(boom)
    results = await asyncio.gather(writer.write([1]), writer.write([2]), return_exceptions=True)
    assert all(isinstance(r, TransportError) and "down" in str(r) for r in results)

    stuck_in = asyncio.Event()

    async def stuck(batch: list[Any]) -> list[BaseException | None]:
        stuck_in.set()
        await asyncio.sleep(10)  # a round trip that never ends: the leader is cancelled in it
        return []

    writer = WriteBatcher(stuck)
    leader = asyncio.create_task(writer.write([1]))
    follower = asyncio.create_task(writer.write([2]))
    await stuck_in.wait()
    leader.cancel()
    with pytest.raises(TransportError, match="interrupted"):
        await follower

"""The two journals of durable runs against their contract (`JournalSuite`): a file
beside the checkpoints and a stream on a real redis-server; then what only a file has
(a torn last write, a corrupt record) and what Redis answers that is not a journal."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis

from graflow_async.run.journal import FileJournal, Journal, JournalCorrupt
from graflow_async.run.journal.conformance import JournalSuite, facts, new_run
from graflow_async.run.journal.redis import RedisJournal
from graflow_async.transports.redis import RedisStreamsTransport


class TestFileJournal(JournalSuite):
    @pytest.fixture
    def make(self, tmp_path: Path) -> Callable[[str], Journal]:
        return lambda run_id: FileJournal(tmp_path, run_id)


class TestRedisJournal(JournalSuite):
    @pytest.fixture
    async def make(self, redis_url: str) -> AsyncIterator[Callable[[str], Journal]]:
        async with RedisStreamsTransport(redis_url) as transport:
            yield lambda run_id: RedisJournal(transport, run_id)


async def test_a_torn_last_write_is_left_out_and_the_next_owner_cuts_it(tmp_path: Path) -> None:
    run_id = new_run()
    journal = FileJournal(tmp_path, run_id)
    epoch = await journal.claim("a", 30.0)
    assert epoch is not None
    await journal.append(epoch, facts(3))
    [log] = (tmp_path / run_id / "journal").glob("log.*")
    whole = log.read_bytes()
    await journal.append(epoch, facts(1, start=3))
    log.write_bytes(log.read_bytes()[: len(whole) + 7])  # the process died in the middle of its write
    await journal.release(epoch)
    assert (await FileJournal(tmp_path, run_id).read()).facts == facts(3)
    taker = FileJournal(tmp_path, run_id)
    again = await taker.claim("b", 30.0)
    assert again is not None
    assert await taker.append(again, facts(1, start=3)) == 4
    assert (await FileJournal(tmp_path, run_id).read()).facts == facts(4)


async def test_a_corrupt_record_is_an_error_naming_the_run(tmp_path: Path) -> None:
    run_id = new_run()
    journal = FileJournal(tmp_path, run_id)
    epoch = await journal.claim("a", 30.0)
    assert epoch is not None
    await journal.append(epoch, facts(5))
    await journal.append(epoch, facts(2, start=5))  # a second frame: the first is not the last write
    [log] = (tmp_path / run_id / "journal").glob("log.*")
    data = bytearray(log.read_bytes())
    data[20] ^= 0xFF  # inside the first frame: a frame follows it
    log.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match=f"journal of run {run_id}") as caught:
        await FileJournal(tmp_path, run_id).read()
    assert caught.value.run_id == run_id


async def test_an_entry_that_is_not_a_fact_is_an_error_naming_the_run(redis_url: str) -> None:
    run_id = new_run()
    async with RedisStreamsTransport(redis_url) as transport:
        journal = RedisJournal(transport, run_id)
        epoch = await journal.claim("a", 30.0)
        assert epoch is not None
        await journal.append(epoch, facts(2))
        client = redis.Redis.from_url(redis_url)
        try:
            client.xadd(transport.keys.journal(run_id), {"x": "not a fact"}, id="0-3")
        finally:
            client.close()
        with pytest.raises(JournalCorrupt, match=f"journal of run {run_id}"):
            await journal.read()


@pytest.mark.parametrize("where", ["file", "redis"])
async def test_a_hundred_thousand_facts_compacted_read_back_fast(where: str, tmp_path: Path, redis_url: str) -> None:
    run_id = new_run()
    async with RedisStreamsTransport(redis_url) as transport:
        journal: Journal = FileJournal(tmp_path, run_id) if where == "file" else RedisJournal(transport, run_id)
        epoch = await journal.claim("a", 30.0)
        assert epoch is not None
        for start in range(0, 100_000, 1000):
            await journal.append(epoch, facts(1000, start=start))
        await journal.compact(epoch, b"x" * 200_000, 99_900)  # a checkpoint document's size
        started = time.perf_counter()
        replay = await journal.read()
        took = time.perf_counter() - started
        assert replay.upto == 99_900 and replay.facts == facts(100, start=99_900)
        print(f"{where}: read back 100,000 compacted facts in {took * 1000:.1f} ms")
        await journal.aclose()


async def test_a_durable_runs_tasks_wait_for_an_adopter_when_its_driver_is_gone(redis_url: str) -> None:
    """Its lease lapsed: workers keep its tasks (another process adopts it), even after
    Redis lost the owner record and the driver made it again."""
    from graflow_async.transports.base import Incarnation

    run_id = new_run()
    async with RedisStreamsTransport(redis_url) as transport:
        journal = RedisJournal(transport, run_id)
        epoch = await journal.begin("driver", 30.0)
        client = redis.Redis.from_url(redis_url)
        try:
            client.delete(transport.keys.owner(run_id))  # a restart without persistence
            assert await journal.renew(epoch, 30.0) is True  # made again
            client.delete(transport.keys.lease(run_id))  # the driver died: its lease is gone
        finally:
            client.close()
        it = Incarnation(run_id, epoch, f"run:{run_id}:replies")
        assert await transport.ended([it]) == set()  # waits for an adopter, not revoked
        adopted = await journal.claim("adopter", 30.0)
        assert adopted == epoch + 1
        assert await transport.ended([it]) == {it}  # now the old incarnation's tasks are stale


async def test_what_an_older_owner_wrote_past_a_newer_owners_start_is_left_out(tmp_path: Path) -> None:
    """An owner whose append passed its fence just as another claimed the run (the
    moment between the check and the write): its records past the new owner's first,
    even a torn one, do not count; the same owner's records there would be corruption."""
    from graflow_async.run.journal.frames import batch

    run_id = new_run()
    old = FileJournal(tmp_path, run_id)
    first = await old.claim("a", 0.05)
    assert first is not None
    await old.append(first, facts(3))
    time.sleep(0.1)  # its lease lapses
    new = FileJournal(tmp_path, run_id)
    second = await new.claim("b", 30.0)
    assert second is not None and second > first
    [log] = (tmp_path / run_id / "journal").glob("log.*")
    with log.open("ab") as late:  # the old owner's write that slipped past its fence
        late.write(batch(3, first, facts(2, start=3)) + batch(5, first, facts(1, start=5))[:-3])
    await new.append(second, facts(2, start=100))
    assert (await FileJournal(tmp_path, run_id).read()).facts == facts(3) + facts(2, start=100)

    assert (await FileJournal(tmp_path, run_id).read()).facts == facts(3) + facts(2, start=100)


async def test_a_newer_owners_record_in_an_older_segment_is_corruption(tmp_path: Path) -> None:
    from graflow_async.run.journal.frames import batch

    run_id = new_run()
    old = FileJournal(tmp_path, run_id)
    first = await old.claim("a", 0.05)
    assert first is not None
    await old.append(first, facts(3))
    time.sleep(0.1)
    new = FileJournal(tmp_path, run_id)
    second = await new.claim("b", 30.0)
    assert second is not None
    [log] = (tmp_path / run_id / "journal").glob("log.*")
    with log.open("ab") as more:  # not what an older owner could have written
        more.write(batch(3, second, facts(1, start=3)))
    await new.append(second, facts(2, start=100))
    with pytest.raises(JournalCorrupt, match="runs past the next segment"):
        await FileJournal(tmp_path, run_id).read()

"""The two journals of durable runs against their contract (`JournalSuite`): a file
beside the checkpoints and a stream on a real redis-server; then what only a file has
(a torn last write, a corrupt record) and what Redis answers that is not a journal."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis

from graflow_async.run.journal import FileJournal, Journal, JournalCorrupt
from graflow_async.run.journal.conformance import JournalSuite, facts, new_run, owned
from graflow_async.run.journal.frames import batch
from graflow_async.run.journal.redis import RedisJournal
from graflow_async.run.journal.segment import GROW_FROM
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


def _copy_cut_before_its_check_word(log: Path, last_frame_at: int) -> None:
    """A crash in the middle of the copy of a frame into the mapped segment: all of it but
    its check word, copied last, is there."""
    with log.open("r+b") as f:
        f.seek(last_frame_at + 4)
        f.write(bytes(4))


def _file_cut_short(log: Path, last_frame_at: int) -> None:
    """A write torn by a crash (a journal written by `write`, before segments were mapped)."""
    os.truncate(log, last_frame_at + 7)


@pytest.mark.parametrize("tear", [_copy_cut_before_its_check_word, _file_cut_short])
async def test_a_torn_last_write_is_left_out(tmp_path: Path, tear: Callable[[Path, int], None]) -> None:
    run_id = new_run()
    journal = FileJournal(tmp_path, run_id)
    epoch = await owned(journal)
    await journal.append(epoch, facts(3))
    await journal.append(epoch, facts(1, start=3))
    await journal.release(epoch)  # its segment cut to the frames written
    [log] = (tmp_path / run_id / "journal").glob("log.*")
    last_frame_at = len(log.read_bytes()) - len(batch(3, epoch, facts(1, start=3)))
    tear(log, last_frame_at)
    assert (await FileJournal(tmp_path, run_id).read()).facts == facts(3)
    taker = FileJournal(tmp_path, run_id)
    again = await taker.claim("b", 30.0)
    assert again is not None
    assert await taker.append(again, facts(1, start=3)) == 4
    assert (await FileJournal(tmp_path, run_id).read()).facts == facts(4)


async def test_a_segment_whose_owner_died_ends_at_its_last_whole_frame(tmp_path: Path) -> None:
    """Its file still as long as it was made ahead of the frames (zeros), never cut: a
    reader stops at the zeros, the next owner writes a segment of its own after it."""
    run_id = new_run()
    journal = FileJournal(tmp_path, run_id)
    epoch = await journal.claim("a", 0.05)
    assert epoch is not None
    await journal.append(epoch, facts(3))
    [log] = (tmp_path / run_id / "journal").glob("log.*")
    assert len(log.read_bytes()) >= GROW_FROM  # the driver "dies" here: nothing closes the segment
    time.sleep(0.1)  # its lease lapses
    assert (await FileJournal(tmp_path, run_id).read()).facts == facts(3)
    taker = FileJournal(tmp_path, run_id)
    again = await taker.claim("b", 30.0)
    assert again is not None
    assert await taker.append(again, facts(2, start=3)) == 5
    await taker.release(again)
    assert (await FileJournal(tmp_path, run_id).read()).facts == facts(5)
    assert len(log.read_bytes()) >= GROW_FROM  # the former owner's segment left as it was
    await journal.aclose()


async def test_a_corrupt_record_is_an_error_naming_the_run(tmp_path: Path) -> None:
    run_id = new_run()
    journal = FileJournal(tmp_path, run_id)
    epoch = await owned(journal)
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
        epoch = await owned(journal)
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
        epoch = await owned(journal)
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
    torn = bytearray(batch(5, first, facts(1, start=5)))
    torn[4:8] = bytes(4)  # a copy cut before its check word
    with log.open("r+b") as late:  # the old owner's copies that slipped past its fence, after its frames
        late.seek(len(batch(0, first, facts(3))))
        late.write(batch(3, first, facts(2, start=3)) + torn)
    await new.append(second, facts(2, start=100))
    assert (await FileJournal(tmp_path, run_id).read()).facts == facts(3) + facts(2, start=100)

    assert (await FileJournal(tmp_path, run_id).read()).facts == facts(3) + facts(2, start=100)


async def test_a_newer_owners_record_in_an_older_segment_is_corruption(tmp_path: Path) -> None:
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
    with log.open("r+b") as more:  # not what an older owner could have written
        more.seek(len(batch(0, first, facts(3))))
        more.write(batch(3, second, facts(1, start=3)))
    await new.append(second, facts(2, start=100))
    with pytest.raises(JournalCorrupt, match="runs past the next segment"):
        await FileJournal(tmp_path, run_id).read()


async def test_a_release_leaves_a_lapsed_lease_and_never_makes_a_removed_one_again(tmp_path: Path) -> None:
    """The owner rewrites its lease file in place (no read, no rename): it reads as a
    lapsed lease, so the next owner takes the next epoch at once; a lease file a newer
    owner removed stays removed."""
    run_id = new_run()
    journal = FileJournal(tmp_path, run_id)
    epoch = await journal.claim("a", 30.0)
    assert epoch == 1
    lease = tmp_path / run_id / "lease.0000000001"
    size = len(lease.read_bytes())
    await journal.release(epoch)
    doc = json.loads(lease.read_bytes())
    assert doc["expires"] == 0.0 and doc["holder"] == "a" and len(lease.read_bytes()) == size
    taker = FileJournal(tmp_path, run_id)
    assert await taker.claim("b", 30.0) == 2  # no wait for a live lease
    assert not lease.exists()  # the lapsed one, removed by the taker
    await journal.release(epoch)  # again, late: nothing made
    assert not lease.exists() and (tmp_path / run_id / "lease.0000000002").exists()
    await taker.aclose()


@pytest.mark.parametrize("sizes", [(30, 6), (0, 0), (70_000, 6), (2 << 20, 6)])
async def test_a_turn_of_two_facts_is_the_frame_batch_makes(tmp_path: Path, sizes: tuple[int, int]) -> None:
    """The usual turn (a fact and its step) is framed by the journal itself: the same
    bytes `frames.batch` makes, read back whole; a large one goes through `batch`."""
    run_id = new_run()
    journal = FileJournal(tmp_path, run_id)
    epoch = await owned(journal)
    two = [b"f" * sizes[0], b"s" * sizes[1]]
    await journal.append(epoch, facts(1))
    await journal.append(epoch, two)
    await journal.append(epoch, two)
    await journal.release(epoch)
    [log] = (tmp_path / run_id / "journal").glob("log.*")
    assert log.read_bytes() == batch(0, epoch, facts(1)) + batch(1, epoch, two) + batch(3, epoch, two)
    assert (await FileJournal(tmp_path, run_id).read()).facts == facts(1) + two + two


async def test_a_redis_append_keeps_its_batch_in_few_entries(redis_url: str) -> None:
    """One entry per append (of at most ENTRY_FACTS facts: a larger batch takes several),
    read back fact by fact; a snapshot inside an append keeps that entry, its facts before
    the snapshot left out."""
    from graflow_async.run.journal.redis import ENTRY_FACTS

    run_id = new_run()
    async with RedisStreamsTransport(redis_url) as transport:
        journal = RedisJournal(transport, run_id)
        epoch = await owned(journal)
        await journal.append(epoch, facts(3))
        await journal.append(epoch, facts(2 * ENTRY_FACTS + 5, start=3))
        assert await transport.client.xlen(transport.keys.journal(run_id)) == 4
        assert (await journal.read()).facts == facts(2 * ENTRY_FACTS + 8)
        await journal.compact(epoch, b"snap", 3)
        replay = await journal.read()
        assert replay.upto == 3 and replay.facts == facts(2 * ENTRY_FACTS + 5, start=3)
        await journal.compact(epoch, b"snap", ENTRY_FACTS + 10)  # inside the second entry
        assert await transport.client.xlen(transport.keys.journal(run_id)) == 2
        replay = await journal.read()
        assert replay.upto == ENTRY_FACTS + 10 and replay.facts == facts(ENTRY_FACTS - 2, start=ENTRY_FACTS + 10)

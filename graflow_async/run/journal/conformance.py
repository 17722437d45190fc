"""The contract every `Journal` keeps, as a pytest suite: subclass `JournalSuite` and give
a ``journal`` fixture making a journal of a fresh run (``make(run_id)``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from graflow_async.run.journal.base import Fenced, Journal

Make = Callable[[str], Journal]
LAPSE = 0.3  # seconds: the lease the fencing tests let lapse


def facts(n: int, start: int = 0) -> list[bytes]:
    return [f"fact-{i}".encode() for i in range(start, start + n)]


def new_run() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


async def owned(journal: Journal, owner: str = "a") -> int:
    """The epoch of `journal`, claimed by `owner` (for 30 s): nobody else holds its run."""
    epoch = await journal.claim(owner, 30.0)
    assert epoch is not None
    return epoch


class JournalSuite:
    async def test_a_new_journal_is_empty(self, make: Make) -> None:
        replay = await make(new_run()).read()
        assert (replay.snapshot, replay.upto, replay.facts, replay.next_seq) == (None, 0, [], 0)

    async def test_facts_come_back_in_order_across_batches(self, make: Make) -> None:
        journal = make(new_run())
        epoch = await journal.claim("a", 30.0)
        assert epoch is not None and epoch >= 1
        assert await journal.append(epoch, facts(3)) == 3
        assert await journal.append(epoch, facts(2, start=3)) == 5
        assert await journal.append(epoch, []) == 5
        replay = await make(journal.run_id).read()  # another process reading it
        assert replay.facts == facts(5) and replay.epoch == epoch
        await journal.aclose()

    async def test_a_live_owner_keeps_the_run_and_a_lapsed_one_is_fenced_out(self, make: Make) -> None:
        run_id = new_run()
        first = make(run_id)
        old = await first.claim("a", LAPSE)
        assert old is not None
        await first.append(old, facts(2))
        second = make(run_id)
        assert await second.claim("b", 30.0) is None  # a's lease is live
        await asyncio.sleep(LAPSE + 0.2)
        new = await second.claim("b", 30.0)
        assert new is not None and new > old
        with pytest.raises(Fenced):
            await first.append(old, facts(1, start=2))
        with pytest.raises(Fenced):
            await first.compact(old, b"stale snapshot", 2)
        assert await first.renew(old, 30.0) is False
        assert await second.append(new, facts(1, start=2)) == 3
        replay = await make(run_id).read()
        assert replay.facts == facts(3) and replay.snapshot is None and replay.epoch == new
        await first.aclose()
        await second.aclose()

    async def test_of_two_adopters_at_once_one_wins(self, make: Make) -> None:
        run_id = new_run()
        gone = make(run_id)
        assert await gone.claim("dead", LAPSE) is not None
        await asyncio.sleep(LAPSE + 0.2)
        claims = await asyncio.gather(make(run_id).claim("x", 30.0), make(run_id).claim("y", 30.0))
        assert sorted(c is None for c in claims) == [False, True], claims

    async def test_compaction_keeps_the_snapshot_and_the_facts_after_it(self, make: Make) -> None:
        journal = make(new_run())
        epoch = await owned(journal)
        await journal.append(epoch, facts(10))
        await journal.compact(epoch, b"state after 6", 6)
        assert await journal.append(epoch, facts(2, start=10)) == 12
        replay = await make(journal.run_id).read()
        assert replay.snapshot == b"state after 6" and replay.upto == 6
        assert replay.facts == facts(6, start=6) and replay.next_seq == 12
        await journal.compact(epoch, b"state after 12", 12)
        replay = await make(journal.run_id).read()
        assert (replay.snapshot, replay.upto, replay.facts) == (b"state after 12", 12, [])
        await journal.aclose()

    async def test_the_next_owner_goes_on_where_the_last_stopped(self, make: Make) -> None:
        run_id = new_run()
        first = make(run_id)
        old = await first.claim("a", 30.0)
        assert old is not None
        await first.append(old, facts(4))
        await first.release(old)  # it ended (or handed over)
        second = make(run_id)
        new = await second.claim("b", 30.0)
        assert new is not None and new > old
        assert await second.append(new, facts(1, start=4)) == 5
        assert (await make(run_id).read()).facts == facts(5)
        await first.aclose()
        await second.aclose()

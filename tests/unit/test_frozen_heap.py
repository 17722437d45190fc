"""A large run keeps the garbage collector off what it holds for its whole length
(`frozen_heap`): frozen while it runs, unfrozen after, the application's own freeze
left alone."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from graflow_async import run, task, workflow
from graflow_async.run import frozen_heap


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(frozen_heap, "FREEZE_AT", 3)
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()


def flow(name: str, n: int, seen: list[int], gate: asyncio.Event | None = None) -> object:
    async def look() -> int:
        if gate is not None:
            await gate.wait()
        seen.append(gc.get_freeze_count())
        return 1

    with workflow(name) as wf:
        wf.add(*(task(look, id=f"t{i}") for i in range(n)))
    return wf


async def test_a_large_run_is_frozen_while_it_runs_and_unfrozen_after(small_threshold: None) -> None:
    seen: list[int] = []
    await run(flow("big", 3, seen))
    assert seen and all(count > 0 for count in seen)
    assert gc.get_freeze_count() == 0


async def test_a_small_run_is_not_frozen(small_threshold: None) -> None:
    seen: list[int] = []
    await run(flow("small", 2, seen))
    assert seen == [0, 0]


async def test_concurrent_large_runs_share_one_freeze(small_threshold: None) -> None:
    first_seen: list[int] = []
    second_seen: list[int] = []
    gate = asyncio.Event()
    first = asyncio.create_task(run(flow("first", 3, first_seen, gate)))
    await run(flow("second", 3, second_seen))  # ends while the first still runs
    assert gc.get_freeze_count() > 0
    gate.set()
    await first
    assert all(count > 0 for count in first_seen + second_seen)
    assert gc.get_freeze_count() == 0


async def test_the_applications_own_freeze_is_left_alone(small_threshold: None) -> None:
    keep = [object() for _ in range(10)]  # noqa: F841 (something tracked to freeze)
    gc.freeze()
    seen: list[int] = []
    await run(flow("app-frozen", 3, seen))
    assert gc.get_freeze_count() > 0  # the run did not unfreeze what the application froze


async def test_a_failing_large_run_unfreezes(small_threshold: None) -> None:
    async def boom() -> None:
        raise RuntimeError("boom")

    with workflow("fails") as wf:
        wf.add(*(task(boom, id=f"b{i}") for i in range(3)))
    with pytest.raises(Exception, match="boom"):
        await run(wf)
    assert gc.get_freeze_count() == 0

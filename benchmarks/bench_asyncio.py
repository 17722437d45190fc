"""The floor: plain asyncio doing each scenario's work, with no workflow runtime.

    python -m benchmarks.bench_asyncio KIND N [REPEAT [CAP]]

prints one JSON line (`benchmarks.harness`). Standard library only, so that its peak
RSS is the interpreter's plus the work's. What "the same work" is, per kind:

- ``chain``: ``await asyncio.create_task(noop())`` N times, one after another;
- ``chain-sync``: ``await loop.run_in_executor(None, noop)`` N times (a plain function
  in the default thread pool, which is where graflow-async runs plain functions);
- ``fan``: a task, then a ``gather`` of N tasks, then a task (N + 2 tasks);
- ``lattice``: layers of 10 tasks, each awaiting two tasks of the layer before;
- ``group``: like ``fan``, each member retried in a loop (up to 3 attempts, no delay;
  every 10th fails once, every 100th always), ``return_exceptions=True`` (best effort);
- ``checkpoint``: ``chain`` where every 100th task pickles the results so far to a temp
  file, fsyncs it, renames it into place and fsyncs the directory;
- ``hitl``: a task awaits a future that a helper sets after a pause (`answer_delays`),
  stamping ``time.monotonic()``; the figure is from that stamp to the task resuming.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from .harness import answer_delays, emit, measure, measure_samples, not_available, parse_args

CHECKPOINT_EVERY = 100
WIDTH = 10


async def _noop() -> int:
    return 1


def _noop_sync() -> int:
    return 1


async def chain(n: int) -> None:
    for _ in range(n):
        await asyncio.create_task(_noop())


async def chain_sync(n: int) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(n):
        await loop.run_in_executor(None, _noop_sync)


async def chain_inline(n: int) -> None:
    """The floor of a chain of cheap plain functions called on the loop: the calls alone."""
    for _ in range(n):
        _noop_sync()


async def fan(n: int) -> None:
    await asyncio.create_task(_noop())
    await asyncio.gather(*(asyncio.create_task(_noop()) for _ in range(n)))
    await asyncio.create_task(_noop())


async def lattice(n: int, width: int = WIDTH) -> None:
    async def node(*deps: asyncio.Task[int]) -> int:
        for d in deps:
            await d
        return await _noop()

    prev = [asyncio.create_task(node()) for _ in range(width)]
    tasks = list(prev)
    for _ in range(n // width - 1):
        prev = [asyncio.create_task(node(prev[i], prev[(i + 1) % width])) for i in range(width)]
        tasks.extend(prev)
    await asyncio.gather(*tasks)


def fails(i: int, attempt: int) -> bool:
    """The group scenario's failures: every 100th member always, every 10th once."""
    return i % 100 == 0 or (i % 10 == 0 and attempt == 1)


async def group(n: int, attempts: int = 3) -> None:
    async def member(i: int) -> int:
        for attempt in range(1, attempts + 1):
            try:
                if fails(i, attempt):
                    raise RuntimeError(f"member {i} failed on attempt {attempt}")
                return i
            except RuntimeError:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    await asyncio.create_task(_noop())
    await asyncio.gather(*(asyncio.create_task(member(i)) for i in range(n)), return_exceptions=True)
    await asyncio.create_task(_noop())


def durable_write(directory: Path, data: bytes) -> None:
    """Temp file, write, fsync, rename over the target, fsync the directory."""
    fd, tmp = tempfile.mkstemp(dir=directory)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / "checkpoint.pkl")
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


async def checkpoint(n: int, directory: Path) -> None:
    results: dict[str, int] = {}
    for i in range(n):
        results[f"t{i}"] = await asyncio.create_task(_noop())
        if i % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
            durable_write(directory, pickle.dumps(results))


async def hitl(count: int) -> list[float]:
    loop = asyncio.get_running_loop()
    latencies = []

    async def answer(future: asyncio.Future[float], delay: float) -> None:
        await asyncio.sleep(delay)
        future.set_result(time.monotonic())

    for delay in answer_delays(count):
        future: asyncio.Future[float] = loop.create_future()
        helper = asyncio.create_task(answer(future, delay))
        stamp = await future
        latencies.append(time.monotonic() - stamp)
        await helper
    return latencies


def workload(kind: str, n: int, directory: Path) -> tuple[Callable[[], Awaitable[object]], int] | None:
    """The coroutine function of a run and its number of tasks."""
    plans: dict[str, tuple[Callable[[], Awaitable[object]], int]] = {
        "chain": (lambda: chain(n), n),
        "chain-sync": (lambda: chain_sync(n), n),
        "chain-inline": (lambda: chain_inline(n), n),
        "fan": (lambda: fan(n), n + 2),
        "lattice": (lambda: lattice(n), n),
        "group": (lambda: group(n), n + 2),
        "checkpoint": (lambda: checkpoint(n, directory), n),
    }
    return plans.get(kind)


def main(argv: list[str]) -> None:
    kind, n, repeat, cap = parse_args(argv)
    with asyncio.Runner() as runner, tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        if kind == "hitl":
            emit(measure_samples(lambda: runner.run(hitl(n)), repeat=repeat, cap=cap), system="asyncio")
            return
        plan = workload(kind, n, Path(tmp))
        if plan is None:
            emit(not_available(f"no plain-asyncio floor for {kind}"), system="asyncio")
            return
        make, tasks = plan
        emit(measure(lambda: runner.run(make()), tasks=tasks, repeat=repeat, cap=cap), system="asyncio")


if __name__ == "__main__":
    main(sys.argv[1:])

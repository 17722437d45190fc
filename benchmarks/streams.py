"""Streams from running tasks (SPEC 12): what a streamed chunk costs, and how fast a
reader sees them.

    python -m benchmarks.streams [--items 100000] [--redis-items 10000] [--repeat 5]

- in-process: a task that streams `items` chunks against the same task that does the
  same work without streaming them (rounds alternating): µs per chunk over the task
  alone (bar: at most 3 µs);
- Redis (its own redis-server, one worker): a task on the worker streams `redis-items`
  chunks; from the run's start to the last chunk read by a reader in this process
  (bar: within 1 s in all).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import bar, print_bars, report
from benchmarks.redis_streams import redis_server, start_workers, stop, wait_ready

MODULE = "benchmarks.stream_tasks"


async def local_part(args: argparse.Namespace) -> dict[str, Any]:
    from graflow_async import run

    from .stream_tasks import streaming_wf

    timed: dict[bool, list[float]] = {False: [], True: []}
    for streaming in (False, True):  # warm up
        await run(streaming_wf(1000, streaming))
    for i in range(args.repeat * 2):
        streaming = i % 2 == 1
        wf = streaming_wf(args.items, streaming)
        t0 = time.perf_counter()
        await run(wf)
        timed[streaming].append(time.perf_counter() - t0)
    plain, streamed = statistics.median(timed[False]), statistics.median(timed[True])
    return {
        "items": args.items,
        "plain_s": plain,
        "streamed_s": streamed,
        "us_per_item": (streamed - plain) / args.items * 1e6,
    }


async def redis_part(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from graflow_async import run, run_stream
    from graflow_async.transports.redis import RedisStreamsTransport

    from .stream_tasks import streaming_wf

    times = []
    async with RedisStreamsTransport(url) as driving, RedisStreamsTransport(url) as reading:
        for i in range(args.repeat):
            run_id = f"bench-stream-{i}"
            t0 = time.perf_counter()
            running = asyncio.ensure_future(run(streaming_wf(args.redis_items, True), run_id=run_id, transport=driving))
            count = 0
            async for _ in run_stream(run_id, transport=reading):
                count += 1
            times.append(time.perf_counter() - t0)
            await running
            assert count == args.redis_items, count
    return {"items": args.redis_items, "seconds": statistics.median(times), "best_s": min(times)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("GRAFLOW_LOG_LEVEL", "error")
    tmp = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    out: dict[str, Any] = {"local": asyncio.run(local_part(args))}
    try:
        with redis_server() as (url, _server):
            names = [f"streams-w1-{os.getpid()}"]
            workers = start_workers(url, names, 64, tmp, module=MODULE)
            try:
                wait_ready(url, names, workers, tmp)
                out["redis"] = asyncio.run(redis_part(url, args))
            finally:
                for w in workers:
                    stop(w)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    us, seconds = out["local"]["us_per_item"], out["redis"]["seconds"]
    out["bars"] = {
        "local_us_per_item": bar("us", round(us, 2), 3.0, us <= 3.0),
        "redis_items_seconds": bar("seconds", round(seconds, 3), 1.0, seconds <= 1.0),
    }
    return out


def print_table(r: dict[str, Any]) -> None:
    loc, red = r["local"], r["redis"]
    print("streams: chunks from running tasks")
    print(
        f"  in-process: {loc['items']:,} chunks, {loc['plain_s'] * 1e3:.1f} ms without streaming, "
        f"{loc['streamed_s'] * 1e3:.1f} ms with: {loc['us_per_item']:.2f} µs per chunk"
    )
    print(f"  redis: {red['items']:,} chunks from a worker read in {red['seconds']:.3f}s (best {red['best_s']:.3f}s)")
    print_bars(r["bars"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streams", description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--redis-items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    report(measure(parser.parse_args(sys.argv[1:] if argv is None else argv)), print_table)


if __name__ == "__main__":
    main()

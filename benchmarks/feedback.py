"""Human-in-the-loop latency: from an answer being given to the waiting task resuming.

In-process: a run's task waits in `request_feedback` on a `MemoryFeedbackStore`; an
answerer in the same loop responds and stamps the time in the answer. Across
processes: the run waits on a `RedisFeedbackStore` and a separate answering process
responds through its own store instance. `time.monotonic()` is system-wide on Linux,
so stamps from both processes compare.

    python -m benchmarks.feedback [--requests N] [--table]

prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from graflow_async import run, task, workflow

from . import report
from .redis_streams import redis_server

N = 200


def _workflow(n: int, latencies: list[float]) -> Any:
    @task(inject_context=True)
    async def ask(context: Any) -> None:
        for i in range(n):
            answer = await context.request_feedback("text", f"question {i}", timeout=30)
            latencies.append(time.monotonic() - float(answer.text))

    with workflow("feedback-latency") as wf:
        wf.add(ask)
    return wf


def _percentiles(latencies: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in latencies)
    return {"p50_ms": statistics.median(ms), "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))]}


async def answer_all(store: Any, count: int, *, poll: float = 0.001, idle: float = 0.0) -> None:
    """Answer `count` requests as they appear in `store`, each with the time it was
    answered (``time.monotonic()``, in ``text``); rest `idle` seconds after each round."""
    answered: set[str] = set()
    while len(answered) < count:
        pending = [r for r in await store.list_pending() if r.feedback_id not in answered]
        if not pending:
            await asyncio.sleep(poll)
            continue
        for request in pending:
            await store.respond(request.feedback_id, {"text": repr(time.monotonic())})
            answered.add(request.feedback_id)
        if idle:
            await asyncio.sleep(idle)


async def in_process(n: int = N) -> dict[str, float]:
    from graflow_async.feedback import MemoryFeedbackStore

    store = MemoryFeedbackStore()
    latencies: list[float] = []
    helper = asyncio.create_task(answer_all(store, n))
    await run(_workflow(n, latencies), feedback_store=store)
    await helper
    return _percentiles(latencies)


async def across_redis(n: int = N) -> dict[str, float]:
    from graflow_async.feedback.redis import RedisFeedbackStore

    with redis_server() as (url, _):
        store = RedisFeedbackStore(url, namespace="bench")
        from .answerer import start

        answering = start(url, "bench", n)
        latencies: list[float] = []
        try:
            await run(_workflow(n, latencies), feedback_store=store)
        finally:
            answering.wait(30)
            await store.aclose()
        return _percentiles(latencies)


async def measure(n: int = N) -> dict[str, Any]:
    os.environ.setdefault("GRAFLOW_LOG_LEVEL", "error")
    out: dict[str, Any] = {"requests": n, "in_process": await in_process(n)}
    out["redis"] = await across_redis(n)
    return out


def print_table(r: dict[str, Any]) -> None:
    print(f"human in the loop: answer -> waiting task resumed, {r['requests']} requests answered back to back")
    for where in ("in_process", "redis"):
        print(f"  {where:<11} p50 {r[where]['p50_ms']:.2f} ms   p99 {r[where]['p99_ms']:.2f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.feedback", description=__doc__)
    parser.add_argument("--requests", type=int, default=N, help=f"sequential requests per mode (default {N})")
    parser.add_argument("--table", action="store_true", help="also print the table (to stderr)")
    args = parser.parse_args(argv)
    report(asyncio.run(measure(args.requests)), print_table if args.table else None)


if __name__ == "__main__":
    main()

"""Flow control (SPEC 11): what limits cost, and whether they hold, judged by the tasks.

    python -m benchmarks.flow_control [--fan 2000] [--keyed 20000] [--keys 1000]
                                      [--backlog 10000] [--urgent 50] [--rate-seconds 60]
                                      [--repeat 5]

Redis (its own redis-server, 2 workers of 64 slots, ``--import benchmarks.flow_tasks``)
and in-process:

- ``fan``: a fan-out of `fan` trivial tasks under a `Concurrency` wider than the
  workers' slots (it never binds: what admission costs) against the same without
  limits, rounds alternating (bar: within 1.3x, Redis and in-process);
- ``keyed``: `keyed` tasks of 5 ms under ``Concurrency(2, key="{k}")`` over `keys` keys,
  on Redis: the most of one key running at once, by the tasks' own times (bar: 0
  violations);
- ``priority``: `urgent` priority-9 tasks sent one by one while a priority-1 backlog of
  `backlog` 50 ms tasks keeps both workers busy: from sending to the task's start,
  p50/p99 (bar: p99 under 50 ms plus one backlog task's run time);
- ``rate``: ``RateLimit(20, per=1.0)`` over `rate-seconds` seconds of tasks on Redis: the
  most starts in any one-second window, by the tasks' own clocks (bar: never above 20).

Figures, never assertions: compare the ratios, not the times, across machines.
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
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks import bar, print_bars, report
from benchmarks.durable import paired
from benchmarks.flow_tasks import most_at_once, most_in_window
from benchmarks.redis_streams import redis_server, start_workers, stop, wait_ready

MODULE = "benchmarks.flow_tasks"
BACKLOG_TASK_S = 0.05
RATE, PER = 20, 1.0


async def fan_part(args: argparse.Namespace, transport: Any) -> dict[str, Any]:
    from graflow_async import run

    from .flow_tasks import fan

    plain, limited = fan(args.fan, False), fan(args.fan, True)
    for wf in (plain, limited):  # warm up both paths
        await run(wf, transport=transport)
    return await paired(lambda d: run(limited if d else plain, transport=transport), args.repeat)


async def keyed_part(args: argparse.Namespace, transport: Any) -> dict[str, Any]:
    from graflow_async import run

    from .flow_tasks import keyed_fan

    started = time.perf_counter()
    result = await run(keyed_fan(args.keyed, args.keys), transport=transport)
    took = time.perf_counter() - started
    spans: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for task_id, (t0, t1) in result.results.items():
        spans[int(task_id[1:]) * args.keys // args.keyed].append((t0, t1))
    most = max(most_at_once(s) for s in spans.values())
    return {"tasks": args.keyed, "keys": args.keys, "seconds": took, "most_per_key": most, "violations": most > 2}


async def priority_part(args: argparse.Namespace, transport: Any) -> dict[str, Any]:
    from graflow_async import run

    from .flow_tasks import backlog, urgent_one

    waits = []
    running = asyncio.ensure_future(run(backlog(args.backlog, BACKLOG_TASK_S), transport=transport, priority=1))
    try:
        await asyncio.sleep(1.0)  # the backlog is queued and both workers are busy with it
        for _ in range(args.urgent):
            sent = time.time()
            result = await run(urgent_one(), transport=transport)
            waits.append(result.output - sent)
            await asyncio.sleep(0.02)
        left = not running.done()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    waits.sort()
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    return {
        "backlog": args.backlog,
        "samples": len(waits),
        "backlog_still_running": left,
        "p50_ms": statistics.median(waits) * 1e3,
        "p99_ms": p99 * 1e3,
        "bar_ms": 50 + BACKLOG_TASK_S * 1e3,
    }


async def rate_part(args: argparse.Namespace, transport: Any) -> dict[str, Any]:
    from graflow_async import run

    from .flow_tasks import rated_fan

    n = int(args.rate_seconds * RATE / PER)
    result = await run(rated_fan(n), transport=transport)
    starts = sorted(result.results.values())
    return {"tasks": n, "seconds": starts[-1] - starts[0], "most_per_window": most_in_window(starts, PER)}


async def local_fan(args: argparse.Namespace) -> dict[str, Any]:
    from graflow_async import run

    from .flow_tasks import fan

    plain, limited = fan(args.fan, False), fan(args.fan, True)
    for wf in (plain, limited):
        await run(wf)
    return await paired(lambda d: run(limited if d else plain), args.repeat)


async def redis_parts(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from graflow_async.transports.redis import RedisStreamsTransport

    async with RedisStreamsTransport(url) as transport:
        return {
            "fan": await fan_part(args, transport),
            "keyed": await keyed_part(args, transport),
            "priority": await priority_part(args, transport),
            "rate": await rate_part(args, transport),
        }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("GRAFLOW_LOG_LEVEL", "error")
    tmp = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    out: dict[str, Any] = {}
    try:
        with redis_server() as (url, _server):
            names = [f"flow-w{i}-{os.getpid()}" for i in (1, 2)]
            workers = start_workers(url, names, 64, tmp, module=MODULE)
            try:
                wait_ready(url, names, workers, tmp)
                out["redis"] = asyncio.run(redis_parts(url, args))
            finally:
                for w in workers:
                    stop(w)
        out["local"] = {"fan": asyncio.run(local_fan(args))}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    red, local = out["redis"], out["local"]["fan"]["ratio"]
    p99, most = red["priority"]["p99_ms"], red["rate"]["most_per_window"]
    out["bars"] = {
        "redis_fan": bar("ratio", round(red["fan"]["ratio"], 3), 1.3, red["fan"]["ratio"] <= 1.3),
        "local_fan": bar("ratio", round(local, 3), 1.3, local <= 1.3),
        "keyed_violations": bar("most_per_key", red["keyed"]["most_per_key"], 2, not red["keyed"]["violations"]),
        "priority_p99_ms": bar("ms", round(p99, 1), red["priority"]["bar_ms"], p99 < red["priority"]["bar_ms"]),
        "rate_window": bar("most", most, RATE, most <= RATE),
    }
    return out


def print_table(r: dict[str, Any]) -> None:
    red, loc = r["redis"], r["local"]
    print("flow control: limits and priorities (Redis: 2 workers of 64 slots)")
    for where, fan in (("redis", red["fan"]), ("in-process", loc["fan"])):
        print(
            f"  {where} fan-out: {fan['plain_s'] * 1e3:.1f} ms without limits, {fan['durable_s'] * 1e3:.1f} ms "
            f"under a wide Concurrency  ratio {fan['ratio']:.3f}"
        )
    k = red["keyed"]
    print(
        f"  keyed: {k['tasks']:,} tasks over {k['keys']:,} keys in {k['seconds']:.1f}s, "
        f"most of one key at once {k['most_per_key']}"
    )
    p = red["priority"]
    print(
        f"  priority 9 behind a backlog of {p['backlog']:,}: p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms "
        f"({p['samples']} samples; backlog still running at the end: {p['backlog_still_running']})"
    )
    q = red["rate"]
    print(
        f"  rate {RATE}/{PER:g}s: {q['tasks']} tasks over {q['seconds']:.1f}s, "
        f"most starts in a window {q['most_per_window']}"
    )
    print_bars(r["bars"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flow_control", description=__doc__)
    parser.add_argument("--fan", type=int, default=2000)
    parser.add_argument("--keyed", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--urgent", type=int, default=50)
    parser.add_argument("--rate-seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=5)
    report(measure(parser.parse_args(sys.argv[1:] if argv is None else argv)), print_table)


if __name__ == "__main__":
    main()

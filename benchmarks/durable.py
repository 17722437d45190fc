"""What durability costs (SPEC 10): the same runs with ``durable=False`` and
``durable=True``, measured in one process run, rounds alternating.

    python -m benchmarks.durable [--fan 2000] [--chain 500] [--local-chain 1000]
                                 [--facts 100000] [--repeat 15] [--local-repeat 15]

- Redis, 2 workers (``--concurrency 64``): a fan-out of `fan` trivial tasks (tasks/s)
  and a chain of `chain` (µs per hop), durable against not;
- in-process: a chain of `local-chain` trivial tasks, durable (journaled in a temporary
  checkpoint directory all the runs share) against not, and plain asyncio (one task after
  another) as the floor; `local-repeat` rounds (a run takes milliseconds: more rounds
  steady its median);
- the takeover of a run whose journal holds about `facts` facts: a fan-out whose tasks
  all completed, its driver gone; seconds from `recover` to its outcome.

Bars (issue 20): Redis fan within 1.15x, Redis chain hop within 1.1x, in-process chain
within 1.5x of non-durable; the 100,000-fact takeover under 2 s. Figures, never
assertions: compare the ratios, not the times, across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import ROOT, bar, print_bars, report
from benchmarks.bench_asyncio import chain as asyncio_chain
from benchmarks.redis_streams import redis_server, start_workers, stop, wait_ready
from benchmarks.redis_tasks import chain_wf, fan_wf

BARS = {"redis_fan": 1.15, "redis_chain": 1.1, "local_chain": 1.5}


async def _timed(start: Any) -> float:
    gc.collect()
    t0 = time.perf_counter()
    await start()
    return time.perf_counter() - t0


async def paired(make: Any, repeat: int) -> dict[str, float]:
    """Median seconds of `make(durable)` for durable False and True, rounds alternating."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(repeat * 2):
        durable = (i % 2 == 1) != (i // 2 % 2 == 1)  # F T T F F T ...: neither goes first always
        times[durable].append(await _timed(lambda d=durable: make(d)))
    plain, kept = statistics.median(times[False]), statistics.median(times[True])
    return {"plain_s": plain, "durable_s": kept, "ratio": kept / plain}


async def redis_part(url: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from graflow_async import run
    from graflow_async.transports.redis import RedisStreamsTransport

    fan, chain = fan_wf(args.fan), chain_wf(args.chain)
    async with RedisStreamsTransport(url) as transport:
        for d in (False, True):  # warm up both paths
            await run(fan_wf(200), transport=transport, durable=d)
            await run(chain_wf(20), transport=transport, durable=d)
        out = {
            "fan": await paired(lambda d: run(fan, transport=transport, durable=d), args.repeat),
            "chain": await paired(lambda d: run(chain, transport=transport, durable=d), args.repeat),
        }
    out["fan"]["plain_tasks_per_s"] = (args.fan + 2) / out["fan"]["plain_s"]
    out["fan"]["durable_tasks_per_s"] = (args.fan + 2) / out["fan"]["durable_s"]
    for key in ("plain", "durable"):
        out["chain"][f"{key}_us_per_hop"] = out["chain"][f"{key}_s"] / args.chain * 1e6
    return out


async def local_part(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from graflow_async import run

    wf = chain_wf(args.local_chain)
    store = tmp / "checkpoints"  # one for every run, as an application has (a run: a directory of its own in it)

    async def one(durable: bool) -> None:
        await run(wf, durable=durable, checkpoint_store=store)

    await one(False)
    await one(True)
    out = await paired(one, args.local_repeat)
    floor = statistics.median([await _timed(lambda: asyncio_chain(args.local_chain)) for _ in range(args.local_repeat)])
    out["asyncio_s"] = floor
    out["plain_vs_asyncio"], out["durable_vs_asyncio"] = out["plain_s"] / floor, out["durable_s"] / floor
    out["durable_us_per_task"] = out["durable_s"] / args.local_chain * 1e6
    return out


async def takeover_part(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """A durable fan-out journaling about `facts` facts, its driver SIGKILLed once only its
    sink runs (its journal compacted as it went): seconds from `recover` (read the journal
    back, replay, run the sink again, keep the outcome) to the outcome."""
    from graflow_async import recover

    from .redis_tasks import gated_fan_wf

    width = max(1, args.facts // 2 - 2)  # a fact per task, a step per turn: about 2 per task
    gate = tmp / "gate"
    env = {**os.environ, "BENCH_GATE": str(gate)}
    driver = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.durable", "drive-big", str(width), str(tmp / "big")], cwd=ROOT, env=env
    )
    try:
        while not Path(f"{gate}.started").exists():
            if driver.poll() is not None:
                raise RuntimeError(f"the driver exited with {driver.returncode}")
            await asyncio.sleep(0.05)
        driver.kill()
    finally:
        driver.wait()
    gate.touch()
    before, os.environ["BENCH_GATE"] = os.environ.get("BENCH_GATE"), str(gate)  # the sink runs again here
    snapshots = len(list((tmp / "big" / "big" / "journal").glob("snapshot.*")))
    await asyncio.sleep(1.1)  # the dead driver's lease (1 s) lapses
    t0 = time.perf_counter()
    try:
        result = await recover("big", workflow=gated_fan_wf(width), checkpoint_store=tmp / "big", owner_lease=1.0)
    finally:
        if before is None:
            del os.environ["BENCH_GATE"]
        else:
            os.environ["BENCH_GATE"] = before
    took = time.perf_counter() - t0
    assert result.status == "completed" and len(result.results) == width + 2
    return {"facts": 2 * width + 4, "tasks": width + 2, "snapshot_kept": snapshots == 1, "recover_s": took}


async def drive_big(width: int, place: str) -> None:
    from graflow_async import run

    from .redis_tasks import gated_fan_wf

    await run(gated_fan_wf(width), run_id="big", durable=True, checkpoint_store=place, owner_lease=1.0)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("GRAFLOW_LOG_LEVEL", "error")
    (ROOT / ".graflow").mkdir(exist_ok=True)  # where runs keep their files by default (not /tmp's file system)
    tmp = Path(tempfile.mkdtemp(prefix="bench-durable-", dir=ROOT / ".graflow"))
    out: dict[str, Any] = {"fan_n": args.fan, "chain_n": args.chain, "local_chain_n": args.local_chain}
    try:
        with redis_server() as (url, _server):
            names = [f"durable-w{i}-{os.getpid()}" for i in (1, 2)]
            workers = start_workers(url, names, 64, tmp)
            try:
                wait_ready(url, names, workers, tmp)
                out["redis"] = asyncio.run(redis_part(url, args, tmp))
            finally:
                for w in workers:
                    stop(w)
        out["local"] = asyncio.run(local_part(args, tmp))
        out["takeover"] = asyncio.run(takeover_part(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = {"redis_fan": out["redis"]["fan"]["ratio"], "redis_chain": out["redis"]["chain"]["ratio"]}
    ratios["local_chain"] = out["local"]["ratio"]
    out["bars"] = {k: bar("ratio", round(v, 3), BARS[k], v <= BARS[k]) for k, v in ratios.items()}
    took = out["takeover"]["recover_s"]
    out["bars"]["takeover_100k"] = bar("seconds", round(took, 3), 2.0, took < 2.0)
    return out


def print_table(r: dict[str, Any]) -> None:
    red, loc, big = r["redis"], r["local"], r["takeover"]
    print("durable runs: durable=True against durable=False, same process run, rounds alternating")
    print(
        f"  redis fan {r['fan_n']} (2 workers): {red['fan']['plain_tasks_per_s']:,.0f} vs "
        f"{red['fan']['durable_tasks_per_s']:,.0f} tasks/s  ratio {red['fan']['ratio']:.3f}"
    )
    print(
        f"  redis chain {r['chain_n']}: {red['chain']['plain_us_per_hop']:,.0f} vs "
        f"{red['chain']['durable_us_per_hop']:,.0f} µs/hop  ratio {red['chain']['ratio']:.3f}"
    )
    print(
        f"  in-process chain {r['local_chain_n']}: {loc['plain_s'] * 1e3:.1f} vs {loc['durable_s'] * 1e3:.1f} ms  "
        f"ratio {loc['ratio']:.3f}  (plain asyncio {loc['asyncio_s'] * 1e3:.1f} ms: "
        f"{loc['plain_vs_asyncio']:.1f}x / {loc['durable_vs_asyncio']:.1f}x)"
    )
    print(f"  takeover of {big['facts']:,} journaled facts ({big['tasks']:,} tasks): {big['recover_s']:.2f}s")
    print_bars(r["bars"])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["drive-big"]:
        asyncio.run(drive_big(int(argv[1]), argv[2]))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.durable", description=__doc__)
    parser.add_argument("--fan", type=int, default=2000)
    parser.add_argument("--chain", type=int, default=500)
    parser.add_argument("--local-chain", type=int, default=1000)
    parser.add_argument("--facts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--local-repeat", type=int, default=15)
    report(measure(parser.parse_args(argv)), print_table)


if __name__ == "__main__":
    main()

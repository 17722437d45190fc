"""Core runtime workflows (chain, fan-out, diamond lattice) of graflow-async, used by
`benchmarks.bench_ours` for `make bench`.

Run alone, ``python -m benchmarks.core SCENARIO N [REPEAT]`` compares them with plain
asyncio (`benchmarks.bench_asyncio`) in the same process: microseconds per task (best
of REPEAT runs), their ratio, and the process's peak RSS.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable

from graflow_async import Workflow, chain, run, task, workflow

from . import bench_asyncio


async def _noop() -> int:
    return 1


# --- graflow-async workflows -----------------------------------------------------------
def chain_wf(n: int) -> Workflow:
    with workflow(f"chain{n}") as wf:
        chain(*(task(_noop, id=f"t{i}") for i in range(n)))
    return wf


def _sync_noop() -> int:
    return 1


def chain_sync_wf(n: int, handler: str = "direct") -> Workflow:
    """A chain of plain functions: in the run's threads (``direct``), or on the loop
    (``handler="inline"``)."""
    with workflow(f"chain-{handler}{n}") as wf:
        chain(*(task(_sync_noop, id=f"t{i}", handler=handler) for i in range(n)))
    return wf


def chain_inline_wf(n: int) -> Workflow:
    return chain_sync_wf(n, "inline")


def fan_wf(n: int) -> Workflow:
    with workflow(f"fan{n}") as wf:
        src, sink = task(_noop, id="src"), task(_noop, id="sink")
        src >> parallel_of(n) >> sink
    return wf


def parallel_of(n: int):
    from graflow_async import parallel

    return parallel(*(task(_noop, id=f"t{i}") for i in range(n)))


def lattice_wf(n: int, width: int = 10) -> Workflow:
    """Layers of `width` tasks; each task runs after two tasks of the layer before."""
    wf = workflow(f"lattice{n}")
    with wf:
        layers = [[task(_noop, id=f"l{d}_{i}") for i in range(width)] for d in range(n // width)]
        wf.add(*layers[0])
        for prev, cur in itertools.pairwise(layers):
            for i, t in enumerate(cur):
                prev[i] >> t
                prev[(i + 1) % width] >> t
    return wf


# --- plain asyncio doing the same: benchmarks.bench_asyncio (the floor of `make bench`) ---
base_chain, base_fan, base_lattice = bench_asyncio.chain, bench_asyncio.fan, bench_asyncio.lattice


SCENARIOS: dict[str, tuple[Callable[[int], Workflow], Callable[[int], Awaitable[None]]]] = {
    "chain": (chain_wf, base_chain),
    "fan": (fan_wf, base_fan),
    "lattice": (lattice_wf, base_lattice),
    # plain functions, against a bare `run_in_executor` chain
    "chain-sync": (chain_sync_wf, bench_asyncio.chain_sync),
    "chain-inline": (chain_inline_wf, bench_asyncio.chain_sync),
}


async def _best(fn: Callable[[], Awaitable[object]], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        await fn()
        best = min(best, time.perf_counter() - t0)
    return best


async def measure(scenario: str, n: int, repeat: int) -> dict[str, float | int | str]:
    build, baseline = SCENARIOS[scenario]
    t0 = time.perf_counter()
    wf = build(n)
    build_s = time.perf_counter() - t0
    tasks = len(wf)
    ours = await _best(lambda: run(wf), repeat)
    base = await _best(lambda: baseline(n), repeat)
    return {
        "scenario": scenario,
        "n": n,
        "tasks": tasks,
        "us_per_task": ours / tasks * 1e6,
        "asyncio_us_per_task": base / tasks * 1e6,
        "ratio": ours / base,
        "build_ms": build_s * 1e3,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


if __name__ == "__main__":
    name, count = sys.argv[1], int(sys.argv[2])
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    print(json.dumps(asyncio.run(measure(name, count, reps))))

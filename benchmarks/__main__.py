"""`make bench`: every benchmark, each scenario in its own process, printed as a table.

    python -m benchmarks            # all
    python -m benchmarks core       # only the core runtime scenarios
    (suites: core, checkpoints, feedback, redis, remote-context, graflow-redis)
"""

from __future__ import annotations

import sys

from . import run_module
from .checkpoints import suite as checkpoints
from .graflow_redis import suite as graflow_redis
from .redis_streams import suite as redis_streams
from .remote_context import suite as remote_context

CORE = [("chain", 1000), ("chain", 10000), ("fan", 1000), ("fan", 10000), ("lattice", 1000),
        ("lattice", 10000)]


def core() -> None:
    print("core runtime: graflow-async vs plain asyncio in the same process (best of 5)")
    print(f"{'scenario':<10}{'tasks':>8}{'µs/task':>10}{'asyncio µs':>12}{'ratio':>8}{'peak RSS MiB':>14}")
    for name, n in CORE:
        r = run_module("core", name, n)
        print(f"{name:<10}{r['tasks']:>8}{r['us_per_task']:>10.2f}{r['asyncio_us_per_task']:>12.2f}"
              f"{r['ratio']:>7.2f}x{r['peak_rss_mib']:>14.1f}")
    print("asyncio baselines: chain = `await create_task(...)` in a loop; fan = gather of tasks;")
    print("lattice = a task per node awaiting its two predecessors' tasks.")


def feedback() -> None:
    r = run_module("feedback")
    print(f"human in the loop: answer -> waiting task resumed, {r['requests']} requests")
    for where in ("in_process", "redis"):
        print(f"  {where:<11} p50 {r[where]['p50_ms']:.2f} ms   p99 {r[where]['p99_ms']:.2f} ms")


SUITES = {
    "core": core,
    "checkpoints": checkpoints,
    "feedback": feedback,
    "redis": redis_streams,
    "remote-context": remote_context,  # checkpoint() and request_feedback from a task on a worker
    "graflow-redis": graflow_redis,  # Graflow 0.2.0 in its own venv under .bench/, for comparison
}


def main(argv: list[str]) -> None:
    for name in argv or list(SUITES):
        SUITES[name]()
        print()


if __name__ == "__main__":
    main(sys.argv[1:])

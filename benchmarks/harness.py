"""Timing shared by every system's scenario process (ours, plain asyncio and the peers).

Peer interpreters (`benchmarks/.venvs/<peer>`) import this module, so it uses only the
standard library. A scenario process builds its workload, calls `measure` and prints
one JSON line with `emit`:

- one warm-up run, then `repeat` timed runs; the figure is the **median** run, divided
  by the number of tasks (µs/task) or taken from the run's own samples (HITL latency);
- each run is bounded by `cap` seconds (SIGALRM): a warm-up over the cap ends the
  scenario as "capped" rather than waiting for it;
- ``peak_rss_mib`` is ``ru_maxrss`` of this process (a fresh one per scenario and
  system), so it covers building the workload and every run.
"""

from __future__ import annotations

import gc
import json
import resource
import signal
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

CAP_S = 60.0


class CapExceeded(Exception):
    """A run took longer than the cap."""


@contextmanager
def deadline(seconds: float) -> Any:
    """Raise `CapExceeded` in the main thread once `seconds` have passed."""

    def expire(*_: object) -> None:
        raise CapExceeded(f"a run took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def timed(run: Callable[[], object], cap: float) -> float:
    """Seconds taken by one call of `run`, after a garbage collection."""
    gc.collect()
    with deadline(cap):
        started = time.perf_counter()
        run()
        return time.perf_counter() - started


def measure(
    run: Callable[[], object],
    *,
    tasks: int,
    repeat: int,
    cap: float = CAP_S,
    prepare: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """Warm-up plus `repeat` timed calls of `run` (each after `prepare`, untimed).

    Returns ``us_per_task`` (median run / tasks), every run's µs/task, and the warm-up
    seconds; or ``status: capped`` when the warm-up exceeded `cap`."""
    if prepare is not None:
        prepare()
    try:
        warmup = timed(run, cap)
    except CapExceeded as exc:
        return {"status": "capped", "reason": f"warm-up run: {exc} (cap)", "tasks": tasks}
    runs = []
    for _ in range(repeat):
        if prepare is not None:
            prepare()
        runs.append(timed(run, cap))
    per_task = [s / tasks * 1e6 for s in runs]
    return {
        "status": "ok",
        "tasks": tasks,
        "value": statistics.median(per_task),
        "runs": per_task,
        "repeat": repeat,
        "warmup_s": warmup,
        "median_s": statistics.median(runs),
    }


def measure_samples(run: Callable[[], list[float]], *, repeat: int, cap: float = CAP_S) -> dict[str, Any]:
    """Like `measure` for runs that return their own latency samples (seconds): the
    figure is the median of each run's median, in µs; p99 is over every sample."""
    try:
        with deadline(cap):
            run()
        per_run: list[list[float]] = []
        for _ in range(repeat):
            with deadline(cap):
                per_run.append(run())
    except CapExceeded as exc:
        return {"status": "capped", "reason": f"{exc} (cap)"}
    medians = [statistics.median(s) * 1e6 for s in per_run]
    every = sorted(x * 1e6 for s in per_run for x in s)
    return {
        "status": "ok",
        "tasks": len(per_run[0]),
        "value": statistics.median(medians),
        "runs": medians,
        "repeat": repeat,
        "p99": every[min(len(every) - 1, int(len(every) * 0.99))],
        "samples": len(every),
    }


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(result: dict[str, Any], **extra: Any) -> None:
    """Print `result` (plus `extra` and the peak RSS) as the process's last JSON line."""
    out = {**result, **extra, "peak_rss_mib": peak_rss_mib()}
    sys.stdout.flush()
    print(json.dumps(out), flush=True)


def not_available(reason: str) -> dict[str, Any]:
    return {"status": "n/a", "reason": reason}


def build_timed(build: Callable[[], Any]) -> tuple[Any, float]:
    """`build()` and the milliseconds it took."""
    started = time.perf_counter()
    built = build()
    return built, (time.perf_counter() - started) * 1e3


def answer_delays(count: int, seed: int = 12) -> list[float]:
    """The pauses (seconds, uniform in [0, 0.5)) before each HITL answer: the same
    sequence for every system, like a person answering at some point."""
    import random

    rng = random.Random(seed)
    return [rng.uniform(0.0, 0.5) for _ in range(count)]


def parse_args(argv: list[str]) -> tuple[str, int, int, float]:
    """``KIND N [REPEAT [CAP]]`` of a scenario process."""
    kind, n = argv[0], int(argv[1])
    repeat = int(argv[2]) if len(argv) > 2 else 5
    cap = float(argv[3]) if len(argv) > 3 else CAP_S
    return kind, n, repeat, cap

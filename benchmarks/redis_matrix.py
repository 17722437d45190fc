"""The Redis scenarios of `make bench`: fan-out and chain through 2 worker processes.

    python -m benchmarks.redis_matrix SYSTEM KIND N [REPEAT [CAP]]     (our venv)

For one system (``graflow-async``, ``graflow`` or ``asyncio``, the floor) it starts a
private ``redis-server`` (free port, no persistence), 2 workers of that system, waits
until they read their queue, and runs a driver process that prints one JSON line
(`benchmarks.harness`: warm-up, then the median of REPEAT runs; the peak RSS is the
driver's):

- graflow-async: ``python -m graflow_async worker --concurrency 64`` importing
  `benchmarks.redis_tasks`; the driver ``run(wf, transport=RedisStreamsTransport(url))``;
- Graflow 0.2.0: ``python -m graflow.worker.main`` (its defaults: 4 concurrent tasks,
  0.1 s poll interval) in ``benchmarks/.venvs/graflow``; only members of a parallel
  group with ``backend=REDIS`` go to workers, so ``fan`` is src >> a REDIS group of N
  >> sink (src and sink run in the driver) and ``chain`` is N one-member REDIS groups
  (see `benchmarks.graflow_redis`);
- the floor: `benchmarks.redis_floor` (a bare Streams work queue).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from . import ROOT
from .harness import CAP_S, emit, measure

WORKERS = 2


# --- drivers (one process each) ---------------------------------------------------------------
def driver_ours(kind: str, n: int, repeat: int, cap: float, url: str) -> None:
    import asyncio

    from graflow_async import run
    from graflow_async.transports.redis import RedisStreamsTransport

    from .redis_tasks import chain_wf, fan_wf

    wf = fan_wf(n) if kind == "fan" else chain_wf(n)
    with asyncio.Runner() as runner:
        transport = RedisStreamsTransport(url)
        runner.run(transport.__aenter__())
        try:
            result = measure(lambda: runner.run(run(wf, transport=transport)), tasks=len(wf), repeat=repeat, cap=cap)
        finally:
            runner.run(transport.__aexit__(None, None, None))
    emit(result, system="graflow-async")


def driver_graflow(kind: str, n: int, repeat: int, cap: float, url: str) -> None:
    """Runs in Graflow's venv. A fresh workflow per run: Graflow keys barriers by group name."""
    import logging

    from .graflow_redis import _chain, _fan, _redis_config

    logging.basicConfig(level=logging.WARNING)
    cfg = _redis_config(url)
    built: list[tuple[Any, str]] = []

    def prepare() -> None:
        built[:] = [(_fan(n, cfg), "src") if kind == "fan" else _chain(n, cfg)]

    def run() -> None:
        wf, start = built[0]
        wf.execute(start_node=start)

    tasks = n + 2 if kind == "fan" else n
    emit(measure(run, tasks=tasks, repeat=repeat, cap=cap, prepare=prepare), system="graflow")


# --- the orchestrator (our venv) --------------------------------------------------------------
def start_workers(system: str, url: str, logdir: Path) -> list[subprocess.Popen[bytes]]:
    """`WORKERS` workers of `system`, reading their queue when this returns."""
    from . import graflow_redis, redis_streams

    names = [f"bench-{system}-{i}-{os.getpid()}" for i in range(WORKERS)]
    if system == "graflow":
        options = SimpleNamespace(max_concurrent_tasks=4, poll_interval=0.1)
        procs = graflow_redis.start_workers(url, names, options, logdir)
        graflow_redis.wait_polling(url, procs, logdir, names)
        return procs
    if system == "graflow-async":
        procs = redis_streams.start_workers(url, names, 64, logdir)
    else:
        procs = []
        for name in names:
            with open(logdir / f"{name}.log", "wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "benchmarks.redis_floor", "worker", url, name],
                        cwd=ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
    redis_streams.wait_ready(url, names, procs, logdir)
    return procs


def driver_command(system: str, kind: str, n: int, repeat: int, cap: float, url: str) -> list[str]:
    args = [kind, str(n), str(repeat), str(cap), url]
    if system == "asyncio":
        return [sys.executable, "-m", "benchmarks.redis_floor", "driver", *args]
    if system == "graflow":
        from .graflow_redis import graflow_python

        return [graflow_python(), "-m", "benchmarks.redis_matrix", "driver-graflow", *args]
    return [sys.executable, "-m", "benchmarks.redis_matrix", "driver-ours", *args]


def measure_system(system: str, kind: str, n: int, repeat: int = 5, cap: float = CAP_S) -> dict[str, Any]:
    """Start redis-server and the workers, run the driver, stop everything; its JSON."""
    from .peers import environment
    from .redis_streams import redis_server, stop

    os.environ.setdefault("GRAFLOW_LOG_LEVEL", "error")  # our workers and driver inherit it
    with tempfile.TemporaryDirectory(prefix="bench-redis-matrix-") as tmp, redis_server() as (url, _server):
        logdir = Path(tmp)
        procs = start_workers(system, url, logdir)
        try:
            done = subprocess.run(
                driver_command(system, kind, n, repeat, cap, url),
                cwd=logdir,
                env=environment(),
                capture_output=True,
                text=True,
                timeout=cap * (repeat + 1) + 120,
            )
        finally:
            for proc in procs:
                stop(proc, grace=5.0)
    if done.returncode != 0:
        return {"status": "error", "system": system, "error": done.stderr.strip()[-1500:]}
    result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    result["workers"] = WORKERS
    return result


if __name__ == "__main__":
    if sys.argv[1] in ("driver-ours", "driver-graflow"):
        kind_, n_, repeat_, cap_, url_ = sys.argv[2:7]
        drive = driver_ours if sys.argv[1] == "driver-ours" else driver_graflow
        drive(kind_, int(n_), int(repeat_), float(cap_), url_)
    else:
        system_, kind_, n_ = sys.argv[1:4]
        repeat_ = int(sys.argv[4]) if len(sys.argv) > 4 else 5
        cap_ = float(sys.argv[5]) if len(sys.argv) > 5 else CAP_S
        print(json.dumps(measure_system(system_, kind_, int(n_), repeat_, cap_)))

"""The whole context on Redis workers: `request_feedback` and `checkpoint()` called by a
task on a worker, next to the same task run in-process.

    python -m benchmarks.remote_context [--requests N] [--saves N] [--parts K] [--table]

prints one JSON line; `suite()` runs it in its own process and prints a table.

It starts its own ``redis-server`` (free port, no persistence, temp dir) and one worker
(``python -m graflow_async worker --import benchmarks.remote_context_tasks
--namespace bench-remote``); the runs are made from this process. In the same run it
measures, with the tasks of `benchmarks.remote_context_tasks`:

- feedback, answer -> resume: a task asks N text questions one after another and an
  answerer answers each, putting ``time.monotonic()`` taken just before ``respond`` in
  the answer; the task takes ``time.monotonic()`` right after ``request_feedback``
  returns (system-wide on Linux, so stamps of different processes compare).
  ``in_process``: run, task and answerer in this process, `MemoryFeedbackStore`;
  ``redis_store_local_task``: the task runs in this process, the store is a
  `RedisFeedbackStore` and the answerer another process (the pub/sub hop alone);
  ``remote_task``: the task runs on the worker, the run (here) uses its default store
  (a `RedisFeedbackStore` on the transport's server and namespace) and the answerer is
  another process with its own store instance. The answerer polls ``list_pending``
  (the waiters never poll) and stays idle for 20 ms after each answer, so its polling
  does not compete for the CPU while the answer travels.
- ``checkpoint()``: a task after K small tasks calls ``await context.checkpoint()`` S
  times and times each call inside the task (``perf_counter``). ``local``: in-process
  (memory transport); ``remote``: the task on the worker, the run (here) writes. Both
  write to a file store in a temp dir (temp file, fsync, rename, directory fsync), so
  ``local`` is the cost of the write and ``remote - local`` the round trip. Also the
  raw write of the same bytes (temp file + fsync + rename, no graflow-async).

Each mode has a short warm-up run first. Floors: PING round trip (redis-py asyncio).
Every process it starts is stopped at the end, on error too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import report, run_module

from .feedback import answer_all
from .redis_streams import RUN_TIMEOUT, git_commit, redis_server, start_workers, stop, wait_ready

TASK_MODULE = "benchmarks.remote_context_tasks"
NAMESPACE = "bench-remote"
WARM = 10  # requests / saves of each warm-up run
IDLE = 0.02  # seconds the answerer stays idle after each answer


def _ms(values: Sequence[float]) -> dict[str, float]:
    ms = sorted(v * 1e3 for v in values)
    return {
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "max_ms": ms[-1],
        "n": len(ms),
    }


def _start_answerer(url: str, namespace: str, n: int) -> subprocess.Popen[bytes]:
    from .answerer import start

    return start(url, namespace, n, IDLE)


def _finish(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Let the answerer exit by itself (it has answered all), else stop it."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc)


def _ran_on(result: Any, task_id: str, pids: Sequence[int]) -> dict[str, Any]:
    """The task's output, checked to come from one of `pids` (a sanity check, not a timing)."""
    if result.status != "completed":
        raise RuntimeError(f"run {result.run_id} ended {result.status}")
    out = result.results[task_id]
    if out["pid"] not in pids:
        raise RuntimeError(f"{task_id} ran in pid {out['pid']}, expected one of {list(pids)}")
    return dict(out)


async def _run(wf: Any, **kwargs: Any) -> Any:
    from graflow_async import run

    async with asyncio.timeout(RUN_TIMEOUT):
        return await run(wf, **kwargs)


# --- feedback ------------------------------------------------------------------------------
async def feedback_in_process(n: int) -> dict[str, float]:
    from graflow_async.feedback import MemoryFeedbackStore

    from .remote_context_tasks import feedback_wf

    store = MemoryFeedbackStore()
    helper = asyncio.create_task(answer_all(store, WARM + n, poll=0.002, idle=IDLE))
    try:
        await _run(feedback_wf(WARM), feedback_store=store)
        result = await _run(feedback_wf(n), feedback_store=store)
        await helper
    finally:
        helper.cancel()
    return _ms(_ran_on(result, "asker", [os.getpid()])["latencies"])


async def feedback_redis_store_local_task(url: str, n: int) -> dict[str, float]:
    from graflow_async.feedback.redis import RedisFeedbackStore

    from .remote_context_tasks import feedback_wf

    namespace = f"{NAMESPACE}-local"
    store = RedisFeedbackStore(url, namespace=namespace)
    answering = _start_answerer(url, namespace, WARM + n)
    try:
        await _run(feedback_wf(WARM), feedback_store=store)
        result = await _run(feedback_wf(n), feedback_store=store)
    finally:
        _finish(answering)
        await store.aclose()
    return _ms(_ran_on(result, "asker", [os.getpid()])["latencies"])


async def feedback_remote_task(url: str, transport: Any, n: int, workers: Sequence[int]) -> dict[str, float]:
    from .remote_context_tasks import feedback_wf

    answering = _start_answerer(url, NAMESPACE, WARM + n)
    try:
        await _run(feedback_wf(WARM), transport=transport)
        result = await _run(feedback_wf(n), transport=transport)  # no store: the run's default on Redis
    finally:
        _finish(answering)
    return _ms(_ran_on(result, "asker", workers)["latencies"])


# --- checkpoints ---------------------------------------------------------------------------
async def checkpoints(
    directory: Path, parts: int, saves: int, pids: Sequence[int], **run_options: Any
) -> dict[str, Any]:
    from .remote_context_tasks import checkpoint_wf

    await _run(checkpoint_wf(parts, WARM), checkpoint_store=str(directory / "warm"), **run_options)
    result = await _run(checkpoint_wf(parts, saves), checkpoint_store=str(directory / "timed"), **run_options)
    out = _ran_on(result, "saver", pids)
    return {**_ms(out["timings"]), "size_bytes": os.path.getsize(out["location"]), "location": out["location"]}


async def raw_write(location: str, directory: Path, repeat: int) -> dict[str, float]:
    from .checkpoints import raw_file_writer

    data = Path(location).read_bytes()
    write = raw_file_writer(directory)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await write(data)
        times.append(time.perf_counter() - started)
    return _ms(times)


# --- all -----------------------------------------------------------------------------------
async def ping(url: str, n: int = 1000) -> dict[str, float]:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        for _ in range(100):
            await client.ping()
        times = []
        for _ in range(n):
            started = time.perf_counter()
            await client.ping()
            times.append(time.perf_counter() - started)
    finally:
        await client.aclose()
    return _ms(times)


async def measure_all(url: str, workers: Sequence[int], args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    from graflow_async.transports.redis import RedisStreamsTransport

    me = [os.getpid()]
    out: dict[str, Any] = {"ping": await ping(url)}
    local_ckpt = await checkpoints(directory / "local", args.parts, args.saves, me)
    fb: dict[str, Any] = {"in_process": await feedback_in_process(args.requests)}
    fb["redis_store_local_task"] = await feedback_redis_store_local_task(url, args.requests)
    async with RedisStreamsTransport(url, namespace=NAMESPACE) as transport:
        remote_ckpt = await checkpoints(directory / "remote", args.parts, args.saves, workers, transport=transport)
        fb["remote_task"] = await feedback_remote_task(url, transport, args.requests, workers)
    raw = await raw_write(local_ckpt["location"], directory, args.saves)
    for figures in (local_ckpt, remote_ckpt):
        del figures["location"]  # in a temp dir removed at the end
    out["feedback"] = fb
    out["checkpoint"] = {
        "local": local_ckpt,
        "remote": remote_ckpt,
        "raw_write": raw,
        "round_trip_p50_ms": remote_ckpt["p50_ms"] - local_ckpt["p50_ms"],
    }
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("GRAFLOW_LOG_LEVEL", "error")  # the worker inherits it
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    directory = Path(tempfile.mkdtemp(prefix="bench-remote-context-"))
    logdir = directory / "logs"
    logdir.mkdir()
    names = [f"bench-remote-context-{os.getpid()}"]
    try:
        with redis_server() as (url, _server):
            procs = start_workers(url, names, args.concurrency, logdir, module=TASK_MODULE, namespace=NAMESPACE)
            try:
                wait_ready(url, names, procs, logdir)
                out: dict[str, Any] = {
                    "redis_server": version.removeprefix("v="),
                    "cpus": os.cpu_count(),
                    "commit": git_commit(),
                    "workers": len(procs),
                    "requests": args.requests,
                    "saves": args.saves,
                    "parts": args.parts,
                    "loadavg_1min": os.getloadavg()[0],
                }
                out.update(asyncio.run(measure_all(url, [p.pid for p in procs], args, directory)))
                for name, proc in zip(names, procs, strict=True):
                    if proc.poll() is not None:
                        raise RuntimeError(f"worker {name} died during the benchmark (exit {proc.returncode})")
            finally:
                for proc in procs:
                    stop(proc)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    fb, ck = out["feedback"], out["checkpoint"]
    out["goals"] = {
        "feedback_remote_p50_lt_5ms": fb["remote_task"]["p50_ms"] < 5.0,
        "checkpoint_remote_p50_lt_5ms_plus_write": ck["round_trip_p50_ms"] < 5.0,
    }
    return out


# --- make bench ----------------------------------------------------------------------------
def suite() -> None:
    """Run the benchmark in its own process and print a table (hook for ``make bench``)."""
    print_table(run_module("remote_context"))


def print_table(r: dict[str, Any]) -> None:
    def row(label: str, s: dict[str, float]) -> str:
        return f"  {label:<54}p50 {s['p50_ms']:6.2f} ms   p99 {s['p99_ms']:6.2f} ms   max {s['max_ms']:6.2f} ms"

    fb, ck = r["feedback"], r["checkpoint"]
    print(
        f"remote context: a task on a Redis worker vs the same task in-process (own redis-server "
        f"{r['redis_server']}, {r['cpus']} CPUs, {r['workers']} worker; PING p50 {r['ping']['p50_ms'] * 1e3:.0f} µs)"
    )
    print(f"request_feedback, answer given -> the asking task has it, {r['requests']} sequential requests:")
    print(row("in-process (memory store, answer in the same loop)", fb["in_process"]))
    print(row("local task, Redis store, answer from another process", fb["redis_store_local_task"]))
    print(row("remote task on a worker, answer from another process", fb["remote_task"]))
    loc, rem, raw = ck["local"], ck["remote"], ck["raw_write"]
    print(
        f"checkpoint(), timed inside the task, {r['saves']} calls; {r['parts']} small results, "
        f"{loc['size_bytes']} B on a file store:"
    )
    print(row("local (in-process, memory transport): the write", loc))
    print(row("remote task on a worker (the run writes)", rem))
    print(
        f"  round trip (remote - local p50): {ck['round_trip_p50_ms']:.2f} ms; raw write of the same bytes "
        f"(temp + fsync + rename) p50 {raw['p50_ms']:.2f} ms"
    )
    goals = r["goals"]

    def verdict(key: str) -> str:
        return "met" if goals[key] else "NOT met"

    print(
        f"goals: remote answer -> resume p50 < 5 ms {verdict('feedback_remote_p50_lt_5ms')}; "
        f"remote checkpoint() p50 < 5 ms + the write {verdict('checkpoint_remote_p50_lt_5ms_plus_write')}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.remote_context",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=200, help="sequential feedback requests (default 200)")
    parser.add_argument("--saves", type=int, default=200, help="checkpoint() calls (default 200)")
    parser.add_argument("--parts", type=int, default=3, help="small tasks before the checkpointing one (default 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="--concurrency of the worker (default 8)")
    parser.add_argument("--table", action="store_true", help="also print the table (to stderr)")
    args = parser.parse_args(argv)
    # SIGTERM ends the benchmark through its `finally` blocks: the worker and redis-server stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report(measure(args), print_table if args.table else None)


if __name__ == "__main__":
    main()

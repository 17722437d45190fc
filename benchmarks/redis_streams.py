"""Distributed execution through Redis Streams: throughput and dispatch latency.

    python -m benchmarks.redis_streams [--fan N] [--chain N] [--latency N] [--repeat R]
                                       [--workers 1,2] [--concurrency C]

prints one JSON line; `suite()` runs it in its own process and prints a table.

It starts its own ``redis-server`` (free port, no persistence, temp dir; never the
shared one on 6379), then for each worker count starts that many worker processes
(``python -m graflow_async worker --import benchmarks.redis_tasks --concurrency C``,
default C = 64: above ~97 a worker runs out of redis-py's 100 pooled connections, see
``worker_max_connections_errors``), waits until each reads the task stream, and
measures, through ``run(wf, transport=RedisStreamsTransport(url))`` from this process:

- ``fan``: src >> parallel(N trivial tasks) >> sink, end to end, tasks/s (best and
  median of R runs);
- ``chain``: N trivial tasks one after another, tasks/s;
- ``latency``: a chain of trivial tasks, one in flight at a time (low load): from the
  dispatcher issuing the XADD of a task to the task starting on a worker, p50/p99.
  The task returns ``time.monotonic()`` (system-wide on Linux) and the dispatcher
  stamps each send, so the figure includes the XADD, the worker's XREADGROUP wake-up,
  decoding and scheduling the task.

With each timed run it records the CPU seconds spent by the dispatcher, the workers and
redis-server (from /proc), per task. The same run also measures the floors of this
machine: a PING round trip (redis-py asyncio and sync) and pipelined XADD from one
process (entries the size of a task message). Every process it starts is stopped at
the end, on error too.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import report, run_module

ROOT = Path(__file__).resolve().parent.parent
TASK_MODULE = "benchmarks.redis_tasks"
RUN_TIMEOUT = 300.0  # seconds: a run that takes longer is reported as an error, not waited for
_TICKS = os.sysconf("SC_CLK_TCK")


# --- processes -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(binary: str = "redis-server") -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private redis-server on a free port: no RDB, no AOF, a temp dir. Yields (url, process)."""
    import redis

    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--protected-mode",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(400):
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}")
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.025)
        else:
            raise RuntimeError(f"redis-server did not answer on port {port}")
        client.close()
        yield url, proc
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; reaps the process."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def git_commit() -> str:
    """The commit measured, with ``+dirty`` when graflow_async has uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "graflow_async"], cwd=ROOT, capture_output=True, text=True)
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def start_workers(
    url: str,
    names: Sequence[str],
    concurrency: int,
    logdir: Path,
    *,
    module: str = TASK_MODULE,
    namespace: str | None = None,
) -> list[subprocess.Popen[bytes]]:
    """`python -m graflow_async worker` per name (`concurrency` 0: the worker's default),
    importing `module`, on `namespace` (None: the worker's default)."""
    procs = []
    for name in names:
        option = ["--concurrency", str(concurrency)] if concurrency else []
        if namespace is not None:
            option += ["--namespace", namespace]
        with open(logdir / f"{name}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "graflow_async",
                        "worker",
                        "--redis-url",
                        url,
                        "--worker-id",
                        name,
                        "--import",
                        module,
                        *option,
                    ],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return procs


def wait_ready(
    url: str, names: Sequence[str], procs: Sequence[subprocess.Popen[bytes]], logdir: Path, timeout: float = 60.0
) -> None:
    """Until every worker reads the task stream: as many connections whose last command
    is XREADGROUP as workers. (Redis 7.0 lists a consumer in XINFO CONSUMERS only once
    it has been delivered an entry, so an idle worker is not there yet.) Nothing else
    reads the task stream while this waits."""
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for name, proc in zip(names, procs, strict=True):
                if proc.poll() is not None:
                    log = (logdir / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"worker {name} exited with {proc.returncode}:\n{log}")
            reading = [c for c in client.client_list() if c.get("cmd") == "xreadgroup"]
            if len(reading) >= len(names):
                return
            time.sleep(0.05)
        raise RuntimeError(f"workers {list(names)} did not start reading the task stream within {timeout:g}s")
    finally:
        client.close()


# --- floors ------------------------------------------------------------------------------
async def floors(url: str, *, pings: int = 2000, xadds: int = 100_000, batch: int = 1000) -> dict[str, Any]:
    """PING round trip (asyncio and sync redis-py) and pipelined XADD rate from one process."""
    import redis
    from redis.asyncio import Redis

    from graflow_async.wire.envelope import encode
    from graflow_async.wire.messages import TaskMessage

    sample = encode(
        TaskMessage(
            "0" * 32,
            "t12345",
            12345,
            1,
            "run:" + "0" * 32 + ":replies",
            {},
            None,
            f"{TASK_MODULE}:_noop",
            30.0,
            5,
            False,
        )
    )
    out: dict[str, Any] = {"message_bytes": len(sample)}

    client = Redis.from_url(url)
    try:
        for _ in range(200):
            await client.ping()
        times = []
        for _ in range(pings):
            t0 = time.perf_counter()
            await client.ping()
            times.append(time.perf_counter() - t0)
        out["ping_async_us"] = _pcts(times, 1e6)

        async def xadd_rate() -> float:
            await client.delete("floor:xadd")
            t0 = time.perf_counter()
            for _ in range(xadds // batch):
                async with client.pipeline(transaction=False) as pipe:
                    for _ in range(batch):
                        pipe.xadd("floor:xadd", {b"m": sample})
                    await pipe.execute()
            rate = xadds / (time.perf_counter() - t0)
            await client.delete("floor:xadd")
            return rate

        out["xadd_pipelined_async_per_s"] = max([await xadd_rate() for _ in range(3)])
    finally:
        await client.aclose()

    sync = redis.Redis.from_url(url)
    try:
        for _ in range(200):
            sync.ping()
        times = []
        for _ in range(pings):
            t0 = time.perf_counter()
            sync.ping()
            times.append(time.perf_counter() - t0)
        out["ping_sync_us"] = _pcts(times, 1e6)
        best = 0.0
        for _ in range(3):
            sync.delete("floor:xadd")
            t0 = time.perf_counter()
            for _ in range(xadds // batch):
                pipe = sync.pipeline(transaction=False)
                for _ in range(batch):
                    pipe.xadd("floor:xadd", {b"m": sample})
                pipe.execute()
            best = max(best, xadds / (time.perf_counter() - t0))
        sync.delete("floor:xadd")
        out["xadd_pipelined_sync_per_s"] = best
        out["xadd_batch"] = batch
    finally:
        sync.close()
    return out


def _pcts(values: Sequence[float], scale: float) -> dict[str, float]:
    ordered = sorted(v * scale for v in values)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "n": len(ordered),
    }


# --- graflow-async through Redis ------------------------------------------------------------
def _timed_transport_class() -> Any:
    from graflow_async.transports import keys
    from graflow_async.transports.redis import RedisStreamsTransport

    class TimedTransport(RedisStreamsTransport):
        """Stamps `time.monotonic()` for each task message just before its XADD."""

        sent: dict[str, float]

        async def send(self, queue: str, messages: Sequence[Any]) -> None:
            if queue == keys.TASK_QUEUE:
                now = time.monotonic()
                for m in messages:
                    self.sent[m.task_id] = now
            await super().send(queue, messages)

    return TimedTransport


class CpuMeter:
    """CPU seconds spent by the dispatcher (this process), the workers and redis-server."""

    def __init__(self, workers: Sequence[subprocess.Popen[bytes]], server: subprocess.Popen[bytes]) -> None:
        self.pids = {"workers": [p.pid for p in workers], "redis": [server.pid]}

    def read(self) -> dict[str, float]:
        out = {"dispatcher": time.process_time()}
        for role, pids in self.pids.items():
            out[role] = sum(cpu_seconds(pid) for pid in pids)
        return out

    @staticmethod
    def per_task(before: dict[str, float], after: dict[str, float], tasks: int) -> dict[str, float]:
        return {f"{role}_cpu_us_per_task": (after[role] - before[role]) / tasks * 1e6 for role in before}


async def throughput(transport: Any, wf: Any, repeat: int, meter: CpuMeter, check: Any) -> dict[str, Any]:
    from graflow_async import run

    tasks = len(wf)
    times, cpus = [], []
    for _ in range(repeat):
        gc.collect()
        before = meter.read()
        t0 = time.perf_counter()
        async with asyncio.timeout(RUN_TIMEOUT):
            result = await run(wf, transport=transport)
        elapsed = time.perf_counter() - t0
        after = meter.read()
        check(result)
        times.append(elapsed)
        cpus.append(CpuMeter.per_task(before, after, tasks))
    best = min(range(repeat), key=times.__getitem__)
    return {
        "tasks": tasks,
        "best_s": times[best],
        "median_s": statistics.median(times),
        "tasks_per_s": tasks / times[best],
        "median_tasks_per_s": tasks / statistics.median(times),
        "us_per_task": times[best] / tasks * 1e6,
        **cpus[best],
    }


async def latency(transport: Any, n: int) -> dict[str, Any]:
    from graflow_async import run

    from .redis_tasks import latency_wf

    transport.sent = {}
    async with asyncio.timeout(RUN_TIMEOUT):
        result = await run(latency_wf(n), transport=transport)
    lags = [result.results[tid] - sent for tid, sent in transport.sent.items()]
    ms = _pcts(lags, 1e3)
    return {"n": len(lags), "p50_ms": ms["p50"], "p99_ms": ms["p99"], "max_ms": max(lags) * 1e3}


async def measure_run(
    url: str,
    procs: Sequence[subprocess.Popen[bytes]],
    server: subprocess.Popen[bytes],
    args: argparse.Namespace,
    wfs: dict[str, Any],
) -> dict[str, Any]:
    """The timed runs, against workers that are already reading the task stream."""
    from graflow_async import run

    from .redis_tasks import chain_wf, fan_wf

    meter = CpuMeter(procs, server)
    async with _timed_transport_class()(url) as transport:
        transport.sent = {}
        async with asyncio.timeout(RUN_TIMEOUT):  # warm up: imports, connections, code paths
            await run(fan_wf(500), transport=transport)
            await run(chain_wf(50), transport=transport)
        n_fan, n_chain = args.fan, args.chain

        def fan_ok(r: Any) -> None:
            assert r.status == "completed" and len(r.results) == n_fan + 2 and r.output == 1

        def chain_ok(r: Any) -> None:
            assert r.status == "completed" and len(r.results) == n_chain and r.output == 1

        out: dict[str, Any] = {}
        out["fan"] = await throughput(transport, wfs["fan"], args.repeat, meter, fan_ok)
        out["chain"] = await throughput(transport, wfs["chain"], args.repeat, meter, chain_ok)
        out["latency"] = await latency(transport, args.latency)
    return out


def measure_workers(
    url: str, server: subprocess.Popen[bytes], count: int, args: argparse.Namespace, logdir: Path, wfs: dict[str, Any]
) -> dict[str, Any]:
    names = [f"bench-w{count}-{i}-{os.getpid()}" for i in range(1, count + 1)]
    procs = start_workers(url, names, args.concurrency, logdir)
    try:
        wait_ready(url, names, procs, logdir)
        out: dict[str, Any] = {
            "workers": count,
            "concurrency": args.concurrency or None,
            "loadavg_1min": os.getloadavg()[0],
        }
        out.update(asyncio.run(measure_run(url, procs, server, args, wfs)))
        for name, proc in zip(names, procs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"worker {name} died during the benchmark (exit {proc.returncode})")
    finally:
        for proc in procs:
            stop(proc)
    # A worker logs "redis unavailable, retrying" when a Redis call raises ConnectionError
    # (MaxConnectionsError included) and it backs off: count them, they cost throughput.
    logs = [(logdir / f"{name}.log").read_text(errors="replace") for name in names]
    out["worker_retry_warnings"] = sum(log.count("redis unavailable, retrying") for log in logs)
    out["worker_max_connections_errors"] = sum(log.count("MaxConnectionsError") for log in logs)
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("GRAFLOW_LOG_LEVEL", "error")
    from .redis_tasks import chain_wf, fan_wf

    t0 = time.perf_counter()
    wfs = {"fan": fan_wf(args.fan), "chain": chain_wf(args.chain)}
    build_s = time.perf_counter() - t0
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    logdir = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    try:
        with redis_server() as (url, server):
            out: dict[str, Any] = {
                "redis_server": version.removeprefix("v="),
                "cpus": os.cpu_count(),
                "fan_n": args.fan,
                "chain_n": args.chain,
                "repeat": args.repeat,
                "build_s": build_s,
                "commit": git_commit(),
            }
            out["floors"] = asyncio.run(floors(url))
            out["runs"] = [measure_workers(url, server, count, args, logdir, wfs) for count in args.workers]
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    two = next((r for r in out["runs"] if r["workers"] == 2), None)
    if two is not None:
        out["goals"] = {
            "fan_2_workers_ge_10k_per_s": two["fan"]["tasks_per_s"] >= 10_000,
            "latency_p50_le_1ms": two["latency"]["p50_ms"] <= 1.0,
            "latency_p99_le_5ms": two["latency"]["p99_ms"] <= 5.0,
        }
    return out


# --- make bench ----------------------------------------------------------------------------
def suite() -> None:
    """Run the benchmark in its own process and print a table (hook for ``make bench``)."""
    print_table(run_module("redis_streams"))


def print_table(r: dict[str, Any]) -> None:
    f = r["floors"]
    print(f"redis streams: own redis-server {r['redis_server']}, {r['cpus']} CPUs, best of {r['repeat']}")
    print(
        f"floors: PING p50 {f['ping_async_us']['p50']:.0f} µs asyncio / {f['ping_sync_us']['p50']:.0f} µs sync; "
        f"pipelined XADD ({f['message_bytes']} B) {f['xadd_pipelined_async_per_s']:,.0f}/s asyncio, "
        f"{f['xadd_pipelined_sync_per_s']:,.0f}/s sync"
    )
    print(
        f"{'workers':<8}{'scenario':<13}{'tasks':>7}{'tasks/s':>10}{'median/s':>10}{'µs/task':>9}"
        f"{'cpu µs/task: disp':>19}{'workers':>9}{'redis':>7}"
    )
    for run in r["runs"]:
        for name in ("fan", "chain"):
            s = run[name]
            print(
                f"{run['workers']:<8}{name:<13}{s['tasks']:>7}{s['tasks_per_s']:>10,.0f}"
                f"{s['median_tasks_per_s']:>10,.0f}{s['us_per_task']:>9.1f}"
                f"{s['dispatcher_cpu_us_per_task']:>19.1f}{s['workers_cpu_us_per_task']:>9.1f}"
                f"{s['redis_cpu_us_per_task']:>7.1f}"
            )
        if run["worker_retry_warnings"]:
            print(
                f"{run['workers']:<8}workers backed off {run['worker_retry_warnings']} times on 'redis unavailable' "
                f"({run['worker_max_connections_errors']} of them MaxConnectionsError)"
            )
        lat = run["latency"]
        print(
            f"{run['workers']:<8}dispatch->start latency, {lat['n']} sequential tasks: p50 {lat['p50_ms']:.2f} ms, "
            f"p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms"
        )
    goals = r.get("goals")
    if goals:

        def verdict(key: str) -> str:
            return "met" if goals[key] else "NOT met"

        print(
            f"goals (2 workers): fan >= 10,000 tasks/s {verdict('fan_2_workers_ge_10k_per_s')}; "
            f"latency p50 <= 1 ms {verdict('latency_p50_le_1ms')}, p99 <= 5 ms {verdict('latency_p99_le_5ms')}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.redis_streams",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--fan", type=int, default=20_000, help="tasks in the parallel group (default 20000)")
    parser.add_argument("--chain", type=int, default=2_000, help="tasks in the chain (default 2000)")
    parser.add_argument("--latency", type=int, default=200, help="sequential tasks for latency (default 200)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, comma-separated")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="--concurrency of each worker (default 64; 0: the worker's default, unbounded)",
    )
    parser.add_argument("--table", action="store_true", help="also print the table (to stderr)")
    args = parser.parse_args(argv)
    args.workers = [int(x) for x in args.workers.split(",")]
    # SIGTERM ends the benchmark through its `finally` blocks: workers and redis-server stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = measure(args)
    report(result, print_table if args.table else None)


if __name__ == "__main__":
    main()

"""The Redis workload of `benchmarks.redis_streams`, on Graflow 0.2.0's Redis workers.

    python -m benchmarks.graflow_redis [--fan N] [--fan-big N] [--chain N] [--latency N]
                                       [--repeat R] [--workers 1,2] [--ours FILE]

prints one JSON line (``--table``: and a table). Run it with the project's venv: it
creates ``benchmarks/.venvs/graflow`` (`benchmarks.peers`: ``python3 -m venv`` + ``pip
install graflow==0.2.0 redis``) if missing, starts its own ``redis-server`` (free port, no persistence), then
for each worker count starts Graflow's worker processes the way its README says
(``python -m graflow.worker.main --worker-id ... --redis-host ... --redis-port ...``,
default ``--max-concurrent-tasks 4 --poll-interval 0.1``, logging at WARNING instead
of INFO) and runs a driver process in that venv.

How Graflow 0.2.0 sends work to Redis (read from its source): only the members of a
parallel group configured with ``.with_execution(backend=CoordinationBackend.REDIS,
backend_config={...})`` go to workers (``RedisCoordinator.execute_group``): the
driver cloudpickles the whole graph to Redis, LPUSHes one JSON record per member (one
round trip each), then waits on a barrier (pub/sub plus a counter) with a fixed 30 s
timeout. Workers LPOP (sleeping ``poll_interval`` when the queue is empty), rebuild
an ExecutionContext per task and HSET/INCR/GET/PUBLISH a completion record. Tasks
outside such groups run in the driver process. The README's ``create_execution_context
(queue_backend=QueueBackend.REDIS)`` does not exist in 0.2.0 (no ``graflow.queue.factory``).

So the same workload shape is:

- ``fan``: src >> parallel(N trivial tasks).with_execution(REDIS) >> sink; src and sink
  run in the driver (Graflow cannot send them to workers). Default N = 2,000, and one
  attempt at ``--fan-big`` (20,000, as for graflow-async): it fails when the workers
  need more than 30 s (``RedisCoordinator.wait_barrier``'s fixed timeout), which is
  reported with the error, never as a figure;
- ``chain``: N single-member REDIS groups one after another (``ParallelGroup([t])``; the
  only way to run a sequential task on a Graflow Redis worker); default N = 200;
- ``latency``: the dispatcher's LPUSH (stamped by wrapping
  ``RedisCoordinator.dispatch_task``) to the task starting on a worker (the task HSETs
  ``time.monotonic()``, system-wide on Linux), over a chain of single-member groups.

Each group gets a unique name: Graflow keys barriers by group name, so reusing
``ParallelGroup_1`` across runs mixes their completions. With ``--ours FILE`` (the JSON
line of ``python -m benchmarks.redis_streams``) it adds graflow-async / Graflow ratios.

This module is imported by the Graflow driver and workers (its task functions are
pickled by reference as ``benchmarks.graflow_redis:_noop``), so its top level uses
only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks import report, run_module

GRAFLOW_VERSION = "0.2.0"
KEY_PREFIX = "gfbench"


# --- Graflow tasks (run by Graflow's workers) ----------------------------------------------
def _noop() -> int:
    return 1


_stamp_client: Any = None


def _started(ctx: Any) -> None:
    """Stamps when it started (system-wide monotonic clock) in a Redis hash."""
    now = time.monotonic()
    global _stamp_client
    if _stamp_client is None:
        import redis

        _stamp_client = redis.Redis.from_url(os.environ["GFBENCH_REDIS_URL"])
    _stamp_client.hset(f"{KEY_PREFIX}:started", ctx.task_id, repr(now))


# --- the driver (runs in the Graflow venv) -------------------------------------------------
def _redis_config(url: str) -> dict[str, Any]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    return {"host": host, "port": int(port), "key_prefix": KEY_PREFIX}


def _fan(n: int, cfg: dict[str, Any]) -> Any:
    from graflow import parallel, task, workflow
    from graflow.coordination.coordinator import CoordinationBackend

    with workflow(f"fan{n}") as wf:
        src, sink = task(id="src")(_noop), task(id="sink")(_noop)
        group = parallel(*(task(id=f"t{i}")(_noop) for i in range(n)))
        group.set_group_name(f"fan-{uuid.uuid4().hex}")
        src >> group.with_execution(backend=CoordinationBackend.REDIS, backend_config=cfg) >> sink
    return wf


def _chain(n: int, cfg: dict[str, Any], func: Any = _noop, inject: bool = False) -> tuple[Any, str]:
    from graflow import task, workflow
    from graflow.coordination.coordinator import CoordinationBackend
    from graflow.core.task import ParallelGroup

    run = uuid.uuid4().hex[:12]
    with workflow(f"chain{n}") as wf:
        prev = first = None
        for i in range(n):
            group = ParallelGroup([task(id=f"t{i}", inject_context=inject)(func)], name=f"c{run}-{i}")
            group.with_execution(backend=CoordinationBackend.REDIS, backend_config=cfg)
            if prev is not None:
                prev >> group
            else:
                first = group
            prev = group
    assert first is not None
    return wf, first.task_id


def _cpu(pids: list[int]) -> float:
    from .redis_streams import cpu_seconds

    return sum(cpu_seconds(pid) for pid in pids)


def _timed(build: Any, tasks: int, worker_pids: list[int], redis_pid: int, repeat: int) -> dict[str, Any]:
    """Best and median of `repeat` runs of a freshly built workflow (unique group names);
    `build()` returns the workflow and its start node."""
    import gc

    times, cpus = [], []
    for _ in range(repeat):
        wf, start = build()
        gc.collect()
        before = (time.process_time(), _cpu(worker_pids), _cpu([redis_pid]))
        t0 = time.perf_counter()
        try:
            wf.execute(start_node=start)
        except Exception as exc:  # Graflow's barrier timeout, typically
            elapsed = time.perf_counter() - t0
            message = f"{type(exc).__name__}: {exc}"
            return {"tasks": tasks, "error": message[:400], "failed_after_s": elapsed}
        elapsed = time.perf_counter() - t0
        after = (time.process_time(), _cpu(worker_pids), _cpu([redis_pid]))
        times.append(elapsed)
        cpus.append(
            {
                f"{role}_cpu_us_per_task": (a - b) / tasks * 1e6
                for role, a, b in zip(("dispatcher", "workers", "redis"), after, before, strict=True)
            }
        )
    best = min(range(len(times)), key=times.__getitem__)
    return {
        "tasks": tasks,
        "best_s": times[best],
        "median_s": statistics.median(times),
        "tasks_per_s": tasks / times[best],
        "median_tasks_per_s": tasks / statistics.median(times),
        "ms_per_task": times[best] / tasks * 1e3,
        "runs": len(times),
        **cpus[best],
    }


def _latency(url: str, cfg: dict[str, Any], n: int) -> dict[str, Any]:
    import redis
    from graflow.coordination.redis_coordinator import RedisCoordinator

    sent: dict[str, float] = {}
    original = RedisCoordinator.dispatch_task

    def dispatch_task(self: Any, executable: Any, group_id: str) -> None:
        sent[executable.task_id] = time.monotonic()
        original(self, executable, group_id)

    client = redis.Redis.from_url(url)
    client.delete(f"{KEY_PREFIX}:started")
    RedisCoordinator.dispatch_task = dispatch_task  # type: ignore[method-assign]
    try:
        wf, first = _chain(n, cfg, _started, inject=True)
        wf.execute(start_node=first)
    finally:
        RedisCoordinator.dispatch_task = original  # type: ignore[method-assign]
    started = {k.decode(): float(v) for k, v in client.hgetall(f"{KEY_PREFIX}:started").items()}
    client.close()
    lags = sorted((started[tid] - t) * 1e3 for tid, t in sent.items() if tid in started)
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    return {"n": len(lags), "p50_ms": statistics.median(lags), "p99_ms": p99, "max_ms": lags[-1]}


def driver(argv: list[str]) -> None:
    """Runs in the Graflow venv: the timed workflows for one set of workers; prints JSON."""
    import logging

    import graflow

    logging.basicConfig(level=logging.WARNING)
    p = argparse.ArgumentParser()
    p.add_argument("--url")
    p.add_argument("--fan", type=int)
    p.add_argument("--fan-big", type=int)
    p.add_argument("--chain", type=int)
    p.add_argument("--latency", type=int)
    p.add_argument("--repeat", type=int)
    p.add_argument("--worker-pids")
    p.add_argument("--redis-pid", type=int)
    a = p.parse_args(argv)
    cfg = _redis_config(a.url)
    pids = [int(x) for x in a.worker_pids.split(",")]
    out: dict[str, Any] = {"graflow_version": graflow.__version__}
    _fan(200, cfg).execute(start_node="src")  # warm up: imports, connections, the workers' first graph load
    out["fan"] = _timed(lambda: (_fan(a.fan, cfg), "src"), a.fan + 2, pids, a.redis_pid, a.repeat)
    out["chain"] = _timed(lambda: _chain(a.chain, cfg), a.chain, pids, a.redis_pid, 1)
    if a.latency:
        out["latency"] = _latency(a.url, cfg, a.latency)
    if a.fan_big:  # last: a failed attempt leaves work queued (dropped below, but the workers finish theirs)
        out["fan_big"] = _timed(lambda: (_fan(a.fan_big, cfg), "src"), a.fan_big + 2, pids, a.redis_pid, 1)
        if "error" in out["fan_big"]:
            import redis

            client = redis.Redis.from_url(a.url)
            out["fan_big"]["left_queued"] = client.llen(f"{KEY_PREFIX}:queue")
            client.delete(f"{KEY_PREFIX}:queue")
            client.close()
    print(json.dumps(out))


# --- the orchestrator (runs in the project's venv) --------------------------------------------
def graflow_python() -> str:
    """The interpreter of ``benchmarks/.venvs/graflow`` (created on first use, `benchmarks.peers`)."""
    from .peers import PEERS, ensure

    return str(ensure(PEERS["graflow"]))


def start_workers(url: str, names: list[str], args: argparse.Namespace, logdir: Path) -> list[subprocess.Popen[bytes]]:
    from .peers import environment

    cfg = _redis_config(url)
    env = {**environment(), "GFBENCH_REDIS_URL": url}
    python = graflow_python()
    procs = []
    for name in names:
        with open(logdir / f"{name}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        python,
                        "-m",
                        "graflow.worker.main",
                        "--worker-id",
                        name,
                        "--redis-host",
                        cfg["host"],
                        "--redis-port",
                        str(cfg["port"]),
                        "--redis-key-prefix",
                        KEY_PREFIX,
                        "--max-concurrent-tasks",
                        str(args.max_concurrent_tasks),
                        "--poll-interval",
                        str(args.poll_interval),
                        "--log-level",
                        "WARNING",
                    ],
                    cwd=logdir,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,  # Graflow writes under its cwd
                )
            )
    return procs


def wait_polling(
    url: str, procs: list[subprocess.Popen[bytes]], logdir: Path, names: list[str], timeout: float = 60.0
) -> None:
    """Until as many connections as workers poll the queue (last command LPOP)."""
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for name, proc in zip(names, procs, strict=True):
                if proc.poll() is not None:
                    log = (logdir / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"Graflow worker {name} exited with {proc.returncode}:\n{log}")
            if sum(c.get("cmd") == "lpop" for c in client.client_list()) >= len(procs):
                return
            time.sleep(0.05)
        raise RuntimeError(f"Graflow workers did not start polling within {timeout:g}s")
    finally:
        client.close()


def drain(url: str) -> None:
    """Drop what a failed run left queued, so the next run starts from an empty queue."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.delete(f"{KEY_PREFIX}:queue")
    finally:
        client.close()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import shutil
    import tempfile

    from .peers import environment
    from .redis_streams import redis_server, stop

    python = graflow_python()
    logdir = Path(tempfile.mkdtemp(prefix="bench-graflow-"))
    out: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "fan_n": args.fan,
        "fan_big_n": args.fan_big,
        "chain_n": args.chain,
        "repeat": args.repeat,
        "worker_options": {"max_concurrent_tasks": args.max_concurrent_tasks, "poll_interval": args.poll_interval},
        "loadavg_start": os.getloadavg()[0],
        "runs": [],
    }
    try:
        with redis_server() as (url, server):
            for count in args.workers:
                names = [f"graflow-w{count}-{i}" for i in range(1, count + 1)]
                procs = start_workers(url, names, args, logdir)
                try:
                    wait_polling(url, procs, logdir, names)
                    done = subprocess.run(
                        [
                            python,
                            "-c",
                            "import sys; from benchmarks.graflow_redis import driver; driver(sys.argv[1:])",
                            "--url",
                            url,
                            "--fan",
                            str(args.fan),
                            "--fan-big",
                            str(args.fan_big),
                            "--chain",
                            str(args.chain),
                            "--latency",
                            str(args.latency),
                            "--repeat",
                            str(args.repeat),
                            "--worker-pids",
                            ",".join(str(p.pid) for p in procs),
                            "--redis-pid",
                            str(server.pid),
                        ],
                        cwd=logdir,
                        env={**environment(), "GFBENCH_REDIS_URL": url},
                        capture_output=True,
                        text=True,
                        timeout=args.timeout,
                    )
                    if done.returncode != 0:
                        raise RuntimeError(f"Graflow driver failed ({done.returncode}):\n{done.stderr[-3000:]}")
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    out["graflow_version"] = result.pop("graflow_version")
                    out["runs"].append({"workers": count, **result})
                finally:
                    for proc in procs:
                        stop(proc, grace=5.0)
                    drain(url)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    out["loadavg_end"] = os.getloadavg()[0]
    if args.ours:
        out["vs_graflow_async"] = compare(json.loads(Path(args.ours).read_text().strip().splitlines()[-1]), out)
    return out


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> list[dict[str, Any]]:
    """graflow-async tasks/s over Graflow's, per worker count and scenario."""
    rows = []
    for mine in ours["runs"]:
        other = next((r for r in theirs["runs"] if r["workers"] == mine["workers"]), None)
        if other is None:
            continue
        row: dict[str, Any] = {"workers": mine["workers"]}
        for name, key in (("fan", "fan"), ("fan_big", "fan"), ("chain", "chain")):
            if name in other and "tasks_per_s" in other[name]:
                row[f"{name}_ratio"] = mine[key]["tasks_per_s"] / other[name]["tasks_per_s"]
        if "latency" in other:
            row["latency_p50_ratio"] = other["latency"]["p50_ms"] / mine["latency"]["p50_ms"]
        rows.append(row)
    return rows


# --- make bench -------------------------------------------------------------------------------
def suite() -> None:
    """Run the benchmark in its own process and print a table."""
    print_table(run_module("graflow_redis"))


def print_table(r: dict[str, Any]) -> None:
    opts = r["worker_options"]
    print(
        f"Graflow {r.get('graflow_version', GRAFLOW_VERSION)} Redis workers (max_concurrent_tasks "
        f"{opts['max_concurrent_tasks']}, poll_interval {opts['poll_interval']} s), {r['cpus']} CPUs"
    )
    print(
        f"{'workers':<8}{'scenario':<10}{'tasks':>7}{'tasks/s':>9}{'ms/task':>9}"
        f"{'cpu µs/task: disp':>19}{'workers':>9}{'redis':>7}"
    )
    for run in r["runs"]:
        for name in ("fan", "fan_big", "chain"):
            s = run.get(name)
            if s is None:
                continue
            if "error" in s:
                left = f", {s['left_queued']} tasks left queued" if "left_queued" in s else ""
                print(
                    f"{run['workers']:<8}{name:<10}{s['tasks']:>7}  FAILED after {s['failed_after_s']:.1f} s{left}: "
                    f"{s['error'][:70]}"
                )
                continue
            print(
                f"{run['workers']:<8}{name:<10}{s['tasks']:>7}{s['tasks_per_s']:>9,.0f}{s['ms_per_task']:>9.2f}"
                f"{s['dispatcher_cpu_us_per_task']:>19.0f}{s['workers_cpu_us_per_task']:>9.0f}"
                f"{s['redis_cpu_us_per_task']:>7.0f}"
            )
        lat = run.get("latency")
        if lat:
            print(
                f"{run['workers']:<8}dispatch->start latency, {lat['n']} sequential tasks: "
                f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms"
            )
    for row in r.get("vs_graflow_async", []):
        parts = [f"{k.removesuffix('_ratio')} {v:,.1f}x" for k, v in row.items() if k != "workers"]
        print(f"graflow-async vs Graflow, {row['workers']} worker(s): " + ", ".join(parts))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.graflow_redis",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--fan", type=int, default=2_000, help="tasks in the timed parallel group (default 2000)")
    parser.add_argument(
        "--fan-big", type=int, default=20_000, help="one attempt at a group this large (default 20000; 0 skips it)"
    )
    parser.add_argument("--chain", type=int, default=200, help="single-member groups in the chain (default 200)")
    parser.add_argument("--latency", type=int, default=50, help="sequential tasks for latency (default 50)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--max-concurrent-tasks", type=int, default=4, help="Graflow worker option (its default 4)")
    parser.add_argument("--poll-interval", type=float, default=0.1, help="Graflow worker option (its default 0.1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per driver process")
    parser.add_argument("--ours", help="JSON output of benchmarks.redis_streams, for ratios")
    parser.add_argument("--table", action="store_true", help="also print the table (to stderr)")
    args = parser.parse_args(argv)
    args.workers = [int(x) for x in args.workers.split(",")]
    # SIGTERM ends the benchmark through its `finally` blocks: driver, workers and redis-server stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = measure(args)
    report(result, print_table if args.table else None)


if __name__ == "__main__":
    main()

"""Handler overhead: what running one task in a fresh container (the ``docker`` handler)
or a fresh Python process (``examples/custom_handler.py``'s ``SubprocessHandler``) adds,
from the task's dispatch to its result, next to the ``direct`` handler.

    python -m benchmarks.handlers [--calls N] [--docker-calls N] [--table]

prints one JSON line. It runs one-task workflows one after another (a warm-up first)
and takes each run's wall time: p50 and p99 per handler, and the overhead (p50 minus the
direct handler's p50). The docker figures need root: the benchmark starts a private
``dockerd`` (as the tests do) and builds a busybox image with this host's Python
mounted read-only, so a container start includes mounting and starting the interpreter
and importing graflow_async (about 0.25 s of CPU alone). The docker figures are taken
twice, taking turns: with the sandbox's defaults, and with the container as it was
before them (`UNHARDENED`), and their p50 ratio is reported. Without root or dockerd
the docker figures are reported as unavailable, with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

from graflow_async import run, workflow
from graflow_async.define.tasks import Task

from . import ROOT, report
from .handler_tasks import noop


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": statistics.median(ordered) * 1e3, "p99_ms": p99 * 1e3, "calls": len(ordered)}


async def _time_runs(t: Task, calls: int) -> list[float]:
    with workflow(f"bench-{t.id}") as wf:
        wf.add(t(task_id=t.id, i=1))
    await run(wf)  # warm-up: imports, first connection, image cache
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        result = await run(wf)
        samples.append(time.perf_counter() - started)
        assert result.output == 1
    return samples


# The docker handler's container before it became a sandbox (issue 19): this host's user,
# Docker's default capabilities, a writable root filesystem, no pids limit to speak of.
UNHARDENED = {
    "user": f"{os.getuid()}:{os.getgid()}",
    "cap_add": [
        *("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID"),
        *("SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"),
    ],
    "no_new_privileges": False,
    "read_only": False,
    "pids_limit": 1 << 22,
}


async def _alternating(tasks: dict[str, Task], calls: int) -> dict[str, list[float]]:
    """Each task's run times, taking turns (so that drift of the machine hits both alike)."""
    flows = {}
    for name, t in tasks.items():
        with workflow(f"bench-{t.id}") as wf:
            wf.add(t(task_id=t.id, i=1))
        await run(wf)  # warm-up
        flows[name] = wf
    samples: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(calls):
        for name, wf in flows.items():
            started = time.perf_counter()
            result = await run(wf)
            samples[name].append(time.perf_counter() - started)
            assert result.output == 1
    return samples


async def _docker(calls: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from docker_engine import IMAGE, Dockerd, DockerEngine, build_image, interpreter_volumes

    daemon = Dockerd()
    try:
        daemon.start()
    except (RuntimeError, OSError) as exc:
        return {"available": False, "reason": str(exc).splitlines()[0]}
    try:
        engine = DockerEngine(url=daemon.url, image=IMAGE, python=os.path.realpath(sys.executable))
        build_image(engine)
        options = {"image": IMAGE, "docker_url": daemon.url, "python": engine.python, "volumes": interpreter_volumes()}
        tasks = {
            "hardened": Task(noop, id="docker_noop", handler="docker", handler_kwargs=options),
            "unhardened": Task(noop, id="docker_noop_open", handler="docker", handler_kwargs={**options, **UNHARDENED}),
        }
        samples = await _alternating(tasks, calls)
        hardened, unhardened = (_percentiles(samples[k]) for k in ("hardened", "unhardened"))
        return {
            "available": True,
            **hardened,
            "unhardened": unhardened,
            "hardened_to_unhardened_p50": hardened["p50_ms"] / unhardened["p50_ms"],
        }
    finally:
        daemon.stop()


async def measure(calls: int, docker_calls: int) -> dict[str, Any]:
    from examples.custom_handler import SubprocessHandler

    direct = _percentiles(await _time_runs(Task(noop, id="direct_noop"), calls))
    child = _percentiles(await _time_runs(Task(noop, id="subprocess_noop", handler=SubprocessHandler()), calls))
    docker = await _docker(docker_calls)
    for figures in (child, docker):
        if "p50_ms" in figures:
            figures["overhead_p50_ms"] = figures["p50_ms"] - direct["p50_ms"]
    return {"direct": direct, "subprocess": child, "docker": docker}


def table(result: dict[str, Any]) -> None:
    print("handler overhead: one-task runs, dispatch to result")
    print(f"{'handler':<12}{'calls':>7}{'p50 ms':>10}{'p99 ms':>10}{'overhead p50 ms':>18}")
    for name in ("direct", "subprocess", "docker"):
        r = result[name]
        if "p50_ms" not in r:
            print(f"{name:<12}  n/a: {r.get('reason', '')}")
            continue
        overhead = f"{r['overhead_p50_ms']:.1f}" if "overhead_p50_ms" in r else "-"
        print(f"{name:<12}{r['calls']:>7}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{overhead:>18}")
    docker = result["docker"]
    if "unhardened" in docker:
        u = docker["unhardened"]
        print(f"{'docker, before the sandbox':<28}{u['p50_ms']:>10.2f}{u['p99_ms']:>10.2f}")
        print(f"sandbox defaults cost {docker['hardened_to_unhardened_p50']:.3f}x the p50 of the container before them")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="handler overhead")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--docker-calls", type=int, default=30)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.calls, args.docker_calls))
    report(result, table if args.table else None)


if __name__ == "__main__":
    main()

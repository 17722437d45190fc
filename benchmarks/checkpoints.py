"""Checkpoint benchmarks: save and resume a run of 1,000 completed tasks with 1 KiB
results each, on the file store and on S3 (moto's server, started here on a free port),
next to the raw cost of writing the same bytes.

    python -m benchmarks.checkpoints [--tasks N] [--size BYTES] [--repeat R] [--dir DIR]

prints one JSON line. Figures, best of R (default 5), per store:

- ``save_ms``: the time spent inside ``context.checkpoint()`` by the run's last task
  (snapshot, encode, checksum, write); ``size_bytes``: the checkpoint's size;
- ``raw_write_ms``: writing the same number of bytes without graflow-async: a temp
  file in the same directory, fsynced and renamed (file), or one ``put_object`` on an
  open client (S3); ``save_vs_raw`` is the ratio (goal: within 2x);
- ``load_ms``: ``load_checkpoint`` (read, verify, decode); ``resume_ms``: ``resume()``
  of the checkpoint, where only one trivial task remains (load, restore, run it;
  goal: under 50 ms). On S3 both include creating a client, as a resuming process would.

Plus ``run_us_per_task``: ``run`` on a 1,000-task chain without checkpoints
(`benchmarks.core`). moto runs in this process, so S3 figures include its cost.
`print_table` prints the JSON as a table (`benchmarks.suites`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from graflow_async import Workflow, chain, resume, run, task, workflow
from graflow_async.checkpoints import load_checkpoint, store_for_location

from . import run_module
from .core import measure as measure_core


def checkpointed_wf(n: int, size: int, saves: int, timings: list[float]) -> Workflow:
    """`n` tasks returning `size` random bytes each, then `saver`, which checkpoints
    `saves` times (timing each) and returns the last location. Resumed, `saver` is the
    only task left and returns at once."""

    async def payload() -> bytes:
        return os.urandom(size)

    @task(id="saver", inject_context=True)
    async def saver(context: Any) -> str | None:
        if context.resumed_metadata is not None:
            return None
        location = None
        for _ in range(saves):
            gc.collect()
            started = time.perf_counter()
            location = await context.checkpoint(metadata={"benchmark": True})
            timings.append(time.perf_counter() - started)
        return location

    with workflow(f"checkpointed{n}") as wf:
        chain(*(task(payload, id=f"t{i}") for i in range(n)), saver)
    return wf


async def _best(fn: Callable[[], Awaitable[object]], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        await fn()
        best = min(best, time.perf_counter() - started)
    return best


async def measure_store(
    store: str, raw_write: Callable[[bytes], Awaitable[object]], *, n: int, size: int, repeat: int
) -> dict[str, float | int | bool]:
    timings: list[float] = []
    wf = checkpointed_wf(n, size, repeat, timings)
    location = (await run(wf, checkpoint_store=store)).output
    reader = store_for_location(location)
    try:
        data = await reader.read(location)
    finally:
        await reader.aclose()
    save = min(timings)
    raw = await _best(lambda: raw_write(data), repeat)
    load = await _best(lambda: load_checkpoint(location), repeat)
    # force: the same checkpoint is resumed R times, and each resumed run completes
    resumed = await _best(lambda: resume(location, workflow=wf, force=True), repeat)
    return {
        "save_ms": save * 1e3,
        "raw_write_ms": raw * 1e3,
        "save_vs_raw": save / raw,
        "size_bytes": len(data),
        "payload_bytes": n * size,
        "load_ms": load * 1e3,
        "resume_ms": resumed * 1e3,
        "save_within_2x_raw": save <= 2 * raw,
        "resume_under_50ms": resumed < 0.050,
    }


def raw_file_writer(directory: Path) -> Callable[[bytes], Awaitable[None]]:
    """Temp file in `directory`, write, fsync, rename over the target."""
    target = directory / "raw.bin"

    async def write(data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=directory)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)

    return write


@contextmanager
def moto_server() -> Any:
    """moto's S3 server on a free port; the environment points botocore at it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


async def measure_s3(*, n: int, size: int, repeat: int) -> dict[str, float | int | bool]:
    from aiobotocore.session import get_session

    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    async with get_session().create_client("s3") as client:
        await client.create_bucket(Bucket=bucket)

        async def put(data: bytes) -> None:
            await client.put_object(Bucket=bucket, Key="raw/raw.bin", Body=data)

        return await measure_store(f"s3://{bucket}/runs", put, n=n, size=size, repeat=repeat)


async def measure(n: int, size: int, repeat: int, directory: Path) -> dict[str, Any]:
    file = await measure_store(
        str(directory / "checkpoints"), raw_file_writer(directory), n=n, size=size, repeat=repeat
    )
    with moto_server():
        s3 = await measure_s3(n=n, size=size, repeat=repeat)
    core = await measure_core("chain", 1000, repeat)
    return {
        "tasks": n,
        "result_bytes": size,
        "repeat": repeat,
        "file": file,
        "s3": s3,
        "run_us_per_task": core["us_per_task"],
        "asyncio_us_per_task": core["asyncio_us_per_task"],
    }


def suite() -> None:
    """Run the benchmark in its own process and print a table."""
    print_table(run_module("checkpoints"))


def print_table(r: dict[str, Any]) -> None:
    print(f"checkpoints: {r['tasks']} completed tasks with {r['result_bytes']} B results (best of {r['repeat']})")
    print(f"{'store':<6}{'size KiB':>10}{'save ms':>9}{'raw ms':>8}{'ratio':>8}{'load ms':>9}{'resume ms':>11}")
    for name in ("file", "s3"):
        s = r[name]
        print(
            f"{name:<6}{s['size_bytes'] / 1024:>10.1f}{s['save_ms']:>9.2f}{s['raw_write_ms']:>8.2f}"
            f"{s['save_vs_raw']:>7.2f}x{s['load_ms']:>9.2f}{s['resume_ms']:>11.2f}"
        )
    print("goals: save within 2x of the raw write (file: temp + fsync + rename; s3: put_object),")
    print("resume (load + restore + the one remaining task) under 50 ms.")
    print(
        f"run without checkpoints, 1,000-task chain: {r['run_us_per_task']:.2f} µs/task "
        f"(plain asyncio {r['asyncio_us_per_task']:.2f})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checkpoints", description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per task result")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="where file checkpoints go (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        result = asyncio.run(measure(args.tasks, args.size, args.repeat, Path(directory)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

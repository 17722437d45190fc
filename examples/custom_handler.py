"""A custom task handler: run CPU-bound tasks in separate Python processes, escaping the GIL.

A handler is any object with ``async def run(self, call: TaskCall) -> Any``. This one
starts a fresh interpreter per attempt with the same import path; the call's arguments
and result cross as msgpack files in a call directory (`call_directory`), and a task
declared with ``inject_context=True`` still reaches its run, by messages over a socket
in that directory. A task that raises comes back as `RemoteTaskError`; a process that
dies without answering is a `TaskFailedError` with its output, retried per the task's
policy. Cancelling the run kills the processes.

    python examples/custom_handler.py            # 4 prime counts in 4 processes, then the total
    python examples/custom_handler.py --inline   # the same on the direct handler, for comparison

With the direct handler the four sync tasks share one interpreter's GIL (they run in
threads), so they take about as long as running them one after another; in processes
they use every core.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from graflow_async import TaskCall, TaskContext, TaskFailedError, parallel, register_handler, run, task, workflow
from graflow_async.handlers.isolated import NoReply, call_directory


class SubprocessHandler:
    """Runs each attempt of a task in a new ``python -m graflow_async.handlers.container`` process."""

    def __init__(self, python: str = sys.executable, output_tail: int = 2000) -> None:
        self.python = python
        self.output_tail = output_tail

    async def run(self, call: TaskCall) -> Any:
        async with call_directory(call) as directory:
            command, env = directory.local_process(self.python)
            process = await asyncio.create_subprocess_exec(
                *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            try:
                output, _ = await process.communicate()
            except asyncio.CancelledError:  # the run is cancelled: leave nothing running
                process.kill()
                await process.wait()
                raise
            try:
                return await directory.outcome()
            except NoReply:
                tail = output.decode(errors="replace")[-self.output_tail :]
                raise TaskFailedError(
                    call.task_id,
                    None,
                    f"task {call.task_id!r}: its process exited with status {process.returncode}\n{tail}",
                ) from None


register_handler("subprocess", SubprocessHandler())


def primes_below(stop: int, start: int = 2) -> int:
    """Pure-Python CPU work: how many primes lie in [start, stop)."""
    count = 0
    for n in range(max(start, 2), stop):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count


@task(handler="subprocess")
def count_primes(start: int, stop: int) -> int:
    return primes_below(stop, start)


@task(handler="subprocess", inject_context=True)
async def report(context: TaskContext, stop: int) -> str:
    """Also in its own process: reads the counts from the run's channel, by messages."""
    counts = await context.channel.get("counts", [])
    return f"{sum(counts)} primes below {stop:,} ({len(counts)} slices)"


@task
async def collect(p0: int, p1: int, p2: int, p3: int) -> list[int]:
    return [p0, p1, p2, p3]


@task
def count_primes_here(start: int, stop: int) -> int:
    """The same work on the direct handler (a thread of this process)."""
    return primes_below(stop, start)


def build(stop: int, *, inline: bool = False) -> Any:
    """Four slices counted in parallel, then their total reported."""
    counter = count_primes_here if inline else count_primes
    edges = [stop * i // 4 for i in range(5)]
    with workflow("primes") as wf:
        slices = [counter(task_id=f"p{i}", start=edges[i], stop=edges[i + 1]) for i in range(4)]
        parallel(*slices) >> collect >> keep_counts >> report(task_id="report", stop=stop)
    return wf


@task(inject_context=True)
async def keep_counts(context: TaskContext, collect: list[int]) -> None:
    await context.channel.set("counts", collect)


async def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop", type=int, default=1_000_000)
    parser.add_argument("--inline", action="store_true", help="run the slices on the direct handler instead")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = await run(build(args.stop, inline=args.inline))
    where = "threads of this process" if args.inline else "separate processes"
    line = f"{result.output} in {time.perf_counter() - started:.2f}s ({where})"
    print(line)
    return line


if __name__ == "__main__":
    asyncio.run(main())

"""graflow-async on each scenario, in-process (memory transport).

    python -m benchmarks.bench_ours KIND N [REPEAT [CAP]]

prints one JSON line (`benchmarks.harness`). Each workflow is built once, outside the
timing, and run warm-up + REPEAT times with ``await run(wf)`` on one event loop. Tasks
are ``async def`` no-ops except in ``chain-sync`` (plain functions: graflow-async runs
them in a worker thread) and ``chain-inline`` (plain functions run on the event loop,
``handler="inline"``). ``group`` fails members like `bench_asyncio.fails` under
``RetryPolicy(max_retries=2, initial_interval=0)`` and a best-effort policy;
``checkpoint`` calls ``await context.checkpoint()`` in every 100th task of a chain (a
file store in a temp dir); ``hitl`` asks N text questions in turn
(`MemoryFeedbackStore`), answered in the same loop after the pauses of
`harness.answer_delays`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .bench_asyncio import CHECKPOINT_EVERY, fails
from .harness import answer_delays, build_timed, emit, measure, measure_samples, parse_args

SYSTEM = "graflow-async"


async def _noop() -> int:
    return 1


def group_wf(n: int) -> tuple[Any, Callable[[], None]]:
    from graflow_async import RetryPolicy, parallel, task, workflow

    attempts: dict[int, int] = {}

    def member(i: int) -> Callable[[], Any]:
        async def run_member() -> int:
            attempt = attempts[i] = attempts.get(i, 0) + 1
            if fails(i, attempt):
                raise RuntimeError(f"member {i} failed on attempt {attempt}")
            return i

        return run_member

    policy = RetryPolicy(max_retries=2, initial_interval=0.0)
    with workflow(f"group{n}") as wf:
        src, sink = task(_noop, id="src"), task(_noop, id="sink")
        members = parallel(*(task(member(i), id=f"m{i}", retry_policy=policy) for i in range(n)))
        src >> members.with_execution(policy="best_effort") >> sink
    return wf, attempts.clear  # the attempts are counted afresh in each run


def checkpoint_wf(n: int) -> Any:
    from graflow_async import chain, task, workflow

    async def saver(context: Any) -> int:
        await context.checkpoint()
        return 1

    def node(i: int) -> Any:
        if i % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
            return task(saver, id=f"t{i}", inject_context=True)
        return task(_noop, id=f"t{i}")

    with workflow(f"checkpoint{n}") as wf:
        chain(*(node(i) for i in range(n)))
    return wf


def hitl_wf(count: int, latencies: list[float]) -> Any:
    from graflow_async import task, workflow

    async def ask(context: Any) -> None:
        for i in range(count):
            answer = await context.request_feedback("text", f"question {i}", timeout=60)
            latencies.append(time.monotonic() - float(answer.text))

    with workflow("hitl") as wf:
        wf.add(task(ask, id="ask", inject_context=True))
    return wf


async def answer_after_pauses(store: Any, delays: list[float]) -> None:
    """Answer each request as it appears, after its pause, stamping the answer."""
    delays = list(delays)
    while delays:
        pending = await store.list_pending()
        if not pending:  # the waiter is woken without polling; the answerer polls, like a UI would
            await asyncio.sleep(0.001)
            continue
        await asyncio.sleep(delays.pop(0))
        await store.respond(pending[0].feedback_id, {"text": repr(time.monotonic())})


async def hitl_run(count: int) -> list[float]:
    from graflow_async import run
    from graflow_async.feedback import MemoryFeedbackStore

    store, latencies = MemoryFeedbackStore(), []
    answering = asyncio.create_task(answer_after_pauses(store, answer_delays(count)))
    await run(hitl_wf(count, latencies), feedback_store=store)
    await answering
    return latencies


def build(kind: str, n: int) -> tuple[Any, Callable[[], None] | None]:
    """The workflow of `kind` and what to reset before each run."""
    from .core import chain_inline_wf, chain_sync_wf, chain_wf, fan_wf, lattice_wf

    if kind == "group":
        return group_wf(n)
    builders: dict[str, Callable[[int], Any]] = {
        "chain": chain_wf,
        "chain-sync": chain_sync_wf,
        "chain-inline": chain_inline_wf,
        "fan": fan_wf,
        "lattice": lattice_wf,
        "checkpoint": checkpoint_wf,
    }
    return builders[kind](n), None


def main(argv: list[str]) -> None:
    os.environ.setdefault("GRAFLOW_LOG_LEVEL", "error")
    from graflow_async import run

    kind, n, repeat, cap = parse_args(argv)
    with asyncio.Runner() as runner, tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp:
        if kind == "hitl":
            emit(measure_samples(lambda: runner.run(hitl_run(n)), repeat=repeat, cap=cap), system=SYSTEM)
            return
        (wf, prepare), build_ms = build_timed(lambda: build(kind, n))
        options = {"checkpoint_store": str(Path(tmp) / "checkpoints")} if kind == "checkpoint" else {}
        result = measure(lambda: runner.run(run(wf, **options)), tasks=len(wf), repeat=repeat, cap=cap, prepare=prepare)
        emit(result, system=SYSTEM, build_ms=build_ms)


if __name__ == "__main__":
    main(sys.argv[1:])

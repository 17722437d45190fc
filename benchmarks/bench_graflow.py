"""Graflow 0.2.0 (PyPI ``graflow``) on each scenario; runs in ``benchmarks/.venvs/graflow``.

    python -m benchmarks.bench_graflow KIND N [REPEAT [CAP]]

prints one JSON line (`benchmarks.harness`). Read from Graflow's source (0.2.0):

- tasks are plain functions: ``TaskWrapper.run`` calls the function and never awaits,
  so an ``async def`` task returns an un-awaited coroutine. Every scenario here uses
  plain functions, run synchronously by ``WorkflowEngine.execute`` in the calling
  thread, one task at a time;
- a parallel group runs on ``ThreadingCoordinator`` by default (a thread pool of
  ``cpu_count`` threads, a branch ``ExecutionContext`` per member);
- a task with several predecessors runs once per predecessor (no AND-join), so the
  diamond lattice cannot be expressed;
- ``context.checkpoint()`` is deferred to the end of the task and writes a pickle of
  the execution context plus two JSON files (no fsync);
- ``context.request_feedback`` stores the request in the default filesystem backend
  and checks for an answer every 0.5 s (no listener on that backend).

The working directory is a temp dir (Graflow writes ``feedback_data/`` there).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from .bench_asyncio import CHECKPOINT_EVERY, fails
from .harness import answer_delays, build_timed, emit, measure, measure_samples, not_available, parse_args

SYSTEM = "graflow"
START_DIR = os.getcwd()
NOT_AVAILABLE = {
    "chain": "no async tasks: Graflow 0.2.0 calls a task function without awaiting it, so an "
    "async def task returns an un-awaited coroutine (see chain-sync)",
    "lattice": "no AND-join: a task with two predecessors runs once per predecessor (a diamond runs its join twice)",
}


def _noop() -> int:
    return 1


def chain_wf(n: int) -> tuple[Any, str]:
    from graflow import chain, task, workflow

    with workflow(f"chain{n}") as wf:
        chain(*(task(id=f"t{i}")(_noop) for i in range(n)))
    return wf, "t0"


def fan_wf(n: int) -> tuple[Any, str]:
    from graflow import parallel, task, workflow

    with workflow(f"fan{n}") as wf:
        src, sink = task(id="src")(_noop), task(id="sink")(_noop)
        src >> parallel(*(task(id=f"t{i}")(_noop) for i in range(n))) >> sink
    return wf, "src"


def group_wf(n: int, attempts: dict[int, int]) -> tuple[Any, str]:
    from graflow import RetryPolicy, parallel, task, workflow

    def member(i: int) -> Callable[[], int]:
        def run_member() -> int:
            attempt = attempts[i] = attempts.get(i, 0) + 1
            if fails(i, attempt):
                raise RuntimeError(f"member {i} failed on attempt {attempt}")
            return i

        return run_member

    policy = RetryPolicy(max_retries=2, initial_interval=0.0)
    with workflow(f"group{n}") as wf:
        src, sink = task(id="src")(_noop), task(id="sink")(_noop)
        members = parallel(*(task(id=f"m{i}", retry_policy=policy)(member(i)) for i in range(n)))
        src >> members.with_execution(policy="best_effort") >> sink
    return wf, "src"


def checkpoint_wf(n: int, directory: str) -> tuple[Any, str]:
    from graflow import chain, task, workflow

    def saver(i: int) -> Callable[[Any], int]:
        def save(context: Any) -> int:
            context.checkpoint(path=os.path.join(directory, f"checkpoint-{i}"))
            return 1

        return save

    def node(i: int) -> Any:
        if i % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
            return task(id=f"t{i}", inject_context=True)(saver(i))
        return task(id=f"t{i}")(_noop)

    with workflow(f"checkpoint{n}") as wf:
        chain(*(node(i) for i in range(n)))
    return wf, "t0"


def hitl_run(count: int) -> list[float]:
    """One task asks `count` questions; a thread answers each after its pause."""
    from graflow import task, workflow
    from graflow.hitl.manager import FeedbackManager
    from graflow.hitl.types import FeedbackResponse, FeedbackType

    latencies: list[float] = []
    os.chdir(tempfile.mkdtemp(prefix="hitl-", dir=START_DIR))  # a fresh feedback_data/ for each run

    def ask(context: Any) -> None:
        for i in range(count):
            answer = context.request_feedback("text", f"question {i}", timeout=60)
            latencies.append(time.monotonic() - float(answer.text))

    def answer_all() -> None:
        manager = FeedbackManager(backend="filesystem", backend_config={"data_dir": "feedback_data"})
        for delay in answer_delays(count):
            while not (pending := manager.list_pending_requests()):
                time.sleep(0.001)
            time.sleep(delay)
            response = FeedbackResponse(
                feedback_id=pending[0].feedback_id, response_type=FeedbackType.TEXT, text=repr(time.monotonic())
            )
            manager.provide_feedback(pending[0].feedback_id, response)

    with workflow("hitl") as wf:
        wf.add_node("ask", task(id="ask", inject_context=True)(ask), skip_if_exists=True)
    answering = threading.Thread(target=answer_all, daemon=True)
    answering.start()
    wf.execute(start_node="ask")
    answering.join()
    return latencies


def build(kind: str, n: int, attempts: dict[int, int]) -> tuple[Any, str]:
    builders: dict[str, Callable[[], tuple[Any, str]]] = {
        "chain-sync": lambda: chain_wf(n),
        "chain-inline": lambda: chain_wf(n),  # Graflow runs every task in the calling thread
        "fan": lambda: fan_wf(n),
        "group": lambda: group_wf(n, attempts),
        "checkpoint": lambda: checkpoint_wf(n, os.path.abspath("graflow-checkpoints")),
    }
    return builders[kind]()


def main(argv: list[str]) -> None:
    import graflow

    kind, n, repeat, cap = parse_args(argv)
    version = {"version": graflow.__version__}
    if kind in NOT_AVAILABLE:
        emit(not_available(NOT_AVAILABLE[kind]), system=SYSTEM, **version)
        return
    if kind == "hitl":
        emit(measure_samples(lambda: hitl_run(n), repeat=repeat, cap=cap), system=SYSTEM, **version)
        return
    attempts: dict[int, int] = {}
    (wf, start), build_ms = build_timed(lambda: build(kind, n, attempts))
    tasks = n + 2 if kind in ("fan", "group") else n
    result = measure(
        lambda: wf.execute(start_node=start, max_steps=n + 10),
        tasks=tasks,
        repeat=repeat,
        cap=cap,
        prepare=attempts.clear,
    )
    emit(result, system=SYSTEM, build_ms=build_ms, **version)


if __name__ == "__main__":
    main(sys.argv[1:])

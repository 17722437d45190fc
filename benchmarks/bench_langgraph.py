"""LangGraph (PyPI ``langgraph``) on each scenario; runs in ``benchmarks/.venvs/langgraph``.

    python -m benchmarks.bench_langgraph KIND N [REPEAT [CAP [memory]]]

prints one JSON line (`benchmarks.harness`); with ``memory`` the graph is compiled with
LangGraph's in-memory checkpointer (``InMemorySaver``, default durability ``"async"``:
a checkpoint after every superstep), system ``langgraph+memory``; without it, no
checkpointer (system ``langgraph``). Each scenario is a ``StateGraph`` over a one-key
state whose nodes return no update:

- ``chain``: N ``async def`` nodes joined by edges, ``await graph.ainvoke(...)``
  (``recursion_limit`` N + 10, one superstep per node); ``chain-sync``: plain function
  nodes and ``graph.invoke(...)``;
- ``fan``: src -> N nodes -> sink, the sink behind ``add_edge([...N nodes], "sink")``
  (it waits for all of them); ``lattice``: layers of 10 nodes, each behind
  ``add_edge([two nodes of the layer before], node)``;
- ``hitl`` (checkpointer only: ``interrupt()`` needs one): a node that calls
  ``interrupt(question)`` and loops back to itself N times; the driver answers each
  interrupt after its pause with ``ainvoke(Command(resume=stamp))``, the stamp being
  ``time.monotonic()`` just before that call; the figure is from the stamp to
  ``interrupt()`` returning in the resumed node.

Each run uses a fresh thread id, and the checkpointer's thread is deleted between runs.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Callable
from typing import Any, TypedDict

from .harness import answer_delays, build_timed, emit, measure, measure_samples, not_available, parse_args

NOT_AVAILABLE = {
    "group": "no group failure policy: a node that still fails after its RetryPolicy fails the whole run",
    "checkpoint": "checkpoints are taken per superstep (durability sync/async/exit), not every N tasks; "
    "see the langgraph+memory column of the other scenarios",
}
WIDTH = 10


class State(TypedDict, total=False):
    i: int


async def _noop(state: State) -> None:
    return None


def _sync_noop(state: State) -> None:
    return None


def chain_graph(n: int, node: Callable[..., Any]) -> Any:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(State)
    names = [f"t{i}" for i in range(n)]
    for name in names:
        graph.add_node(name, node)
    for a, b in zip([START, *names], [*names, END], strict=True):
        graph.add_edge(a, b)
    return graph


def fan_graph(n: int) -> Any:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(State)
    names = [f"t{i}" for i in range(n)]
    for name in ("src", "sink", *names):
        graph.add_node(name, _noop)
    graph.add_edge(START, "src")
    for name in names:
        graph.add_edge("src", name)
    graph.add_edge(names, "sink")
    graph.add_edge("sink", END)
    return graph


def lattice_graph(n: int, width: int = WIDTH) -> Any:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(State)
    layers = [[f"l{d}_{i}" for i in range(width)] for d in range(n // width)]
    for name in (name for layer in layers for name in layer):
        graph.add_node(name, _noop)
    for name in layers[0]:
        graph.add_edge(START, name)
    for prev, cur in itertools.pairwise(layers):
        for i, name in enumerate(cur):
            graph.add_edge([prev[i], prev[(i + 1) % width]], name)
    for name in layers[-1]:
        graph.add_edge(name, END)
    return graph


def hitl_graph(count: int, latencies: list[float]) -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    async def ask(state: State) -> State:
        stamp = interrupt(f"question {state.get('i', 0)}")
        latencies.append(time.monotonic() - float(stamp))
        return {"i": state.get("i", 0) + 1}

    graph = StateGraph(State)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_conditional_edges("ask", lambda state: "ask" if state["i"] < count else END, ["ask", END])
    return graph


class Threads:
    """A fresh thread id per run; the previous run's checkpoints deleted."""

    def __init__(self, saver: Any, n: int) -> None:
        self.saver, self.runs, self.n = saver, 0, n

    def config(self) -> dict[str, Any]:
        return {"recursion_limit": self.n + 10, "configurable": {"thread_id": f"run-{self.runs}"}}

    def next(self) -> None:
        if self.saver is not None:
            self.saver.delete_thread(f"run-{self.runs}")
        self.runs += 1


async def hitl_run(app: Any, threads: Threads, count: int, latencies: list[float]) -> list[float]:
    from langgraph.types import Command

    threads.next()
    latencies.clear()
    out = await app.ainvoke({"i": 0}, threads.config())
    for delay in answer_delays(count):
        assert "__interrupt__" in out, "the graph ended before its last question"
        await asyncio.sleep(delay)
        out = await app.ainvoke(Command(resume=repr(time.monotonic())), threads.config())
    return list(latencies)


def build(kind: str, n: int) -> Any:
    builders: dict[str, Callable[[], Any]] = {
        "chain": lambda: chain_graph(n, _noop),
        "chain-sync": lambda: chain_graph(n, _sync_noop),
        "chain-inline": lambda: chain_graph(n, _sync_noop),  # its sync nodes run in the calling thread
        "fan": lambda: fan_graph(n),
        "lattice": lambda: lattice_graph(n),
    }
    return builders[kind]()


def main(argv: list[str]) -> None:
    import importlib.metadata

    from langgraph.checkpoint.memory import InMemorySaver

    kind, n, repeat, cap = parse_args(argv)
    memory = len(argv) > 4 and argv[4] == "memory"
    meta = {"system": "langgraph+memory" if memory else "langgraph", "version": importlib.metadata.version("langgraph")}
    if kind in NOT_AVAILABLE or (kind == "hitl" and not memory):
        emit(not_available(NOT_AVAILABLE.get(kind, "interrupt() needs a checkpointer")), **meta)
        return
    saver = InMemorySaver() if memory else None
    threads = Threads(saver, n)
    with asyncio.Runner() as runner:
        if kind == "hitl":
            latencies: list[float] = []
            app = hitl_graph(n, latencies).compile(checkpointer=saver)
            threads.n = 2 * n + 10
            run = lambda: runner.run(hitl_run(app, threads, n, latencies))  # noqa: E731
            emit(measure_samples(run, repeat=repeat, cap=cap), **meta)
            return
        app, build_ms = build_timed(lambda: build(kind, n).compile(checkpointer=saver))
        tasks = n + 2 if kind == "fan" else n
        if kind in ("chain-sync", "chain-inline"):
            result = measure(
                lambda: app.invoke({"i": 0}, threads.config()),
                tasks=tasks,
                repeat=repeat,
                cap=cap,
                prepare=threads.next,
            )
        else:
            result = measure(
                lambda: runner.run(app.ainvoke({"i": 0}, threads.config())),
                tasks=tasks,
                repeat=repeat,
                cap=cap,
                prepare=threads.next,
            )
        emit(result, build_ms=build_ms, **meta)


if __name__ == "__main__":
    main(sys.argv[1:])

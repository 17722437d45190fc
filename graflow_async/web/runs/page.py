"""What a run's page shows of its tasks (`task_view`): the tasks by layer, a page of
them at a time, how many are in each state and each layer, and the drawing of the
graph when it is small enough (`graphview.drawable`); above that, the page summarizes.

The shape of a workflow (each task's layer, the page order, the drawing and its Mermaid
text) is worked out once per compiled graph and kept (`graph_facts`, the last
`CACHE_SIZE` graphs); what depends on the run (states, counts, the page of rows) costs
a pass over the few hundred task summaries a run keeps, plus one over the tasks when
the table is filtered by state. `runs_ui` calls `task_view` in a thread: the first view
of a 1,000,000-task workflow takes seconds, and the event loop must not wait for it.
"""

from __future__ import annotations

import threading
from array import array
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from graflow_async.define.compile import CompiledGraph
from graflow_async.define.graph import Workflow
from graflow_async.exceptions import GraphError
from graflow_async.records.base import MAX_TASKS
from graflow_async.web.runs.graphview import Layout, drawable, layout, levels, render_svg, task_order

TASKS_PER_PAGE = 500  # rows of the task table on one page
LAYERS_SHOWN = 100  # layers listed in the summary of a graph too large to draw
CACHE_SIZE = 16
STATES = ("pending", "throttled", "running", "retrying", "waiting", "done", "failed", "cancelled")
UNTRACKED = "untracked"  # a task past the MAX_TASKS summaries a run keeps: its state is not known here


@dataclass(frozen=True, slots=True)
class GraphFacts:
    """The shape of one compiled graph, as the run page needs it."""

    graph: CompiledGraph
    level: array[int]  # by node
    order: array[int]  # the task nodes by layer, group and declaration
    layer_sizes: list[int]  # tasks per layer
    drawing: Layout | None  # None: too large to draw
    mermaid: str  # "" when not drawn


_cache: OrderedDict[int, GraphFacts] = OrderedDict()  # id of a compiled graph -> its facts
_cache_lock = threading.Lock()


def graph_facts(workflow: Workflow) -> GraphFacts | None:
    """The facts of `workflow`'s compiled graph (None when it does not compile)."""
    try:
        graph = workflow.compile()
    except GraphError:
        return None
    with _cache_lock:
        found = _cache.get(id(graph))
        if found is not None and found.graph is graph:
            _cache.move_to_end(id(graph))
            return found
    level = levels(graph)
    order = array("l", task_order(graph, level))
    sizes = Counter(level[n] for n in order)
    drawing = layout(graph) if drawable(graph) else None
    facts = GraphFacts(
        graph,
        array("l", level),
        order,
        [sizes[k] for k in range(len(sizes))],
        drawing,
        workflow.to_mermaid() if drawing is not None else "",
    )
    with _cache_lock:
        _cache[id(graph)] = facts
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return facts


@dataclass(frozen=True, slots=True)
class TaskView:
    """The task part of a run page (see `task_view`)."""

    rows: list[dict[str, Any]]  # this page of the table
    counts: dict[str, int]  # tasks per state, every task of the run
    known: dict[str, str]  # task id -> state, for the tasks the run keeps summaries of
    all_tasks: int
    total: int  # tasks in the table (all pages; those in the chosen state when filtered)
    page: int
    pages: int
    layers: list[dict[str, Any]]  # summary: the first LAYERS_SHOWN layers, each {"layer", "tasks", "states"}
    layer_count: int
    summarized: bool  # too large to draw
    svg: str
    mermaid: str


def task_view(
    workflow: Workflow | None, tasks: dict[str, dict[str, Any]], *, page: int = 1, state: str | None = None
) -> TaskView:
    """The run's tasks (`tasks`: its summaries) on page `page` of the table, in state
    `state` only when given; the workflow's tasks by layer, then those added as it ran."""
    facts = graph_facts(workflow) if workflow is not None else None
    static = workflow.tasks if workflow is not None else {}
    added = [t for t in tasks if t not in static]
    missing = UNTRACKED if len(tasks) >= MAX_TASKS else "pending"  # the state of a task without a summary

    def ids() -> Iterable[str]:
        if facts is not None:
            yield from map(facts.graph.ids.__getitem__, facts.order)
        elif workflow is not None:
            yield from static
        yield from added

    def state_of(task_id: str) -> str:
        found = tasks.get(task_id)
        return str(found["state"]) if found is not None else missing

    counts = Counter(state_of(t) for t in tasks)
    counts[missing] += len(static) - sum(1 for t in tasks if t in static)
    total = sum(counts.values()) if state is None else counts[state]
    pages = max(1, -(-total // TASKS_PER_PAGE))
    page = min(max(page, 1), pages)
    chosen = ids() if state is None else (t for t in ids() if state_of(t) == state)
    window = islice(chosen, (page - 1) * TASKS_PER_PAGE, page * TASKS_PER_PAGE)
    blank = {"state": missing, "attempts": 0, "duration": None}
    drawing = facts.drawing if facts is not None else None
    return TaskView(
        rows=[{"id": t, **blank, **tasks.get(t, {})} for t in window],
        counts={**{s: counts[s] for s in STATES}, **{s: n for s, n in counts.items() if n}},
        known={t: state_of(t) for t in tasks},
        all_tasks=sum(counts.values()),
        total=total,
        page=page,
        pages=pages,
        layers=_layers(facts, tasks, missing) if facts is not None and drawing is None else [],
        layer_count=len(facts.layer_sizes) if facts is not None else 0,
        summarized=facts is not None and drawing is None,
        svg=render_svg(facts.graph, drawing, {t: state_of(t) for t in tasks}) if facts and drawing else "",
        mermaid=facts.mermaid if facts is not None else "",
    )


def _layers(facts: GraphFacts, tasks: dict[str, dict[str, Any]], missing: str) -> list[dict[str, Any]]:
    """The first `LAYERS_SHOWN` layers: how many tasks each has, and in which states."""
    index, level = facts.graph.index, facts.level
    states: list[Counter[str]] = [Counter() for _ in facts.layer_sizes[:LAYERS_SHOWN]]
    for task_id, summary in tasks.items():
        node = index.get(task_id)
        if node is not None and level[node] < len(states):
            states[level[node]][str(summary["state"])] += 1
    for k, counted in enumerate(states):
        counted[missing] += facts.layer_sizes[k] - sum(counted.values())
    return [
        {"layer": k, "tasks": facts.layer_sizes[k], "states": [(s, n) for s, n in counted.items() if n]}
        for k, counted in enumerate(states)
    ]

"""What a checkpoint holds about a run, and how a new run takes it back: functions of the plan.

`take_snapshot` reads a `RunPlan` into a plain document (no awaits: a consistent
instant); `restore_snapshot` puts a document into a fresh plan of the same workflow
before it starts. Tasks added at runtime are recorded by import path, id and bound
arguments and rebuilt in the same order, so every node keeps its number. Only
completed work is kept: tasks that were running, waiting to retry or waiting for an
answer, and failed members of unfinished groups, run again on resume (in the same
cycle, with the same iteration data).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..compile import CompiledGraph
from ..exceptions import CheckpointError, GraflowError, RemoteTaskError
from ..plan.specs import component_from_spec, component_spec
from ..plan.state import DONE, FAILED, IDLE, QUEUED, RETRY, RUNNING, SUSPENDED
from ..policies import TaskResult

if TYPE_CHECKING:
    from ..graph import Workflow
    from ..plan import RunPlan
    from ..tasks import Task

KIND = "graflow-async checkpoint"
_descriptions: dict[str, dict[str, Any]] = {}  # by fingerprint: computed once per graph shape


def graph_description(graph: CompiledGraph) -> dict[str, Any]:
    """The graph's shape by ids, kept in a checkpoint to explain a mismatch on resume."""
    cached = _descriptions.get(graph.fingerprint)
    if cached is None:
        if len(_descriptions) >= 64:
            _descriptions.clear()
        ids = graph.ids
        cached = _descriptions[graph.fingerprint] = {
            "tasks": [ids[i] for i, t in enumerate(graph.tasks) if t is not None],
            "edges": sorted([ids[a], ids[b]] for a, succs in enumerate(graph.succs) for b in succs),
            "groups": {g.name: list(g.member_ids) for g in graph.groups},
        }
    return cached


def workflow_ref(wf: Workflow) -> str | None:
    """``module:attr`` naming `wf` at module level, when another process could import it."""
    module = sys.modules.get(wf.module or "")
    if module is None:
        return None
    name = wf.module
    if name == "__main__":
        spec = getattr(module, "__spec__", None)
        if spec is None or not spec.name or spec.name == "__main__":
            return None  # a script run by path: not importable under a module name
        name = spec.name
    for attr, value in vars(module).items():
        if value is wf and not attr.startswith("__"):
            return f"{name}:{attr}"
    return None


def take_snapshot(
    plan: RunPlan, compiled: CompiledGraph, *, run_id: str, workflow_ref: str | None, task_id: str | None,
    metadata: dict[str, Any] | None, sequence: int, channel: dict[str, Any],
) -> dict[str, Any]:
    """The checkpoint document of `plan` now, saved by task `task_id` (None: on suspension).
    CheckpointError when a task added at runtime cannot be recorded by import path."""
    graph, status = plan.graph, plan.status
    nodes = graph.task_nodes()
    return {
        "kind": KIND, "run_id": run_id, "workflow": graph.workflow_name, "workflow_ref": workflow_ref,
        "fingerprint": graph.fingerprint, "graph": graph_description(compiled), "created_at": time.time(),
        "sequence": sequence, "task_id": task_id, "metadata": dict(metadata or {}),
        "results": dict(plan.results), "channel": channel,
        "completed": [graph.ids[n] for n in nodes if status[n] == DONE],
        "pending": [graph.ids[n] for n in nodes if status[n] != DONE],
        "groups_done": [g.name for g in graph.groups[: len(compiled.groups)] if status[g.barrier] == DONE],
        "attempts": {graph.ids[n]: plan.attempts[n] for n in nodes if plan.attempts[n]},
        "plan": _plan_state(plan),
    }


def _plan_state(plan: RunPlan) -> dict[str, Any]:
    try:
        added = [[by, goto, component_spec(component)] for by, goto, component in plan.added]
    except GraflowError as exc:
        raise CheckpointError(f"cannot checkpoint this run: {exc}") from exc
    return {
        "added": added,
        "status": bytes(plan.status),
        "released": bytes(plan.released),
        "remaining": list(plan.remaining),
        "runs": list(plan.runs),
        "holds": [[n, list(t)] for n, t in plan.holds.items()],
        "end_holds": [[n, [list(e) for e in ends]] for n, ends in plan.end_holds.items()],
        "groups": [_group_state(plan, g) for g in range(len(plan.graph.groups))],
        "iter_data": [[n, data] for n, data in plan.iter_data.items()],
        "again": sorted(plan.again),
        "skip_roots": list(plan.skip_roots),
    }


def _group_state(plan: RunPlan, g: int) -> list[Any]:
    state = plan.graph.groups[g]
    finished = plan.status[state.barrier] == DONE
    results = []
    for m, outcome in enumerate(state.outcome):
        if not outcome:
            continue
        r = state.result(m, plan.results)
        if r.success:
            results.append([m, r.task_id, True, r.duration, None])
        elif finished:  # kept as facts: a loop may reopen the group and judge it again
            results.append([m, r.task_id, False, r.duration, [type(r.error).__name__, str(r.error)]])
    return [list(state.hold), results, [[m, t] for m, t in enumerate(state.busy) if t]]


def check_document(doc: Any, location: str) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise CheckpointError(f"{location!r} is not a graflow-async run checkpoint")
    missing = [k for k in ("run_id", "fingerprint", "graph", "results", "completed") if k not in doc]
    if missing:
        raise CheckpointError(f"checkpoint {location!r} lacks {', '.join(missing)}")
    return doc


def check_same_graph(doc: dict[str, Any], graph: CompiledGraph, location: str) -> None:
    """CheckpointError naming the difference when `doc` was saved from another graph."""
    if doc["fingerprint"] == graph.fingerprint:
        return
    saved, now = doc["graph"], graph_description(graph)
    differences = []
    if doc.get("workflow") != graph.workflow_name:
        differences.append(f"workflow {doc.get('workflow')!r} vs {graph.workflow_name!r}")
    only_saved = sorted(set(saved["tasks"]) - set(now["tasks"]))
    only_now = sorted(set(now["tasks"]) - set(saved["tasks"]))
    if only_saved:
        differences.append(f"tasks only in the checkpoint: {', '.join(only_saved)}")
    if only_now:
        differences.append(f"tasks only in the workflow: {', '.join(only_now)}")
    saved_edges = {tuple(e) for e in saved["edges"]}
    now_edges = {tuple(e) for e in now["edges"]}
    for a, b in sorted(saved_edges - now_edges)[:5]:
        differences.append(f"edge {a} >> {b} only in the checkpoint")
    for a, b in sorted(now_edges - saved_edges)[:5]:
        differences.append(f"edge {a} >> {b} only in the workflow")
    if saved.get("groups") != now["groups"]:
        differences.append(f"groups differ: {saved.get('groups')} vs {now['groups']}")
    raise CheckpointError(
        f"checkpoint {location!r} was saved from a different graph: "
        + ("; ".join(differences) or "its structure differs")
    )


def restore_snapshot(plan: RunPlan, doc: dict[str, Any], load_task: Callable[[str], Task]) -> None:
    """Put `doc` into `plan` (fresh, of the same workflow) before it starts."""
    plan.results.update(doc["results"] if isinstance(doc["results"], dict) else {})
    plan.restored = True
    state = doc.get("plan")
    try:
        if state is None:
            _restore_completed(plan, doc)
        else:
            _restore_plan(plan, state, load_task)
    except (KeyError, IndexError, TypeError, ValueError, LookupError, GraflowError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint of run {doc.get('run_id')!r} cannot be restored: {exc}") from exc


def _restore_plan(plan: RunPlan, state: dict[str, Any], load_task: Callable[[str], Task]) -> None:
    graph = plan.graph
    for by, goto, spec in state["added"]:
        component = component_from_spec(spec, load_task)
        graph.check(component)
        graph.expand(component, int(by))
        plan.added.append((int(by), bool(goto), component))
    plan._grow()
    n = len(graph)
    arrays = (state["status"], state["released"], state["remaining"], state["runs"])
    if any(len(a) != n for a in arrays):
        raise CheckpointError(f"checkpoint holds state for {len(state['status'])} nodes, the run has {n}")
    plan.status[:] = bytes(state["status"])
    plan.released[:] = bytes(state["released"])
    plan.remaining[:] = [int(x) for x in state["remaining"]]
    plan.runs[:] = [int(x) for x in state["runs"]]
    plan.holds.update({int(k): [int(t) for t in v] for k, v in state["holds"]})
    plan.end_holds.update({int(k): [(int(g), int(m)) for g, m in v] for k, v in state["end_holds"]})
    plan.iter_data.update({int(k): v for k, v in state["iter_data"]})
    plan.again.update(int(x) for x in state["again"])
    plan.skip_roots.extend(int(x) for x in state["skip_roots"])
    for g, (hold, results, busy) in enumerate(state["groups"]):
        group = graph.groups[g]
        group.hold[:] = [int(h) for h in hold]
        for m, t in busy:
            group.busy[int(m)] = float(t)
        for m, task_id, ok, duration, error in results:
            if ok:  # its value is the run's result for its id, read when the group is judged
                group.record(int(m))
            else:
                failure = RemoteTaskError(task_id, str(error[0]), str(error[1]))
                group.record(int(m), TaskResult(task_id, False, None, failure, float(duration)))
    _requeue(plan)


def _requeue(plan: RunPlan) -> None:
    """Whatever was under way when the checkpoint was taken runs again, in the same cycle."""
    graph, status = plan.graph, plan.status
    for node in range(len(status)):
        s = status[node]
        if s == FAILED:
            group = graph.group_of[node]
            if group >= 0 and status[graph.groups[group].barrier] == DONE:
                continue  # its group was judged with the failure; it stands
        elif s not in (QUEUED, RUNNING, RETRY, SUSPENDED):
            continue
        if s != QUEUED:
            plan.runs[node] -= 1  # the run it was in is taken again, not counted twice
        status[node] = IDLE
        plan.make_ready(node, plan.iter_data.get(node), iterate=node in plan.iter_data)


def _restore_completed(plan: RunPlan, doc: dict[str, Any]) -> None:
    """A checkpoint without plan state (written by graflow-async 0.1): completed tasks
    and finished groups stand, everything else runs."""
    graph = plan.graph
    completed, groups_done = set(doc["completed"]), set(doc.get("groups_done", ()))
    for node in range(graph.static_count):
        task = graph.tasks[node]
        if (task is not None and task.id in completed) or (task is None and graph.ids[node] in groups_done):
            plan.status[node] = DONE
    for node in range(graph.static_count):
        if plan.status[node] == DONE:
            plan.released[node] = 1
            for s in graph.succs[node]:
                plan.remaining[s] -= 1
    for g, group in enumerate(graph.groups):
        if plan.status[group.barrier] == DONE:
            continue
        for node, (gi, m) in graph.ends.items():
            if gi == g and plan.status[node] == DONE:
                group.hold[m] = 0
                group.record(m)  # succeeded: its value is read from the run's results when judged
    for node in range(graph.static_count):
        if graph.tasks[node] is not None and plan.status[node] != DONE and plan.remaining[node] <= 0:
            plan.make_ready(node)

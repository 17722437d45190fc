"""What a checkpoint holds about a run, and how a new run takes it back: functions of the plan.

`to_doc` reads a `RunPlan` into a plain document (no awaits: a consistent
instant); `from_doc` puts a document into a fresh plan of the same workflow
before it starts. Tasks added at runtime are recorded by import path, id and bound
arguments and rebuilt in the same order, so every node keeps its number. Only
completed work is kept: tasks that were running, waiting to retry or waiting for an
answer, and failed members of unfinished groups, run again on resume (in the same
cycle, with the same iteration data).

With ``keep_running=True`` (both functions) the document is a journal snapshot instead
(SPEC 10): it keeps the work under way as it is (``plan.live``, see `plan.live`), and
the plan `from_doc` restores is the plan the run's facts built, whose running attempts
and pending retries take the facts journaled after the snapshot. Such a document still
reads as a checkpoint (without ``keep_running``: what was under way runs again).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from graflow_async.define.compile import CompiledGraph
from graflow_async.define.policies import TaskResult
from graflow_async.exceptions import CheckpointError, GraflowError, GraphError, RemoteTaskError
from graflow_async.plan.doc_fields import check_fields, invalid
from graflow_async.plan.error_docs import error_doc, error_from_doc
from graflow_async.plan.live import check_live, live_state, restore_live
from graflow_async.plan.specs import component_from_spec, component_spec
from graflow_async.plan.state import DONE, FAILED, IDLE, QUEUED, RETRY, RUNNING, SUSPENDED
from graflow_async.plan.state_fields import MAX_NODES, Bounds, check_added, check_ids, check_plan

if TYPE_CHECKING:
    from graflow_async.define.graph import Workflow
    from graflow_async.define.tasks import Task
    from graflow_async.plan import RunPlan

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


def to_doc(
    plan: RunPlan,
    compiled: CompiledGraph,
    *,
    run_id: str,
    workflow_ref: str | None,
    task_id: str | None,
    metadata: dict[str, Any] | None,
    sequence: int,
    channel: dict[str, Any],
    keep_running: bool = False,
) -> dict[str, Any]:
    """The checkpoint document of `plan` now, saved by task `task_id` (None: on suspension).
    `keep_running`: a journal snapshot, which keeps the work under way as it is (`plan.live`).
    CheckpointError when a task added at runtime cannot be recorded by import path."""
    graph, status = plan.graph, plan.status
    nodes = graph.task_nodes()
    return {
        "kind": KIND,
        "run_id": run_id,
        "workflow": graph.workflow_name,
        "workflow_ref": workflow_ref,
        "fingerprint": graph.fingerprint,
        "graph": graph_description(compiled),
        "created_at": time.time(),
        "sequence": sequence,
        "task_id": task_id,
        "metadata": dict(metadata or {}),
        "results": dict(plan.results),
        "channel": channel,
        "completed": [graph.ids[n] for n in nodes if status[n] == DONE],
        "pending": [graph.ids[n] for n in nodes if status[n] != DONE],
        "groups_done": [g.name for g in graph.groups[: len(compiled.groups)] if status[g.barrier] == DONE],
        "attempts": {graph.ids[n]: plan.attempts[n] for n in nodes if plan.attempts[n]},
        "plan": _plan_state(plan, keep_running),
    }


def _plan_state(plan: RunPlan, keep: bool) -> dict[str, Any]:
    try:
        added = [[by, goto, component_spec(component)] for by, goto, component in plan.added]
    except GraflowError as exc:
        raise CheckpointError(f"cannot checkpoint this run: {exc}") from exc
    state: dict[str, Any] = {
        "added": added,
        "status": bytes(plan.status),
        "released": bytes(plan.released),
        "remaining": list(plan.remaining),
        "runs": list(plan.runs),
        "holds": [[n, list(t)] for n, t in plan.holds.items()],
        "end_holds": [[n, [list(e) for e in ends]] for n, ends in plan.end_holds.items()],
        "groups": [_group_state(plan, g, keep) for g in range(len(plan.graph.groups))],
        "iter_data": [[n, data] for n, data in plan.iter_data.items()],
        "again": sorted(plan.again),
        "skip_roots": list(plan.skip_roots),
    }
    if keep:
        state["live"] = live_state(plan)
    return state


def _group_state(plan: RunPlan, g: int, keep: bool) -> list[Any]:
    state = plan.graph.groups[g]
    finished = plan.status[state.barrier] == DONE
    results = []
    for m, outcome in enumerate(state.outcome):
        if not outcome:
            continue
        r = state.result(m, plan.results)
        if r.success:
            results.append([m, r.task_id, True, r.duration, None])
        elif keep:  # the failure stands until a loop reopens the member, as in the plan
            assert r.error is not None
            results.append([m, r.task_id, False, r.duration, error_doc(r.error, r.task_id)])
        elif finished:  # kept as facts: a loop may reopen the group and judge it again
            results.append([m, r.task_id, False, r.duration, [type(r.error).__name__, str(r.error)]])
    return [list(state.hold), results, [[m, t] for m, t in enumerate(state.busy) if t]]


def check_document(doc: Any, location: str) -> dict[str, Any]:
    """`doc` when it is a run checkpoint whose fields are well formed (`fields`); else
    CheckpointError naming the first field that is not, and `location`."""
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise CheckpointError(f"{location!r} is not a graflow-async run checkpoint")
    try:
        check_fields(doc)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (in {location!r})") from None
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


def from_doc(
    plan: RunPlan, doc: dict[str, Any], load_task: Callable[[str], Task], *, keep_running: bool = False
) -> None:
    """Put `doc` (checked by `check_document`) into `plan` (fresh, of the same workflow,
    its channel made from ``doc["channel"]``) before it starts; CheckpointError naming the
    first field that does not fit the run (`state_fields`), before anything runs.
    `keep_running`: `doc` is a journal snapshot (`to_doc` with `keep_running`), whose work
    under way is kept as it was, not run again; CheckpointError for a document without it."""
    state = doc.get("plan")
    if state is None:
        if keep_running:
            raise CheckpointError("checkpoint field 'plan' is missing: a journal snapshot keeps the plan's state")
        check_ids(doc, set(plan.graph.index), {g.name for g in plan.graph.groups})
        _restore_completed(plan, doc)
    else:
        _restore_plan(plan, state, load_task, keep_running)
        check_ids(doc, set(plan.graph.index), {g.name for g in plan.graph.groups})
    plan.results.update(doc["results"])
    plan.restored = True


def _restore_plan(plan: RunPlan, state: dict[str, Any], load_task: Callable[[str], Task], keep: bool) -> None:
    added = check_added(state)
    _replay(plan, added, load_task)
    plan._grow()
    bounds = Bounds.of(plan, len(added))
    fields = check_plan(state, bounds)
    live = check_live(state.get("live"), bounds, fields["status"]) if keep else None
    plan.status[:] = fields["status"]
    plan.released[:] = fields["released"]
    plan.remaining[:] = fields["remaining"]
    plan.runs[:] = fields["runs"]
    plan.holds.update(fields["holds"])
    plan.end_holds.update(fields["end_holds"])
    plan.iter_data.update(fields["iter_data"])
    plan.again.update(fields["again"])
    plan.skip_roots.extend(fields["skip_roots"])
    _restore_groups(plan, fields["groups"], keep)
    if live is None:
        _requeue(plan)
    else:
        restore_live(plan, live)


def _restore_groups(plan: RunPlan, groups: list[Any], keep: bool) -> None:
    for g, (group, (hold, results, busy)) in enumerate(zip(plan.graph.groups, groups, strict=True)):
        group.hold[:] = hold
        for m, seconds in busy:
            group.busy[m] = seconds
        finished = plan.status[group.barrier] == DONE
        for i, (m, task_id, ok, duration, error) in enumerate(results):
            if ok:  # its value is the run's result for its id, read when the group is judged
                group.record(m)
            elif keep or finished:  # else (a journal snapshot read as a checkpoint) it runs again
                failure = _failure(error, task_id, f"plan.groups[{g}][1][{i}][4]")
                group.record(m, TaskResult(task_id, False, None, failure, duration))


def _failure(error: Any, task_id: str, path: str) -> BaseException:
    """A failed member's error: by its type name and message (a checkpoint), or a document
    that rebuilds it (a journal snapshot)."""
    if type(error) is dict:
        return error_from_doc(error, path)
    return RemoteTaskError(task_id, error[0], error[1])


def _replay(plan: RunPlan, added: list[tuple[int, bool, Any]], load_task: Callable[[str], Task]) -> None:
    """The tasks added at runtime, added again in the same order: the same node numbers."""
    graph = plan.graph
    for i, (by, goto, spec) in enumerate(added):
        if by >= len(graph) or graph.tasks[by] is None:
            raise invalid(f"plan.added[{i}][0]", f"the node of a task of the run (it had {len(graph)} nodes then)", by)
        try:
            component = component_from_spec(spec, load_task)
            graph.check(component)
        except (GraphError, LookupError) as exc:
            raise CheckpointError(
                f"checkpoint field 'plan.added[{i}][2]' must describe tasks this run can add: {exc}"
            ) from exc
        graph.expand(component, by)
        plan.added.append((by, goto, component))
        if len(graph) > MAX_NODES:
            raise CheckpointError(f"checkpoint field 'plan.added' adds more than the {MAX_NODES} nodes a run may have")


def _requeue(plan: RunPlan) -> None:
    """Whatever was under way when the checkpoint was taken runs again, in the same cycle."""
    graph, status = plan.graph, plan.status
    for node in range(len(status)):
        s = status[node]
        if graph.tasks[node] is None:
            continue  # a group's barrier: its group judges it again once its failed members have run again
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

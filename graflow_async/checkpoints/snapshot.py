"""What a checkpoint holds about a run, and how a new run takes it back.

`take_snapshot` reads a live run supervisor's state into a plain document (no
awaits, so it is a consistent instant); `restore_snapshot` puts a document into a
fresh supervisor of the same graph before it starts. Only completed work is kept:
tasks that were running, or failed inside an unfinished group, run again on resume.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from ..compile import CompiledGraph
from ..exceptions import CheckpointError
from ..policies import TaskResult

if TYPE_CHECKING:
    from ..graph import Workflow
    from ..run_state import RunState

KIND = "graflow-async checkpoint"


_descriptions: dict[str, dict[str, Any]] = {}  # by fingerprint: computed once per graph shape


def graph_description(graph: CompiledGraph) -> dict[str, Any]:
    """The graph's shape by ids, kept in a checkpoint to explain a mismatch on resume."""
    cached = _descriptions.get(graph.fingerprint)
    if cached is None:
        if len(_descriptions) >= 64:
            _descriptions.clear()
        cached = _descriptions[graph.fingerprint] = _describe(graph)
    return cached


def _describe(graph: CompiledGraph) -> dict[str, Any]:
    ids = graph.ids
    return {
        "tasks": [ids[i] for i, t in enumerate(graph.tasks) if t is not None],
        "edges": sorted([ids[a], ids[b]] for a, succs in enumerate(graph.succs) for b in succs),
        "groups": {g.name: list(g.member_ids) for g in graph.groups},
    }


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
    state: RunState, task_id: str | None, metadata: dict[str, Any] | None, sequence: int,
    channel: dict[str, Any],
) -> dict[str, Any]:
    """The checkpoint document for `state` now, saved by task `task_id`."""
    graph = state.graph
    done = state.done
    completed = [graph.ids[i] for i, t in enumerate(graph.tasks) if t is not None and done[i]]
    return {
        "kind": KIND,
        "run_id": state.run_id,
        "workflow": graph.workflow_name,
        "workflow_ref": state.workflow_ref,
        "fingerprint": graph.fingerprint,
        "graph": graph_description(graph),
        "created_at": time.time(),
        "sequence": sequence,
        "task_id": task_id,
        "metadata": dict(metadata or {}),
        "results": dict(state.results),
        "channel": channel,
        "completed": completed,
        "pending": [graph.ids[i] for i, t in enumerate(graph.tasks) if t is not None and not done[i]],
        "groups_done": [g.name for g in graph.groups if done[g.barrier]],
        "attempts": {graph.ids[i]: n for i, n in enumerate(state.attempts) if n},
        "feedback": dict(state.feedback_state),
    }


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


def restore_snapshot(state: RunState, doc: dict[str, Any]) -> None:
    """Put `doc` into `state` (a fresh supervisor of the same graph) before it starts."""
    graph = state.graph
    completed = set(doc["completed"])
    groups_done = set(doc.get("groups_done", ()))
    results = doc["results"]
    for i, t in enumerate(graph.tasks):
        if t is not None and t.id in completed:
            state.done[i] = True
    for g in graph.groups:
        if g.name in groups_done:
            state.done[g.barrier] = True
    state.results.update({k: v for k, v in results.items() if k in completed})
    for node, succs in enumerate(graph.succs):
        if state.done[node]:
            for s in succs:
                if graph.tasks[s] is not None:
                    state.remaining[s] -= 1
    for gi, g in enumerate(graph.groups):  # members of unfinished groups that succeeded
        if state.done[g.barrier]:
            continue
        for m, tail in enumerate(g.member_tails):
            if state.done[tail]:
                value = state.results.get(graph.ids[tail]) if graph.tasks[tail] is not None else None
                state.group_state[gi].results[m] = TaskResult(graph.ids[tail], True, value, None, 0.0)
    state.initial_ready = [
        i for i, t in enumerate(graph.tasks)
        if t is not None and not state.done[i] and state.remaining[i] == 0
    ]
    state.checkpoint_sequence = int(doc.get("sequence", 0))
    state.sequence_known = False
    state.feedback_state.update(doc.get("feedback") or {})
    task_id = doc.get("task_id")
    if task_id is not None:
        state.resumed_metadata[task_id] = dict(doc.get("metadata") or {})

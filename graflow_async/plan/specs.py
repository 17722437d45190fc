"""Components a task adds with `next_task`, described by import paths.

A task on a worker cannot hand its run a live `Task`; it sends a *spec* instead:

    {"task": "myapp.flows:work", "id": "work_3", "bound": {"n": 3}}
    {"chain": [spec, spec, ...]}
    {"group": [spec, ...], "name": "fanout" | None, "policy": {"name": "strict"}}

Checkpoints record the tasks a run added the same way. Specs come from the network
or a file: `component_from_spec` checks every field and bounds the size and depth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graflow_async.define.graph import Chain, ParallelGroup
from graflow_async.define.policies import (
    AtLeastNGroupPolicy,
    BestEffortGroupPolicy,
    CriticalGroupPolicy,
    GroupExecutionPolicy,
    StrictGroupPolicy,
)
from graflow_async.define.tasks import Task, unreachable_reason
from graflow_async.exceptions import GraphError

MAX_DEPTH = 16
MAX_TASKS = 100_000


def component_spec(component: Any) -> dict[str, Any]:
    """The spec of a Task, Chain or ParallelGroup; GraphError when one of its tasks cannot
    be found by import path (a closure, a lambda, a function in ``__main__``)."""
    if isinstance(component, Task):
        reason = unreachable_reason(component)
        if reason is not None or component.ref is None:
            raise GraphError(
                f"task {component.id!r} cannot be sent to workers or recorded in a checkpoint, which find "
                f"tasks by import path: {reason or 'it has no import path'}"
            )
        return {"task": component.ref, "id": component.id, "bound": dict(component.bound)}
    if isinstance(component, Chain):
        return {"chain": [component_spec(item) for item in component.items]}
    if isinstance(component, ParallelGroup):
        return {
            "group": [component_spec(m) for m in component.members],
            "name": component.name,
            "policy": policy_spec(component.policy),
        }
    raise GraphError(f"next_task() takes a task, a chain or a parallel group, got {type(component).__name__}")


def policy_spec(policy: GroupExecutionPolicy) -> dict[str, Any]:
    if type(policy) is StrictGroupPolicy:
        return {"name": "strict"}
    if type(policy) is BestEffortGroupPolicy:
        return {"name": "best_effort"}
    if type(policy) is AtLeastNGroupPolicy:
        return {"name": "at_least_n", "min_success": policy.min_success}
    if type(policy) is CriticalGroupPolicy:
        return {"name": "critical", "critical_task_ids": list(policy.critical_task_ids)}
    raise GraphError(
        f"a group with the custom policy {type(policy).__name__} cannot be sent to workers or recorded in a "
        "checkpoint: use one of the built-in policies for groups added at runtime"
    )


def component_from_spec(spec: Any, load_task: Callable[[str], Task]) -> Any:
    """The component `spec` describes, its tasks found with `load_task(ref)`; GraphError
    for a spec that is not well formed."""
    counter = [0]
    return _build(spec, load_task, 0, counter)


def _build(spec: Any, load_task: Callable[[str], Task], depth: int, counter: list[int]) -> Any:
    if depth > MAX_DEPTH:
        raise GraphError(f"an added component is nested deeper than {MAX_DEPTH} levels")
    if not isinstance(spec, dict):
        raise GraphError(f"malformed task spec: expected a map, got {type(spec).__name__}")
    if "task" in spec:
        counter[0] += 1
        if counter[0] > MAX_TASKS:
            raise GraphError(f"an added component holds more than {MAX_TASKS} tasks")
        return _task(spec, load_task)
    if "chain" in spec:
        items = _list(spec["chain"], "chain")
        built = [_build(item, load_task, depth + 1, counter) for item in items]
        flat: list[Any] = []
        for item in built:
            flat.extend(item.items if isinstance(item, Chain) else (item,))
        return Chain(flat, len(flat), None)
    if "group" in spec:
        members = [_build(m, load_task, depth + 1, counter) for m in _list(spec["group"], "group")]
        group = ParallelGroup(members)
        name = spec.get("name")
        if name is not None:
            if not isinstance(name, str) or not name:
                raise GraphError("malformed group spec: name must be a non-empty string")
            group.set_group_name(name)
        group.policy = _policy(spec.get("policy"))
        return group
    raise GraphError("malformed task spec: it names no task, chain or group")


def _task(spec: dict[str, Any], load_task: Callable[[str], Task]) -> Task:
    ref, task_id, bound = spec.get("task"), spec.get("id"), spec.get("bound", {})
    if not isinstance(ref, str) or not isinstance(task_id, str) or not task_id or not isinstance(bound, dict):
        raise GraphError("malformed task spec: it needs 'task' (module:name), 'id' and a 'bound' map")
    if not all(isinstance(k, str) for k in bound):
        raise GraphError(f"malformed task spec for {task_id!r}: bound argument names must be strings")
    base = load_task(ref)
    if task_id == base.id and bound == base.bound:
        return base
    return base.instance(task_id, **bound)


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise GraphError(f"malformed {what} spec: expected a non-empty list")
    return value


def _policy(spec: Any) -> GroupExecutionPolicy:
    if not isinstance(spec, dict):
        raise GraphError("malformed group spec: policy must be a map")
    name = spec.get("name")
    try:
        if name == "strict":
            return StrictGroupPolicy()
        if name == "best_effort":
            return BestEffortGroupPolicy()
        if name == "at_least_n":
            return AtLeastNGroupPolicy(spec.get("min_success"))  # type: ignore[arg-type]
        if name == "critical":
            return CriticalGroupPolicy(spec.get("critical_task_ids"))  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise GraphError(f"malformed group policy spec: {exc}") from exc
    raise GraphError(f"malformed group spec: unknown policy {name!r}")

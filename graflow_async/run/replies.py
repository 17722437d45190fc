"""What a task's reply tells the run: the tasks it added found here (a worker names them
by import path, and never makes the run import a module), and the reply as a fact of
the run (`plan.facts`), for a run that records its facts."""

from __future__ import annotations

from typing import Any

from graflow_async.define.tasks import Task, load_task
from graflow_async.exceptions import GraphError
from graflow_async.plan.directives import AddTasks
from graflow_async.plan.facts import Failed, Succeeded, Suspended
from graflow_async.plan.specs import component_from_spec
from graflow_async.wire.messages import TaskReply


def resolved(directives: tuple[Any, ...]) -> tuple[Any, ...]:
    """Directives from a worker name added tasks by import path: find them here."""
    out = []
    for d in directives:
        if isinstance(d, AddTasks) and isinstance(d.component, dict):
            d = AddTasks(component_from_spec(d.component, _load), d.goto)
        out.append(d)
    return tuple(out)


def _load(ref: str) -> Task:
    try:  # a worker's message never makes the run import a module
        return load_task(ref, import_module=False)
    except LookupError as exc:
        raise GraphError(f"the run cannot find an added task: {exc}") from exc


def add_error(exc: Exception) -> GraphError:
    """An added task the run cannot find or build: the adding task fails with this."""
    return exc if isinstance(exc, GraphError) else GraphError(f"cannot add the task: {exc!r}")


def fact_of(r: TaskReply) -> Any:
    """What reply `r` tells the plan, as a fact."""
    if r.ok:
        try:
            directives = resolved(r.directives) if r.directives else ()
        except Exception as exc:
            return Failed(r.node, r.cycle, r.attempt, add_error(exc), r.duration, False)
        return Succeeded(r.node, r.cycle, r.attempt, r.value, r.duration, directives)
    if r.suspended:
        return Suspended(r.node, r.cycle, r.attempt)
    return Failed(r.node, r.cycle, r.attempt, r.error, r.duration, r.retryable)

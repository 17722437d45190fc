"""What a task asks of its run's graph, carried with its result (a `TaskReply`'s
directives): facts the plan takes when the task returns (`RunPlan.task_succeeded`)."""

from __future__ import annotations

from typing import Any, NamedTuple


class Cancel(NamedTuple):
    reason: str


class Terminate(NamedTuple):
    reason: str


class AddTasks(NamedTuple):
    """`next_task(component, goto=goto)`: a Task, Chain or ParallelGroup in-process; over
    the wire, the component described by import paths (see `plan.specs`)."""

    component: Any
    goto: bool


class Iterate(NamedTuple):
    """`next_iteration(data)`: run the task again with `data`."""

    data: Any

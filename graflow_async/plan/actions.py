"""What the run plan hands the run actor to carry out. Plain tuples, and one `Dispatch`
per step however many tasks it sends: a 10,000-task fan-out would otherwise hold
10,000 more live objects for the garbage collector to walk. A large one's number
columns are arrays, which the collector does not walk at all."""

from __future__ import annotations

from array import array
from collections.abc import MutableSequence
from typing import Any, NamedTuple

from graflow_async.define.tasks import Task


class Dispatch(NamedTuple):
    """Send, for each i, attempt `attempts[i]` of run `cycles[i]` of `tasks[i]` (node
    `nodes[i]`, capped at `max_cycles[i]` runs) with `kwargs[i]`."""

    nodes: MutableSequence[int]
    tasks: list[Task]
    attempts: MutableSequence[int]
    cycles: MutableSequence[int]
    max_cycles: MutableSequence[int]
    kwargs: list[dict[str, Any]]

    @classmethod
    def empty(cls) -> Dispatch:
        return cls([], [], [], [], [], [])

    def compact(self) -> Dispatch:
        """The same, with its number columns as arrays when it is large (a big fan-out's
        lists of numbers would be walked at each full collection while it runs)."""
        if len(self.nodes) < 1024:
            return self
        return self._replace(
            nodes=array("q", self.nodes),
            attempts=array("q", self.attempts),
            cycles=array("q", self.cycles),
            max_cycles=array("q", self.max_cycles),
        )

    def add(self, node: int, task: Task, attempt: int, cycle: int, max_cycles: int, kwargs: dict[str, Any]) -> None:
        self.nodes.append(node)
        self.tasks.append(task)
        self.attempts.append(attempt)
        self.cycles.append(cycle)
        self.max_cycles.append(max_cycles)
        self.kwargs.append(kwargs)


class RetryLater(NamedTuple):
    """Node `node` may run again after `delay` seconds: tell the plan `retry_due` then."""

    node: int
    delay: float


class Emit(NamedTuple):
    """Report event `kind` (see `events.EventKind`)."""

    kind: str
    task_id: str | None
    data: dict[str, Any]


class Finish(NamedTuple):
    """The run completed (`terminated`: the reason a task gave to end it early)."""

    terminated: str | None


class Fail(NamedTuple):
    """The run failed with `error`; cancel whatever still runs."""

    error: BaseException


class Suspend(NamedTuple):
    """Nothing runs and tasks wait for answers: save a checkpoint and return."""

    nodes: tuple[int, ...]  # the tasks that wait


Action = Dispatch | RetryLater | Emit | Finish | Fail | Suspend

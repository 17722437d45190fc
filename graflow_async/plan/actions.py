"""What the run plan hands its supervisor to carry out. Plain tuples: one is made per
dispatched task, on the hot path."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..tasks import Task


class Dispatch(NamedTuple):
    """Send attempt `attempt` of run `cycle` of `task` (node `node`) with `kwargs`."""

    node: int
    task: Task
    attempt: int
    cycle: int
    max_cycles: int
    kwargs: dict[str, Any]


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

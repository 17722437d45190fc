"""The messages that cross a transport between a run's supervisor and its executors.

A `TaskMessage` asks an executor to run one attempt of a task; a `TaskReply` says
how it went. Their plain fields are what goes over the wire (msgpack); the fields
marked *in-process* carry live objects for the memory transport and are never sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .context import TaskContext
    from .tasks import Task


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """Run attempt `attempt` of task `task_id` with `kwargs`; reply to `reply_to`."""

    run_id: str
    task_id: str
    node: int  # the task's node index in the run's compiled graph
    attempt: int
    reply_to: str
    kwargs: dict[str, Any]
    timeout: float | None = None
    task_ref: str | None = None  # ``module:qualname``, how a remote worker finds the function
    task: Task | None = None  # in-process
    context: TaskContext | None = None  # in-process
    lease_timeout: float | None = None  # how long a worker's claim lasts without a heartbeat
    max_deliveries: int | None = None  # deliveries before the message is dead-lettered
    inject_context: bool = False  # for workers: give the function a context


@dataclass(frozen=True, slots=True)
class TaskReply:
    """The outcome of one attempt. `control` is ``("cancel"|"terminate", reason)`` when
    the task asked to stop the run."""

    run_id: str
    node: int
    attempt: int
    ok: bool
    value: Any = None
    error: BaseException | None = None
    duration: float = 0.0
    control: tuple[str, str] | None = None
    retryable: bool = True


class RetryDue(NamedTuple):
    """Sent by a retry timer to the run's own inbox: `node` may run again."""

    node: int

"""The task messages of a plan's `Dispatch` for this process's executor, made as read.

A 300,000-task fan-out dispatches 300,000 tasks in one step. Made at once, their
messages would all be alive until each task starts, and every one of them is an object
the garbage collector walks through again at each full collection while the run goes
on. `LocalMessages` is the batch the run actor sends to its in-process executor:
a view of the `Dispatch` that makes message ``i`` when it is read, which the executor
does as it starts the task (`local_attempts`). Messages to workers are made at once:
they are serialized when sent anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, overload

from graflow_async.plan import Dispatch
from graflow_async.wire.messages import TaskMessage

EAGER_UP_TO = 64  # a batch this small is made at once: a view's own calls would cost more


def remote_message(
    d: Dispatch,
    i: int,
    run_id: str,
    reply_to: str,
    epoch: int,
    resumed: dict[str, dict[str, Any]] | None,
    trace: dict[str, str] | None,
    priority: int = 5,
) -> TaskMessage:
    """Message ``i`` of `d` for a worker: the task named by its import path (`priority`:
    the run's, for a task that sets none)."""
    return _message(d, i, run_id, reply_to, resumed, trace, remote=True, epoch=epoch, priority=priority)


def local_messages(
    dispatch: Dispatch,
    picks: Sequence[int],
    *,
    run_id: str,
    reply_to: str,
    resumed: dict[str, dict[str, Any]] | None,
    trace: dict[str, str] | None,
    priority: int = 5,
) -> Sequence[TaskMessage]:
    """The messages ``picks[k]`` of `dispatch` for this process's executor: a list when
    there are few (a chain's step), else a `LocalMessages` view. Tasks that set their own
    priority put the batch in priority order (highest first, stable): the executor
    starts them in that order (a large batch a chunk per loop iteration, plain functions
    queued in the thread pool)."""
    tasks = dispatch.tasks
    if any(tasks[i].priority is not None for i in picks):

        def rank(i: int) -> int:
            own = tasks[i].priority
            return -(priority if own is None else own)

        ranked = sorted(picks, key=rank)
        return [_message(dispatch, i, run_id, reply_to, resumed, trace, priority=priority) for i in ranked]
    if len(picks) <= EAGER_UP_TO:
        return [_message(dispatch, i, run_id, reply_to, resumed, trace, priority=priority) for i in picks]
    return LocalMessages(
        dispatch, picks, run_id=run_id, reply_to=reply_to, resumed=resumed, trace=trace, priority=priority
    )


def _message(
    d: Dispatch,
    i: int,
    run_id: str,
    reply_to: str,
    resumed: dict[str, dict[str, Any]] | None,
    trace: dict[str, str] | None,
    *,
    remote: bool = False,
    epoch: int = 0,
    priority: int = 5,
) -> TaskMessage:
    """Message ``i`` of `d`: carrying the task itself, or for a worker (`remote`) its
    import path."""
    task = d.tasks[i]
    # positional, in TaskMessage's field order: this is made once per task
    return TaskMessage(
        run_id,
        task.id,
        d.nodes[i],
        d.attempts[i],
        reply_to,
        d.kwargs[i],
        task.timeout,
        task.ref if remote else None,
        None if remote else task,
        None,
        None,
        task.inject_context,
        d.cycles[i],
        d.max_cycles[i],
        resumed.get(task.id) if resumed else None,
        trace,
        epoch,
        priority if task.priority is None else task.priority,
    )


class LocalMessages(Sequence[TaskMessage]):
    """Messages ``picks[k]`` of `dispatch` (indexes into its lists), for `reply_to`."""

    __slots__ = ("dispatch", "picks", "priority", "reply_to", "resumed", "run_id", "trace")

    def __init__(
        self,
        dispatch: Dispatch,
        picks: Sequence[int],
        *,
        run_id: str,
        reply_to: str,
        resumed: dict[str, dict[str, Any]] | None,
        trace: dict[str, str] | None,
        priority: int = 5,
    ) -> None:
        self.dispatch = dispatch
        self.priority = priority
        self.picks = picks
        self.run_id = run_id
        self.reply_to = reply_to
        self.resumed = resumed
        self.trace = trace

    def __len__(self) -> int:
        return len(self.picks)

    @overload
    def __getitem__(self, k: int) -> TaskMessage: ...
    @overload
    def __getitem__(self, k: slice) -> list[TaskMessage]: ...

    def __getitem__(self, k: int | slice) -> TaskMessage | list[TaskMessage]:
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self.picks)))]
        return _message(
            self.dispatch, self.picks[k], self.run_id, self.reply_to, self.resumed, self.trace, priority=self.priority
        )

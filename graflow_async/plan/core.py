"""The run plan: facts in, actions out, with no awaits, no I/O and no logging.

    plan = RunPlan(graph, channel, default_retry=RetryPolicy(), max_cycles=100)
    plan.start()
    actions = plan.step()                       # [Dispatch(nodes=[0, 1], ...)]
    plan.task_succeeded(node, cycle, attempt, value, duration)
    actions = plan.step()                       # [Dispatch(nodes=[2], ...)] or [Finish(None)] ...

Facts: a task succeeded (with the directives it gave: next_task, next_iteration,
cancel, terminate), failed, or stopped to wait for an answer; a retry came due.
Actions (`plan.actions`): `Dispatch`, `RetryLater`, `Emit`, then one of `Finish`,
`Fail`, `Suspend` when the run is over. The run actor carries them out; every
rule of the run lives here and is tested with plain values.
"""

from __future__ import annotations

from typing import Any

from graflow_async.define.policies import RetryPolicy, retry_delay
from graflow_async.define.tasks import _MISSING, Task
from graflow_async.exceptions import CycleLimitError, GraphError, TaskFailedError, WorkflowCancelledError
from graflow_async.plan.actions import Dispatch, Fail, Finish, RetryLater, Suspend
from graflow_async.plan.channel import ChannelData
from graflow_async.plan.directives import AddTasks, Cancel, Iterate, Terminate
from graflow_async.plan.graph import Expansion, RunGraph
from graflow_async.plan.state import DONE, QUEUED, RETRY, RUNNING, SUSPENDED, PlanState

_NO_ITERATION: Any = object()


class RunPlan(PlanState):
    """One run of a graph, as a state machine; see the module docstring."""

    def __init__(
        self,
        graph: RunGraph,
        channel: ChannelData,
        *,
        default_retry: RetryPolicy | None = None,
        max_cycles: int = 100,
        wants_steps: bool = False,
    ) -> None:
        super().__init__(
            graph, default_retry=default_retry or RetryPolicy(), max_cycles=max_cycles, wants_steps=wants_steps
        )
        self.channel = channel
        #: additions in the order they were applied: (adding node, goto, component);
        #: replaying them rebuilds the same nodes (see plan.snapshot)
        self.added: list[tuple[int, bool, Any]] = []

    def start(self) -> None:
        """The run begins: every task with no predecessor is ready (a restored plan has
        its ready tasks already)."""
        if self.restored:
            return
        for node in self.graph.roots:
            if self.status[node] != DONE:
                self.make_ready(node)

    def is_current(self, node: int, cycle: int, attempt: int) -> bool:
        """Whether (`node`, `cycle`, `attempt`) is an attempt running now (else a stale or
        duplicate message)."""
        return (
            0 <= node < len(self.status)
            and self.status[node] == RUNNING
            and self.runs[node] == cycle
            and self.attempts[node] == attempt
        )

    # --- facts -----------------------------------------------------------------------------
    def task_succeeded(
        self, node: int, cycle: int, attempt: int, value: Any, duration: float, directives: tuple[Any, ...] = ()
    ) -> None:
        if not self.is_current(node, cycle, attempt):
            return  # a stale or duplicate delivery, or a node this run does not have
        self.inflight -= 1
        if directives:
            self._directed(node, value, duration, directives)
            return
        if self.iter_data:
            self.iter_data.pop(node, None)
        self._complete(node, value, duration)
        self._release(node)

    def task_failed(
        self,
        node: int,
        cycle: int,
        attempt: int,
        error: BaseException | None,
        duration: float,
        retryable: bool = True,
    ) -> None:
        if not self.is_current(node, cycle, attempt):
            return
        self.inflight -= 1
        delay = retry_delay(self.policy(node), attempt, retryable=retryable)
        if delay is None:
            self._give_up(node, error, duration, attempt, retryable)
            return
        self.status[node] = RETRY
        self.retrying.add(node)
        self.inflight += 1
        self.emit("task_retrying", self.graph.ids[node], attempt=attempt, delay=delay, error=repr(error))
        self.actions.append(RetryLater(node, delay))

    def task_suspended(self, node: int, cycle: int, attempt: int) -> None:
        """The task stopped because its feedback wait timed out: it runs again on resume."""
        if not self.is_current(node, cycle, attempt):
            return
        self.inflight -= 1
        self.status[node] = SUSPENDED
        self.suspended.append(node)

    def retry_due(self, node: int) -> None:
        if not 0 <= node < len(self.status) or self.status[node] != RETRY:
            return
        self.inflight -= 1
        self.status[node] = QUEUED
        self.ready.append(node)

    # --- directives ----------------------------------------------------------------------------
    def _directed(self, node: int, value: Any, duration: float, directives: tuple[Any, ...]) -> None:
        """Apply what the task asked for: cancel wins over terminate, terminate over goto,
        goto over the normal successors (and over next_iteration)."""
        task_id = self.graph.ids[node]
        by_kind: dict[type, list[Any]] = {}
        for d in directives:
            by_kind.setdefault(type(d), []).append(d)
        stop = by_kind.get(Cancel) or by_kind.get(Terminate)
        if stop:
            self._complete(node, value, duration)
            if isinstance(stop[0], Cancel):
                self.failure = self.failure or WorkflowCancelledError(task_id, stop[0].reason)
            else:
                self.terminated = stop[0].reason
            return
        adds: list[AddTasks] = by_kind.get(AddTasks, [])
        goto = any(a.goto for a in adds)
        iterate = by_kind[Iterate][-1].data if Iterate in by_kind and not goto else _NO_ITERATION
        try:
            self._check(node, adds, iterate is not _NO_ITERATION)
        except (GraphError, CycleLimitError) as exc:
            self._give_up(node, exc, duration, self.attempts[node], retryable=False)
            return
        self._complete(node, value, duration)
        expansions = [self._expand(node, a) for a in adds]
        if goto:
            self._skip_after(node)
            for exp in expansions:
                self._start(exp)
            return
        self._continue(node, expansions, iterate)

    def _check(self, node: int, adds: list[AddTasks], iterate: bool) -> None:
        """GraphError for an addition that cannot be made; CycleLimitError (naming `node`,
        the task that asked, and the target) for a goto to a task with no run left."""
        graph = self.graph
        for a in adds:
            graph.check(a.component)
            if a.goto and isinstance(a.component, Task) and a.component.id in graph.index:
                target = graph.index[a.component.id]
                if self.runs[target] >= self.cap(target):
                    raise CycleLimitError(graph.ids[node], self.cap(target), self.runs[target], a.component.id)
        if iterate and self.runs[node] >= self.cap(node):
            raise CycleLimitError(graph.ids[node], self.cap(node), self.runs[node])

    def _expand(self, node: int, add: AddTasks) -> Expansion:
        exp = self.graph.expand(add.component, node)
        self.added.append((node, add.goto, add.component))
        self._grow()
        self.emit(
            "task_added",
            add.component.id if isinstance(add.component, Task) else None,
            added_by=self.graph.ids[node],
            goto=add.goto,
            ids=exp.ids,
        )
        return exp

    def _start(self, exp: Expansion) -> None:
        for head in exp.heads:
            self.make_ready(head)

    def _skip_after(self, node: int) -> None:
        """A goto from `node`: what follows it is skipped, and it holds nothing any more."""
        graph = self.graph
        self.skip_roots.extend(graph.succs[node])
        self.skip_roots.extend(self.holds.pop(node, ()))
        self.skip_roots.extend(graph.groups[g].barrier for g, _ in self.end_holds.pop(node, ()))
        end = graph.ends.get(node)
        if end is not None:
            self.skip_roots.append(graph.groups[end[0]].barrier)

    def _continue(self, node: int, expansions: list[Expansion], iterate: Any) -> None:
        """No goto: `node`'s successors wait for the added tasks too (and, when it iterates,
        for its last cycle)."""
        graph = self.graph
        tasks = [s for s in graph.succs[node] if graph.tasks[s] is not None] + self.holds.get(node, [])
        ends = ([graph.ends[node]] if node in graph.ends else []) + self.end_holds.get(node, [])
        if expansions:  # hold them before anything is released, so nothing runs early
            for s in tasks:
                self.remaining[s] += len(expansions)
            for g, m in ends:
                graph.groups[g].hold[m] += len(expansions)
        if iterate is _NO_ITERATION:
            if self.iter_data:
                self.iter_data.pop(node, None)
            self._release(node)
        for exp in expansions:
            if tasks:
                self.holds.setdefault(exp.tail, []).extend(tasks)
            if ends:
                self.end_holds.setdefault(exp.tail, []).extend(ends)
            self._start(exp)
        if iterate is not _NO_ITERATION:
            self.make_ready(node, iterate, iterate=True)

    # --- acting -------------------------------------------------------------------------------
    def step(self) -> list[Any]:
        """Dispatch what is ready, decide whether the run is over; hand back the actions."""
        dispatch = None
        while self.ready and self.failure is None and self.terminated is None and not self.suspended:
            nodes, self.ready = self.ready, []
            if dispatch is None:
                dispatch = Dispatch.empty()
                at = len(self.actions)
                self.actions.append(dispatch)
            for node in nodes:
                if self.status[node] == QUEUED:
                    self._dispatch(node, dispatch)
        if dispatch is not None:
            self.actions[at] = dispatch.compact()
        if self.failure is not None:
            self.actions.append(Fail(self.failure))
        elif self.terminated is not None:
            self.actions.append(Finish(self.terminated))
        elif self.inflight == 0:
            self.actions.append(Suspend(tuple(self.suspended)) if self.suspended else Finish(None))
        actions, self.actions = self.actions, []
        return actions

    def in_flight(self) -> Dispatch:
        """The attempts running now, to send again as they are (same cycle, same attempt):
        what a run taken over from a driver that died must run again (at-least-once). Their
        arguments are resolved again (a channel key an argument came from may have changed)."""
        dispatch = Dispatch.empty()
        for node, status in enumerate(self.status):
            if status != RUNNING:
                continue
            task = self.graph.tasks[node]
            assert task is not None
            kwargs = resolve(task, self.results, self.channel) if task.params else task.bound
            if self.iter_data and node in self.iter_data and any(p.name == "data" for p in task.params):
                kwargs = {**kwargs, "data": self.iter_data[node]}
            cap = task.max_cycles or self.max_cycles
            dispatch.add(node, task, self.attempts[node], self.runs[node], cap, kwargs)
        return dispatch.compact()

    def _dispatch(self, node: int, dispatch: Dispatch) -> None:
        task = self.graph.tasks[node]
        assert task is not None
        cap = task.max_cycles or self.max_cycles
        if self.retrying and node in self.retrying:
            self.retrying.discard(node)
            cycle, attempt = self.runs[node], self.attempts[node] + 1
        else:
            cycle, attempt = self.runs[node] + 1, 1
            if cycle > cap:
                self._give_up(node, CycleLimitError(task.id, cap, cycle - 1), 0.0, attempt, False)
                return
            self.runs[node] = cycle
        self.attempts[node] = attempt
        try:
            kwargs = resolve(task, self.results, self.channel) if task.params else task.bound
        except TaskFailedError as exc:  # a missing parameter: retrying would not help
            self._give_up(node, exc, 0.0, attempt, retryable=False)
            return
        if self.iter_data and node in self.iter_data and any(p.name == "data" for p in task.params):
            kwargs = {**kwargs, "data": self.iter_data[node]}
        self.status[node] = RUNNING
        self.inflight += 1
        dispatch.add(node, task, attempt, cycle, cap, kwargs)
        if self.wants_steps:
            self.emit("task_started", task.id, attempt=attempt, cycle=cycle)


def resolve(task: Task, results: dict[str, Any], channel: ChannelData) -> dict[str, Any]:
    """Arguments by SPEC order: bound kwarg, a completed task's result, channel key,
    default; else TaskFailedError naming the parameter."""
    kwargs = dict(task.bound)
    data = channel.data
    for p in task.params:
        name = p.name
        if name in kwargs:
            continue
        if name in results:
            kwargs[name] = results[name]
            continue
        value = data.get(name, _MISSING)
        if value is not _MISSING:
            kwargs[name] = value
        elif not p.has_default:
            raise TaskFailedError(
                task.id,
                None,
                f"task {task.id!r}: no value for parameter {name!r} (not bound, no task "
                f"with that id has completed, not in the channel, and no default)",
            )
    return kwargs

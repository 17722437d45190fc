"""The bookkeeping of a run plan: what each node is doing, who waits for whom, groups.

Each node has a status (below). A task runs when every predecessor has completed
(`remaining` counts those it still waits for) or when a task asks for it. A node's
completion *releases* its successors; a node that runs again first takes its last
release back (re-arming), so that what follows it waits for the new run. One-shot
`holds` make the successors of a task that added others wait for those too.

A parallel group finishes when each member has: `GroupState.hold[m]` counts the
completions member `m` still waits for (its last node, and tasks added from it); its
policy then judges the members' results, and the group's barrier node completes
(releasing what follows the group) or the failure goes up a level.
"""

from __future__ import annotations

from typing import Any

from graflow_async.define.policies import RetryPolicy, TaskResult
from graflow_async.exceptions import HandlerError, RemoteTaskError, RetryLimitExceededError, TaskFailedError
from graflow_async.plan.actions import Emit
from graflow_async.plan.graph import RunGraph

IDLE, QUEUED, RUNNING, RETRY, DONE, FAILED, SUSPENDED = range(7)
STATUS_NAMES = ("idle", "queued", "running", "retry", "done", "failed", "suspended")


class PlanState:
    """Per-node state and the primitive moves of a plan; `RunPlan` drives them with facts."""

    def __init__(self, graph: RunGraph, *, default_retry: RetryPolicy, max_cycles: int, wants_steps: bool) -> None:
        n = len(graph)
        self.graph = graph
        self.default_retry = default_retry
        self.max_cycles = max_cycles
        self.wants_steps = wants_steps
        self.status = bytearray(n)
        self.released = bytearray(n)  # 1: its last completion released its successors
        self.remaining = list(graph.npreds)
        self.runs = [0] * n  # runs started (cycles); retries are attempts of the same run
        self.attempts = [0] * n
        self.holds: dict[int, list[int]] = {}  # node -> tasks it releases once, at its next completion
        self.end_holds: dict[int, list[tuple[int, int]]] = {}  # node -> (group, member) ends, once
        self.iter_data: dict[int, Any] = {}  # node -> the data of its next iteration
        self.again: set[int] = set()  # running nodes asked to run once more
        self.retrying: set[int] = set()
        self.skip_roots: list[int] = []  # nodes a goto skipped
        self.results: dict[str, Any] = {}
        self.ready: list[int] = []
        self.actions: list[Any] = []
        self.inflight = 0  # running attempts and pending retries
        self.failure: BaseException | None = None
        self.terminated: str | None = None
        self.suspended: list[int] = []
        self.restored = False  # set by plan.snapshot.from_doc

    def _grow(self) -> None:
        """Per-node state for nodes the graph gained."""
        extra = len(self.graph) - len(self.status)
        if extra > 0:
            self.status.extend(bytes(extra))
            self.released.extend(bytes(extra))
            self.remaining.extend(self.graph.npreds[-extra:])
            self.runs.extend([0] * extra)
            self.attempts.extend([0] * extra)

    def emit(self, kind: str, task_id: str | None, **data: Any) -> None:
        self.actions.append(Emit(kind, task_id, data))

    def policy(self, node: int) -> RetryPolicy:
        task = self.graph.tasks[node]
        return (task.retry_policy if task is not None else None) or self.default_retry

    def cap(self, node: int) -> int:
        task = self.graph.tasks[node]
        return (task.max_cycles if task is not None else None) or self.max_cycles

    # --- completing and releasing ---------------------------------------------------------
    def _complete(self, node: int, value: Any, duration: float) -> None:
        graph = self.graph
        task_id = graph.ids[node]
        self.results[task_id] = value
        self.status[node] = DONE
        if self.wants_steps:
            self.emit("task_completed", task_id, attempt=self.attempts[node], duration=duration, cycle=self.runs[node])
        group = graph.group_of[node]
        if group >= 0:
            graph.groups[group].busy[graph.member_of[node]] += duration

    def _release(self, node: int) -> None:
        """`node` completed: what waited only for it becomes ready."""
        graph = self.graph
        tasks, remaining, status = graph.tasks, self.remaining, self.status
        for s in graph.succs[node]:
            if tasks[s] is None:
                continue  # a group barrier: finished by its group, not by counting
            remaining[s] -= 1
            if remaining[s] == 0:
                if status[s] == IDLE:  # the common case, inline
                    status[s] = QUEUED
                    self.ready.append(s)
                else:
                    self.make_ready(s)
        self.released[node] = 1
        if self.holds:
            for s in self.holds.pop(node, ()):
                remaining[s] -= 1
                if remaining[s] == 0:
                    self.make_ready(s)
        end = graph.ends.get(node)
        if end is not None:
            self._member_end(*end)
        if self.end_holds:
            for g, m in self.end_holds.pop(node, ()):
                self._member_end(g, m)
        if self.again and node in self.again:
            self.again.discard(node)
            self.make_ready(node)

    def make_ready(self, node: int, data: Any = None, *, iterate: bool = False) -> None:
        """Run `node` (again): after its current run when it is running."""
        status = self.status[node]
        if status == RUNNING or status == RETRY:
            self.again.add(node)
            return
        if status == QUEUED:
            return
        if status == DONE:
            self._rearm(node)
        elif status == FAILED:
            self._reopen(node, add_hold=False)
        if iterate:
            self.iter_data[node] = data
        elif self.iter_data:
            self.iter_data.pop(node, None)
        self.status[node] = QUEUED
        self.ready.append(node)

    def _rearm(self, node: int) -> None:
        """`node` will complete again: take back what its last completion released."""
        if not self.released[node]:
            return
        self.released[node] = 0
        graph = self.graph
        for s in graph.succs[node]:
            if graph.tasks[s] is not None:
                self.remaining[s] += 1
        if node in graph.ends:
            self._reopen(node, add_hold=True)

    def _reopen(self, node: int, *, add_hold: bool) -> None:
        """`node`'s group member has not finished after all: it runs again."""
        graph = self.graph
        end = graph.ends.get(node)
        group, member = end if (add_hold and end is not None) else (graph.group_of[node], graph.member_of[node])
        if group < 0:
            return
        state = graph.groups[group]
        if add_hold:
            state.hold[member] += 1
        state.forget(member)
        barrier = state.barrier
        if self.status[barrier] == DONE:
            self._rearm(barrier)
            self.status[barrier] = IDLE

    # --- groups -------------------------------------------------------------------------------
    def _member_end(self, group: int, member: int) -> None:
        state = self.graph.groups[group]
        state.hold[member] -= 1
        if state.hold[member] == 0:
            self._member_finished(group, member, None)

    def _member_finished(self, group: int, member: int, failure: TaskResult | None) -> None:
        """Member `member` of `group` finished (`failure`: how it failed, None: it succeeded)."""
        state = self.graph.groups[group]
        if not state.record(member, failure) or state.finished < len(state.member_ids):
            return
        results = {state.member_ids[i]: state.result(i, self.results) for i in range(len(state.member_ids))}
        verdict: BaseException | None = None
        try:
            state.policy.on_group_finished(state.name, results)
        except Exception as exc:
            verdict = exc
        self.emit(
            "group_finished",
            None,
            group_id=state.name,
            success=verdict is None,
            failed=[m for m, r in results.items() if not r.success],
        )
        self._group_finished(group, verdict)

    def _group_finished(self, group: int, verdict: BaseException | None) -> None:
        graph = self.graph
        state = graph.groups[group]
        barrier = state.barrier
        outer = graph.ends.get(barrier)
        if verdict is None:
            self.status[barrier] = DONE
            if outer is not None:  # the inner group's time counts toward the outer member's
                graph.groups[outer[0]].busy[outer[1]] += state.duration()
            self._release(barrier)
        elif graph.group_of[barrier] < 0:
            self.failure = self.failure or verdict
        else:
            self.status[barrier] = FAILED
            result = TaskResult(state.name, False, None, verdict, 0.0)
            self._member_finished(graph.group_of[barrier], graph.member_of[barrier], result)

    # --- failing ---------------------------------------------------------------------------
    def _give_up(self, node: int, error: BaseException | None, duration: float, attempt: int, retryable: bool) -> None:
        """`node` failed for good: fail the run, or its group member."""
        graph = self.graph
        task_id = graph.ids[node]
        if isinstance(error, RemoteTaskError) and not error.task_id:  # every remote error names its task
            error = RemoteTaskError(task_id, error.type_name, error.remote_message, error.traceback)
        final = final_error(task_id, error, attempt, self.policy(node), retryable)
        self.emit("task_failed", task_id, attempt=attempt, error=repr(error))
        group = graph.group_of[node]
        if group < 0:
            self.failure = self.failure or final
            return
        self.status[node] = FAILED
        member = graph.member_of[node]
        busy = graph.groups[group].busy[member] + duration
        self._member_finished(group, member, TaskResult(task_id, False, None, error or final, busy))

    # --- the outcome ---------------------------------------------------------------------------
    def output(self) -> Any:
        graph = self.graph
        sinks = [graph.ids[s] for s in graph.sinks]
        if len(sinks) == 1:
            return self.results.get(sinks[0])
        return {s: self.results[s] for s in sinks if s in self.results}

    def skipped(self) -> list[str]:
        """Ids of tasks that did not run because a goto skipped them or a predecessor."""
        graph, status = self.graph, self.status
        seen: set[int] = set()
        stack = list(self.skip_roots)
        while stack:
            node = stack.pop()
            if node in seen or status[node] == DONE:
                continue
            seen.add(node)
            stack.extend(graph.succs[node])
            stack.extend(self.holds.get(node, ()))
            stack.extend(graph.groups[g].barrier for g, _ in self.end_holds.get(node, ()))
        ids = {graph.ids[n] for n in seen if graph.tasks[n] is not None}
        return sorted((i for i in ids if status[graph.index[i]] != DONE), key=graph.index.__getitem__)


def final_error(
    task_id: str, error: BaseException | None, attempt: int, policy: RetryPolicy, retryable: bool
) -> BaseException:
    """The error `run` raises for a task that failed for good."""
    if isinstance(error, TaskFailedError) and error.task_id == task_id and not (retryable and policy.max_retries > 0):
        return error  # already says it all (a timeout, a missing parameter)
    if isinstance(error, TaskFailedError | HandlerError) and not retryable:
        return error  # a cycle limit, a bad addition or a handler that cannot run the task
    if retryable and policy.max_retries > 0:
        assert error is not None
        return RetryLimitExceededError(task_id, error, attempt, policy.max_retries)
    return TaskFailedError(task_id, error)

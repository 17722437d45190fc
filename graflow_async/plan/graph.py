"""The run's graph as it grows: the compiled workflow plus what tasks add at runtime.

`RunGraph` starts as a mutable copy of a `CompiledGraph` (nodes numbered 0..n-1,
tasks and group barriers) and `expand` appends the nodes of a component a task adds
with `next_task`: a task, a chain or a parallel group. Expanding is structural only:
nodes, edges, groups and which node an id names now; when the added nodes run is the
plan's business (`plan.core`). Expansion is deterministic, so replaying the same
additions in the same order rebuilds the same node numbers (how a checkpoint of a
grown run is restored).
"""

from __future__ import annotations

from array import array
from collections import ChainMap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from graflow_async.define.compile import CompiledGraph
from graflow_async.define.graph import Chain, ParallelGroup
from graflow_async.define.policies import GroupExecutionPolicy, TaskResult
from graflow_async.define.tasks import Task
from graflow_async.exceptions import GraphError

UNFINISHED, SUCCEEDED, FAILED = 0, 1, 2  # GroupState.outcome


class GroupState:
    """A parallel group at runtime: its members, policy, and how far each member got.

    `hold[m]` counts the completions member `m` still waits for before it has finished
    (its last node, plus tasks that node added); `outcome[m]` says how it finished.
    Per member it keeps a byte, a counter and a float, not objects: a member's
    `TaskResult` is made when the policy judges the group (a failure's is kept, with
    its error), so a 300,000-member group holds no 300,000 objects while it runs."""

    __slots__ = ("barrier", "busy", "failures", "finished", "hold", "member_ids", "name", "outcome", "policy")

    def __init__(self, name: str, barrier: int, member_ids: Sequence[str], policy: GroupExecutionPolicy) -> None:
        self.name = name
        self.barrier = barrier
        self.member_ids = tuple(member_ids)
        self.policy = policy
        n = len(self.member_ids)
        self.outcome = bytearray(n)  # member -> UNFINISHED, SUCCEEDED or FAILED
        self.failures: dict[int, TaskResult] = {}  # the failed members' results
        self.finished = 0  # members with an outcome
        self.busy = array("d", bytes(8 * n))  # member -> seconds its tasks ran so far
        self.hold = [1] * n

    def record(self, member: int, failure: TaskResult | None = None) -> bool:
        """Member `member` finished (with `failure` when it failed); False if it had already."""
        if self.outcome[member]:
            return False
        self.outcome[member] = SUCCEEDED if failure is None else FAILED
        if failure is not None:
            self.failures[member] = failure
        self.finished += 1
        return True

    def forget(self, member: int) -> None:
        """Member `member` has not finished after all (it runs again)."""
        if self.outcome[member]:
            self.outcome[member] = UNFINISHED
            self.failures.pop(member, None)
            self.finished -= 1

    def result(self, member: int, results: dict[str, Any]) -> TaskResult:
        """The `TaskResult` of finished member `member` (`results`: the run's, by task id)."""
        if self.outcome[member] == FAILED:
            return self.failures[member]
        member_id = self.member_ids[member]
        return TaskResult(member_id, True, results.get(member_id), None, self.busy[member])

    def duration(self) -> float:
        """Seconds the finished members' tasks ran."""
        return sum(self.failures[m].duration if o == FAILED else self.busy[m] for m, o in enumerate(self.outcome) if o)


class Ends:
    """Which group member each node is the last node of, as a read-mostly mapping
    ``node -> (group, member)``: a flag per node, since a member's last node belongs to
    that member (its `group_of` and `member_of` say which)."""

    __slots__ = ("flags", "group_of", "member_of")

    def __init__(self, flags: bytes, group_of: array[int], member_of: array[int]) -> None:
        self.flags = bytearray(flags)
        self.group_of = group_of
        self.member_of = member_of

    def get(self, node: int, default: tuple[int, int] | None = None) -> tuple[int, int] | None:
        if node < len(self.flags) and self.flags[node]:
            return self.group_of[node], self.member_of[node]
        return default

    def __contains__(self, node: object) -> bool:
        return isinstance(node, int) and 0 <= node < len(self.flags) and self.flags[node] == 1

    def __getitem__(self, node: int) -> tuple[int, int]:
        end = self.get(node)
        if end is None:
            raise KeyError(node)
        return end

    def __setitem__(self, node: int, end: tuple[int, int]) -> None:
        if (self.group_of[node], self.member_of[node]) != tuple(end):
            raise ValueError(f"node {node} is not in member {end[1]} of group {end[0]}")
        if node >= len(self.flags):
            self.flags.extend(bytes(node + 1 - len(self.flags)))
        self.flags[node] = 1

    def items(self) -> list[tuple[int, tuple[int, int]]]:
        return [(n, (self.group_of[n], self.member_of[n])) for n, flag in enumerate(self.flags) if flag]


@dataclass(frozen=True, slots=True)
class Expansion:
    """What `expand` made of a component: where it starts and ends, and the ids to
    return from `next_task`."""

    heads: tuple[int, ...]
    tail: int
    ids: str | list[str]
    reused: bool  # a single task that was already in the run: its own node runs again


class RunGraph:
    """Nodes of one run: tasks (with their current `Task`) and group barriers."""

    def __init__(self, compiled: CompiledGraph) -> None:
        self.workflow_name = compiled.workflow_name
        self.compiled = compiled
        self.static_count = len(compiled.ids)
        self.sinks = compiled.sinks
        self.ids: list[str] = list(compiled.ids)
        self.tasks: list[Task | None] = list(compiled.tasks)
        self.succs: list[Sequence[int]] = list(compiled.succs)
        self.npreds: list[int] = list(compiled.npreds)
        self.group_of = array("l", compiled.group_of)
        self.member_of = array("l", compiled.member_of)
        self.ends = Ends(compiled.is_tail, self.group_of, self.member_of)  # node -> (group, member) it ends
        self.groups = [GroupState(g.name, g.barrier, g.member_ids, g.policy) for g in compiled.groups]
        # task id -> the node that id names now: the ids added at runtime over the workflow's
        # (not a copy of a million-entry dict per run)
        self.index: ChainMap[str, int] = ChainMap({}, compiled.index)
        self.origin: dict[int, int] = {}  # added node -> the workflow node whose route it takes
        self.roots = compiled.roots

    @property
    def fingerprint(self) -> str:
        return self.compiled.fingerprint

    def __len__(self) -> int:
        return len(self.ids)

    def route_of(self, node: int) -> int:
        return self.origin.get(node, node)

    # --- adding components ---------------------------------------------------------------
    def check(self, component: Any) -> None:
        """GraphError, before anything changes, for a component that cannot be added."""
        for t in tasks_in(component):
            node = self.index.get(t.id)
            known = self.tasks[node] if node is not None else None
            if known is not None and known.func is not t.func:
                raise GraphError(
                    f"cannot add task {t.id!r}: the run already has a task with that id for a different "
                    f"function ({_name(known.func)}, not {_name(t.func)})"
                )
        if isinstance(component, ParallelGroup):
            _check_policy(component)

    def expand(self, component: Any, by: int) -> Expansion:
        """Add `component` as tasks added by node `by`; `check` it first."""
        if isinstance(component, Task) and component.id in self.index:
            node = self.index[component.id]
            self.tasks[node] = component  # its bound arguments may differ: the latest call wins
            return Expansion((node,), node, component.id, reused=True)
        scope = (self.group_of[by], self.member_of[by], self.route_of(by))
        heads, tail, ids = self._component(component, scope, {})
        return Expansion(
            tuple(heads), tail, ids if isinstance(component, Chain | ParallelGroup) else ids[0], reused=False
        )

    def _component(self, c: Any, scope: tuple[int, int, int], made: dict[int, int]) -> tuple[list[int], int, list[str]]:
        if isinstance(c, Task):
            node = made.get(id(c))
            if node is None:
                node = made[id(c)] = self._add_node(c.id, c, scope)
            return [node], node, [c.id]
        if isinstance(c, ParallelGroup):
            return self._group(c, scope, made)
        heads: list[int] = []
        tail = -1
        ids: list[str] = []
        for item in c.items:
            item_heads, item_tail, item_ids = self._component(item, scope, made)
            if tail < 0:
                heads = item_heads
            else:
                self._link(tail, item_heads)
            tail = item_tail
            ids.extend(item_ids)
        return heads, tail, ids

    def _group(
        self, g: ParallelGroup, scope: tuple[int, int, int], made: dict[int, int]
    ) -> tuple[list[int], int, list[str]]:
        gi = len(self.groups)
        name = g.name or f"ParallelGroup_{gi + 1}"
        barrier = self._add_node(name, None, scope)
        state = GroupState(name, barrier, [""] * len(g.members), g.policy)
        self.groups.append(state)
        heads: list[int] = []
        ids: list[str] = []
        tails = []
        for mi, member in enumerate(g.members):
            m_heads, m_tail, m_ids = self._component(member, (gi, mi, scope[2]), made)
            heads.extend(m_heads)
            ids.extend(m_ids)
            tails.append(m_tail)
            self.ends[m_tail] = (gi, mi)
            self.succs[m_tail] = [*self.succs[m_tail], barrier]
        state.member_ids = tuple(self.ids[t] for t in tails)  # a task's id, a nested group's name
        return heads, barrier, ids

    def _add_node(self, ident: str, task: Task | None, scope: tuple[int, int, int]) -> int:
        node = len(self.ids)
        self.ids.append(ident)
        self.tasks.append(task)
        self.succs.append([])
        self.npreds.append(0)
        self.group_of.append(scope[0])
        self.member_of.append(scope[1])
        self.origin[node] = scope[2]
        if task is not None:
            self.index[ident] = node
        return node

    def _link(self, tail: int, heads: list[int]) -> None:
        self.succs[tail] = [*self.succs[tail], *heads]
        for h in heads:
            self.npreds[h] += 1

    def task_nodes(self) -> list[int]:
        """Every node an id names now (the current node of each task id)."""
        return sorted(self.index.values())


def tasks_in(c: Any) -> list[Task]:
    """The tasks of a component, in order; GraphError for anything that is not a task,
    a chain or a parallel group (of those)."""
    if isinstance(c, Task):
        return [c]
    if not isinstance(c, Chain | ParallelGroup):
        what = getattr(c, "__qualname__", None) or type(c).__name__
        hint = " (decorate it with @task)" if callable(c) else ""
        raise GraphError(f"next_task() takes a task, a chain or a parallel group, not {what!r}{hint}")
    out: list[Task] = []
    for item in c.items if isinstance(c, Chain) else c.members:
        out.extend(tasks_in(item))
    return out


def _check_policy(g: ParallelGroup) -> None:
    try:
        g.policy.validate([_member_id(m) for m in g.members])
    except ValueError as exc:
        raise GraphError(f"group {g.name or '(added)'}: {exc}") from exc
    for m in g.members:
        if isinstance(m, ParallelGroup):
            _check_policy(m)
        elif isinstance(m, Chain):
            for item in m.items:
                if isinstance(item, ParallelGroup):
                    _check_policy(item)


def _member_id(c: Any) -> str:
    last = c.last if isinstance(c, Chain) else c
    if isinstance(last, Task):
        return last.id
    return last.name or "group"


def _name(func: Any) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"

"""Compiling a workflow into the flat, index-based graph the run supervisor walks.

Nodes are tasks and group barriers, numbered 0..n-1. A barrier stands for the end of
a parallel group: its predecessors are the members' tails and its successors are
what follows the group. A barrier is not driven by counting predecessors like a
task; the supervisor finishes it when every member has finished and the group's
policy has accepted the outcome.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass

from .exceptions import GraphError
from .graph import Chain, Component, ParallelGroup, Workflow, _first, _last, member_id
from .policies import CoordinationBackend, GroupExecutionPolicy
from .tasks import Task


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A parallel group, compiled."""

    name: str
    barrier: int  # node index of the group's barrier
    member_ids: tuple[str, ...]
    member_tails: tuple[int, ...]  # node index of each member's last node
    policy: GroupExecutionPolicy
    backend: CoordinationBackend
    backend_config: dict | None


@dataclass(frozen=True, slots=True)
class CompiledGraph:
    """Everything a run needs about the graph, in flat tuples indexed by node."""

    workflow_name: str
    ids: tuple[str, ...]  # task id, or group name for a barrier
    tasks: tuple[Task | None, ...]  # None for a barrier
    succs: tuple[tuple[int, ...], ...]
    npreds: tuple[int, ...]  # predecessors that must complete before a task runs
    roots: tuple[int, ...]
    index: dict[str, int]  # task id -> node
    group_of: tuple[int, ...]  # innermost group of a node, -1 if none
    member_of: tuple[int, ...]  # its member index within that group, -1 if none
    tail_of: dict[int, tuple[int, int]]  # node -> (group, member) whose last node it is
    barrier_group: dict[int, int]  # barrier node -> group index
    groups: tuple[GroupInfo, ...]
    sinks: tuple[int, ...]  # tasks with no task after them
    fingerprint: str

    @property
    def task_count(self) -> int:
        return len(self.index)


class _Builder:
    def __init__(self, wf: Workflow) -> None:
        self.wf = wf
        self.ids: list[str] = []
        self.tasks: list[Task | None] = []
        self.node_of: dict[int, int] = {}  # id(task or group) -> node index
        for t in wf.tasks.values():
            self._node(t, t.id, t)
        self.group_index = {id(g): i for i, g in enumerate(wf.groups)}
        for g in wf.groups:
            self._node(g, wf.group_name(g), None)
        self.edges: list[tuple[int, int]] = []

    def _node(self, key: object, ident: str, t: Task | None) -> None:
        self.node_of[id(key)] = len(self.ids)
        self.ids.append(ident)
        self.tasks.append(t)

    def heads(self, c: Component) -> list[int]:
        node = _first(c)
        if isinstance(node, Task):
            return [self.node_of[id(node)]]
        out: list[int] = []
        for m in node.members:
            out.extend(self.heads(m))
        return out

    def tail(self, c: Component) -> int:
        return self.node_of[id(_last(c))]

    def contents(self, c: Component) -> list[int]:
        """Nodes directly inside member `c` (a nested group counts as its barrier)."""
        items = c.items if isinstance(c, Chain) else (c,)
        return [self.node_of[id(i)] for i in items]


def compile_workflow(wf: Workflow) -> CompiledGraph:
    """Check `wf` and flatten it; GraphError names what is wrong."""
    if not wf.tasks:
        raise GraphError(f"workflow {wf.name!r} has no tasks")
    b = _Builder(wf)
    n = len(b.ids)
    for left, right in wf.links:
        tail = b.tail(left)
        b.edges.extend((tail, h) for h in b.heads(right))
    group_of = [-1] * n
    member_of = [-1] * n
    tail_of: dict[int, tuple[int, int]] = {}
    infos: list[GroupInfo] = []
    seen_names: dict[str, ParallelGroup] = {}
    for gi, g in enumerate(wf.groups):
        name = wf.group_name(g)
        if name in seen_names or name in wf.tasks:
            raise GraphError(f"duplicate group name {name!r} in workflow {wf.name!r}")
        seen_names[name] = g
        ids = tuple(member_id(m, wf.auto_group_names) for m in g.members)
        _validate_policy(g, name, ids)
        barrier = b.node_of[id(g)]
        tails = []
        for mi, m in enumerate(g.members):
            for node in b.contents(m):
                if group_of[node] != -1:
                    raise GraphError(
                        f"{b.ids[node]!r} is a member of two parallel groups "
                        f"({infos[group_of[node]].name if group_of[node] < gi else '?'} and {name})"
                    )
                group_of[node], member_of[node] = gi, mi
            tail = b.tail(m)
            tails.append(tail)
            tail_of[tail] = (gi, mi)
            b.edges.append((tail, barrier))
        infos.append(GroupInfo(name, barrier, ids, tuple(tails), g.policy, g.backend, g.backend_config))
    succ_lists: list[list[int]] = [[] for _ in range(n)]
    npreds = [0] * n
    for a, c in dict.fromkeys(b.edges):  # dedupe, keep order
        succ_lists[a].append(c)
        npreds[c] += 1
    _check_acyclic(b.ids, succ_lists, npreds)
    is_task = [t is not None for t in b.tasks]
    roots = tuple(i for i in range(n) if is_task[i] and npreds[i] == 0)
    return CompiledGraph(
        workflow_name=wf.name,
        ids=tuple(b.ids),
        tasks=tuple(b.tasks),
        succs=tuple(tuple(s) for s in succ_lists),
        npreds=tuple(npreds),
        roots=roots,
        index={t.id: b.node_of[id(t)] for t in wf.tasks.values()},
        group_of=tuple(group_of),
        member_of=tuple(member_of),
        tail_of=tail_of,
        barrier_group={info.barrier: gi for gi, info in enumerate(infos)},
        groups=tuple(infos),
        sinks=_sinks(succ_lists, is_task),
        fingerprint=_fingerprint(wf.name, b.ids, is_task, succ_lists, infos),
    )


def _validate_policy(g: ParallelGroup, name: str, ids: tuple[str, ...]) -> None:
    try:
        g.policy.validate(ids)
    except ValueError as exc:
        raise GraphError(f"group {name!r}: {exc}") from exc


def _check_acyclic(ids: list[str], succs: list[list[int]], npreds: list[int]) -> None:
    remaining = list(npreds)
    queue = deque(i for i, c in enumerate(remaining) if c == 0)
    visited = 0
    while queue:
        i = queue.popleft()
        visited += 1
        for s in succs[i]:
            remaining[s] -= 1
            if remaining[s] == 0:
                queue.append(s)
    if visited == len(ids):
        return
    cycle = _find_cycle(succs, {i for i, c in enumerate(remaining) if c > 0})
    path = " >> ".join(ids[i] for i in cycle)
    raise GraphError(f"the workflow has a cycle: {path}")


def _find_cycle(succs: list[list[int]], stuck: set[int]) -> list[int]:
    """One cycle among `stuck` (nodes Kahn's algorithm could not order), as a closed path."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for start in sorted(stuck):
        if start in state:
            continue
        state[start] = 1
        path = [start]
        stack = [iter(succs[start])]
        while stack:
            nxt = next((s for s in stack[-1] if s in stuck), None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(succs[nxt]))
    return sorted(stuck)  # pragma: no cover - stuck nodes always hold a cycle


def _sinks(succs: list[list[int]], is_task: list[bool]) -> tuple[int, ...]:
    """Tasks after which no other task can run (group barriers are see-through)."""

    def leads_to_task(i: int) -> bool:
        stack, seen = [i], {i}
        while stack:
            for s in succs[stack.pop()]:
                if is_task[s]:
                    return True
                if s not in seen:
                    seen.add(s)
                    stack.append(s)
        return False

    return tuple(i for i, t in enumerate(is_task) if t and not leads_to_task(i))


def _fingerprint(
    name: str, ids: list[str], is_task: list[bool], succs: list[list[int]], infos: list[GroupInfo]
) -> str:
    h = hashlib.sha256(name.encode())
    for i, ident in enumerate(ids):
        h.update(f"\n{'T' if is_task[i] else 'G'}:{ident}->".encode())
        h.update(",".join(sorted(ids[s] for s in succs[i])).encode())
    for g in infos:
        h.update(f"\ngroup {g.name}: {','.join(g.member_ids)}".encode())
    return h.hexdigest()[:32]

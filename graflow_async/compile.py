"""Compiling a workflow into the flat, index-based graph the run supervisor walks.

Nodes are tasks and group barriers, numbered 0..n-1. A barrier stands for the end of
a parallel group: its predecessors are the members' tails and its successors are
what follows the group. A barrier is not driven by counting predecessors like a
task; the supervisor finishes it when every member has finished and the group's
policy has accepted the outcome.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import attrgetter, is_, is_not, not_
from typing import Any

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
    member_tails: Sequence[int]  # node index of each member's last node
    policy: GroupExecutionPolicy
    backend: CoordinationBackend
    backend_config: dict | None


@dataclass(frozen=True, slots=True)
class CompiledGraph:
    """Everything a run needs about the graph, in flat tuples and arrays indexed by node."""

    workflow_name: str
    ids: tuple[str, ...]  # task id, or group name for a barrier
    tasks: tuple[Task | None, ...]  # None for a barrier
    succs: tuple[tuple[int, ...], ...]
    npreds: tuple[int, ...]  # predecessors that must complete before a task runs
    roots: tuple[int, ...]
    index: dict[str, int]  # task id -> node
    group_of: array[int]  # innermost group of a node, -1 if none
    member_of: array[int]  # its member index within that group, -1 if none
    is_tail: bytes  # 1 for the last node of a group member (of group_of[node], member_of[node])
    barrier_group: dict[int, int]  # barrier node -> group index
    groups: tuple[GroupInfo, ...]
    sinks: tuple[int, ...]  # tasks with no task after them
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def task_count(self) -> int:
        return len(self.index)

    @property
    def fingerprint(self) -> str:
        """A hash of the graph's shape, which checkpoints are checked against: made when
        first asked for (a run that never checkpoints never hashes a million nodes)."""
        found = self._memo.get("fingerprint")
        if found is None:
            is_task = list(map(is_not, self.tasks, repeat(None)))
            found = self._memo["fingerprint"] = _fingerprint(
                self.workflow_name, self.ids, is_task, self.succs, self.groups
            )
        return found


_ID = attrgetter("id")


def compile_workflow(wf: Workflow) -> CompiledGraph:
    """Check `wf` and flatten it; GraphError names what is wrong.

    Each step is one pass over the nodes or edges, with nothing made per node that a
    run does not keep: a 1,000,000-task workflow compiles in about a second."""
    if not wf.tasks:
        raise GraphError(f"workflow {wf.name!r} has no tasks")
    tasks: list[Task | None] = list(wf.tasks.values())
    ids = list(wf.tasks)
    index = dict(zip(wf.tasks, range(len(wf.tasks)), strict=True))  # task id -> node
    node_of = _Nodes(index, tasks)
    for g in wf.groups:
        node_of.groups[id(g)] = len(ids)
        ids.append(wf.group_name(g))
        tasks.append(None)
    n = len(ids)
    # each node's successors in edge order: None (none yet), a list, or a shared (c,)
    after: list[Any] = [None] * n
    for left, right in wf.links:
        _link(after, node_of[_last(left)], _heads(right, node_of))
    group_of, member_of, is_tail, infos = _groups(wf, ids, node_of, after)
    succs, npreds = _successors(after)
    order = _check_acyclic(ids, succs, npreds)
    is_task = list(map(is_not, tasks, repeat(None)))
    return CompiledGraph(
        workflow_name=wf.name,
        ids=tuple(ids),
        tasks=tuple(tasks),
        succs=succs,
        npreds=tuple(npreds),
        roots=tuple(i for i in compress(range(n), map(not_, npreds)) if is_task[i]),
        index=index,
        group_of=array("l", group_of),
        member_of=array("l", member_of),
        is_tail=bytes(is_tail),
        barrier_group={info.barrier: gi for gi, info in enumerate(infos)},
        groups=tuple(infos),
        sinks=_sinks(succs, is_task, order),
    )


class _Nodes:
    """The node of a task (found by its id: the workflow has one task per id) or of a
    group's barrier (by identity)."""

    __slots__ = ("groups", "index", "tasks")

    def __init__(self, index: dict[str, int], tasks: list[Task | None]) -> None:
        self.index = index
        self.tasks = tasks  # by node
        self.groups: dict[int, int] = {}

    def __getitem__(self, c: Any) -> int:
        return self.index[c.id] if isinstance(c, Task) else self.groups[id(c)]

    def of_tasks(self, tasks: list[Any]) -> Sequence[int]:
        """The nodes of `tasks`: a range when they are numbered in a row (a group's members
        usually are, being registered together), found without a lookup each."""
        if tasks:
            first = self.index[tasks[0].id]
            if self.tasks[first:first + len(tasks)] == tasks:  # compares identities
                return range(first, first + len(tasks))
        return list(map(self.index.__getitem__, map(_ID, tasks)))


def _heads(c: Component, node_of: _Nodes) -> list[int]:
    """The nodes a link into `c` leads to: its first task, or every member's heads."""
    node = _first(c)
    if isinstance(node, Task):
        return [node_of[node]]
    if set(map(type, node.members)) == {Task}:  # a group of tasks, the common case
        return list(node_of.of_tasks(node.members))
    out: list[int] = []
    for m in node.members:
        if type(m) is Task:
            out.append(node_of[m])
        else:
            out.extend(_heads(m, node_of))
    return out


def _groups(
    wf: Workflow, ids: list[str], node_of: _Nodes, after: list[Any]
) -> tuple[list[int], list[int], bytearray, list[GroupInfo]]:
    """Which group and member each node belongs to, each member's tail (flagged in
    `is_tail`, linked to its group's barrier in `after`), and the groups compiled."""
    n = len(ids)
    group_of = [-1] * n
    member_of = [-1] * n
    is_tail = bytearray(n)
    infos: list[GroupInfo] = []
    seen_names: set[str] = set()
    for gi, g in enumerate(wf.groups):
        barrier = node_of[g]
        name = ids[barrier]
        if name in seen_names or name in wf.tasks:
            raise GraphError(f"duplicate group name {name!r} in workflow {wf.name!r}")
        seen_names.add(name)
        only_tasks = set(map(type, g.members)) == {Task}
        if only_tasks:
            member_ids = tuple(map(_ID, g.members))
        else:
            member_ids = tuple(m.id if type(m) is Task else member_id(m, wf.auto_group_names) for m in g.members)
        _validate_policy(g, name, member_ids)
        nodes = _task_members(gi, g, node_of, group_of, member_of, is_tail, after) if only_tasks else None
        if nodes is not None:
            infos.append(GroupInfo(name, barrier, member_ids, nodes, g.policy, g.backend, g.backend_config))
            continue
        tails = []
        for mi, m in enumerate(g.members):
            items = (m,) if type(m) is Task or not isinstance(m, Chain) else m.items  # a nested group: its barrier
            for item in items:
                node = node_of[item]
                if group_of[node] != -1:
                    raise GraphError(
                        f"{ids[node]!r} is a member of two parallel groups "
                        f"({infos[group_of[node]].name if group_of[node] < gi else '?'} and {name})"
                    )
                group_of[node] = gi
                member_of[node] = mi
            tails.append(node)  # the member's last node
            is_tail[node] = 1
            _link(after, node, (barrier,))
        infos.append(GroupInfo(name, barrier, member_ids, tuple(tails), g.policy, g.backend, g.backend_config))
    return group_of, member_of, is_tail, infos


def _task_members(
    gi: int, g: ParallelGroup, node_of: _Nodes, group_of: list[int], member_of: list[int],
    is_tail: bytearray, after: list[Any],
) -> Sequence[int] | None:
    """Group `gi` of tasks only, in bulk: its members' nodes; None (nothing done) when
    one of them is in another group already (the general loop then says which)."""
    nodes = node_of.of_tasks(g.members)
    k = len(nodes)
    in_a_row = type(nodes) is range  # numbered in a row, as they usually are
    row = slice(nodes[0], nodes[0] + k)
    if (group_of[row].count(-1) != k) if in_a_row else (set(map(group_of.__getitem__, nodes)) != {-1}):
        return None
    barrier = node_of[g]
    if in_a_row:
        group_of[row] = repeat(gi, k)
        member_of[row] = range(k)
        is_tail[row] = b"\x01" * k
    else:
        for mi, node in enumerate(nodes):
            group_of[node] = gi
            member_of[node] = mi
            is_tail[node] = 1
    if in_a_row and after[row].count(None) == k:  # nothing after them yet: share (barrier,)
        after[row] = repeat((barrier,), k)
    else:
        for node in nodes:
            _link(after, node, (barrier,))
    return nodes


def _link(after: list[Any], a: int, heads: Sequence[int]) -> None:
    """Edges from `a` to each of `heads`, after those `a` has."""
    known = after[a]
    if known is None:
        after[a] = (heads[0],) if len(heads) == 1 else list(heads)
    elif type(known) is tuple:
        after[a] = [*known, *heads]
    else:
        known.extend(heads)


def _successors(after: list[Any]) -> tuple[tuple[tuple[int, ...], ...], list[int]]:
    """Each node's successors as a tuple (a link made twice counts once) and how many
    predecessors each node has."""
    n = len(after)
    for i in list(compress(range(n), map(isinstance, after, repeat(list)))):  # several successors
        s = after[i]
        after[i] = tuple(s if len(s) == len(set(s)) else dict.fromkeys(s))
    for i in list(compress(range(n), map(is_, after, repeat(None)))):
        after[i] = ()
    succs = tuple(after)
    count = Counter(chain.from_iterable(succs))
    return succs, list(map(count.get, range(n), repeat(0)))


def _validate_policy(g: ParallelGroup, name: str, ids: tuple[str, ...]) -> None:
    try:
        g.policy.validate(ids)
    except ValueError as exc:
        raise GraphError(f"group {name!r}: {exc}") from exc


def _check_acyclic(ids: list[str], succs: Sequence[Sequence[int]], npreds: list[int]) -> list[int]:
    """The nodes in a topological order (Kahn's algorithm); GraphError showing a cycle."""
    remaining = list(npreds)
    order = list(compress(range(len(ids)), map(not_, remaining)))
    done = 0
    while done < len(order):  # grows while it is walked
        ready = order[done:done + 4096]
        done += len(ready)
        if len(ready) < 64:
            for i in ready:
                for s in succs[i]:
                    remaining[s] -= 1
                    if remaining[s] == 0:
                        order.append(s)
            continue
        # many nodes at once (a group's members): their edges counted in C, so that a
        # million members leading to one barrier make one decrement, not a million
        for s, k in Counter(chain.from_iterable(map(succs.__getitem__, ready))).items():
            remaining[s] -= k
            if remaining[s] == 0:
                order.append(s)
    if len(order) == len(ids):
        return order
    cycle = _find_cycle(succs, {i for i, c in enumerate(remaining) if c > 0})
    path = " >> ".join(ids[i] for i in cycle)
    raise GraphError(f"the workflow has a cycle: {path}")


def _find_cycle(succs: Sequence[Sequence[int]], stuck: set[int]) -> list[int]:
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


def _sinks(succs: Sequence[Sequence[int]], is_task: list[bool], order: list[int]) -> tuple[int, ...]:
    """Tasks after which no other task can run (group barriers are see-through), found
    walking the topological `order` backwards."""
    leads = bytearray(len(is_task))  # 1: a task can run after this node
    for i in reversed(order):
        for s in succs[i]:
            if is_task[s] or leads[s]:
                leads[i] = 1
                break
    return tuple(i for i, t in enumerate(is_task) if t and not leads[i])


def _fingerprint(
    name: str, ids: Sequence[str], is_task: list[bool], succs: Sequence[Sequence[int]], infos: Sequence[GroupInfo]
) -> str:
    """A hash of the graph's shape: node ids and kinds, each node's successors' ids, the
    groups' members (what checkpoints are checked against, so it never changes form)."""
    after = [ids[s[0]] if len(s) == 1 else ",".join(sorted([ids[x] for x in s])) for s in succs]
    nodes = "".join(map("\n{}:{}->{}".format, map(("G", "T").__getitem__, is_task), ids, after))
    groups = "".join(f"\ngroup {g.name}: {','.join(g.member_ids)}" for g in infos)
    return hashlib.sha256(f"{name}{nodes}{groups}".encode()).hexdigest()[:32]

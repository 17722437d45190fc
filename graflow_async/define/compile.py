"""Compiling a workflow into the flat, index-based graph the run plan walks.

Nodes are tasks and group barriers, numbered 0..n-1. A barrier stands for the end of
a parallel group: its predecessors are the members' tails and its successors are
what follows the group. A barrier is not driven by counting predecessors like a
task; the plan finishes it when every member has finished and the group's
policy has accepted the outcome.
"""

from __future__ import annotations

import hashlib
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, attrgetter, is_not
from typing import Any, cast

from graflow_async.define.graph import Chain, Component, ParallelGroup, Workflow, _first, _last, member_id
from graflow_async.define.graph_order import sinks, topological_order, zeros
from graflow_async.define.policies import CoordinationBackend, GroupExecutionPolicy
from graflow_async.define.tasks import Task
from graflow_async.exceptions import GraphError


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
    nt = len(ids)  # tasks are nodes 0..nt-1, group barriers come after
    # task id -> node: the tasks' table copied (no growing, hashes known), values replaced
    index = cast("dict[str, int]", wf.tasks.copy())
    index.update(zip(ids, range(nt), strict=True))
    node_of = _Nodes(index, tasks)
    for g in wf.groups:
        node_of.groups[id(g)] = len(ids)
        ids.append(wf.group_name(g))
        tasks.append(None)
    edges = _Edges(len(ids))
    for left, right in wf.links:
        edges.link(node_of[_last(left)], _heads(right, node_of))
    group_of, member_of, is_tail, infos = _groups(wf, ids, node_of, edges)
    succs, npreds = edges.done()
    starts = zeros(npreds)  # the tasks that run first
    order = topological_order(ids, succs, npreds, starts)
    return CompiledGraph(
        workflow_name=wf.name,
        ids=tuple(ids),
        tasks=tuple(tasks),
        succs=succs,
        npreds=tuple(npreds),
        roots=tuple(starts[: bisect_left(starts, nt)]),  # (a barrier always waits for members)
        index=index,
        group_of=group_of,
        member_of=member_of,
        is_tail=bytes(is_tail),
        barrier_group={info.barrier: gi for gi, info in enumerate(infos)},
        groups=tuple(infos),
        sinks=sinks(succs, nt, order),
    )


class _Nodes:
    """The node of a task (found by its id: the workflow has one task per id) or of a
    group's barrier (by identity)."""

    __slots__ = ("groups", "index", "rows", "tasks")

    def __init__(self, index: dict[str, int], tasks: list[Task | None]) -> None:
        self.index = index
        self.tasks = tasks  # by node
        self.groups: dict[int, int] = {}
        self.rows: dict[int, Sequence[int] | None] = {}  # id of a group -> of_group(group)

    def of_group(self, g: ParallelGroup) -> Sequence[int] | None:
        """The nodes of the members of `g` when they are all tasks (the common case), else
        None; worked out once per group."""
        found = self.rows.get(id(g), ())
        if found == ():
            members = g.members
            found = self.rows[id(g)] = self.of_tasks(members) if set(map(type, members)) == {Task} else None
        return found

    def __getitem__(self, c: Any) -> int:
        return self.index[c.id] if isinstance(c, Task) else self.groups[id(c)]

    def of_tasks(self, tasks: list[Any]) -> Sequence[int]:
        """The nodes of `tasks`: a range when they are numbered in a row (a group's members
        usually are, being registered together), found without a lookup each."""
        if tasks:
            first = self.index[tasks[0].id]
            if self.tasks[first : first + len(tasks)] == tasks:  # compares identities
                return range(first, first + len(tasks))
        return list(map(self.index.__getitem__, map(_ID, tasks)))


def _heads(c: Component, node_of: _Nodes) -> Sequence[int]:
    """The nodes a link into `c` leads to: its first task, or every member's heads (a
    range when they are numbered in a row)."""
    node = _first(c)
    if isinstance(node, Task):
        return [node_of[node]]
    nodes = node_of.of_group(node)
    if nodes is not None:  # a group of tasks, the common case
        return nodes
    out: list[int] = []
    for m in node.members:
        if type(m) is Task:
            out.append(node_of[m])
        else:
            out.extend(_heads(m, node_of))
    return out


def _groups(
    wf: Workflow, ids: list[str], node_of: _Nodes, edges: _Edges
) -> tuple[array[int], array[int], bytearray, list[GroupInfo]]:
    """Which group and member each node belongs to, each member's tail (flagged in
    `is_tail`, linked to its group's barrier in `edges`), and the groups compiled."""
    n = len(ids)
    group_of = array("l", [-1]) * n
    member_of = array("l", [-1]) * n
    is_tail = bytearray(n)
    infos: list[GroupInfo] = []
    seen_names: set[str] = set()
    for gi, g in enumerate(wf.groups):
        barrier = node_of[g]
        name = ids[barrier]
        if name in seen_names or name in wf.tasks:
            raise GraphError(f"duplicate group name {name!r} in workflow {wf.name!r}")
        seen_names.add(name)
        nodes = node_of.of_group(g)
        if nodes is not None:  # tasks only
            member_ids = tuple([m.id for m in g.members])  # type: ignore[union-attr]
        else:
            member_ids = tuple(m.id if type(m) is Task else member_id(m, wf.auto_group_names) for m in g.members)
        _validate_policy(g, name, member_ids)
        if nodes is not None and _task_members(gi, barrier, nodes, group_of, member_of, is_tail, edges):
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
            edges.link(node, (barrier,))
        infos.append(GroupInfo(name, barrier, member_ids, tuple(tails), g.policy, g.backend, g.backend_config))
    return group_of, member_of, is_tail, infos


def _task_members(
    gi: int,
    barrier: int,
    nodes: Sequence[int],
    group_of: array[int],
    member_of: array[int],
    is_tail: bytearray,
    edges: _Edges,
) -> bool:
    """Group `gi` of tasks only (at `nodes`), in bulk; False (nothing done) when one of
    them is in another group already (the general loop then says which)."""
    k = len(nodes)
    in_a_row = type(nodes) is range  # numbered in a row, as they usually are
    row = slice(nodes[0], nodes[0] + k)
    if (group_of[row].count(-1) != k) if in_a_row else (set(map(group_of.__getitem__, nodes)) != {-1}):
        return False
    if in_a_row:
        group_of[row] = array("l", [gi]) * k
        member_of[row] = array("l", range(k))
        is_tail[row] = b"\x01" * k
    else:
        for mi, node in enumerate(nodes):
            group_of[node] = gi
            member_of[node] = mi
            is_tail[node] = 1
    after = edges.after
    if in_a_row and after[row].count(()) == k:  # nothing after them yet: share (barrier,)
        after[row] = repeat((barrier,), k)
        edges.npreds[barrier] += k
    else:
        for node in nodes:
            edges.link(node, (barrier,))
    return True


class _Edges:
    """Each node's successors in the order links add them, and how many predecessors
    each node has, counted as they are added (in bulk for a group's members)."""

    __slots__ = ("after", "npreds", "several")

    def __init__(self, n: int) -> None:
        # a node's successors: () (none yet), a tuple (perhaps shared), a range or a list
        self.after: list[Any] = [()] * n
        self.npreds = [0] * n
        self.several: set[int] = set()  # nodes whose successors are a range or a list

    def link(self, a: int, heads: Sequence[int]) -> None:
        """Edges from `a` to each of `heads`, after those `a` has."""
        after = self.after
        known = after[a]
        if not known:
            after[a] = (heads[0],) if len(heads) == 1 else heads if type(heads) is range else list(heads)
        elif type(known) is list:
            known.extend(heads)
        else:
            after[a] = [*known, *heads]
        if type(after[a]) is not tuple:
            self.several.add(a)
        npreds = self.npreds
        if type(heads) is range and len(heads) > 64:  # a group's members numbered in a row
            row = slice(heads.start, heads.stop)
            seg = npreds[row]
            npreds[row] = repeat(1, len(seg)) if seg.count(0) == len(seg) else map(add, seg, repeat(1))
        else:
            for h in heads:
                npreds[h] += 1

    def done(self) -> tuple[tuple[tuple[int, ...], ...], list[int]]:
        """Each node's successors as a tuple (a link made twice counts once) and how many
        predecessors each node has."""
        after, npreds = self.after, self.npreds
        for i in self.several:
            s = after[i]
            if type(s) is list and len(s) != len(set(s)):
                for h, k in Counter(s).items():
                    npreds[h] -= k - 1
                s = dict.fromkeys(s)
            after[i] = tuple(s)
        return tuple(after), npreds


def _validate_policy(g: ParallelGroup, name: str, ids: tuple[str, ...]) -> None:
    try:
        g.policy.validate(ids)
    except ValueError as exc:
        raise GraphError(f"group {name!r}: {exc}") from exc


def _fingerprint(
    name: str, ids: Sequence[str], is_task: list[bool], succs: Sequence[Sequence[int]], infos: Sequence[GroupInfo]
) -> str:
    """A hash of the graph's shape: node ids and kinds, each node's successors' ids, the
    groups' members (what checkpoints are checked against, so it never changes form)."""
    after = [ids[s[0]] if len(s) == 1 else ",".join(sorted([ids[x] for x in s])) for s in succs]
    nodes = "".join(map("\n{}:{}->{}".format, map(("G", "T").__getitem__, is_task), ids, after))
    groups = "".join(f"\ngroup {g.name}: {','.join(g.member_ids)}" for g in infos)
    return hashlib.sha256(f"{name}{nodes}{groups}".encode()).hexdigest()[:32]

"""Checking a checkpoint's plan state against the graph it is restored into.

A checkpoint records the run plan by node number (`plan.snapshot`): one status,
release flag, wait count and run count per node, and maps and lists of node numbers.
Each field is checked by the function `PLAN_FIELDS` names for it, against `Bounds`
(what the graph, with the tasks added at runtime replayed, allows): the right length,
node numbers of the graph (of a task where a task is meant), statuses among the known
ones, counts within what the run could have reached, no more entries than the graph
allows. Pure functions, no I/O; a bad field raises `CheckpointError` naming it. As in
`fields`, each item gets a cheap test first and only the item that fails is explained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import le
from typing import TYPE_CHECKING, Any

from graflow_async.exceptions import CheckpointError
from graflow_async.plan.doc_fields import (
    MAX_MESSAGE,
    count,
    each,
    flag,
    invalid,
    is_text,
    listed,
    number,
    pair,
    text,
    where,
)
from graflow_async.plan.state import DONE, FAILED, IDLE, QUEUED, STATUS_NAMES

if TYPE_CHECKING:
    from graflow_async.plan import RunPlan

__all__ = ["MAX_NODES", "PLAN_FIELDS", "Bounds", "check_added", "check_ids", "check_plan"]

MAX_NODES = 1 << 24  # nodes a restored run may have, tasks added at runtime included
_BARRIER_STATUSES = (IDLE, DONE, FAILED)  # a group's barrier is finished by its group, never run
_INF = float("inf")


@dataclass(frozen=True, slots=True)
class Bounds:
    """What the restored graph allows, for checking the plan state saved with it."""

    ids: Sequence[str]  # node -> id (a task's, or a group's name)
    known: frozenset[str]  # every id of `ids`
    is_task: bytes  # node -> 1 for a task, 0 for a group's barrier
    npreds: Sequence[int]  # node -> predecessors in the graph
    caps: Sequence[int]  # node -> runs it may have (its max_cycles); 0 for a barrier
    members: tuple[int, ...]  # group -> its member count
    barriers: tuple[int, ...]  # group -> its barrier node
    slack: int  # additions replayed: each may hold a successor or a group member once more

    @classmethod
    def of(cls, plan: RunPlan, additions: int) -> Bounds:
        graph, default = plan.graph, plan.max_cycles
        is_task = bytes(t is not None for t in graph.tasks)
        caps = [0 if t is None else t.max_cycles or default for t in graph.tasks]
        members = tuple(len(g.member_ids) for g in graph.groups)
        barriers = tuple(g.barrier for g in graph.groups)
        return cls(graph.ids, frozenset(graph.ids), is_task, graph.npreds, caps, members, barriers, additions)

    @property
    def nodes(self) -> int:
        return len(self.ids)

    def entries(self, per: int) -> int:
        """How many entries a list may hold when each addition adds at most `per`."""
        return per * (self.slack + 1)

    def is_node(self, value: Any) -> bool:
        return type(value) is int and 0 <= value < len(self.ids)

    def is_task_node(self, value: Any) -> bool:
        return type(value) is int and 0 <= value < len(self.ids) and self.is_task[value] == 1

    def node(self, value: Any, path: str) -> int:
        return count(value, path, high=self.nodes - 1, what=f" naming one of the run's {self.nodes} nodes")

    def task(self, value: Any, path: str) -> int:
        node = self.node(value, path)
        if not self.is_task[node]:
            raise invalid(path, f"the node of a task (node {node} is group {self.ids[node]!r})", value)
        return node


# --- per-node arrays -------------------------------------------------------------------------
def _per_node(value: Any, path: str, bounds: Bounds, kind: type[bytes] | type[list[Any]]) -> Any:
    if not isinstance(value, kind):
        raise invalid(path, f"a {kind.__name__} with one item per node", value)
    if len(value) != bounds.nodes:
        raise CheckpointError(
            f"checkpoint field '{path}' must hold {bounds.nodes} items (one per node of the run), got {len(value)}"
        )
    return value


def _statuses(value: Any, path: str, bounds: Bounds) -> bytes:
    if max(_per_node(value, path, bounds, bytes), default=0) >= len(STATUS_NAMES):
        node = next(n for n, status in enumerate(value) if status >= len(STATUS_NAMES))
        raise invalid(where(path, node), f"a status ({', '.join(STATUS_NAMES)})", value[node])
    for node in bounds.barriers:
        if value[node] not in _BARRIER_STATUSES:
            raise invalid(
                where(path, node),
                f"idle, done or failed (node {node} is the barrier of group {bounds.ids[node]!r})",
                STATUS_NAMES[value[node]],
            )
    return bytes(value)


def _released(value: Any, path: str, bounds: Bounds) -> bytes:
    if max(_per_node(value, path, bounds, bytes), default=0) > 1:
        node = next(n for n, released in enumerate(value) if released > 1)
        raise invalid(where(path, node), "0 or 1", value[node])
    return bytes(value)


def _within(values: list[Any], highs: Sequence[int]) -> bool:
    """Whether every value is an int from 0 to its high, tested without a Python call per item."""
    return not values or (set(map(type, values)) == {int} and min(values) >= 0 and all(map(le, values, highs)))


def _remaining(value: Any, path: str, bounds: Bounds) -> list[int]:
    npreds, slack = bounds.npreds, bounds.slack
    values = _per_node(value, path, bounds, list)
    if not _within(values, [n + slack for n in npreds]):
        for node, n in enumerate(values):
            count(
                n,
                where(path, node),
                high=npreds[node] + slack,
                what=f" (node {node} has {npreds[node]} predecessor(s), and {slack} addition(s))",
            )
    return values


def _runs(value: Any, path: str, bounds: Bounds) -> list[int]:
    values = _per_node(value, path, bounds, list)
    if not _within(values, bounds.caps):
        for node, n in enumerate(values):
            count(n, where(path, node), high=bounds.caps[node], what=f" within max_cycles of {bounds.ids[node]!r}")
    return values


# --- maps and lists of nodes -------------------------------------------------------------------
def _node_map(value: Any, path: str, bounds: Bounds, tasks_only: bool) -> dict[int, Any]:
    """``[[node, item], ...]`` as a map, each node (a task's, with `tasks_only`) once."""
    ok = bounds.is_task_node if tasks_only else bounds.is_node
    items: dict[int, Any] = {}
    for i, entry in enumerate(listed(value, path, limit=bounds.nodes, why=" (one per node at most)")):
        if type(entry) is list and len(entry) == 2 and ok(entry[0]) and entry[0] not in items:
            items[entry[0]] = entry[1]
            continue
        at = where(path, i)
        node = pair(entry, at)[0]
        (bounds.task if tasks_only else bounds.node)(node, where(at, 0))
        raise invalid(where(at, 0), "a node not listed before", node)
    return items


def _task_list(value: Any, path: str, bounds: Bounds, limit: int) -> list[int]:
    each(listed(value, path, limit=limit), path, bounds.is_task_node, bounds.task)
    return value


def _holds(value: Any, path: str, bounds: Bounds) -> dict[int, list[int]]:
    holds = _node_map(value, path, bounds, tasks_only=False)
    for i, held in enumerate(holds.values()):
        _task_list(held, where(where(path, i), 1), bounds, bounds.entries(bounds.nodes))
    return holds


def _end_holds(value: Any, path: str, bounds: Bounds) -> dict[int, list[tuple[int, int]]]:
    ends = _node_map(value, path, bounds, tasks_only=False)
    limit, members = bounds.entries(sum(bounds.members)), bounds.members

    def ok(end: Any) -> bool:
        return (
            type(end) is list
            and len(end) == 2
            and type(end[0]) is int
            and 0 <= end[0] < len(members)
            and type(end[1]) is int
            and 0 <= end[1] < members[end[0]]
        )

    out = {}
    for i, (node, held) in enumerate(ends.items()):
        at = where(where(path, i), 1)
        each(listed(held, at, limit=limit), at, ok, lambda end, p: _member(end, p, bounds))
        out[node] = [(g, m) for g, m in held]
    return out


def _member(value: Any, path: str, bounds: Bounds) -> None:
    group, member = pair(value, path)
    group = count(group, where(path, 0), high=len(bounds.members) - 1, what=" naming a group of the run")
    count(member, where(path, 1), high=bounds.members[group] - 1, what=f" naming a member of group {group}")


def _iter_data(value: Any, path: str, bounds: Bounds) -> dict[int, Any]:
    return _node_map(value, path, bounds, tasks_only=True)


def _again(value: Any, path: str, bounds: Bounds) -> list[int]:
    nodes = _task_list(value, path, bounds, bounds.nodes)
    if len(set(nodes)) != len(nodes):
        raise invalid(path, "a list of distinct nodes", value)
    return nodes


def _skip_roots(value: Any, path: str, bounds: Bounds) -> list[int]:
    each(listed(value, path, limit=bounds.entries(bounds.nodes)), path, bounds.is_node, bounds.node)
    return value


# --- groups --------------------------------------------------------------------------------------
def _groups(value: Any, path: str, bounds: Bounds) -> list[tuple[list[int], list[Any], list[Any]]]:
    groups = listed(value, path, length=len(bounds.members), why=" (one per group of the run)")
    return [_group(state, where(path, g), bounds.members[g], bounds) for g, state in enumerate(groups)]


def _group(value: Any, path: str, members: int, bounds: Bounds) -> tuple[list[int], list[Any], list[Any]]:
    """``[hold per member, results of finished members, busy seconds per member]``"""
    hold, results, busy = listed(value, path, length=3, why=" (hold, results, busy)")
    high = 1 + bounds.slack
    if not _within(listed(hold, f"{path}[0]", length=members, why=" (one per member)"), [high] * members):
        each(hold, f"{path}[0]", lambda h: type(h) is int and 0 <= h <= high, lambda h, p: count(h, p, high=high))
    seen: set[int] = set()
    each(
        listed(results, f"{path}[1]", limit=members),
        f"{path}[1]",
        lambda r: _result_ok(r, members, bounds.known, seen),
        lambda r, p: _result(r, p, members, bounds, seen),
    )
    seen.clear()
    each(
        listed(busy, f"{path}[2]", limit=members),
        f"{path}[2]",
        lambda b: _busy_ok(b, members, seen),
        lambda b, p: _busy(b, p, members, seen),
    )
    return hold, results, busy


def _result_ok(entry: Any, members: int, known: frozenset[str], seen: set[int]) -> bool:
    """``[member, task id, ok, duration, None | [error type, message]]``, cheaply."""
    if type(entry) is not list or len(entry) != 5:
        return False
    m, task_id, ok, duration, error = entry
    if type(m) is not int or not 0 <= m < members or m in seen or not is_text(task_id) or task_id not in known:
        return False
    if not _is_seconds(duration):
        return False
    if (ok is True and error is None) or (ok is False and _is_error(error)):
        seen.add(m)
        return True
    return False


def _is_error(error: Any) -> bool:
    """``[type name, message]``, or a map: an error document (`error_docs`), read as it is restored."""
    return type(error) is dict or (
        type(error) is list
        and len(error) == 2
        and is_text(error[0])
        and type(error[1]) is str
        and len(error[1]) <= MAX_MESSAGE
    )


def _result(entry: Any, path: str, members: int, bounds: Bounds, seen: set[int]) -> None:
    m, task_id, ok, duration, error = listed(entry, path, length=5)
    _distinct(count(m, where(path, 0), high=members - 1, what=" naming a member"), seen, where(path, 0))
    if text(task_id, where(path, 1)) not in bounds.known:
        raise invalid(where(path, 1), "the id of a task or group of the run", task_id)
    number(duration, where(path, 3))
    if flag(ok, where(path, 2)):
        if error is not None:
            raise invalid(where(path, 4), "nil for a member that succeeded", error)
    elif type(error) is not dict:
        kind, message = pair(error, where(path, 4))
        text(kind, where(where(path, 4), 0))
        if not isinstance(message, str) or len(message) > MAX_MESSAGE:
            raise invalid(where(where(path, 4), 1), f"a string of at most {MAX_MESSAGE} characters", message)


def _is_seconds(value: Any) -> bool:
    return (type(value) is float or type(value) is int) and 0 <= value < _INF


def _busy_ok(entry: Any, members: int, seen: set[int]) -> bool:
    """``[member, seconds its tasks ran]``, cheaply."""
    if (
        type(entry) is list
        and len(entry) == 2
        and type(entry[0]) is int
        and 0 <= entry[0] < members
        and entry[0] not in seen
        and _is_seconds(entry[1])
    ):
        seen.add(entry[0])
        return True
    return False


def _busy(entry: Any, path: str, members: int, seen: set[int]) -> None:
    m, seconds = pair(entry, path)
    _distinct(count(m, where(path, 0), high=members - 1, what=" naming a member"), seen, where(path, 0))
    number(seconds, where(path, 1))


def _distinct(value: int, seen: set[int], path: str) -> int:
    if value in seen:
        raise invalid(path, "a member not listed before", value)
    return value


#: field of the plan state -> its check, which returns the value to restore
PLAN_FIELDS: dict[str, Callable[[Any, str, Bounds], Any]] = {
    "status": _statuses,
    "released": _released,
    "remaining": _remaining,
    "runs": _runs,
    "holds": _holds,
    "end_holds": _end_holds,
    "groups": _groups,
    "iter_data": _iter_data,
    "again": _again,
    "skip_roots": _skip_roots,
}


def check_added(state: dict[str, Any]) -> list[tuple[int, bool, Any]]:
    """The tasks added at runtime, ``[[adding node, goto, spec], ...]``, by shape; the
    node and the spec are checked as they are replayed (`snapshot`)."""
    if "added" not in state:
        raise CheckpointError("checkpoint field 'plan.added' is missing")
    out = []
    for i, entry in enumerate(listed(state["added"], "plan.added")):
        at = where("plan.added", i)
        by, goto, spec = listed(entry, at, length=3, why=" (adding node, goto, spec)")
        out.append((count(by, where(at, 0)), flag(goto, where(at, 1)), spec))
    return out


def check_plan(state: dict[str, Any], bounds: Bounds) -> dict[str, Any]:
    """Every field of `state` checked against `bounds`, as the values to restore (but
    ``live``, a journal snapshot's, checked by `plan.live` when it is used)."""
    unknown = sorted(set(state) - set(PLAN_FIELDS) - {"added", "live"}, key=str)
    if unknown:
        raise CheckpointError(
            f"checkpoint field 'plan.{unknown[0]}' is not one this release writes "
            f"(fields: added, {', '.join(PLAN_FIELDS)}, live)"
        )
    out = {}
    for name, check in PLAN_FIELDS.items():
        if name not in state:
            raise CheckpointError(f"checkpoint field 'plan.{name}' is missing")
        out[name] = check(state[name], f"plan.{name}", bounds)
    _check_runs_started(out["status"], out["runs"], bounds)
    return out


def _check_runs_started(status: bytes, runs: list[int], bounds: Bounds) -> None:
    """A task that is running, waiting, done or failed has started a run."""
    for node, s in enumerate(status):
        if s > QUEUED and runs[node] < 1 and bounds.is_task[node]:
            raise invalid(
                f"plan.runs[{node}]", f"at least 1 (task {bounds.ids[node]!r} is {STATUS_NAMES[s]})", runs[node]
            )


def check_ids(doc: dict[str, Any], tasks: set[str], groups: set[str]) -> None:
    """The ids the document names outside the plan state are those of tasks (`tasks`)
    and groups (`groups`) of the run."""
    for name in ("results", "attempts"):
        ids = doc.get(name) or {}
        if not tasks.issuperset(ids):
            key = next(k for k in ids if k not in tasks)
            raise invalid(where(name, key), "the id of a task of the run", key)
    for name, known, kind in (
        ("completed", tasks, "task"),
        ("pending", tasks, "task"),
        ("groups_done", groups, "group"),
    ):
        items = doc.get(name) or ()
        if not known.issuperset(items):
            i = next(i for i, item in enumerate(items) if item not in known)
            raise invalid(where(name, i), f"the id of a {kind} of the run", items[i])
    task_id = doc.get("task_id")
    if task_id is not None and task_id not in tasks:
        raise invalid("task_id", "the id of a task of the run", task_id)

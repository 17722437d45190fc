"""What a journal snapshot keeps beyond a checkpoint: the work under way, as it is.

A checkpoint runs again whatever was under way when it was taken (`snapshot._requeue`).
A durable run compacts its journal into the same document (SPEC 10), and there the
document must *be* the plan the journal's facts built: the facts journaled after it
(the reply of an attempt that was running, a retry coming due) apply to it as they would
have to the plan they came from, and `RunPlan.in_flight` sends again the same attempts.
So `to_doc(..., keep_running=True)` adds ``plan.live``, and keeps the failed members of
unfinished groups (with their errors, `plan.error_docs`) in ``plan.groups``:

    attempts    [int, ...]        per node: the attempt of its current (or last) run
    retrying    [node, ...]       nodes whose next dispatch is their next attempt, same cycle
    ready       [node, ...]       queued nodes, in the order they will be dispatched
    suspended   [node, ...]       nodes that stopped to wait for an answer, in that order
    inflight    int               attempts running and retries pending, as the plan counts them
    terminated  str | None        the reason a task gave to end the run early
    failure     error | None      why the run failed (an error document)

Running, retrying and suspended nodes keep their status and run (cycle) from the
checkpoint's own fields. The actions a plan handed out and nobody took yet are not
state: a snapshot is taken between turns, once the run has carried out its actions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graflow_async.exceptions import CheckpointError
from graflow_async.plan.doc_fields import MAX_COUNT, MAX_MESSAGE, count, invalid, listed, mapping, where
from graflow_async.plan.error_docs import error_doc, error_from_doc
from graflow_async.plan.state import QUEUED, RETRY, RUNNING, STATUS_NAMES, SUSPENDED

if TYPE_CHECKING:
    from graflow_async.plan import RunPlan
    from graflow_async.plan.state_fields import Bounds

__all__ = ["LIVE_FIELDS", "check_live", "live_state", "restore_live"]

LIVE_FIELDS = ("attempts", "retrying", "ready", "suspended", "inflight", "terminated", "failure")


def live_state(plan: RunPlan) -> dict[str, Any]:
    """`plan.live` of a journal snapshot of `plan`."""
    return {
        "attempts": list(plan.attempts),
        "retrying": sorted(plan.retrying),
        "ready": list(plan.ready),
        "suspended": list(plan.suspended),
        "inflight": plan.inflight,
        "terminated": plan.terminated,
        "failure": None if plan.failure is None else error_doc(plan.failure),
    }


def restore_live(plan: RunPlan, live: dict[str, Any]) -> None:
    """Put `live` (checked by `check_live`) into `plan`, whose statuses are restored."""
    plan.attempts[:] = live["attempts"]
    plan.retrying.update(live["retrying"])
    plan.ready.extend(live["ready"])
    plan.suspended.extend(live["suspended"])
    plan.terminated = live["terminated"]
    plan.failure = live["failure"]
    plan.inflight = live["inflight"]


def check_live(value: Any, bounds: Bounds, status: bytes) -> dict[str, Any]:
    """`plan.live` checked against the graph (`bounds`) and the restored statuses, as the
    values to restore; CheckpointError naming the first field that does not fit."""
    live = _fields(value)
    terminated, failure = live["terminated"], live["failure"]
    if terminated is not None and (type(terminated) is not str or len(terminated) > MAX_MESSAGE):
        raise invalid("plan.live.terminated", f"nil or a string of at most {MAX_MESSAGE} characters", terminated)
    return {
        "attempts": _attempts(live["attempts"], bounds, status),
        "retrying": _nodes(live["retrying"], "retrying", bounds, status, (RETRY, QUEUED), every=RETRY),
        "ready": _nodes(live["ready"], "ready", bounds, status, (QUEUED,)),
        "suspended": _nodes(live["suspended"], "suspended", bounds, status, (SUSPENDED, QUEUED), every=SUSPENDED),
        "inflight": _inflight(live["inflight"], status, failed=failure is not None),
        "terminated": terminated,
        "failure": None if failure is None else error_from_doc(failure, "plan.live.failure"),
    }


def _fields(value: Any) -> dict[str, Any]:
    """`plan.live` as a map of its fields, each there once, none other."""
    if value is None:
        raise CheckpointError(
            "checkpoint field 'plan.live' is missing: this document is a checkpoint, which runs again what was "
            "under way, not a journal snapshot, which keeps it"
        )
    live = mapping(value, "plan.live")
    unknown = sorted(set(live) - set(LIVE_FIELDS), key=str)
    if unknown:
        raise CheckpointError(
            f"checkpoint field 'plan.live.{unknown[0]}' is not one this release writes "
            f"(fields: {', '.join(LIVE_FIELDS)})"
        )
    missing = [name for name in LIVE_FIELDS if name not in live]
    if missing:
        raise CheckpointError(f"checkpoint field 'plan.live.{missing[0]}' is missing")
    return live


def _inflight(value: Any, status: bytes, *, failed: bool) -> int:
    """The tasks running or waiting to retry; fewer once the run has failed (a task that
    failed the run stays running, and a duplicate of its reply counts it out again)."""
    under_way = status.count(RUNNING) + status.count(RETRY)
    if failed:
        return count(value, "plan.live.inflight", low=-MAX_COUNT, high=under_way, what=" (a failed run's count)")
    return count(value, "plan.live.inflight", low=under_way, high=under_way, what=" (the tasks running or retrying)")


def _attempts(value: Any, bounds: Bounds, status: bytes) -> list[int]:
    """One count per node; at least 1 for a node running or waiting to retry."""
    path = "plan.live.attempts"
    values = listed(value, path, length=bounds.nodes, why=" (one per node of the run)")
    if values and not (set(map(type, values)) == {int} and min(values) >= 0 and max(values) <= MAX_COUNT):
        for node, n in enumerate(values):
            count(n, where(path, node))
    if values and min(values) < 1:
        for node, s in enumerate(status):
            if (s == RUNNING or s == RETRY) and values[node] < 1:
                raise invalid(where(path, node), f"at least 1 (task {bounds.ids[node]!r} is {STATUS_NAMES[s]})", 0)
    return values


def _nodes(
    value: Any, name: str, bounds: Bounds, status: bytes, allowed: tuple[int, ...], every: int | None = None
) -> list[int]:
    """`plan.live.<name>`: distinct task nodes, each with one of the `allowed` statuses,
    listing every node whose status is `every`."""
    path = f"plan.live.{name}"
    nodes = listed(value, path, limit=bounds.nodes)
    seen: set[int] = set()
    for i, node in enumerate(nodes):
        if bounds.is_task_node(node) and node not in seen and status[node] in allowed:
            seen.add(node)
            continue
        at = where(path, i)
        bounds.task(node, at)
        if node in seen:
            raise invalid(at, "a node not listed before", node)
        names = " or ".join(STATUS_NAMES[s] for s in allowed)
        raise invalid(at, f"a task that is {names} (task {bounds.ids[node]!r} is {STATUS_NAMES[status[node]]})", node)
    if every is not None and status.count(every) != sum(status[n] == every for n in seen):
        node = next(n for n, s in enumerate(status) if s == every and n not in seen)
        raise CheckpointError(
            f"checkpoint field '{path}' must list every task that is {STATUS_NAMES[every]}: "
            f"{bounds.ids[node]!r} (node {node}) is not listed"
        )
    return nodes

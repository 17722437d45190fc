"""What the web app knows of a run, as plain values: who owns a running run and whether
that owner is gone (`effective_status`), the task summaries built from events
(`apply_event`), and `LiveRun`, the in-memory state of a run this process drives or
drove (its events, for ``/events`` subscribers, stay in memory only).

Owners: each app process (each `RunManager`) has an `Owner`: a random instance id, the
process id, and a host identity made of the host name, the boot id and the pid
namespace, so that a process id is only compared with those of the same kernel and
namespace. A running record carries its owner and a lease (`LEASE_SECONDS`), renewed
while the run lives. Another process reports the run `interrupted` once the lease has
lapsed, or at once when the owner shares its host identity and its process is gone.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graflow_async.define.graph import Workflow
from graflow_async.events import Event
from graflow_async.records.base import (
    CANCELLED,
    FAILED,
    INTERRUPTED,
    MAX_ERROR,
    MAX_ID,
    MAX_TASKS,
    RUNNING,
    SUSPENDED,
    bounded_results,
)
from graflow_async.records.owners import host_identity, pid_alive
from graflow_async.wire.messages import StreamItem

LEASE_SECONDS = 15.0  # how long a running record's owner vouches for it; renewed every third of it
MAX_EVENTS = 10_000  # events kept per run for /events subscribers


@dataclass(frozen=True, slots=True)
class Owner:
    """The app process that drives a run."""

    instance: str
    host: str
    pid: int

    @classmethod
    def this_process(cls) -> Owner:
        return cls(uuid.uuid4().hex, host_identity(), os.getpid())

    def to_dict(self) -> dict[str, Any]:
        return {"instance": self.instance, "host": self.host, "pid": self.pid}

    def owns(self, record: Mapping[str, Any]) -> bool:
        owner = record.get("owner")
        return isinstance(owner, dict) and owner.get("instance") == self.instance


def effective_status(
    record: Mapping[str, Any], me: Owner, *, driving: bool, now: float, alive: Callable[[int], bool] = pid_alive
) -> str:
    """The status to report for `record`: its own, except that a running run whose owner
    is gone is `interrupted`, unless it is a durable run on Redis, which waits (running,
    owner null: `owner_of`) for a worker or `serve` to adopt it. `driving`: whether this
    process runs it now."""
    status: str = record["status"]
    if status != RUNNING or driving:
        return status
    if owner_of(record, me, now=now, alive=alive) is not None:
        return RUNNING
    return RUNNING if record.get("adoptable") else INTERRUPTED


def owner_of(
    record: Mapping[str, Any], me: Owner, *, now: float, alive: Callable[[int], bool] = pid_alive
) -> dict[str, Any] | None:
    """The owner of running `record` while it vouches for it (its lease is live and, on
    this host, its process lives); None once it is gone."""
    owner = record.get("owner")
    if not isinstance(owner, dict) or (owner.get("instance") == me.instance and not record.get("durable")):
        return None  # ours, but no longer run here (or nobody's)
    lease = record.get("lease_until")
    if lease is None or lease < now:
        return None
    if owner.get("host") == me.host and not alive(int(owner.get("pid", 0))):
        return None
    return owner


# --- task summaries -----------------------------------------------------------------------------
def _task(tasks: dict[str, dict[str, Any]], task_id: str) -> dict[str, Any] | None:
    """The summary of `task_id`, made pending if new; None past `MAX_TASKS` tasks or for
    an id longer than a record keeps (such tasks are not summarized)."""
    summary = tasks.get(task_id)
    if summary is None and len(tasks) < MAX_TASKS and len(task_id) <= MAX_ID:
        summary = tasks[task_id] = {
            "state": "pending",
            "attempts": 0,
            "started_at": None,
            "ended_at": None,
            "duration": None,
        }
    return summary


def apply_event(
    tasks: dict[str, dict[str, Any]], kind: str, task_id: str | None, at: float, data: Mapping[str, Any]
) -> None:
    """Update the task summaries `tasks` with one event of the run."""
    if kind in ("run_failed", "run_cancelled"):
        for each in tasks.values():
            if each["state"] in ("throttled", "running", "retrying", "waiting"):  # stopped with the run
                each.update(state="cancelled", ended_at=at)
        return
    summary = _task(tasks, task_id) if task_id else None
    if summary is None:
        return
    if kind == "task_started":
        attempt = data.get("attempt")
        attempts = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else summary["attempts"] + 1
        summary.update(state="running", attempts=attempts, started_at=at, ended_at=None, duration=None)
    elif kind == "task_retrying":
        summary["state"] = "retrying"
    elif kind == "task_throttled":  # waiting for its limits (SPEC 11)
        summary["state"] = "throttled"
    elif kind == "task_admitted" and summary["state"] == "throttled":
        summary["state"] = "running"
    elif kind == "feedback_requested":
        summary["state"] = "waiting"
    elif kind == "feedback_answered" and summary["state"] == "waiting":
        summary["state"] = "running"
    elif kind in ("task_completed", "task_failed"):
        duration = data.get("duration")
        if not isinstance(duration, int | float) or isinstance(duration, bool):
            duration = at - summary["started_at"] if summary["started_at"] is not None else None
        summary.update(state="done" if kind == "task_completed" else "failed", ended_at=at, duration=duration)


def stream_event(run_id: str, item: StreamItem) -> dict[str, Any]:
    """A chunk a task streamed, as an event of its run (SSE: ``{task_id, attempt, data}``)."""
    data = {"task_id": item.task_id, "attempt": item.attempt, "data": item.data}
    if item.missed:
        data["missed"] = item.missed
    return {"kind": "stream", "run_id": run_id, "task_id": item.task_id, "data": data}


def initial_tasks(workflow: Workflow | None) -> dict[str, dict[str, Any]]:
    """Every task of `workflow`, pending."""
    tasks: dict[str, dict[str, Any]] = {}
    for task in workflow or ():
        _task(tasks, task.id)
    return tasks


# --- a run this process drives ---------------------------------------------------------------------
class LiveRun:
    """A run this process drives or drove: its summary and events. Followers wait on
    `wake`, set on every change. `task` is the task driving it, while it runs here."""

    def __init__(
        self,
        run_id: str,
        workflow: str,
        workflow_name: str,
        *,
        started_at: float | None = None,
        tasks: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.workflow_name = workflow_name
        self.status = RUNNING
        self.started_at = time.time() if started_at is None else started_at
        self.ended_at: float | None = None
        self.results: dict[str, Any] = {}
        self.error: str | None = None
        self.checkpoint: str | None = None
        self.pending: list[str] = []
        self.tasks = tasks if tasks is not None else {}
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.stream_after: str | None = None  # the last streamed item among its events
        self.total = 0  # events ever added; the newest has sequence number `total`
        self.task: asyncio.Task[None] | None = None
        self.cancel_reason: str | None = None
        self.counted = False  # in the app's metrics of runs in flight
        self._wake = asyncio.Event()

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LiveRun:
        live = cls(
            record["run_id"],
            record["workflow"],
            record["workflow_name"],
            started_at=record["started_at"],
            tasks={k: dict(v) for k, v in record.get("tasks", {}).items()},
        )
        live.status, live.ended_at, live.error = record["status"], record.get("ended_at"), record.get("error")
        live.results = dict(record.get("results") or {})
        live.checkpoint = record.get("checkpoint")
        return live

    @property
    def active(self) -> bool:
        """Whether a task of this process runs it now."""
        return self.task is not None and not self.task.done()

    @property
    def wake(self) -> asyncio.Event:
        return self._wake

    def pulse(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    def add_event(self, event: Event) -> None:
        self.events.append(
            {
                "kind": event.kind,
                "run_id": event.run_id,
                "task_id": event.task_id,
                "timestamp": event.timestamp,
                "data": dict(event.data),
            }
        )
        self.total += 1
        apply_event(self.tasks, event.kind, event.task_id, event.timestamp, event.data)
        feedback_id = event.data.get("feedback_id")
        if event.kind == "feedback_requested" and isinstance(feedback_id, str):
            self.pending.append(feedback_id)
        elif event.kind == "feedback_answered" and feedback_id in self.pending:
            self.pending.remove(feedback_id)
        self.pulse()

    def add_stream_item(self, item: StreamItem) -> None:
        """A chunk a task streamed (SPEC 12): among the run's events, as kind ``stream``."""
        self.events.append(stream_event(self.run_id, item))
        self.stream_after = item.id
        self.total += 1
        self.pulse()

    def since(self, seen: int) -> list[tuple[int, dict[str, Any]]]:
        """Events with sequence numbers after `seen` that are still kept."""
        first = self.total - len(self.events) + 1
        skip = max(seen + 1 - first, 0)
        return list(zip(itertools.count(first + skip), itertools.islice(self.events, skip, None), strict=False))

    def restart(self) -> None:
        self.status, self.error, self.checkpoint, self.ended_at, self.cancel_reason = RUNNING, None, None, None, None
        self.pending = []
        self.pulse()

    def finish(
        self,
        status: str,
        *,
        results: Mapping[str, Any] | None = None,
        checkpoint: str | None = None,
        pending: list[str] | None = None,
        error: str | None = None,
    ) -> None:
        self.status, self.error, self.ended_at = status, error, None if status == SUSPENDED else time.time()
        if results is not None:
            self.results = dict(results)
        self.checkpoint = checkpoint
        self.pending = list(pending or [])
        if status in (FAILED, CANCELLED):
            apply_event(self.tasks, "run_failed" if status == FAILED else "run_cancelled", None, time.time(), {})
        self.pulse()

    def to_record(self, owner: Owner, *, now: float | None = None) -> dict[str, Any]:
        """The durable summary (a run record, see `graflow_async.records`), owned by `owner`."""
        now = time.time() if now is None else now
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "workflow_name": self.workflow_name,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "updated_at": now,
            "error": None if self.error is None else self.error[:MAX_ERROR],
            "results": bounded_results(self.results),
            "checkpoint": self.checkpoint,
            "pending_feedback": self.pending[-1000:],
            "tasks": self.tasks,
            "owner": owner.to_dict(),
            "lease_until": now + LEASE_SECONDS if self.status == RUNNING else None,
        }

"""Typed run events, delivered to ``run(on_event=...)`` and logged through structlog.

Every event has ``kind``, ``run_id``, ``task_id`` (None for run-level events) and
``timestamp`` (seconds since the epoch), plus the facts of its kind in ``data``.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal[
    "run_started", "run_completed", "run_failed", "run_suspended",
    "task_started", "task_completed", "task_failed", "task_retrying",
    "group_finished", "feedback_requested", "feedback_answered", "checkpoint_saved", "task_added",
]

# The structlog level each kind is logged at.
LEVELS: dict[str, int] = {
    "run_started": logging.INFO,
    "run_completed": logging.INFO,
    "run_failed": logging.ERROR,
    "run_suspended": logging.INFO,
    "task_started": logging.DEBUG,
    "task_completed": logging.DEBUG,
    "task_failed": logging.WARNING,
    "task_retrying": logging.WARNING,
    "group_finished": logging.INFO,
    "feedback_requested": logging.INFO,
    "feedback_answered": logging.INFO,
    "checkpoint_saved": logging.INFO,
    "task_added": logging.INFO,
}
_METHODS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error"}


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened in a run."""

    kind: EventKind
    run_id: str
    task_id: str | None = None
    timestamp: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:  # event.attempt, event.error, ...
        try:
            return object.__getattribute__(self, "data")[name]
        except KeyError:
            raise AttributeError(name) from None


class Emitter:
    """Sends a run's events to its logger at once and to its `on_event` callback in order.

    `record` is synchronous so the run supervisor can note events while it decides;
    `flush` delivers the noted events to the callback (awaiting it if it is async).
    """

    __slots__ = ("_pending", "callback", "log", "run_id", "wants_steps")

    def __init__(self, run_id: str, callback: Callable[[Event], Any] | None, log: Any) -> None:
        self.run_id = run_id
        self.callback = callback
        self.log = log
        self._pending: list[Event] = []
        #: whether anyone hears per-task events (a callback, or a logger at DEBUG);
        #: the supervisor skips recording them otherwise, on the hot path
        self.wants_steps = callback is not None or _enabled(log, logging.DEBUG)

    def record(self, kind: EventKind, task_id: str | None = None, **data: Any) -> None:
        getattr(self.log, _METHODS[LEVELS[kind]])(kind, task_id=task_id, **data)
        if self.callback is not None:
            self._pending.append(Event(kind, self.run_id, task_id, time.time(), data))

    async def flush(self) -> None:
        callback = self.callback
        if callback is None or not self._pending:
            return
        events, self._pending = self._pending, []
        for event in events:
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # a broken listener must not break the run
                self.log.error("on_event callback failed", event_kind=event.kind, error=repr(exc))

    async def emit(self, kind: EventKind, task_id: str | None = None, **data: Any) -> None:
        self.record(kind, task_id, **data)
        await self.flush()


def _enabled(log: Any, level: int) -> bool:
    check = getattr(log, "is_enabled_for", None) or getattr(log, "isEnabledFor", None)
    if check is None:
        return True  # cannot tell: assume it listens
    try:
        return bool(check(level))
    except Exception:
        return True

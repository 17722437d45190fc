"""Typed run events, delivered to ``run(on_event=...)`` and logged through structlog.

Every event has ``kind``, ``run_id``, ``task_id`` (None for run-level events) and
``timestamp`` (seconds since the epoch), plus the facts of its kind in ``data``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal[
    "run_started",
    "run_completed",
    "run_failed",
    "run_suspended",
    "task_started",
    "task_throttled",
    "task_admitted",
    "task_completed",
    "task_failed",
    "task_retrying",
    "group_finished",
    "feedback_requested",
    "feedback_answered",
    "checkpoint_saved",
    "task_added",
]

# The structlog level each kind is logged at.
LEVELS: dict[str, int] = {
    "run_started": logging.INFO,
    "run_completed": logging.INFO,
    "run_failed": logging.ERROR,
    "run_suspended": logging.INFO,
    "task_started": logging.DEBUG,
    "task_throttled": logging.INFO,
    "task_admitted": logging.DEBUG,
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

"""What `run` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class WorkflowResult:
    """What `run` returns. `output` is the single sink task's result, or a dict keyed by
    sink id when there are several; `results` holds every completed task's result (the
    value of its last run); `skipped` lists the tasks a `goto` skipped."""

    run_id: str
    status: str  # "completed" or "suspended"
    results: dict[str, Any]
    output: Any
    channel: dict[str, Any]
    checkpoint: str | None = None
    pending_feedback: list[Any] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

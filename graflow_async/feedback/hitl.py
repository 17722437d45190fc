"""How `request_feedback` becomes a stored request, a wait, an answer or a suspension.

The task side (`TaskContext.request_feedback`) checks the question and sends it to
its run as a context request; the run side (`run.feedback_host.FeedbackHost`) stores it
in the run's feedback store, announces it, waits for the answer on the run's clock, and
answers the task: with the response, or with "timeout", on which the task raises
`FeedbackSuspended` and the run suspends. The same path serves a local task and one on
a Redis worker. Here: what both sides share (the checked question, feedback ids, the
store a run opens).
"""

from __future__ import annotations

import math
import os
import uuid
from typing import Any

from graflow_async.exceptions import FeedbackTimeoutError, FeedbackValidationError
from graflow_async.feedback.base import FeedbackStore
from graflow_async.feedback.contracts import HitlStore
from graflow_async.feedback.models import MAX_OPTIONS, MAX_PROMPT, FeedbackRequest, FeedbackType
from graflow_async.feedback.notify_config import check_config

DEFAULT_FEEDBACK_DIRECTORY = ".graflow/feedback"
_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "https://graflow-async/feedback")  # namespace of feedback ids


class FeedbackSuspended(FeedbackTimeoutError):
    """Raised in a task whose feedback wait timed out: the run suspends and the task
    runs again on resume. A task may catch it (as `FeedbackTimeoutError`) to carry on
    without an answer instead."""

    def __init__(self, request: FeedbackRequest) -> None:
        self.request = request
        super().__init__(
            f"no answer to feedback request {request.feedback_id!r} within {request.timeout or 0:g}s; "
            "the run suspends until it is answered"
        )


def feedback_id(run_id: str, task_id: str, index: int, cycle: int = 1) -> str:
    """The deterministic id of a task's `index`-th request (1-based) in run `cycle` of it."""
    key = f"{run_id}/{task_id}/{index}" if cycle == 1 else f"{run_id}/{task_id}#{cycle}/{index}"
    return uuid.uuid5(_IDS, key).hex


def open_feedback_store(spec: HitlStore | str | os.PathLike[str] | None) -> HitlStore:
    """A store from `run(feedback_store=...)`: a store (any `HitlStore`: a run needs its
    requests and suspensions), a ``redis://`` URL, or a directory."""
    return spec if isinstance(spec, HitlStore) else store_at(spec)


def store_at(spec: str | os.PathLike[str] | None) -> FeedbackStore:
    """A store on a ``redis://`` URL, or on a directory (default ``.graflow/feedback``)."""
    if isinstance(spec, str) and spec.startswith(("redis://", "rediss://", "unix://")):
        from graflow_async.feedback.redis import RedisFeedbackStore

        return RedisFeedbackStore(spec)
    from graflow_async.feedback.file import FileFeedbackStore

    return FileFeedbackStore(spec if spec is not None else DEFAULT_FEEDBACK_DIRECTORY)


def question(
    feedback_type: Any, prompt: Any, options: Any, timeout: Any, metadata: Any, notification_config: Any
) -> dict[str, Any]:
    """The checked fields of a question; FeedbackValidationError naming the bad one. Used
    by the task and again by the run, which trusts nothing it receives."""
    kind = FeedbackType.resolve(feedback_type)
    if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT:
        raise FeedbackValidationError(f"prompt must be a string of at most {MAX_PROMPT} characters", field="prompt")
    if options is not None and (
        not isinstance(options, list | tuple)
        or len(options) > MAX_OPTIONS
        or not all(isinstance(o, str) for o in options)
    ):
        raise FeedbackValidationError(f"options must be a list of at most {MAX_OPTIONS} strings", field="options")
    if kind in (FeedbackType.SELECTION, FeedbackType.MULTI_SELECTION) and not options:
        raise FeedbackValidationError(f"{kind.value} feedback needs options", field="options")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
        raise FeedbackValidationError(f"timeout must be a positive number of seconds, got {timeout!r}", field="timeout")
    if metadata is not None and not isinstance(metadata, dict):
        raise FeedbackValidationError("metadata must be a dict", field="metadata")
    if notification_config is not None:
        check_config(notification_config)
    return {
        "feedback_type": kind.value,
        "prompt": prompt,
        "options": list(options) if options else None,
        "timeout": float(timeout),
        "metadata": dict(metadata or {}),
        "notification_config": notification_config,
    }

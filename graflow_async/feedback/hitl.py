"""How a task's `request_feedback` call becomes a stored request, a wait, or a suspension."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

from ..exceptions import FeedbackCancelledError, FeedbackTimeoutError, FeedbackValidationError
from .base import FeedbackStore
from .models import ANSWERED, CANCELLED, FeedbackRequest, FeedbackResponse, FeedbackType

if TYPE_CHECKING:
    from ..run_state import RunState

DEFAULT_FEEDBACK_DIRECTORY = ".graflow/feedback"
_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "https://graflow-async/feedback")  # namespace of feedback ids


class FeedbackSuspended(FeedbackTimeoutError):
    """Raised in a task whose feedback wait timed out: the run suspends and the task
    runs again on resume. A task may catch it (as `FeedbackTimeoutError`) to carry on
    without an answer instead."""

    def __init__(self, request: FeedbackRequest) -> None:
        self.request = request
        super().__init__(
            f"no answer to feedback request {request.feedback_id!r} within {request.timeout:g}s; "
            "the run suspends until it is answered"
        )


def feedback_id(run_id: str, task_id: str, index: int) -> str:
    """The deterministic id of a task's `index`-th request (1-based) in a run."""
    return uuid.uuid5(_IDS, f"{run_id}/{task_id}/{index}").hex


def open_feedback_store(spec: FeedbackStore | str | os.PathLike[str] | None) -> FeedbackStore:
    """A store from `run(feedback_store=...)`: a store, a ``redis://`` URL, or a directory."""
    if isinstance(spec, FeedbackStore):
        return spec
    if isinstance(spec, str) and spec.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisFeedbackStore

        return RedisFeedbackStore(spec)
    from .file import FileFeedbackStore

    return FileFeedbackStore(spec if spec is not None else DEFAULT_FEEDBACK_DIRECTORY)


async def request_feedback(
    state: RunState, task_id: str, index: int, feedback_type: FeedbackType | str, prompt: str, *,
    options: list[str] | None = None, timeout: float = 180.0, metadata: dict[str, Any] | None = None,
    notification_config: dict[str, Any] | None = None,
) -> FeedbackResponse:
    """Ask, then return the answer; `FeedbackSuspended` when none comes within `timeout`."""
    kind = FeedbackType.resolve(feedback_type)
    if kind in (FeedbackType.SELECTION, FeedbackType.MULTI_SELECTION) and not options:
        raise FeedbackValidationError(f"{kind.value} feedback needs options", field="options")
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise FeedbackValidationError(f"timeout must be a positive number, got {timeout!r}", field="timeout")
    store = state.feedback_store()
    fresh = FeedbackRequest(
        feedback_id(state.run_id, task_id, index), state.run_id, task_id, kind, str(prompt),
        list(options) if options else None, dict(metadata or {}), float(timeout),
        notification_config=notification_config,
    )
    request = await store.create(fresh)
    if request.status == ANSWERED:
        _, answer = await store.get(request.feedback_id)
        assert answer is not None
        return answer
    if request.status == CANCELLED:
        raise FeedbackCancelledError(f"feedback request {request.feedback_id!r} was cancelled")
    if request is fresh or request.created_at == fresh.created_at:
        await state.emitter.emit("feedback_requested", task_id, feedback_id=request.feedback_id,
                                 feedback_type=kind.value, prompt=request.prompt)
        if notification_config:
            state.notify(request, notification_config)
    try:
        answer = await store.wait(request.feedback_id, timeout)
    except FeedbackTimeoutError:
        raise FeedbackSuspended(request) from None
    await state.emitter.emit("feedback_answered", task_id, feedback_id=request.feedback_id)
    return answer

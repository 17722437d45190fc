"""Human in the loop: feedback requests, answers, and the stores that hold them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graflow_async.feedback.base import FeedbackStore
from graflow_async.feedback.file import FileFeedbackStore
from graflow_async.feedback.memory import MemoryFeedbackStore
from graflow_async.feedback.models import FeedbackRequest, FeedbackResponse, FeedbackType, validate_response

if TYPE_CHECKING:
    from graflow_async.feedback.redis import RedisFeedbackStore

__all__ = [
    "FeedbackRequest",
    "FeedbackResponse",
    "FeedbackStore",
    "FeedbackType",
    "FileFeedbackStore",
    "MemoryFeedbackStore",
    "RedisFeedbackStore",
    "validate_response",
]


def __getattr__(name: str) -> Any:
    # redis is an optional extra: import it only when the Redis store is asked for.
    if name == "RedisFeedbackStore":
        from graflow_async.feedback.redis import RedisFeedbackStore

        return RedisFeedbackStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

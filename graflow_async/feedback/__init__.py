"""Human in the loop: feedback requests, answers, and the stores that hold them.

The stores' contracts: `FeedbackRequests` (questions and answers), `Suspensions`
(where suspended runs wait), both together `HitlStore` (what a run needs), and with
`graflow_async.records.contract.RunRecords` `FeedbackStore` (what the web app needs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graflow_async.feedback.base import FeedbackStore
from graflow_async.feedback.contracts import FeedbackRequests, HitlStore, Suspensions
from graflow_async.feedback.file import FileFeedbackStore
from graflow_async.feedback.memory import MemoryFeedbackStore
from graflow_async.feedback.models import FeedbackRequest, FeedbackResponse, FeedbackType, validate_response

if TYPE_CHECKING:
    from graflow_async.feedback.redis import RedisFeedbackStore

__all__ = [
    "FeedbackRequest",
    "FeedbackRequests",
    "FeedbackResponse",
    "FeedbackStore",
    "FeedbackType",
    "FileFeedbackStore",
    "HitlStore",
    "MemoryFeedbackStore",
    "RedisFeedbackStore",
    "Suspensions",
    "validate_response",
]


def __getattr__(name: str) -> Any:
    # redis is an optional extra: import it only when the Redis store is asked for.
    if name == "RedisFeedbackStore":
        from graflow_async.feedback.redis import RedisFeedbackStore

        return RedisFeedbackStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

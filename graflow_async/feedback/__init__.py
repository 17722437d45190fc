"""Human in the loop: feedback requests, answers, and the stores that hold them."""

from .base import FeedbackStore
from .memory import MemoryFeedbackStore
from .models import FeedbackRequest, FeedbackResponse, FeedbackType, validate_response

__all__ = [
    "FeedbackRequest",
    "FeedbackResponse",
    "FeedbackStore",
    "FeedbackType",
    "MemoryFeedbackStore",
    "validate_response",
]

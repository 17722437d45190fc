"""The feedback store contract: where human-in-the-loop requests and answers live.

Implementations: `MemoryFeedbackStore` (one process), `FileFeedbackStore` (a
directory; the default, under ``.graflow/feedback``) and `RedisFeedbackStore`
(shared by processes). A waiter is woken by the store when an answer or a
cancellation arrives, in its own process or another: no polling loops.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any

from graflow_async.feedback.models import FeedbackRequest, FeedbackResponse


class FeedbackStore(ABC):
    """Requests by feedback id, their answers, and waiters for them.

    Errors are `FeedbackError` subclasses: `FeedbackNotFoundError` (unknown id),
    `FeedbackAlreadyAnsweredError` (answered or cancelled already),
    `FeedbackValidationError` (an answer that does not fit), `FeedbackCancelledError`
    and `FeedbackTimeoutError` (for waiters).
    """

    @abstractmethod
    async def create(self, request: FeedbackRequest) -> FeedbackRequest:
        """Store `request`, or return the stored one when its id exists already
        (ids are deterministic, so a resumed task asks the same question again)."""

    @abstractmethod
    async def list(self, run_id: str | None = None, status: str | None = None) -> builtins.list[FeedbackRequest]:
        """Requests (of `run_id`, with `status` when given), oldest first."""

    async def list_pending(self, run_id: str | None = None) -> builtins.list[FeedbackRequest]:
        """Requests still waiting for an answer, oldest first."""
        return await self.list(run_id, "pending")

    @abstractmethod
    async def get(self, feedback_id: str) -> tuple[FeedbackRequest, FeedbackResponse | None]:
        """The request and its answer (None while unanswered)."""

    @abstractmethod
    async def respond(self, feedback_id: str, response: dict[str, Any] | FeedbackResponse) -> FeedbackResponse:
        """Validate and store the answer, then wake the request's waiters."""

    @abstractmethod
    async def cancel(self, feedback_id: str) -> None:
        """Cancel a pending request; its waiters get `FeedbackCancelledError`."""

    @abstractmethod
    async def wait(self, feedback_id: str, timeout: float | None = None) -> FeedbackResponse:
        """The answer, as soon as there is one; `FeedbackTimeoutError` after `timeout`
        seconds, `FeedbackCancelledError` if the request is cancelled."""

    # Which checkpoint a suspended run waits in, so that an answer can resume it.
    @abstractmethod
    async def set_suspension(self, run_id: str, record: dict[str, Any] | None) -> None:
        """Remember (or, with None, forget) how to resume suspended run `run_id`:
        ``{"checkpoint": location, "workflow": name}``."""

    @abstractmethod
    async def get_suspension(self, run_id: str) -> dict[str, Any] | None: ...

    # Run records of the web app (`runrecords` describes a record), kept beside the
    # requests so that they outlive the app; a record read back is checked, and one
    # that fails is skipped with a warning, never an error of the listing.
    @abstractmethod
    async def save_run(self, record: dict[str, Any]) -> None:
        """Store (or replace) run record `record`; `RunRecordError` (a ValueError) when
        it is malformed or too large. Its ``cancel_requested`` is ignored: only
        `request_run_cancel` sets that, so that a save never loses a request."""

    @abstractmethod
    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The checked record of `run_id`, or None (unknown, or unreadable: logged)."""

    @abstractmethod
    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """Records with `status` and `workflow` (when given), newest first, at most
        `limit` (capped at `runrecords.MAX_LIMIT`), after `cursor`; and the cursor of
        the next page, or None. `RunRecordError` for a cursor or limit that is not one."""

    @abstractmethod
    async def request_run_cancel(self, run_id: str) -> None:
        """Mark run `run_id` as asked to stop (its record's ``cancel_requested``)."""

    async def aclose(self) -> None:
        """Release connections and watchers."""

    async def __aenter__(self) -> FeedbackStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

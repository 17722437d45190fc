"""The two feedback contracts: questions and their answers (`FeedbackRequests`), and
where a suspended run waits (`Suspensions`). `HitlStore` is both, what a run needs;
`FeedbackStore` (in `feedback.base`) adds the run records of `records.contract`, what
the web app needs. They are abstract base classes rather than protocols: the runtime
tells a store from a directory or URL with ``isinstance``, an implementation missing a
method fails when it is made rather than at its first call, and the defaults
(`list_pending`, `aclose`, ``async with``) come with them.

Nothing a store reads back from a file or Redis is trusted (`feedback.stored` checks
it). A record that fails the checks is *corrupt*: listings leave it out and name it in
`Listing.skipped`; reading it directly raises `FeedbackCorruptError` (requests) or
`CorruptRecordError` (suspensions); either logs it once per version by its id, file or
key, never its content. What a backend itself fails with passes through:
`TransportError` (Redis), `OSError` (files).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from graflow_async.feedback.models import PENDING, FeedbackRequest, FeedbackResponse
from graflow_async.records.contract import Closing
from graflow_async.records.corrupt import Listing


class FeedbackRequests(Closing, ABC):
    """Feedback requests by id, their answers, and waiters for them. A waiter is woken by
    the store when an answer or a cancellation arrives, in its own process or another
    (for the shared stores): no polling loops."""

    @abstractmethod
    async def create(self, request: FeedbackRequest) -> FeedbackRequest:
        """Store `request` and return it; when a request with its id exists already,
        return that one instead, unchanged (ids are derived from run, task and call
        order, so a resumed task asking again finds its question, maybe answered).

        Raises:
            FeedbackValidationError: the request cannot be stored as JSON or is larger
                than `feedback.stored.MAX_REQUEST_BYTES`; nothing is stored.
            FeedbackCorruptError: a request with this id is stored but unreadable (it is
                not replaced).
        """

    @abstractmethod
    async def list(self, run_id: str | None = None, status: str | None = None) -> Listing[FeedbackRequest]:
        """Requests of `run_id` with `status` (each when given), oldest first. Corrupt
        records are left out and named in the listing's ``skipped``."""

    async def list_pending(self, run_id: str | None = None) -> Listing[FeedbackRequest]:
        """Requests still waiting for an answer, oldest first (as `list`)."""
        return await self.list(run_id, PENDING)

    @abstractmethod
    async def get(self, feedback_id: str) -> tuple[FeedbackRequest, FeedbackResponse | None]:
        """The request and its answer (None while pending, and once cancelled).

        Raises:
            FeedbackNotFoundError: no request has this id.
            FeedbackCorruptError: its record is stored but unreadable.
        """

    @abstractmethod
    async def respond(self, feedback_id: str, response: dict[str, Any] | FeedbackResponse) -> FeedbackResponse:
        """Check `response` against the request's type, store it, wake the waiters, and
        return the answer as stored. Of concurrent answers (in any processes sharing the
        store) exactly one wins.

        Raises:
            FeedbackNotFoundError: no request has this id.
            FeedbackAlreadyAnsweredError: it was answered or cancelled already, or
                another answer won the race; the stored answer is unchanged.
            FeedbackValidationError: the answer does not fit the request (``field``
                names what), or is larger than `MAX_RESPONSE_BYTES`; nothing is stored.
            FeedbackCorruptError: its record is stored but unreadable.
        """

    @abstractmethod
    async def cancel(self, feedback_id: str) -> None:
        """Cancel a pending request; its waiters raise `FeedbackCancelledError`.

        Raises:
            FeedbackNotFoundError: no request has this id.
            FeedbackAlreadyAnsweredError: it was answered or cancelled already.
            FeedbackCorruptError: its record is stored but unreadable.
        """

    @abstractmethod
    async def wait(self, feedback_id: str, timeout: float | None = None) -> FeedbackResponse:
        """The answer, at once if there is one, else as soon as it is given.

        Raises:
            FeedbackNotFoundError: no request has this id when the wait starts.
            FeedbackCancelledError: the request is cancelled, or was already.
            FeedbackTimeoutError: no answer within `timeout` seconds (the request stays
                answerable).
            FeedbackCorruptError: its record is, or becomes, unreadable.
        """


class Suspensions(Closing, ABC):
    """How to resume each suspended run: a small JSON object per run id, usually
    ``{"checkpoint": location, "workflow": name}``, so that an answer given anywhere can
    resume the run (`feedback.stored.check_suspension` says what one may hold)."""

    @abstractmethod
    async def set_suspension(self, run_id: str, record: dict[str, Any] | None) -> None:
        """Remember `record` for run `run_id`, replacing what was there (a corrupt
        record included); with None, forget it (nothing happens when there is none).

        Raises:
            SuspensionError: (a ValueError) `record` is not a JSON object of string keys,
                its ``checkpoint`` or ``workflow`` is not a string, or it is larger than
                `MAX_SUSPENSION_BYTES`; nothing is stored.
        """

    @abstractmethod
    async def get_suspension(self, run_id: str) -> dict[str, Any] | None:
        """The record of run `run_id`, or None when there is none.

        Raises:
            CorruptRecordError: a record is stored but unreadable (``kind`` "suspension").
        """


class HitlStore(FeedbackRequests, Suspensions):
    """What a run needs of a store: its tasks' questions and where it waits while
    suspended. ``run(feedback_store=...)`` takes any of these."""


__all__ = ["FeedbackRequests", "HitlStore", "Suspensions"]

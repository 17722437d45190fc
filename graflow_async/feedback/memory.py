"""Feedback requests, suspensions and run records in this process's memory."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from graflow_async.exceptions import FeedbackAlreadyAnsweredError, FeedbackNotFoundError
from graflow_async.feedback.base import FeedbackStore
from graflow_async.feedback.models import ANSWERED, CANCELLED, PENDING, FeedbackRequest, FeedbackResponse
from graflow_async.feedback.models import validate_response as validate
from graflow_async.feedback.stored import check_suspension, decode_suspension, decode_text, encode_request
from graflow_async.feedback.stored import encode_response as encode_answer
from graflow_async.feedback.waiters import Waiters, wait_settled
from graflow_async.records.contract import DelegatedRunRecords
from graflow_async.records.corrupt import Listing
from graflow_async.records.memory import MemoryRunRecords


@dataclass(frozen=True, slots=True)
class _Stored:
    """A request as a file or Redis would keep it: JSON texts and a status."""

    request: str
    response: str | None
    status: str
    run_id: str
    created_at: float


class MemoryFeedbackStore(DelegatedRunRecords, FeedbackStore):
    """Requests, answers, suspensions and run records in dicts: for tests and
    single-process apps.

    Like the stores that serialize, it keeps what it is given as JSON and hands out
    what it decodes, so that it shares nothing mutable with its callers and refuses,
    and reads back, exactly what the other stores do.
    """

    def __init__(self) -> None:
        self._requests: dict[str, _Stored] = {}
        self._suspensions: dict[str, str] = {}
        self.run_records = MemoryRunRecords()
        self._waiters = Waiters()

    async def create(self, request: FeedbackRequest) -> FeedbackRequest:
        stored = self._requests.get(request.feedback_id)
        if stored is None:  # a new request is pending, whatever status it was given
            stored = _Stored(encode_request(request), None, PENDING, request.run_id, request.created_at)
            self._requests[request.feedback_id] = stored
        return self._decoded(request.feedback_id, stored)[0]

    async def list(self, run_id: str | None = None, status: str | None = None) -> Listing[FeedbackRequest]:
        found = [
            (feedback_id, stored)
            for feedback_id, stored in self._requests.items()
            if (run_id is None or stored.run_id == run_id) and (status is None or stored.status == status)
        ]
        found.sort(key=lambda item: item[1].created_at)
        return Listing(self._decoded(feedback_id, stored)[0] for feedback_id, stored in found)

    async def get(self, feedback_id: str) -> tuple[FeedbackRequest, FeedbackResponse | None]:
        return self._decoded(feedback_id, self._stored(feedback_id))

    async def respond(self, feedback_id: str, response: dict[str, Any] | FeedbackResponse) -> FeedbackResponse:
        request = self._pending(feedback_id)
        answer = validate(request, response)
        self._requests[feedback_id] = replace(
            self._requests[feedback_id], response=encode_answer(answer), status=ANSWERED
        )
        self._waiters.settle(feedback_id)
        return answer

    async def cancel(self, feedback_id: str) -> None:
        self._pending(feedback_id)
        self._requests[feedback_id] = replace(self._requests[feedback_id], status=CANCELLED)
        self._waiters.settle(feedback_id)

    async def wait(self, feedback_id: str, timeout: float | None = None) -> FeedbackResponse:
        return await wait_settled(self, self._waiters, feedback_id, timeout)

    async def set_suspension(self, run_id: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self._suspensions.pop(run_id, None)
        else:
            self._suspensions[run_id] = check_suspension(record)

    async def get_suspension(self, run_id: str) -> dict[str, Any] | None:
        stored = self._suspensions.get(run_id)
        return None if stored is None else decode_suspension(stored, run_id)

    def _decoded(self, feedback_id: str, stored: _Stored) -> tuple[FeedbackRequest, FeedbackResponse | None]:
        return decode_text(stored.request, stored.response, stored.status, feedback_id, feedback_id)

    def _stored(self, feedback_id: str) -> _Stored:
        try:
            return self._requests[feedback_id]
        except KeyError:
            raise FeedbackNotFoundError(f"no feedback request {feedback_id!r}") from None

    def _pending(self, feedback_id: str) -> FeedbackRequest:
        request, _ = self._decoded(feedback_id, self._stored(feedback_id))
        if request.status != PENDING:
            raise FeedbackAlreadyAnsweredError(f"feedback request {feedback_id!r} is {request.status}")
        return request

"""Feedback requests in this process's memory."""

from __future__ import annotations

import asyncio
import builtins
import copy
from dataclasses import replace
from typing import Any

from graflow_async.exceptions import (
    FeedbackAlreadyAnsweredError,
    FeedbackCancelledError,
    FeedbackNotFoundError,
    FeedbackTimeoutError,
    FeedbackValidationError,
)
from graflow_async.feedback.base import FeedbackStore
from graflow_async.feedback.models import (
    ANSWERED,
    CANCELLED,
    PENDING,
    FeedbackRequest,
    FeedbackResponse,
    validate_response,
)
from graflow_async.records.base import RUNNING, decode_record, encode_record, page, sort_key

MAX_MEMORY_RUNS = 10_000  # run records kept; the oldest ended ones are forgotten first
_INDEXED = ("run_id", "workflow", "status", "started_at")


class Waiters:
    """Futures waiting for a feedback id to be settled, woken by `settle`.

    Shared by the stores: each keeps the records its own way and wakes the waiters
    of its process through this.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    def add(self, feedback_id: str) -> asyncio.Future[None]:
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(feedback_id, set()).add(future)
        return future

    def remove(self, feedback_id: str, future: asyncio.Future[None]) -> None:
        waiting = self._waiting.get(feedback_id)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiting[feedback_id]

    def settle(self, feedback_id: str) -> None:
        for future in self._waiting.pop(feedback_id, ()):
            if not future.done():
                future.get_loop().call_soon_threadsafe(_set_done, future)

    def __contains__(self, feedback_id: str) -> bool:
        return feedback_id in self._waiting


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def wait_settled(
    store: FeedbackStore, waiters: Waiters, feedback_id: str, timeout: float | None
) -> FeedbackResponse:
    """Wait on `waiters` until `store` has an answer (or a cancellation) for the id."""
    while True:
        future = waiters.add(feedback_id)  # before looking, so no answer slips between
        try:
            request, response = await store.get(feedback_id)
            if response is not None:
                return response
            if request.status == CANCELLED:
                raise FeedbackCancelledError(f"feedback request {feedback_id!r} was cancelled")
            try:
                async with asyncio.timeout(timeout):
                    await future
            except TimeoutError:
                raise FeedbackTimeoutError(
                    f"no answer to feedback request {feedback_id!r} within {timeout:g}s"
                ) from None
        finally:
            waiters.remove(feedback_id, future)


class MemoryFeedbackStore(FeedbackStore):
    """Requests and answers in a dict: for tests and single-process apps.

    Like the stores that serialize, it shares nothing mutable with its callers: it
    keeps a deep copy of each request it is given and hands out deep copies, so that
    neither side sees the other's later changes to `options` or `metadata`.
    """

    def __init__(self) -> None:
        self._requests: dict[str, FeedbackRequest] = {}
        self._responses: dict[str, FeedbackResponse] = {}
        self._suspensions: dict[str, dict[str, Any]] = {}
        # run id -> (the fields listings filter and sort on, the encoded record: nothing shared with callers)
        self._runs: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._cancels: set[str] = set()
        self._waiters = Waiters()

    async def create(self, request: FeedbackRequest) -> FeedbackRequest:
        stored = self._requests.get(request.feedback_id)
        if stored is None:
            try:
                stored = self._requests[request.feedback_id] = copy.deepcopy(request)
            except (TypeError, copy.Error) as exc:
                raise FeedbackValidationError(f"the request cannot be copied: {exc}", field="metadata") from exc
        return copy.deepcopy(stored)

    async def list(self, run_id: str | None = None, status: str | None = None) -> builtins.list[FeedbackRequest]:
        found = [
            copy.deepcopy(r) for r in self._requests.values()
            if (run_id is None or r.run_id == run_id) and (status is None or r.status == status)
        ]
        return sorted(found, key=lambda r: r.created_at)

    async def get(self, feedback_id: str) -> tuple[FeedbackRequest, FeedbackResponse | None]:
        return copy.deepcopy(self._stored(feedback_id)), copy.deepcopy(self._responses.get(feedback_id))

    async def respond(self, feedback_id: str, response: dict[str, Any] | FeedbackResponse) -> FeedbackResponse:
        request = self._pending(feedback_id)
        answer = validate_response(request, response)
        self._responses[feedback_id] = copy.deepcopy(answer)
        self._requests[feedback_id] = replace(request, status=ANSWERED)
        self._waiters.settle(feedback_id)
        return answer

    async def cancel(self, feedback_id: str) -> None:
        request = self._pending(feedback_id)
        self._requests[feedback_id] = replace(request, status=CANCELLED)
        self._waiters.settle(feedback_id)

    async def wait(self, feedback_id: str, timeout: float | None = None) -> FeedbackResponse:
        return await wait_settled(self, self._waiters, feedback_id, timeout)

    async def set_suspension(self, run_id: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self._suspensions.pop(run_id, None)
        else:
            self._suspensions[run_id] = dict(record)

    async def get_suspension(self, run_id: str) -> dict[str, Any] | None:
        record = self._suspensions.get(run_id)
        return None if record is None else dict(record)

    async def save_run(self, record: dict[str, Any]) -> None:
        data = encode_record(record)
        checked = decode_record(data)
        run_id = checked["run_id"]
        self._runs.pop(run_id, None)
        self._runs[run_id] = ({k: checked[k] for k in _INDEXED}, data)
        if len(self._runs) > MAX_MEMORY_RUNS:
            self._forget_oldest()

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        entry = self._runs.get(run_id)
        return None if entry is None else self._decoded(run_id, entry[1])

    async def list_runs(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        chosen, next_cursor = page((index for index, _ in self._runs.values()), status=status, workflow=workflow,
                                   limit=limit, cursor=cursor)
        return [self._decoded(r["run_id"], self._runs[r["run_id"]][1]) for r in chosen], next_cursor

    async def request_run_cancel(self, run_id: str) -> None:
        if run_id in self._runs:
            self._cancels.add(run_id)

    def _decoded(self, run_id: str, data: bytes) -> dict[str, Any]:
        return {**decode_record(data), "cancel_requested": run_id in self._cancels}

    def _forget_oldest(self) -> None:
        """Forget the oldest ended runs, a tenth of the records at once (not one per save)."""
        ended = sorted((index for index, _ in self._runs.values() if index["status"] != RUNNING), key=sort_key)
        for index in ended[: len(self._runs) - MAX_MEMORY_RUNS * 9 // 10]:
            del self._runs[index["run_id"]]
            self._cancels.discard(index["run_id"])

    def _stored(self, feedback_id: str) -> FeedbackRequest:
        try:
            return self._requests[feedback_id]
        except KeyError:
            raise FeedbackNotFoundError(f"no feedback request {feedback_id!r}") from None

    def _pending(self, feedback_id: str) -> FeedbackRequest:
        request = self._stored(feedback_id)
        if request.status != PENDING:
            raise FeedbackAlreadyAnsweredError(f"feedback request {feedback_id!r} is {request.status}")
        return request

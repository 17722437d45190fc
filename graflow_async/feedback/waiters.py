"""Waiting for an answer without polling: futures per feedback id, woken by whoever
settles the request (in this process directly; from other processes by the store's
watcher or subscription)."""

from __future__ import annotations

import asyncio

from graflow_async.exceptions import FeedbackCancelledError, FeedbackTimeoutError
from graflow_async.feedback.contracts import FeedbackRequests
from graflow_async.feedback.models import CANCELLED, FeedbackResponse


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
    store: FeedbackRequests, waiters: Waiters, feedback_id: str, timeout: float | None
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

"""The feedback REST API (SPEC section 5); the runs API is in `runs/api.py`.

Listings leave out the records the store cannot read and count them (``unreadable``);
a request whose record cannot be read answers 422 (`http.store_status`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from graflow_async.feedback.contracts import FeedbackRequests
from graflow_async.feedback.models import ANSWERED, CANCELLED, PENDING
from graflow_async.records.base import RunRecordError, ascending_page
from graflow_async.records.corrupt import skipped_count
from graflow_async.web.http import ApiError, json_response, read_json
from graflow_async.web.runs.api import query_limit
from graflow_async.web.runs.manager import RunManager

STATUSES = (PENDING, ANSWERED, CANCELLED)


class FeedbackApi:
    """Handlers over one store's feedback requests; answers may resume suspended runs."""

    def __init__(self, store: FeedbackRequests, runs: RunManager) -> None:
        self.store = store
        self.runs = runs

    async def health(self, request: web.Request) -> web.StreamResponse:
        return json_response({"status": "ok"})

    async def list(self, request: web.Request) -> web.StreamResponse:
        run_id = request.query.get("run_id") or None
        status: str | None = request.query.get("status") or PENDING
        if status == "all":
            status = None
        elif status not in STATUSES:
            raise ApiError(400, f"status must be 'all' or one of {', '.join(STATUSES)}", "status")
        limit = query_limit(request)
        found = await self.store.list(run_id, status)
        try:  # oldest first, paged like the runs: `limit` and the `next_cursor` of the previous page
            requests, next_cursor = ascending_page(found, _key, limit=limit, cursor=request.query.get("cursor"))
        except RunRecordError as exc:
            raise ApiError(400, str(exc), "cursor") from None
        body: dict[str, Any] = {
            "count": len(requests),
            "requests": [r.to_dict() for r in requests],
            "next_cursor": next_cursor,
        }
        if unreadable := skipped_count(found):  # records left out: named in the server's log
            body["unreadable"] = unreadable
        return json_response(body)

    async def show(self, request: web.Request) -> web.StreamResponse:
        feedback, answer = await self.store.get(request.match_info["feedback_id"])
        return json_response({"request": feedback.to_dict(), "response": answer.to_dict() if answer else None})

    async def respond(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        feedback_id = request.match_info["feedback_id"]
        answer = await self.store.respond(feedback_id, body)
        feedback, _ = await self.store.get(feedback_id)
        await self.runs.after_answer(feedback.run_id)
        return json_response({"response": answer.to_dict()})

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        await self.store.cancel(request.match_info["feedback_id"])
        return json_response({"status": "cancelled"})


def _key(request: Any) -> tuple[float, str]:
    return (request.created_at, request.feedback_id)

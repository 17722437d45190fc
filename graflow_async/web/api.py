"""The REST API: feedback requests (SPEC section 5) and runs (SPEC section 8)."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

from aiohttp import web

from ..codec import packb
from ..feedback.base import FeedbackStore
from ..feedback.models import ANSWERED, CANCELLED, PENDING
from .http import ApiError, dumps, json_response, read_json
from .runs import COMPLETED, SUSPENDED, RunManager

STATUSES = (PENDING, ANSWERED, CANCELLED)


class FeedbackApi:
    """Handlers over one feedback store; answers may resume suspended runs."""

    def __init__(self, store: FeedbackStore, runs: RunManager) -> None:
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
        requests = await self.store.list(run_id, status)
        body: dict[str, Any] = {"count": len(requests), "requests": [r.to_dict() for r in requests]}
        unreadable = unreadable_records(self.store)
        if unreadable:  # records left out (FileFeedbackStore): named in the server's log
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


def unreadable_records(store: FeedbackStore) -> int:
    """How many records the store's latest listing left out as unreadable."""
    return len(getattr(store, "unreadable", ()))


class RunsApi:
    """``POST /api/runs``, ``GET /api/runs/{run_id}`` and its ``/events`` stream."""

    def __init__(self, manager: RunManager, prefix: str) -> None:
        self.manager = manager
        self.prefix = prefix

    async def create(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, 'expected a JSON object {"workflow": name, "inputs": {...}}')
        unknown = sorted(set(body) - {"workflow", "inputs"})
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(unknown)}", unknown[0])
        name = body.get("workflow")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "'workflow' must be the name of a workflow", "workflow")
        inputs = body.get("inputs") or {}
        if not isinstance(inputs, dict):
            raise ApiError(400, "'inputs' must be a JSON object", "inputs")
        try:
            packb(inputs)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ApiError(400, f"'inputs' cannot be stored in the run's channel: {exc}", "inputs") from None
        if name not in self.manager.workflows:
            raise ApiError(404, f"unknown workflow {name!r}", "workflow")
        record = self.manager.start(name, inputs)
        response = json_response({"run_id": record.run_id}, status=202)
        response.headers["Location"] = f"{self.prefix}/api/runs/{record.run_id}"
        return response

    async def show(self, request: web.Request) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        record = self.manager.runs.get(run_id)
        store = self.manager.store
        if record is None:
            if await store.get_suspension(run_id) is None:
                raise ApiError(404, f"no run {run_id!r}")
            status, results, error = SUSPENDED, {}, None  # suspended elsewhere, answerable here
        else:
            status, results, error = record.status, record.results, record.error
        pending = [] if status == COMPLETED else [r.to_dict() for r in await store.list_pending(run_id)]
        return json_response(
            {"run_id": run_id, "status": status, "results": results, "pending_feedback": pending, "error": error}
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        record = self.manager.runs.get(request.match_info["run_id"])
        if record is None:
            raise ApiError(404, f"no run {request.match_info['run_id']!r}")
        last = request.headers.get("Last-Event-ID", "0")
        response = web.StreamResponse(headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        response.content_type = "text/event-stream"
        await response.prepare(request)
        try:
            async with aclosing(self.manager.follow(record, int(last) if last.isdigit() else 0)) as events:
                async for item in events:
                    await response.write(_sse(item))
            end = {"run_id": record.run_id, "status": record.status, "error": record.error}
            await response.write(f"event: end\ndata: {dumps(end)}\n\n".encode())
        except ConnectionResetError:
            pass  # the client went away
        return response


def _sse(item: tuple[int, dict[str, Any]] | None) -> bytes:
    if item is None:
        return b": keep-alive\n\n"
    seq, event = item
    return f"id: {seq}\nevent: {event['kind']}\ndata: {dumps(event)}\n\n".encode()

"""The runs REST API (SPEC section 8): start, show, list and cancel runs, and follow
their events as server-sent events."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

from aiohttp import web

from graflow_async.records.base import MAX_LIMIT, STATUSES, RunRecordError
from graflow_async.web.http import ApiError, dumps, json_response, read_json
from graflow_async.web.runs.manager import RunManager
from graflow_async.web.runs.views import RunViews
from graflow_async.wire.codec import packb

DEFAULT_LIMIT = 50


def query_limit(request: web.Request) -> int:
    """The ``limit`` query parameter: 1 or more (at most `MAX_LIMIT` are listed); 400 otherwise."""
    raw = request.query.get("limit", "")
    if raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}", "limit")
    return min(int(raw), MAX_LIMIT)


def last_event_id(request: web.Request) -> str:
    """Where a stream resumes: ``Last-Event-ID``, else the ``after`` query parameter, else
    "0" (an event's number, or for a run driven elsewhere a stream entry's id)."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("after", "0")
    return raw if len(raw) < 48 and raw.replace("-", "").isdigit() else "0"


async def stream_events(request: web.Request, views: RunViews, run_id: str) -> web.StreamResponse:
    """Serve the run's events as SSE, ending with an ``end`` event naming its status."""
    response = web.StreamResponse(headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.content_type = "text/event-stream"
    await response.prepare(request)
    try:
        async with aclosing(views.follow(run_id, last_event_id(request))) as events:
            async for item in events:
                await response.write(_sse(item))
        await response.write(f"event: end\ndata: {dumps(await views.last_status(run_id))}\n\n".encode())
    except ConnectionResetError:
        pass  # the client went away
    return response


def _sse(item: tuple[int, dict[str, Any]] | None) -> bytes:
    if item is None:
        return b": keep-alive\n\n"
    seq, event = item
    data = event["data"] if event["kind"] == "stream" else event  # a chunk: {task_id, attempt, data}
    return f"id: {seq}\nevent: {event['kind']}\ndata: {dumps(data)}\n\n".encode()


class RunsApi:
    """``POST /api/runs``, ``GET /api/runs``, ``GET /api/runs/{run_id}``, its ``/events``
    stream and ``POST /api/runs/{run_id}/cancel``."""

    def __init__(self, manager: RunManager, prefix: str) -> None:
        self.manager = manager
        self.views = RunViews(manager)
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
        live = await self.manager.start(name, inputs)
        response = json_response({"run_id": live.run_id}, status=202)
        response.headers["Location"] = f"{self.prefix}/api/runs/{live.run_id}"
        return response

    async def show(self, request: web.Request) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        view = await self.views.show(run_id)
        if view is None:
            raise ApiError(404, f"no run {run_id!r}")
        return json_response(view)

    async def list(self, request: web.Request) -> web.StreamResponse:
        status = request.query.get("status") or None
        if status is not None and status not in STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(STATUSES)}", "status")
        workflow = request.query.get("workflow") or None
        try:
            body = await self.views.listing(
                status=status, workflow=workflow, limit=query_limit(request), cursor=request.query.get("cursor") or None
            )
        except RunRecordError as exc:
            raise ApiError(400, str(exc), "cursor") from None
        return json_response(body)

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        view = None if self.manager.driving(run_id) else await self.views.summary(run_id)
        status = await self.manager.cancel(run_id, view)
        return json_response({"run_id": run_id, "status": status}, status=202)

    async def events(self, request: web.Request) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        if run_id not in self.manager.live and await self.views.summary(run_id) is None:
            raise ApiError(404, f"no run {run_id!r}")
        return await stream_events(request, self.views, run_id)

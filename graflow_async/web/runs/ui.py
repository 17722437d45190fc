"""The runs pages of the UI (SPEC section 8): ``/ui/runs/`` lists runs (status,
workflow, start, duration; filters; older pages), ``/ui/runs/{id}`` shows a run's
tasks with their states, attempts and durations, its graph, and links to its pending
feedback requests, kept live by a small script of the app's (``/ui/static/run.js``)
that follows ``/ui/runs/{id}/events``, the run's event stream behind the UI's session.

The tasks, their counts per state and the graph come from `runpage.task_view`, worked
out in a thread (one page view at a time: `BUILDS`) so that a workflow of any size
never holds up the event loop; the graph is drawn on the server from the compiled
graph (`graphview`): no script library, nothing loaded from elsewhere. A graph too
large to draw is summarized (tasks per state and per layer) and the task table pages.
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from markupsafe import Markup

from graflow_async.define.graph import Workflow
from graflow_async.exceptions import CorruptRecordError
from graflow_async.records.base import COMPLETED, ENDED, MAX_TASKS, RunRecordError
from graflow_async.web.auth import Session
from graflow_async.web.feedback.ui import HEADERS, FeedbackUi
from graflow_async.web.http import dumps
from graflow_async.web.runs import graphview
from graflow_async.web.runs.api import stream_events
from graflow_async.web.runs.page import STATES, UNTRACKED, task_view
from graflow_async.web.runs.views import LISTING_STATUSES, RunViews

# The run page runs the app's own script and reads the event stream, nothing else.
RUN_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_SIZE = 50
BUILDS = 1  # run pages worked out at once (each in a thread)
LIMITS = {
    "tasks": graphview.MAX_TASKS,
    "groups": graphview.MAX_GROUPS,
    "edges": graphview.MAX_EDGES,
    "tracked": MAX_TASKS,
}


def span(seconds: float | None) -> str:
    """A duration for people: 850 ms, 12.3 s, 4 min 5 s, 2 h 10 min."""
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def when(epoch: float | None) -> str:
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def run_duration(run: dict[str, Any], now: float | None = None) -> str:
    """How long the run took, or has been going (suspended runs included)."""
    if run.get("started_at") is None:
        return ""
    end = run.get("ended_at") or (time.time() if now is None else now)
    return span(end - run["started_at"])


def page_number(text: str | None) -> int:
    """A page number from the query string: 1 unless a whole number from 1 up."""
    return int(text) if text and text.isdigit() and len(text) < 10 else 1


class RunsUi:
    """UI handlers for runs, rendering through the feedback UI's templates and session."""

    def __init__(self, ui: FeedbackUi, views: RunViews) -> None:
        self.ui = ui
        self.views = views
        self.manager = views.manager
        self.prefix = ui.prefix
        ui.env.filters.update(when=when, duration=run_duration, seconds=span)
        self.builds = asyncio.Semaphore(BUILDS)

    async def home(self, request: web.Request, session: Session) -> web.StreamResponse:
        raise web.HTTPSeeOther(f"{self.prefix}/ui/runs/")

    async def list(self, request: web.Request, session: Session) -> web.StreamResponse:
        status = request.query.get("status") or None
        workflow = request.query.get("workflow") or None
        error = None
        if status is not None and status not in LISTING_STATUSES:
            status, error = None, "Unknown status: showing runs of any status."
        try:
            page = await self.views.listing(
                status=status, workflow=workflow, limit=PAGE_SIZE, cursor=request.query.get("cursor") or None
            )
        except RunRecordError:
            page, error = {"runs": [], "next_cursor": None}, "That page link is not valid: start from the first page."
        if page.get("unreadable"):
            count = page["unreadable"]
            error = (
                f"{count} run record{'s' if count != 1 else ''} could not be read and "
                f"{'are' if count != 1 else 'is'} not listed (the server log names them)."
            )
        filters = {k: v for k, v in (("status", status), ("workflow", workflow)) if v}
        next_url = (
            f"{self.prefix}/ui/runs/?{urlencode({**filters, 'cursor': page['next_cursor']})}"
            if page["next_cursor"]
            else None
        )
        workflows = sorted(set(self.manager.workflows) | ({workflow} if workflow else set()))
        return self.ui.render(
            "runs.html",
            session,
            runs=page["runs"],
            statuses=LISTING_STATUSES,
            error=error,
            chosen_status=status,
            chosen_workflow=workflow,
            workflows=workflows,
            next_url=next_url,
        )

    async def show(self, request: web.Request, session: Session) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        try:
            summary = await self.views.summary(run_id)
        except CorruptRecordError as exc:
            return self.ui.unreadable_page(session, exc)
        if summary is None:
            return self.ui.error_page(session, 404, "Not found", f"There is no run {run_id!r}.")
        pending = [] if summary["status"] == COMPLETED else await self.views.store.list_pending(run_id)
        state = request.query.get("state") if request.query.get("state") in (*STATES, UNTRACKED) else None
        # the states as of event `after` (the script follows from there): taken together, as events
        # keep changing them while the page is worked out
        live = self.manager.live.get(run_id)
        after = live.total if live else 0
        streamed = [e["data"] for _, e in live.since(0) if e["kind"] == "stream"] if live else []  # up to `after`
        streamed = json.loads(dumps(streamed))  # as JSON shows them (bytes and the like as text)
        tasks = {task_id: dict(t) for task_id, t in summary["tasks"].items()}
        async with self.builds:
            view = await asyncio.to_thread(
                task_view, self._workflow(summary), tasks, page=page_number(request.query.get("page")), state=state
            )
        here = f"{self.prefix}/ui/runs/{quote(run_id, safe='')}"

        def tasks_url(number: int, chosen: str | None) -> str:
            query = {k: v for k, v in (("state", chosen), ("page", number if number > 1 else None)) if v}
            return f"{here}?{urlencode(query)}" if query else here

        response = self.ui.render(
            "run.html",
            session,
            run=summary,
            pending=pending,
            view=view,
            svg=Markup(view.svg),
            state=state,
            limits=LIMITS,
            tasks_url=tasks_url,
            ended=summary["status"] in ENDED,
            events_url=f"{here}/events?after={after}",
            streamed=streamed,
        )
        response.headers["Content-Security-Policy"] = RUN_PAGE_CSP
        return response

    async def events(self, request: web.Request, session: Session) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        try:
            if run_id not in self.manager.live and await self.views.summary(run_id) is None:
                return self.ui.error_page(session, 404, "Not found", f"There is no run {run_id!r}.")
        except CorruptRecordError as exc:
            return self.ui.unreadable_page(session, exc)
        return await stream_events(request, self.views, run_id)

    async def script(self, request: web.Request, session: Session) -> web.StreamResponse:
        text = resources.files("graflow_async.web").joinpath("static/run.js").read_text(encoding="utf-8")
        headers = {k: v for k, v in HEADERS.items() if k != "Cache-Control"} | {"Cache-Control": "no-cache"}
        return web.Response(text=text, content_type="application/javascript", charset="utf-8", headers=headers)

    def _workflow(self, summary: dict[str, Any]) -> Workflow | None:
        workflows = self.manager.workflows
        if summary["workflow"] in workflows:
            return workflows[summary["workflow"]]
        return next((wf for wf in workflows.values() if wf.name == summary["workflow_name"]), None)

"""Schedules over HTTP (SPEC 11): ``GET /api/schedules`` and the page ``/ui/schedules/``.

Each schedule is listed with how it ticks (cron or every, time zone), its workflow, its
next tick (worked out by `define.ticks`, the same function the scheduler uses) and its
last run: the run of the last tick any scheduler of it started (kept by the scheduler's
`marks`, so on Redis it is the last run of every process running it), with that run's
status from the run records and a link to its page.

    {"count": 1, "schedules": [{"name": "nightly", "cron": "0 2 * * *", "every": null,
      "timezone": "Europe/Berlin", "workflow": "reports:nightly", "catch_up": false,
      "next_tick": "2026-12-07T01:00:00Z",
      "last_run": {"run_id": "nightly@2026-12-06T01:00:00Z", "tick": "2026-12-06T01:00:00Z",
                   "status": "completed", "url": "/ui/runs/nightly%402026-12-06T01%3A00%3A00Z"}}]}

``status`` is null while the run has no record this app can read (it may be starting).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from graflow_async.define.schedules import Schedule
from graflow_async.define.ticks import next_tick, run_id_for, schedule_tick_text
from graflow_async.logs import LibraryLog
from graflow_async.plan.snapshot import workflow_ref
from graflow_async.run.scheduler import Scheduler, now_utc
from graflow_async.web.auth import Session
from graflow_async.web.feedback.ui import FeedbackUi
from graflow_async.web.http import json_response
from graflow_async.web.runs.views import RunViews

log = LibraryLog()


async def scheduler_lifetime(scheduler: Scheduler, app: web.Application) -> AsyncIterator[None]:
    """The app's ``cleanup_ctx`` entry: the schedules run while the app does."""
    async with scheduler.running():
        yield


class Schedules:
    """The schedules of one `Scheduler` as the API and the UI show them."""

    def __init__(self, scheduler: Scheduler | None, views: RunViews, ui: FeedbackUi, prefix: str) -> None:
        self.scheduler = scheduler
        self.views = views
        self.ui = ui
        self.prefix = prefix

    async def listing(self) -> list[dict[str, Any]]:
        if self.scheduler is None:
            return []
        now = now_utc()
        schedules = list(self.scheduler.schedules.values())
        return list(await asyncio.gather(*(self._view(s, now) for s in schedules)))

    async def _view(self, schedule: Schedule, now: datetime) -> dict[str, Any]:
        upcoming = next_tick(schedule, now)
        return {
            "name": schedule.name,
            "cron": schedule.cron,
            "every": schedule.every,
            "timezone": schedule.timezone,
            "workflow": schedule.workflow_ref or workflow_ref(schedule.workflow) or schedule.workflow.name,
            "catch_up": schedule.catch_up,
            "next_tick": None if upcoming is None else schedule_tick_text(schedule, upcoming),
            "last_run": await self._last_run(schedule),
        }

    async def _last_run(self, schedule: Schedule) -> dict[str, Any] | None:
        assert self.scheduler is not None
        try:
            last = await self.scheduler.marks.last(schedule.name)
        except Exception as exc:  # its store is unreachable: the rest of the listing still shows
            log.warning("cannot read a schedule's last tick", schedule=schedule.name, error=repr(exc)[:200])
            return None
        if last is None:
            return None
        run_id = run_id_for(schedule, last)
        try:
            summary = await self.views.summary(run_id)
        except Exception as exc:  # an unreadable record, or its store is unreachable
            log.warning("cannot read a scheduled run's record", run_id=run_id, error=repr(exc)[:200])
            summary = None
        return {
            "run_id": run_id,
            "tick": schedule_tick_text(schedule, last),
            "status": None if summary is None else summary["status"],
            "url": f"{self.prefix}/ui/runs/{quote(run_id, safe='')}",
        }

    async def api(self, request: web.Request) -> web.StreamResponse:
        found = await self.listing()
        return json_response({"count": len(found), "schedules": found})

    async def home(self, request: web.Request, session: Session) -> web.StreamResponse:
        raise web.HTTPSeeOther(f"{self.prefix}/ui/schedules/")

    async def page(self, request: web.Request, session: Session) -> web.StreamResponse:
        return self.ui.render("schedules.html", session, schedules=await self.listing())

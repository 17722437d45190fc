"""What the app reports of runs: one run (``GET /api/runs/{id}``), listings, and event
streams that stay open while a run suspends and resumes.

Where a run's facts come from: the memory of this process while it drives the run, or
when it was the last to write the run's record (memory then holds everything, results
of any size included); else the durable record (another process drives or drove it;
a running run whose owner is gone is `interrupted`); else, for a run suspended by a
plain `run()` on the same store, its suspension record alone.

Events are kept in the memory of the process that drives the run. A stream of a run
driven elsewhere replays nothing, looks at the record every `POLL_SECONDS`, follows
the events from when this process resumes the run, and ends with the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from graflow_async.exceptions import CorruptRecordError
from graflow_async.feedback.models import FeedbackRequest
from graflow_async.records.base import (
    COMPLETED,
    ENDED,
    INTERRUPTED,
    RUNNING,
    SUSPENDED,
    check_limit,
    encode_cursor,
    sort_key,
)
from graflow_async.records.corrupt import skipped_count
from graflow_async.web.runs.manager import RunManager
from graflow_async.web.runs.state import LiveRun, stream_event

KEEPALIVE = 15.0  # seconds between SSE comments on a quiet stream
POLL_SECONDS = 1.0  # how often a stream of a run not driven here looks at its record
API_FIELDS = ("run_id", "workflow", "status", "results", "pending_feedback", "error", "started_at", "ended_at")
LISTING_STATUSES = ("running", "completed", "suspended", "failed", "cancelled", "interrupted")


def from_live(live: LiveRun) -> dict[str, Any]:
    return {
        "run_id": live.run_id,
        "workflow": live.workflow,
        "workflow_name": live.workflow_name,
        "status": live.status,
        "results": live.results,
        "error": live.error,
        "started_at": live.started_at,
        "ended_at": live.ended_at,
        "tasks": live.tasks,
        "checkpoint": live.checkpoint,
    }


def public(summary: dict[str, Any], pending: list[FeedbackRequest]) -> dict[str, Any]:
    """The API's view of a run (SPEC section 8), with its pending requests."""
    view = {**summary, "pending_feedback": [] if summary["status"] == COMPLETED else [r.to_dict() for r in pending]}
    return {name: view[name] for name in API_FIELDS}


class RunViews:
    """Reads of the runs of one `RunManager`."""

    def __init__(self, manager: RunManager) -> None:
        self.manager = manager
        self.store = manager.store

    def from_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """A run as its record tells it, or as this process knows it when it wrote it last."""
        live = self.manager.live.get(record["run_id"])
        if live is not None and (live.active or self.manager.owner.owns(record)):
            return from_live(live)
        return {
            "run_id": record["run_id"],
            "workflow": record["workflow"],
            "workflow_name": record["workflow_name"],
            "status": self.manager.status_of(record),
            "results": record["results"] or {},
            "error": record["error"],
            "started_at": record["started_at"],
            "ended_at": record["ended_at"],
            "tasks": record["tasks"],
            "checkpoint": record["checkpoint"],
        }

    async def summary(self, run_id: str) -> dict[str, Any] | None:
        """What is known of run `run_id` (the API's fields but pending requests, plus
        ``workflow_name``, ``tasks`` and ``checkpoint``), or None for an unknown run;
        `CorruptRecordError` when its record (or suspension) cannot be read."""
        live = self.manager.live.get(run_id)
        if live is not None and live.active:
            return from_live(live)
        record = await self.store.get_run(run_id)
        if record is not None:
            return self.from_record(record)
        if live is not None:
            return from_live(live)  # its record could not be written (the store failed)
        suspension = await self.store.get_suspension(run_id)
        if suspension is None:
            return None
        workflow = str(suspension.get("workflow") or "?")
        return {
            "run_id": run_id,
            "workflow": workflow,
            "workflow_name": workflow,
            "status": SUSPENDED,
            "results": {},
            "error": None,
            "started_at": None,
            "ended_at": None,
            "tasks": {},
            "checkpoint": suspension.get("checkpoint"),
        }

    async def show(self, run_id: str) -> dict[str, Any] | None:
        summary = await self.summary(run_id)
        if summary is None:
            return None
        pending = [] if summary["status"] == COMPLETED else await self.store.list_pending(run_id)
        return public(summary, pending)

    async def listing(
        self, *, status: str | None = None, workflow: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        """``{"runs": [...], "next_cursor": ...}``: newest first, each run as `show` has it.
        A running run may turn out interrupted, so the store is asked for running runs
        for either status and the page is filled from as many store pages as it takes."""
        limit = check_limit(limit)
        stored = RUNNING if status == INTERRUPTED else status
        runs: list[dict[str, Any]] = []
        skipped = 0  # records the store could not read (named in its log)
        while True:
            records, next_cursor = await self.store.list_runs(
                status=stored, workflow=workflow, limit=limit, cursor=cursor
            )
            skipped += skipped_count(records)
            for i, record in enumerate(records):
                summary = self.from_record(record)
                if status is not None and summary["status"] != status:
                    continue
                runs.append(summary)
                if len(runs) == limit:
                    more = i + 1 < len(records) or next_cursor is not None
                    return await self._page(runs, encode_cursor(sort_key(record)) if more else None, skipped)
            if next_cursor is None:
                return await self._page(runs, None, skipped)
            cursor = next_cursor

    async def _page(self, runs: list[dict[str, Any]], next_cursor: str | None, skipped: int) -> dict[str, Any]:
        pending: dict[str, list[FeedbackRequest]] = {}
        if any(r["status"] != COMPLETED for r in runs):
            for request in await self.store.list_pending():
                pending.setdefault(request.run_id, []).append(request)
        body = {"runs": [public(r, pending.get(r["run_id"], [])) for r in runs], "next_cursor": next_cursor}
        return {**body, "unreadable": skipped} if skipped else body

    # --- event streams -----------------------------------------------------------------------------
    async def follow(self, run_id: str, after: str = "0") -> AsyncGenerator[tuple[Any, dict[str, Any]] | None, None]:
        """The run's events after `after` (an event's number), then new ones until the run
        is completed, failed, cancelled or interrupted (or the app stops); None now and
        then on a quiet stream (for keep-alives). Of a run driven elsewhere on Redis (by a
        worker that adopted it, say), what its tasks stream, `after` being an entry id."""
        transport = self.manager.run_options.get("transport")
        if run_id not in self.manager.live and transport is not None and transport.keeps_streams:
            async for streamed in self._follow_elsewhere(run_id, transport, None if after == "0" else after):
                yield streamed
            return
        manager, seen, quiet = self.manager, int(after) if after.isdigit() else 0, 0.0
        while not manager.closing:
            live = manager.live.get(run_id)
            wake = live.wake if live is not None else manager.stopped
            batch = live.since(seen) if live is not None else []
            if batch:
                seen, quiet = batch[-1][0], 0.0
                for item in batch:
                    yield item
                continue
            if live is not None and live.active and live.status == RUNNING:  # its events wake us
                status, timeout = live.status, KEEPALIVE
            else:  # suspended, or driven elsewhere: the record may change without an event here
                try:
                    summary = await self.summary(run_id)
                except CorruptRecordError:
                    return  # its record became unreadable: nothing more can be told of it
                status, timeout = (summary or {}).get("status", COMPLETED), POLL_SECONDS
            if status in ENDED:
                return
            try:
                async with asyncio.timeout(timeout):
                    await wake.wait()
            except TimeoutError:
                quiet += timeout
                if quiet >= KEEPALIVE:
                    quiet = 0.0
                    yield None

    async def _follow_elsewhere(
        self, run_id: str, transport: Any, after: str | None
    ) -> AsyncGenerator[tuple[str, dict[str, Any]] | None, None]:
        """What a run driven elsewhere streams, from its stream on Redis (the ids: entry
        ids), until the run has ended and its stream is read to its end."""
        last = after
        while not self.manager.closing:
            try:
                async for item in transport.read_stream(run_id, last):
                    last = item.id
                    yield item.id, stream_event(run_id, item)
            except ValueError:  # `after` is not one of its entry ids
                last = None
                continue
            try:
                summary = await self.summary(run_id)
            except CorruptRecordError:
                return
            if (summary or {}).get("status", COMPLETED) in ENDED:
                return
            yield None  # a keep-alive while the run goes on without streaming
            await asyncio.sleep(POLL_SECONDS)

    async def last_status(self, run_id: str) -> dict[str, Any]:
        """How a stream ends: the run's status and error now (as this process last knew
        them when the store cannot be read: the app may be stopping)."""
        live = self.manager.live.get(run_id)
        try:
            summary = await self.summary(run_id)
        except Exception:
            summary = None if live is None else from_live(live)
        summary = summary or {"status": None, "error": None}
        return {"run_id": run_id, "status": summary["status"], "error": summary["error"]}

"""Runs the web app starts, resumes and cancels (SPEC section 8); what it reports of
them is in `views.py`, the HTTP handlers in `api.py`.

Every run task is a child of one `Supervisor` held open by the app's ``cleanup_ctx``:
when the app shuts down the children are cancelled and awaited, and their runs are
recorded as cancelled. Each run has a durable record in the feedback store
(`records`, kept through the store's `RunRecords`), written when it starts, suspends
or ends and renewed by a heartbeat while it runs (its lease, see `state`); its events
stay in memory. A record that has become unreadable is replaced at the next save.

Resuming: once a suspended run's last pending request is answered (here, through
this app), the app resumes it if it serves its workflow, found by the key the run was
started under or by the workflow's name. A run another process drives is left alone;
`resume` refusing (`RunAlreadyRunningError`: the run is already running elsewhere;
`RunCompletedError`: it has completed since) is logged and changes nothing here but
the record of a completed run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from graflow_async.actors import Supervisor
from graflow_async.define.graph import Workflow
from graflow_async.events import Event
from graflow_async.exceptions import CorruptRecordError, FeedbackError, RunAlreadyRunningError, RunCompletedError
from graflow_async.execute.metrics import Metrics
from graflow_async.feedback.base import FeedbackStore
from graflow_async.feedback.contracts import HitlStore
from graflow_async.feedback.notify_config import PUBLIC_URL
from graflow_async.logs import library_logger
from graflow_async.records.base import CANCELLED, COMPLETED, FAILED, INTERRUPTED, RUNNING, SUSPENDED
from graflow_async.records.contract import RunRecords
from graflow_async.run.resume import resume
from graflow_async.run.runner import WorkflowResult, run
from graflow_async.run.streams import local_streams, run_stream
from graflow_async.web.http import ApiError
from graflow_async.web.runs import state as runstate
from graflow_async.web.runs.state import LiveRun, Owner, effective_status, initial_tasks

MAX_LIVE = 1_000  # runs kept in memory (with their events); the oldest ended ones are forgotten first
CANCEL_WAIT = 2.0  # seconds `cancel` waits for a run of this process to end before answering


def find_workflow(
    workflows: Mapping[str, Workflow], record: Mapping[str, Any] | None, suspension: Mapping[str, Any]
) -> tuple[str, Workflow] | None:
    """The served workflow (key, workflow) of a suspended run: by the key it was started
    under, else by the workflow's name (a key equal to it, else a workflow named so)."""
    candidates = ((record or {}).get("workflow"), suspension.get("workflow"), (record or {}).get("workflow_name"))
    names = [n for n in candidates if isinstance(n, str)]
    for key in names:
        if key in workflows:
            return key, workflows[key]
    for key, wf in workflows.items():
        if wf.name in names:
            return key, wf
    return None


STREAM_TAIL = 2.0  # seconds an ended run's stream is read on for its last chunks


async def _stop(task: asyncio.Task[None], *, wait: float) -> None:
    """Let `task` end by itself within `wait` seconds, else cancel it."""
    if wait:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), wait)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class RunManager:
    """Starts, resumes and cancels runs; owns their tasks through a `Supervisor`."""

    def __init__(
        self,
        store: FeedbackStore,
        workflows: Mapping[str, Workflow],
        run_options: dict[str, Any],
        metrics: Metrics | None = None,
        public_url: str | None = None,
    ) -> None:
        self.store = store  # what its runs use
        self.records: RunRecords = store  # the records of the runs
        self.hitl: HitlStore = store  # their questions, and where suspended runs wait
        self.metrics = metrics
        self.workflows = dict(workflows)
        self.run_options = run_options  # transport / checkpoint_store, only those given
        self.public_url = public_url
        self.owner = Owner.this_process()
        self.live: OrderedDict[str, LiveRun] = OrderedDict()
        self.closing = False
        self.stopped = asyncio.Event()  # set when the app stops: streams of runs driven elsewhere end
        self._sup: Supervisor | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the run children of `_sup`, to await on shutdown
        self._followers: set[asyncio.Task[None]] = set()  # readers of the streams of the runs it drives
        self.log = library_logger().bind(component="web")

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """The app's ``cleanup_ctx``: runs (and the heartbeat renewing their leases)
        live inside this `Supervisor`."""
        async with Supervisor("graflow-async web runs") as sup:
            self._sup = sup
            self.closing = False
            self.stopped = asyncio.Event()
            sup.spawn(self._heartbeat(), name="graflow-async web run leases")
            try:
                yield
            finally:
                self._sup = None
                self.close_streams()
                sup.cancel_children()

    async def shutdown(self, app: web.Application) -> None:
        """The app's ``on_shutdown``: cancel in-flight runs and wait until they are
        recorded as cancelled, then end the event streams (which report it)."""
        self._sup = None  # no new runs
        tasks = list(self._tasks)
        for child in tasks:
            child.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self.close_streams()

    def close_streams(self) -> None:
        """End every event stream (the server is stopping)."""
        self.closing = True
        self.stopped.set()
        for live in self.live.values():
            live.pulse()

    def driving(self, run_id: str) -> bool:
        """Whether this process runs `run_id` now."""
        live = self.live.get(run_id)
        return live is not None and live.active and live.status == RUNNING

    def status_of(self, record: Mapping[str, Any]) -> str:
        return effective_status(record, self.owner, driving=self.driving(record["run_id"]), now=time.time())

    # --- starting and resuming -------------------------------------------------------------------
    async def start(self, name: str, inputs: dict[str, Any]) -> LiveRun:
        """Start workflow `name` with `inputs` as its channel; its record is stored first."""
        wf = self.workflows[name]
        self._check_open()
        live = LiveRun(uuid.uuid4().hex, name, wf.name, tasks=initial_tasks(wf))
        await self._save(live)
        self._remember(live)
        start = functools.partial(
            run,
            wf,
            run_id=live.run_id,
            feedback_store=self.store,
            initial_channel=inputs,
            on_event=self._listener(live, resumed=False),
            **self.run_options,
        )
        try:
            self._spawn(live, start, resumed=False)
        except ApiError:  # the app began shutting down meanwhile
            live.finish(CANCELLED, error="cancelled: the server shut down")
            await self._quietly(self._save(live))
            raise
        return live

    async def after_answer(self, run_id: str) -> None:
        """Resume suspended run `run_id` in the background once none of its requests is
        pending. Never raises: the answer is stored whatever happens here."""
        await self._quietly(self._resume_if_answered(run_id))

    async def _resume_if_answered(self, run_id: str) -> None:
        if not self.workflows or self._sup is None or self.driving(run_id):
            return  # a live run gets its answers in-process
        suspension = await self.hitl.get_suspension(run_id)
        if not suspension or not suspension.get("checkpoint"):
            return
        record = await self.records.get_run(run_id)
        if record is not None and self.status_of(record) not in (SUSPENDED, INTERRUPTED):
            return  # driven by another process, or over
        found = find_workflow(self.workflows, record, suspension)
        if found is None:
            self.log.warning(
                "not resuming run: its workflow is not served here",
                run_id=run_id,
                workflow=suspension.get("workflow"),
                served=sorted(self.workflows),
            )
            return
        if await self.hitl.list_pending(run_id):
            return
        if self._sup is None or self.driving(run_id):
            return  # decided meanwhile (another answer, or shutdown)
        key, wf = found
        live = self.live.get(run_id) or self._remember(
            LiveRun.from_record(record)
            if record is not None
            else LiveRun(run_id, key, wf.name, tasks=initial_tasks(wf))
        )
        live.restart()
        start = functools.partial(
            resume,
            str(suspension["checkpoint"]),
            workflow=wf,
            run_id=run_id,
            feedback_store=self.store,
            on_event=self._listener(live, resumed=True),
            **self.run_options,
        )
        self._spawn(live, start, resumed=True)
        self.log.info("resuming run", run_id=run_id, workflow=key, checkpoint=suspension["checkpoint"])

    # --- cancelling ------------------------------------------------------------------------------
    async def cancel(self, run_id: str, view: Mapping[str, Any] | None) -> str:
        """Cancel run `run_id`, of which `view` is what `RunViews.summary` reports (None:
        unknown). Returns the status to answer with: "cancelled", or "cancelling" while
        its owner (another process) has yet to notice. ApiError 404 unknown, 409 ended."""
        live = self.live.get(run_id)
        if live is not None and live.task is not None and self.driving(run_id):
            self._cancel_here(live, "cancelled by request")
            await asyncio.wait({live.task}, timeout=CANCEL_WAIT)
            return CANCELLED if live.status == CANCELLED else "cancelling"
        if view is None:
            raise ApiError(404, f"no run {run_id!r}")
        if view["status"] not in (RUNNING, SUSPENDED, INTERRUPTED):
            raise ApiError(409, f"run {run_id!r} has already ended ({view['status']})")
        if view["status"] == RUNNING:  # in another process, which notices at its next heartbeat
            await self.records.request_run_cancel(run_id)
            return "cancelling"
        await self._cancel_stopped(run_id, str(view["workflow"]))
        return CANCELLED

    async def _cancel_stopped(self, run_id: str, workflow: str) -> None:
        """A suspended run, or one whose process died (interrupted, resumable from its
        checkpoint), ends as cancelled: answers no longer resume it, and its pending
        requests are cancelled. (On Redis, workers already skip the tasks of a run whose
        driver died: its lease lapsed.)"""
        await self.hitl.set_suspension(run_id, None)
        for request in await self.hitl.list_pending(run_id):
            with contextlib.suppress(FeedbackError):  # answered or cancelled meanwhile
                await self.hitl.cancel(request.feedback_id)
        record = await self._readable_record(run_id)
        live = self.live.get(run_id) or self._remember(
            LiveRun.from_record(record) if record is not None else LiveRun(run_id, workflow, workflow)
        )
        live.finish(CANCELLED, error="cancelled by request")
        await self._save(live)

    def _cancel_here(self, live: LiveRun, reason: str) -> None:
        if live.task is not None and live.status == RUNNING:
            live.cancel_reason = reason
            live.task.cancel()

    # --- driving -----------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._sup is None:
            raise ApiError(503, "the server is not running runs (starting up or shutting down)")

    def _remember(self, live: LiveRun) -> LiveRun:
        self.live[live.run_id] = live
        if len(self.live) > MAX_LIVE:
            for old in [r for r in self.live.values() if not r.active][: len(self.live) - MAX_LIVE]:
                del self.live[old.run_id]
        return live

    def _listener(self, live: LiveRun, *, resumed: bool) -> Callable[[Event], Awaitable[None]]:
        """The run's ``on_event``: its events and task summaries, the app's metrics, and
        for a resumed run its record once it has started (`resume` may refuse first)."""
        metrics = self.metrics

        async def listen(event: Event) -> None:
            live.add_event(event)
            if metrics is not None:
                metrics.on_event(event)
            if resumed and event.kind == "run_started":
                self._count(live)
                await self._quietly(self._save(live))

        return listen

    def _spawn(self, live: LiveRun, start: Callable[[], Awaitable[WorkflowResult]], *, resumed: bool) -> None:
        self._check_open()
        assert self._sup is not None
        child = self._sup.spawn(self._drive(live, start, resumed), name=f"web run {live.run_id}")
        live.task = child
        self._tasks.add(child)
        child.add_done_callback(self._tasks.discard)

    async def _drive(self, live: LiveRun, start: Callable[[], Awaitable[WorkflowResult]], resumed: bool) -> None:
        """Run to the end and record the outcome; never raises (a child that raised
        would cancel every other run). What the run streams is followed meanwhile."""
        PUBLIC_URL.set(self.public_url)  # this task's context: the run's tasks inherit it
        if not resumed:  # a resumed run counts once it starts (resume may refuse first)
            self._count(live)
        following = self._follow_stream(live)
        suspended = False
        try:
            suspended = await self._outcome(live, start, resumed)
        finally:  # its last chunks are shown; a suspended run's stream stays open (followed again on resume)
            await _stop(following, wait=0.0 if suspended else STREAM_TAIL)
            local_streams().close(live.run_id, ended=not suspended)  # (opened here for a run that never drove)

    async def _outcome(self, live: LiveRun, start: Callable[[], Awaitable[WorkflowResult]], resumed: bool) -> bool:
        """`_drive`'s run and its outcome recorded: whether it suspended."""
        try:
            result = await start()
        except asyncio.CancelledError:
            await self._end(live, CANCELLED, error=live.cancel_reason or "cancelled: the server shut down")
            raise
        except (RunAlreadyRunningError, RunCompletedError) as exc:
            await (self._refused(live, exc) if resumed else self._failed(live, exc))
            return False
        except Exception as exc:
            await self._failed(live, exc)
            return False  # a resumed run keeps its suspension record: its checkpoint is still the way back
        pending = [r.feedback_id for r in result.pending_feedback]
        await self._end(live, result.status, results=result.results, checkpoint=result.checkpoint, pending=pending)
        if result.status == SUSPENDED:
            await self.after_answer(live.run_id)  # the last answer may have come while it was suspending
            return True
        if resumed:  # completed: nothing is left to resume
            await self._quietly(self.hitl.set_suspension(live.run_id, None))
        return False

    def _follow_stream(self, live: LiveRun) -> asyncio.Task[None]:
        """What the run's tasks stream, among its events (for ``/events`` and the run page)
        until its stream ends; in-process the stream is opened here, before the run."""
        transport = self.run_options.get("transport")
        if transport is None or not transport.keeps_streams:
            local_streams().open(live.run_id)

        async def follow() -> None:
            try:
                async for item in run_stream(live.run_id, transport=transport, after=live.stream_after):
                    live.add_stream_item(item)
            except Exception as exc:  # the run goes on without its stream on the page
                self.log.warning("stopped following a run's stream", run_id=live.run_id, error=str(exc)[:200])

        task = asyncio.ensure_future(follow())
        self._followers.add(task)
        task.add_done_callback(self._followers.discard)
        return task

    async def _failed(self, live: LiveRun, exc: Exception) -> None:
        self.log.warning("run failed", run_id=live.run_id, error=repr(exc)[:500])
        await self._end(live, FAILED, error=f"{type(exc).__name__}: {exc}")

    async def _end(self, live: LiveRun, status: str, **outcome: Any) -> None:
        live.finish(status, **outcome)
        if self.metrics is not None:
            self._count(live)  # a resume that failed before starting counts as a failed run
            self.metrics.run_ended(status)
            live.counted = False
        await self._quietly(self._save(live))

    def _count(self, live: LiveRun) -> None:
        if self.metrics is not None and not live.counted:
            self.metrics.run_started()
            live.counted = True

    async def _refused(self, live: LiveRun, exc: RunAlreadyRunningError | RunCompletedError) -> None:
        """`resume` would not run: another process runs the run (its record is theirs),
        or it completed since (its record says so now)."""
        self.log.info("not resuming run", run_id=live.run_id, reason=str(exc)[:300])
        record = await self._readable_record(live.run_id)
        if isinstance(exc, RunCompletedError):
            await self._quietly(self.hitl.set_suspension(live.run_id, None))
            live.finish(COMPLETED, results=(record or {}).get("results") or live.results)
            await self._quietly(self._save(live))
            return
        live.status = record["status"] if record is not None else SUSPENDED  # theirs now: views read the record
        live.pulse()

    async def _save(self, live: LiveRun) -> None:
        await self.records.save_run(live.to_record(self.owner))

    async def _heartbeat(self) -> None:
        """Renew the leases of the runs driven here, and stop those another process asked
        to cancel. Never raises."""
        while True:
            await asyncio.sleep(runstate.LEASE_SECONDS / 3)
            for live in [r for r in self.live.values() if self.driving(r.run_id)]:
                await self._quietly(self._renew(live))

    async def _renew(self, live: LiveRun) -> None:
        stored = await self._readable_record(live.run_id)  # a corrupt one is replaced by the save
        if stored is not None and stored["cancel_requested"]:
            self._cancel_here(live, "cancelled by request")
        elif self.driving(live.run_id):
            await self._save(live)

    async def _readable_record(self, run_id: str) -> dict[str, Any] | None:
        """The record of `run_id`, or None when there is none or it cannot be read (the
        store logged it; the next save of this run replaces it)."""
        try:
            return await self.records.get_run(run_id)
        except CorruptRecordError:
            return None

    async def _quietly(self, step: Awaitable[None]) -> None:
        try:
            await step
        except Exception as exc:
            self.log.error("background step of a web run failed", error=repr(exc)[:500])

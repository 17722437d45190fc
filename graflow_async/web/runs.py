"""Runs the web app starts or resumes: their records, the supervisor that owns them,
and automatic resumption once a suspended run's questions are answered (the HTTP
handlers are in `api.py`).

Every run task is a child of one `Supervisor` held open by the app's ``cleanup_ctx``:
when the app shuts down the children are cancelled and awaited, and their runs are
recorded as cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from ..actors import Supervisor
from ..checkpoints import resume
from ..events import Event, library_logger
from ..feedback.base import FeedbackStore
from ..graph import Workflow
from ..metrics import Metrics
from ..runner import WorkflowResult, run
from .http import ApiError

RUNNING, COMPLETED, SUSPENDED, FAILED, CANCELLED = "running", "completed", "suspended", "failed", "cancelled"
MAX_EVENTS = 10_000  # events kept per run for /events subscribers
MAX_RUNS = 1_000  # finished run records kept; the oldest are forgotten first
KEEPALIVE = 15.0  # seconds between SSE comments on a quiet stream


class RunRecord:
    """What the app knows of one run. Followers wait on `wake`, set on every change."""

    __slots__ = ("_wake", "checkpoint", "error", "events", "results", "run_id", "status", "total", "workflow")

    def __init__(self, run_id: str, workflow: str) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.status = RUNNING
        self.results: dict[str, Any] = {}
        self.error: str | None = None
        self.checkpoint: str | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.total = 0  # events ever added; the newest has sequence number `total`
        self._wake = asyncio.Event()

    @property
    def wake(self) -> asyncio.Event:
        return self._wake

    def pulse(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    def add_event(self, event: Event) -> None:
        self.events.append(
            {
                "kind": event.kind,
                "run_id": event.run_id,
                "task_id": event.task_id,
                "timestamp": event.timestamp,
                "data": dict(event.data),
            }
        )
        self.total += 1
        self.pulse()

    def since(self, seen: int) -> list[tuple[int, dict[str, Any]]]:
        """Events with sequence numbers after `seen` that are still kept."""
        first = self.total - len(self.events) + 1
        skip = max(seen + 1 - first, 0)
        return list(zip(itertools.count(first + skip), itertools.islice(self.events, skip, None), strict=False))

    def restart(self) -> None:
        self.status, self.error, self.checkpoint = RUNNING, None, None
        self.pulse()

    def finish(self, status: str, *, result: WorkflowResult | None = None, error: str | None = None) -> None:
        self.status = status
        self.error = error
        if result is not None:
            self.results = dict(result.results)
            self.checkpoint = result.checkpoint
        self.pulse()


class RunManager:
    """Starts, resumes and remembers runs; owns their tasks through a supervisor."""

    def __init__(
        self, store: FeedbackStore, workflows: Mapping[str, Workflow], run_options: dict[str, Any],
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.workflows = dict(workflows)
        self.run_options = run_options  # transport / checkpoint_store, only those given
        self.runs: OrderedDict[str, RunRecord] = OrderedDict()
        self.closing = False
        self._sup: Supervisor | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the supervisor's children, to await on shutdown
        self.log = library_logger().bind(component="web")

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """The app's ``cleanup_ctx``: runs live inside this supervisor."""
        async with Supervisor("graflow-async web runs") as sup:
            self._sup = sup
            self.closing = False
            try:
                yield
            finally:
                self._sup = None
                self.close_streams()
                sup.cancel_children()

    async def shutdown(self, app: web.Application) -> None:
        """The app's ``on_shutdown``: cancel in-flight runs and wait until they are
        recorded as cancelled, then end the event streams (which report it), so the
        server does not wait on them."""
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
        for record in self.runs.values():
            record.pulse()

    def start(self, name: str, inputs: dict[str, Any]) -> RunRecord:
        wf = self.workflows[name]
        self._check_open()
        record = self._record(uuid.uuid4().hex, name)
        start = functools.partial(
            run,
            wf,
            run_id=record.run_id,
            feedback_store=self.store,
            initial_channel=inputs,
            on_event=self._listener(record),
            **self.run_options,
        )
        self._spawn(record, start, resumed=False)
        return record

    async def after_answer(self, run_id: str) -> None:
        """Resume suspended run `run_id` in the background once none of its requests is
        pending. Never raises: the answer is stored whatever happens here."""
        await self._quietly(self._resume_if_answered(run_id))

    async def _resume_if_answered(self, run_id: str) -> None:
        if not self.workflows or self._sup is None or self._running(run_id):
            return  # a live run gets its answers in-process
        suspension = await self.store.get_suspension(run_id)
        if not suspension:
            return
        name, checkpoint = suspension.get("workflow"), suspension.get("checkpoint")
        wf = self.workflows.get(name) if isinstance(name, str) else None
        if wf is None or not checkpoint:
            self.log.info("not resuming run: workflow not served here", run_id=run_id, workflow=name)
            return
        if await self.store.list_pending(run_id):
            return
        if self._sup is None or self._running(run_id):
            return  # decided meanwhile (another answer, or shutdown)
        record = self.runs.get(run_id) or self._record(run_id, str(name))
        record.restart()
        start = functools.partial(
            resume,
            str(checkpoint),
            workflow=wf,
            run_id=run_id,
            feedback_store=self.store,
            on_event=self._listener(record),
            **self.run_options,
        )
        self._spawn(record, start, resumed=True)
        self.log.info("resuming run", run_id=run_id, workflow=name, checkpoint=checkpoint)

    async def follow(
        self, record: RunRecord, after: int = 0
    ) -> AsyncGenerator[tuple[int, dict[str, Any]] | None, None]:
        """The run's events after sequence `after`, then new ones until the run stops;
        None now and then on a quiet stream (for keep-alives)."""
        seen = after
        while True:
            wake = record.wake
            batch = record.since(seen)
            if batch:
                seen = batch[-1][0]
                for item in batch:
                    yield item
                continue
            if record.status != RUNNING or self.closing:
                return
            try:
                async with asyncio.timeout(KEEPALIVE):
                    await wake.wait()
            except TimeoutError:
                yield None

    # --- internals ---------------------------------------------------------------------
    def _running(self, run_id: str) -> bool:
        record = self.runs.get(run_id)
        return record is not None and record.status == RUNNING

    def _check_open(self) -> None:
        if self._sup is None:
            raise ApiError(503, "the server is not running runs (starting up or shutting down)")

    def _record(self, run_id: str, workflow: str) -> RunRecord:
        record = self.runs[run_id] = RunRecord(run_id, workflow)
        if len(self.runs) > MAX_RUNS:
            for old in [r for r in self.runs.values() if r.status != RUNNING][: len(self.runs) - MAX_RUNS]:
                del self.runs[old.run_id]
        return record

    def _listener(self, record: RunRecord) -> Callable[[Event], None]:
        """The run's ``on_event``: its record's event list, and the app's metrics."""
        metrics = self.metrics
        if metrics is None:
            return record.add_event

        def listen(event: Event) -> None:
            record.add_event(event)
            metrics.on_event(event)

        return listen

    def _spawn(self, record: RunRecord, start: Callable[[], Awaitable[WorkflowResult]], *, resumed: bool) -> None:
        self._check_open()
        assert self._sup is not None
        child = self._sup.spawn(self._drive(record, start, resumed), name=f"web run {record.run_id}")
        self._tasks.add(child)
        child.add_done_callback(self._tasks.discard)

    async def _drive(self, record: RunRecord, start: Callable[[], Awaitable[WorkflowResult]], resumed: bool) -> None:
        """Run to the end and record the outcome; never raises (a child that raised
        would cancel every other run)."""
        if self.metrics is not None:
            self.metrics.run_started()
        try:
            result = await start()
        except asyncio.CancelledError:
            self._finish(record, CANCELLED, error="cancelled: the server shut down")
            raise
        except Exception as exc:
            self.log.warning("run failed", run_id=record.run_id, error=repr(exc))
            self._finish(record, FAILED, error=f"{type(exc).__name__}: {exc}")
            return  # a resumed run keeps its suspension record: its checkpoint is still the way back
        self._finish(record, result.status, result=result)
        if result.status == SUSPENDED:
            # The last answer may have come while the run was suspending.
            await self.after_answer(record.run_id)
        elif resumed:  # completed: nothing is left to resume
            await self._quietly(self.store.set_suspension(record.run_id, None))

    def _finish(self, record: RunRecord, status: str, **outcome: Any) -> None:
        record.finish(status, **outcome)
        if self.metrics is not None:
            self.metrics.run_ended(status)

    async def _quietly(self, step: Awaitable[None]) -> None:
        try:
            await step
        except Exception as exc:
            self.log.error("background step of a web run failed", error=repr(exc))

"""The run's answers to its tasks' context requests: channel operations, checkpoints,
feedback.

`RunServices.handle` runs in the run actor's turn. Channel operations are applied at
once (one at a time, so `append` and `incr` are atomic across tasks); a checkpoint is
taken at once (a consistent instant, with a number allocated here, so concurrent
checkpoints never share one) and written by a child task; a feedback request is
served by a child that waits for the answer. Children report back through `post`,
so every reply and event still leaves from the run actor's turn.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from graflow_async.exceptions import CheckpointError, TransportError
from graflow_async.logs import LibraryLog
from graflow_async.plan import RunPlan
from graflow_async.plan.snapshot import to_doc
from graflow_async.result import WorkflowResult
from graflow_async.run.checkpoints import CheckpointManager
from graflow_async.run.feedback_host import FeedbackHost, Turns
from graflow_async.run.options import Resumed, RunOptions
from graflow_async.run.recording import Recording
from graflow_async.wire.messages import ContextReply, ContextRequest

log = LibraryLog()
_LATER: Any = object()  # the answer comes from a child
MAX_PATH = 4096
REMEMBERED = 10_000  # answers kept for requests sent again


class Host(Turns, Protocol):
    """The run actor, as its services see it."""

    def queue_reply(self, request: ContextRequest, reply: ContextReply) -> None:
        """Send `reply` to the task that sent `request`, at the end of this turn."""

    def is_remote(self, node: int) -> bool:
        """Whether task `node` runs in another process (its requests may come again)."""


class RunServices:
    """What the run of `plan` offers its tasks, for the run actor `host`. `resumed`: the
    run continues from a checkpoint (its later checkpoints are numbered after it)."""

    def __init__(
        self,
        plan: RunPlan,
        options: RunOptions,
        host: Host,
        *,
        workflow_ref: str | None,
        checkpoints: CheckpointManager,
        feedback: FeedbackHost,
        resumed: Resumed | None = None,
    ) -> None:
        self.plan = plan
        self.compiled = plan.graph.compiled
        self.channel = plan.channel
        self.run_id = options.run_id
        self.workflow_ref = workflow_ref
        self.checkpoints = checkpoints
        self.feedback = feedback
        self.sequence = resumed.sequence if resumed else 0  # the highest checkpoint number the run has used
        # A resumed run may have checkpoints after the one it resumed from: it numbers after
        # them, which takes a listing of the store, done once, on its first checkpoint.
        self._sequence_known = resumed is None
        self._listing = asyncio.Lock()
        self._reply = host.queue_reply
        self._remote = host.is_remote  # whether a task node's requests come from another process (and may come again)
        self._answers: OrderedDict[str, ContextReply] = OrderedDict()  # the last answers, for requests sent again
        self._working: set[str] = set()  # requests whose answer a child is working out
        self.recording: Recording | None = None  # a durable run's: where its channel writes go as facts
        self.post = host.post
        self.spawn = host.spawn
        self.emit = host.emit
        self._ops: dict[str, Callable[[ContextRequest], Any]] = {
            "channel.get": self._get,
            "channel.set": self._set,
            "channel.delete": self._delete,
            "channel.keys": lambda r: self.channel.keys(),
            "channel.append": self._append,
            "channel.incr": self._incr,
            "channel.snapshot": lambda r: self.channel.snapshot(),
            "checkpoint": self._checkpoint,
            "feedback": self._feedback,
            "throttled": self._throttled,
            "admitted": self._admitted,
        }

    def handle(self, request: ContextRequest) -> None:
        if request.request_id in self._answers:  # sent again: its answer was lost on the way
            self._reply(request, self._answers[request.request_id])
            return
        if request.request_id in self._working:
            return  # sent again while being answered: one answer will do
        if request.run_id != self.run_id or not self.plan.is_current(request.node, request.cycle, request.attempt):
            log.warning(
                "dropped a context request from a task that is not running in this run",
                run_id=self.run_id,
                from_run=request.run_id,
                node=request.node,
                op=request.op,
            )
            if request.run_id == self.run_id and 0 <= request.node < len(self.plan.status):
                error = TransportError(f"run {self.run_id} is not running this attempt of the task any more")
                self.answer(request, ContextReply(request.request_id, False, None, error))
            return
        op = self._ops.get(request.op)
        try:
            if op is None:
                raise ValueError(f"unknown context operation {request.op!r}")
            if not isinstance(request.args, dict):
                raise TypeError("context request arguments must be a map")
            value = op(request)
        except Exception as exc:
            self.answer(request, ContextReply(request.request_id, False, None, exc))
            return
        if value is _LATER:
            if self._remote(request.node):
                self._working.add(request.request_id)
        else:
            self.answer(request, ContextReply(request.request_id, True, value))

    def answer(self, request: ContextRequest, reply: ContextReply) -> None:
        """Send `reply`; a remote task's is kept a while, for a copy of `request` sent again
        (a task in this process never sends one twice)."""
        if self._remote(request.node):
            self._working.discard(request.request_id)
            answers = self._answers
            answers[request.request_id] = reply
            if len(answers) > REMEMBERED:
                answers.popitem(last=False)
        self._reply(request, reply)

    # --- the channel ---------------------------------------------------------------------------
    def _get(self, request: ContextRequest) -> list[Any]:
        data = self.channel.data
        key = request.args.get("key")
        return [True, data[key]] if isinstance(key, str) and key in data else [False, None]

    def _set(self, request: ContextRequest) -> None:
        key, value = request.args.get("key"), request.args.get("value")
        self._channel_write(request, "set", key, value, lambda: self.channel.set(key, value))  # type: ignore[arg-type]

    def _delete(self, request: ContextRequest) -> None:
        key = request.args.get("key")
        if isinstance(key, str):
            self._channel_write(request, "delete", key, None, lambda: self.channel.delete(key))

    def _append(self, request: ContextRequest) -> int:
        key, value = request.args.get("key"), request.args.get("value")
        return self._channel_write(request, "append", key, value, lambda: self.channel.append(key, value))  # type: ignore[arg-type]

    def _incr(self, request: ContextRequest) -> int | float:
        key, amount = request.args.get("key"), request.args.get("amount", 1)
        return self._channel_write(request, "incr", key, amount, lambda: self.channel.incr(key, amount))  # type: ignore[arg-type]

    def _channel_write(self, request: ContextRequest, op: str, key: Any, value: Any, write: Callable[[], Any]) -> Any:
        """Make a channel write; a durable run records it as a fact once it took effect (and
        refuses, with TypeError for the task, a value its journal cannot keep)."""
        recording, by = self.recording, (request.node, request.cycle, request.attempt)
        record = recording.encoded(op, key, value, by) if recording is not None else None
        out = write()
        if record is not None:
            assert recording is not None
            recording.wrote(record, by)
        return out

    # --- the end ------------------------------------------------------------------------------
    async def suspend(self, duration: float, nodes: tuple[int, ...]) -> WorkflowResult:
        """Every running task has finished and `nodes` wait for answers: save the run,
        record where it waits, and return its result."""
        sequence = await self.next_sequence()
        doc = self.snapshot(None, None, sequence)
        location = await self.checkpoints.save(doc, name=f"{self.run_id}/{sequence}.ckpt")
        pending = [self.feedback.timed_out[n] for n in nodes if n in self.feedback.timed_out]
        record = {"checkpoint": location, "workflow": self.plan.graph.workflow_name}
        await self.feedback.store().set_suspension(self.run_id, record)
        self.emit("checkpoint_saved", None, location=location, sequence=sequence)
        pending_ids = [r.feedback_id for r in pending]
        self.emit("run_suspended", None, checkpoint=location, duration=duration, pending_feedback=pending_ids)
        return WorkflowResult(
            run_id=self.run_id,
            status="suspended",
            results=dict(self.plan.results),
            output=self.plan.output(),
            channel=self.channel.snapshot(),
            checkpoint=location,
            pending_feedback=pending,
            skipped=self.plan.skipped(),
        )

    # --- checkpoints -----------------------------------------------------------------------------
    async def next_sequence(self) -> int:
        """The next checkpoint number: distinct for concurrent checkpoints (taken with no
        await between reading and writing it)."""
        if not self._sequence_known:
            async with self._listing:
                if not self._sequence_known:
                    self.sequence = await self.checkpoints.next_sequence(self.run_id, self.sequence) - 1
                    self._sequence_known = True
        self.sequence += 1
        return self.sequence

    def snapshot(
        self, task_id: str | None, metadata: dict[str, Any] | None, sequence: int, *, keep_running: bool = False
    ) -> dict[str, Any]:
        return to_doc(
            self.plan,
            self.compiled,
            run_id=self.run_id,
            workflow_ref=self.workflow_ref,
            task_id=task_id,
            metadata=metadata,
            sequence=sequence,
            channel=self.channel.snapshot(),
            keep_running=keep_running,
        )

    def _throttled(self, request: ContextRequest) -> None:
        """The attempt waits for its limits (SPEC 11): `limits`, the names it waits for."""
        limits = request.args.get("limits")
        names = [str(n)[:200] for n in limits[:16]] if isinstance(limits, list) else []
        self.emit("task_throttled", self.plan.graph.ids[request.node], attempt=request.attempt, limits=names)

    def _admitted(self, request: ContextRequest) -> None:
        """The attempt that waited for its limits starts; `waited`: seconds it waited."""
        waited = request.args.get("waited")
        waited = float(waited) if isinstance(waited, int | float) and 0 <= waited < 1e9 else None
        self.emit("task_admitted", self.plan.graph.ids[request.node], attempt=request.attempt, waited=waited)

    def _checkpoint(self, request: ContextRequest) -> Any:
        path, metadata = request.args.get("path"), request.args.get("metadata") or {}
        if path is not None and (not isinstance(path, str) or not path or len(path) > MAX_PATH):
            raise CheckpointError("checkpoint path must be a non-empty string")
        if not isinstance(metadata, dict):
            raise TypeError(f"checkpoint metadata must be a dict, got {type(metadata).__name__}")
        task_id = self.plan.graph.ids[request.node]
        doc = self.snapshot(task_id, metadata, 0)  # now, in this turn: a consistent instant
        self.spawn(self._write(request, task_id, doc, path))
        return _LATER

    async def _write(self, request: ContextRequest, task_id: str, doc: dict[str, Any], path: str | None) -> None:
        try:
            sequence = doc["sequence"] = await self.next_sequence()
            location = await self.checkpoints.save(doc, name=f"{self.run_id}/{sequence}.ckpt", path=path)
        except Exception as exc:
            self._fail_later(request, exc)
            return

        def saved() -> None:
            self.emit("checkpoint_saved", task_id, location=location, sequence=sequence)
            self.answer(request, ContextReply(request.request_id, True, location))

        self.post(saved)

    def _fail_later(self, request: ContextRequest, error: Exception) -> None:
        self.post(lambda: self.answer(request, ContextReply(request.request_id, False, None, error)))

    # --- feedback -----------------------------------------------------------------------------------
    def _feedback(self, request: ContextRequest) -> Any:
        self.spawn(self._serve_feedback(request))
        return _LATER

    async def _serve_feedback(self, request: ContextRequest) -> None:
        task_id = self.plan.graph.ids[request.node]
        try:
            value = await self.feedback.serve(request.node, task_id, request.cycle, request.args)
        except Exception as exc:
            self._fail_later(request, exc)
            return
        self.post(lambda: self.answer(request, ContextReply(request.request_id, True, value)))

"""The run supervisor, `RunState`, and what a run returns, `WorkflowResult`.

The run supervisor (`RunState`) is an actor whose inbox is the run's reply queue on
the transport. It dispatches ready tasks as `TaskMessage`s to the task queue,
receives `TaskReply`s, and for each one decides, without awaiting anything, what
follows: successors that became ready, a retry later (`policies.retry_delay`), a
group member finished and the group's policy verdict, or the end of the run. Then it
acts: resolves parameters and sends the next messages. Executors (in-process for the
memory transport) run the tasks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .actors import Actor, Supervisor
from .checkpoints.manager import CheckpointManager
from .checkpoints.snapshot import take_snapshot
from .clock import current_clock
from .compile import CompiledGraph
from .context import Channel, TaskContext
from .events import Emitter
from .exceptions import (
    RemoteTaskError,
    RetryLimitExceededError,
    TaskFailedError,
    WorkflowCancelledError,
)
from .executor import Executor
from .feedback.base import FeedbackStore
from .feedback.hitl import FeedbackSuspended, open_feedback_store
from .feedback.models import FeedbackRequest
from .messages import RetryDue, TaskMessage, TaskReply
from .policies import RetryPolicy, TaskResult, retry_delay
from .routes import Route, route_for
from .tasks import _MISSING, Task
from .transports.base import Transport


@dataclass(frozen=True, slots=True)
class WorkflowResult:
    """What `run` returns. `output` is the single sink task's result, or a dict keyed by
    sink id when there are several; `results` holds every completed task's result."""

    run_id: str
    status: str  # "completed" or "suspended"
    results: dict[str, Any]
    output: Any
    channel: dict[str, Any]
    checkpoint: str | None = None
    pending_feedback: list[Any] = field(default_factory=list)


class _Group:
    __slots__ = ("busy", "results")

    def __init__(self) -> None:
        self.results: dict[int, TaskResult] = {}
        self.busy: dict[int, float] = {}  # member -> seconds its tasks ran so far


class RunState(Actor["TaskReply | RetryDue"]):
    """One run of a compiled graph: the supervisor actor and the run's state."""

    def __init__(
        self,
        graph: CompiledGraph,
        *,
        run_id: str,
        transport: Transport,
        channel: Channel,
        emitter: Emitter,
        default_retry: RetryPolicy,
        checkpoints: CheckpointManager,
        workflow_ref: str | None = None,
        feedback_store: Any = None,
    ) -> None:
        self.graph = graph
        self.run_id = run_id
        self.transport = transport
        self.channel = channel
        self.emitter = emitter
        self.log = emitter.log
        n = len(graph.ids)
        self.retry: list[RetryPolicy] = [
            (t.retry_policy or default_retry) if t is not None else default_retry for t in graph.tasks
        ]
        self.results: dict[str, Any] = {}
        self.done = [False] * n
        self.remaining = list(graph.npreds)
        self.attempts = [0] * n
        self.group_state = [_Group() for _ in graph.groups]
        self.ready: list[int] = []
        self.inflight = 0  # dispatched attempts and pending retries
        self.failure: BaseException | None = None
        self.terminated: str | None = None
        main = route_for(transport, run_id)
        self.reply_queue = main.reply_to
        self.task_queue = main.task_queue
        self.routes: list[Route] = [main] * n  # where each node's tasks go; see add_route
        self.clock = current_clock()
        self._sup: Supervisor | None = None
        # checkpoints and resume (see checkpoints/snapshot.py)
        self.checkpoints = checkpoints
        self.workflow_ref = workflow_ref
        self.initial_ready: list[int] = list(graph.roots)
        self.checkpoint_sequence = 0
        # A resumed run may have checkpoints after the one it resumed from: it numbers
        # after them (restore_snapshot clears this); a fresh run starts at 1.
        self.sequence_known = True
        self.resumed_metadata: dict[str, dict[str, Any]] = {}
        self.feedback_state: dict[str, Any] = {}
        # human in the loop (see feedback/hitl.py)
        self._feedback_spec = feedback_store
        self._feedback_store: FeedbackStore | None = None
        self.suspended: list[tuple[int, FeedbackRequest]] = []

    def add_route(self, nodes: list[int], route: Route) -> None:
        """Send `nodes`' tasks through `route` instead of the run's transport."""
        for node in nodes:
            self.routes[node] = route

    # --- lifecycle -----------------------------------------------------------------
    async def execute(self) -> WorkflowResult:
        """Run to the end; return the result or raise what failed the run."""
        self.emitter.record("run_started", workflow=self.graph.workflow_name)
        started = time.perf_counter()
        routes = list({id(r): r for r in self.routes}.values())
        try:
            async with Supervisor(f"run {self.run_id}") as sup:
                self._sup = sup
                for route in routes:
                    if route.transport.in_process:
                        sup.spawn(Executor(route.transport, route.task_queue).run(), name=f"executor {self.run_id}")
                    if route.transport is not self.transport:  # its replies join the run's inbox
                        sup.spawn(self._pump(route), name=f"replies {route.reply_to}")
                await self.run(self.transport.inbox(self.reply_queue))
                sup.cancel_children()  # executors, pumps, retry timers, tasks of a failed run
        finally:
            self._sup = None
            for route in routes:
                await route.close(self.run_id)
        duration = time.perf_counter() - started
        if self.failure is not None:
            self.emitter.record("run_failed", error=repr(self.failure), duration=duration)
            await self.emitter.flush()
            raise self.failure
        if self.suspended:
            return await self._suspend(duration)
        if self._feedback_store is not None:  # an answer resumed it, or it never suspended
            await self._feedback_store.set_suspension(self.run_id, None)
        result = WorkflowResult(
            run_id=self.run_id, status="completed", results=dict(self.results),
            output=self._output(), channel=await self.channel.snapshot(),
        )
        self.emitter.record("run_completed", duration=duration, terminated=self.terminated)
        await self.emitter.flush()
        return result

    async def on_start(self) -> None:
        self.ready.extend(self.initial_ready)
        await self._act()

    async def on_batch(self, messages: list[TaskReply | RetryDue]) -> None:
        for message in messages:
            if isinstance(message, RetryDue):
                self.inflight -= 1
                self.ready.append(message.node)
            else:
                self._on_reply(message)
            if self.failure is not None or self.terminated is not None:
                break
        await self._act()

    # --- deciding (synchronous: state changes only) ----------------------------------
    def _on_reply(self, r: TaskReply) -> None:
        node = r.node
        if self.done[node] or r.attempt != self.attempts[node]:
            return  # a duplicate or stale delivery
        self.inflight -= 1
        if r.ok:
            self._completed(node, r.value, r.duration, r.control)
        elif isinstance(r.error, FeedbackSuspended):
            self.suspended.append((node, r.error.request))  # runs again on resume
        else:
            self._failed(node, r.error, r.duration, r.attempt, r.retryable)

    def _completed(self, node: int, value: Any, duration: float, control: tuple[str, str] | None) -> None:
        graph = self.graph
        task_id = graph.ids[node]
        self.results[task_id] = value
        self.done[node] = True
        if self.emitter.wants_steps:
            self.emitter.record("task_completed", task_id, attempt=self.attempts[node], duration=duration)
        if control is not None:
            kind, reason = control
            if kind == "cancel":
                self.failure = WorkflowCancelledError(task_id, reason)
            else:
                self.terminated = reason
            return
        self._release(node)
        group = graph.group_of[node]
        if group >= 0:
            busy = self.group_state[group].busy
            member = graph.member_of[node]
            busy[member] = busy.get(member, 0.0) + duration
            if graph.tail_of.get(node) is not None:
                self._member_finished(group, member, TaskResult(task_id, True, value, None, busy[member]))

    def _release(self, node: int) -> None:
        """`node` is done: successors whose predecessors are all done become ready."""
        remaining, tasks = self.remaining, self.graph.tasks
        for s in self.graph.succs[node]:
            if tasks[s] is None:
                continue  # a group barrier: finished by its group, not by counting
            remaining[s] -= 1
            if remaining[s] == 0:
                self.ready.append(s)

    def _failed(
        self, node: int, error: BaseException | None, duration: float, attempt: int, retryable: bool
    ) -> None:
        graph = self.graph
        task_id = graph.ids[node]
        policy = self.retry[node]
        delay = retry_delay(policy, attempt, retryable=retryable)
        if delay is not None:
            self.emitter.record("task_retrying", task_id, attempt=attempt, delay=delay, error=repr(error))
            self.inflight += 1
            assert self._sup is not None
            self._sup.spawn(self._retry_after(node, delay), name=f"retry {task_id}")
            return
        if isinstance(error, RemoteTaskError) and not error.task_id:
            error.task_id = task_id
        final = _final_error(task_id, error, attempt, policy, retryable)
        self.emitter.record("task_failed", task_id, attempt=attempt, error=repr(error))
        group = graph.group_of[node]
        if group < 0:
            self.failure = final
        else:
            member = graph.member_of[node]
            busy = self.group_state[group].busy.get(member, 0.0) + duration
            raw = error if error is not None else final
            self._member_finished(group, member, TaskResult(task_id, False, None, raw, busy))

    def _member_finished(self, group: int, member: int, result: TaskResult) -> None:
        state = self.group_state[group]
        if member in state.results:
            return
        info = self.graph.groups[group]
        state.results[member] = result
        if len(state.results) < len(info.member_ids):
            return
        results = {info.member_ids[i]: state.results[i] for i in range(len(info.member_ids))}
        verdict: BaseException | None = None
        try:
            info.policy.on_group_finished(info.name, results)
        except Exception as exc:
            verdict = exc
        self.emitter.record(
            "group_finished", None, group_id=info.name, success=verdict is None,
            failed=[m for m, r in results.items() if not r.success],
        )
        self._group_finished(group, verdict)

    def _group_finished(self, group: int, verdict: BaseException | None) -> None:
        graph = self.graph
        info = graph.groups[group]
        barrier = info.barrier
        parent = graph.group_of[barrier]
        if verdict is None:
            self.done[barrier] = True
            self._release(barrier)
            where = graph.tail_of.get(barrier)
            if where is not None:
                busy = sum(r.duration for r in self.group_state[group].results.values())
                self._member_finished(*where, TaskResult(info.name, True, None, None, busy))
        elif parent < 0:
            self.failure = verdict
        else:
            result = TaskResult(info.name, False, None, verdict, 0.0)
            self._member_finished(parent, graph.member_of[barrier], result)

    # --- acting ------------------------------------------------------------------------
    async def _act(self) -> None:
        """Send what became ready; then stop if the run is over."""
        while self.ready and self.failure is None and self.terminated is None and not self.suspended:
            nodes, self.ready = self.ready, []
            batches: dict[int, list[TaskMessage]] = {}
            for node in nodes:
                message = await self._message(node)
                if message is not None:
                    batches.setdefault(id(self.routes[node]), []).append(message)
            for batch in batches.values():
                route = self.routes[batch[0].node]
                await route.transport.send(route.task_queue, batch)
        await self.emitter.flush()
        if self.failure is not None or self.terminated is not None or self.inflight == 0:
            self.stop()

    async def _message(self, node: int) -> TaskMessage | None:
        graph = self.graph
        task = graph.tasks[node]
        assert task is not None
        attempt = self.attempts[node] + 1
        try:
            kwargs = await self._resolve(task) if task.params else task.bound
        except TaskFailedError as exc:  # a missing parameter: retrying would not help
            self.attempts[node] = attempt
            self._failed(node, exc, 0.0, attempt, retryable=False)
            return None
        self.attempts[node] = attempt
        self.inflight += 1
        if self.emitter.wants_steps:
            self.emitter.record("task_started", task.id, attempt=attempt)
        route = self.routes[node]
        if route.remote:  # a worker builds its own context and finds the task by its ref
            return TaskMessage(self.run_id, task.id, node, attempt, route.reply_to, kwargs, task.timeout,
                               task.ref, inject_context=task.inject_context)
        context = (
            TaskContext(self, task.id, attempt, self.resumed_metadata.get(task.id))
            if task.inject_context else None
        )
        return TaskMessage(self.run_id, task.id, node, attempt, route.reply_to, kwargs, task.timeout,
                           None, task, context)

    async def _resolve(self, task: Task) -> dict[str, Any]:
        """Arguments by SPEC order: bound kwarg, a completed task's result, channel key,
        default; else TaskFailedError naming the parameter."""
        kwargs = dict(task.bound)
        results = self.results
        for p in task.params:
            name = p.name
            if name in kwargs:
                continue
            if name in results:
                kwargs[name] = results[name]
                continue
            value = await self.channel.get(name, _MISSING)
            if value is not _MISSING:
                kwargs[name] = value
            elif not p.has_default:
                raise TaskFailedError(
                    task.id, None,
                    f"task {task.id!r}: no value for parameter {name!r} (not bound, no task "
                    f"with that id has completed, not in the channel, and no default)",
                )
        return kwargs

    async def _pump(self, route: Route) -> None:
        inbox = route.transport.inbox(route.reply_to)
        while True:
            await self.transport.send(self.reply_queue, await inbox.receive_batch())

    async def _retry_after(self, node: int, delay: float) -> None:
        await self.clock.sleep(delay)
        await self.transport.send(self.reply_queue, (RetryDue(node),))

    async def _suspend(self, duration: float) -> WorkflowResult:
        """Every running task has finished and some wait for answers: save and return."""
        channel = await self.channel.snapshot()
        self.checkpoint_sequence = await self._next_sequence()
        doc = take_snapshot(self, None, None, self.checkpoint_sequence, channel)
        location = await self.checkpoints.save(doc, name=f"{self.run_id}/{self.checkpoint_sequence}.ckpt")
        pending = [request for _, request in self.suspended]
        await self.feedback_store().set_suspension(
            self.run_id, {"checkpoint": location, "workflow": self.graph.workflow_name}
        )
        self.emitter.record("checkpoint_saved", None, location=location, sequence=self.checkpoint_sequence)
        self.emitter.record("run_suspended", checkpoint=location, duration=duration,
                            pending_feedback=[r.feedback_id for r in pending])
        await self.emitter.flush()
        return WorkflowResult(
            run_id=self.run_id, status="suspended", results=dict(self.results), output=self._output(),
            channel=channel, checkpoint=location, pending_feedback=pending,
        )

    async def _next_sequence(self) -> int:
        if not self.sequence_known:  # once per resumed run: later numbers are ours
            self.sequence_known = True
            return await self.checkpoints.next_sequence(self.run_id, self.checkpoint_sequence)
        return self.checkpoint_sequence + 1

    def feedback_store(self) -> FeedbackStore:
        """The run's feedback store, opened on first use."""
        if self._feedback_store is None:
            self._feedback_store = open_feedback_store(self._feedback_spec)
        return self._feedback_store

    async def close_feedback_store(self) -> None:
        store = self._feedback_store
        if store is not None and store is not self._feedback_spec:
            await store.aclose()
        self._feedback_store = None

    def notify(self, request: FeedbackRequest, config: dict[str, Any]) -> None:
        """Send the request's notification in the background; a failing hook only logs."""
        from .feedback.notify import notify

        if self._sup is not None:
            self._sup.spawn(notify(request, config), name=f"notify {request.feedback_id}")

    def _output(self) -> Any:
        graph = self.graph
        sinks = [graph.ids[s] for s in graph.sinks]
        if len(sinks) == 1:
            return self.results.get(sinks[0])
        return {s: self.results[s] for s in sinks if s in self.results}

    # --- services for the task context ---------------------------------------------------
    async def save_checkpoint(
        self, ctx: TaskContext, path: str | None, metadata: dict[str, Any] | None
    ) -> str:
        """Write a checkpoint of the run as it is now (called by `TaskContext.checkpoint`)."""
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"checkpoint metadata must be a dict, got {type(metadata).__name__}")
        channel = await self.channel.snapshot()
        sequence = self.checkpoint_sequence = await self._next_sequence()
        doc = take_snapshot(self, ctx.task_id, metadata, sequence, channel)
        location = await self.checkpoints.save(doc, name=f"{self.run_id}/{sequence}.ckpt", path=path)
        await self.emitter.emit("checkpoint_saved", ctx.task_id, location=location, sequence=sequence)
        return location



def _final_error(
    task_id: str, error: BaseException | None, attempt: int, policy: RetryPolicy, retryable: bool
) -> BaseException:
    """The error `run` raises for a task that failed for good."""
    if isinstance(error, TaskFailedError) and error.task_id == task_id and not (
        retryable and policy.max_retries > 0
    ):
        return error  # already says it all (a timeout, a missing parameter)
    if retryable and policy.max_retries > 0:
        assert error is not None
        return RetryLimitExceededError(task_id, error, attempt, policy.max_retries)
    return TaskFailedError(task_id, error)

"""The run actor: a thin actor that carries out what the run plan decides.

It reads its mailbox, which is fed by every route's reply queue (handed over as sent
in-process and by the Redis transport's reader, pumped by a child from a queue that
cannot hand over) and by its own children (retry timers, checkpoint writes, feedback
waits). For each batch it tells the plan the facts (`TaskReply`, `RetryDue`), answers
context requests (`services.RunServices`), then performs the plan's actions: sends
`TaskMessage`s, starts retry timers, reports events, and stops when the plan says the
run is over. It talks to its tasks only through messages; the executor that runs them
in this process is one of its children, an actor over the run's task queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

from graflow_async.actors import Actor, MailboxClosed, MailboxReceiver, MailboxSender, Supervisor, open_mailbox
from graflow_async.clock import current_clock
from graflow_async.exceptions import TransportError
from graflow_async.execute.executor import Executor
from graflow_async.plan import Dispatch, Emit, Fail, RetryLater, RunPlan, Suspend
from graflow_async.result import WorkflowResult
from graflow_async.run.checkpoints import CheckpointManager
from graflow_async.run.dispatch import local_messages, remote_message
from graflow_async.run.emitter import Emitter
from graflow_async.run.feedback_host import FeedbackHost
from graflow_async.run.options import Resumed, RunOptions
from graflow_async.run.ownership import hold, reclaim
from graflow_async.run.recording import FactWriter, Recording, Sends, Takeover
from graflow_async.run.replies import add_error, resolved
from graflow_async.run.routes import Route, distinct
from graflow_async.run.services import RunServices
from graflow_async.run.streams import RunStream
from graflow_async.run.takeover import snapshot_bytes
from graflow_async.transports.base import Transport
from graflow_async.wire.messages import (
    ContextReply,
    ContextRequest,
    Delivered,
    QueueFailed,
    QueueLost,
    RetryDue,
    StreamChunk,
    TaskMessage,
    TaskReply,
    TasksLost,
)


class Later(NamedTuple):
    """A child's report, run in the run actor's turn."""

    fn: Callable[[], None]


class RunActor(Actor[Any]):
    """One run: the plan, the routes its tasks take, and the services its tasks call.
    `feedback_store` is the store its questions go to (None: the default file store);
    `resumed` when it continues from a checkpoint."""

    def __init__(
        self,
        plan: RunPlan,
        options: RunOptions,
        *,
        routes: list[Route],
        emitter: Emitter,
        checkpoints: CheckpointManager,
        feedback_store: Any,
        workflow_ref: str | None,
        resumed: Resumed | None = None,
        facts: FactWriter | None = None,
        taken_over: Takeover | None = None,
    ) -> None:
        self.plan = plan
        self.graph = plan.graph
        self.options = options
        self.stream: RunStream | None = None  # what its tasks stream, in this process (SPEC 12)
        self.run_id = options.run_id
        self.routes = routes
        only = distinct(routes)
        self._only_route = only[0] if len(only) == 1 else None  # the route of every task, if one
        self.channel = plan.channel
        self.emitter = emitter
        self.resumed_metadata = dict(resumed.metadata) if resumed is not None else {}
        self._sender: MailboxSender[Any]
        self._inbox: MailboxReceiver[Any]
        self._sender, self._inbox = open_mailbox()
        self._sup: Supervisor | None = None
        self._outbox: list[tuple[Transport, str, Any]] = []  # context replies, tasks sent again
        self._awaited: dict[int, tuple[Route, TaskMessage]] = {}  # remote tasks sent, not answered yet
        self.outcome: Any = None
        self.trace: dict[str, str] | None = None  # the run span's context, for its task messages
        self.feedback = FeedbackHost(
            self.run_id, feedback_store, current_clock(), self, owned=options.feedback_store is None
        )
        self.services = RunServices(
            plan,
            options,
            self,
            workflow_ref=workflow_ref,
            checkpoints=checkpoints,
            feedback=self.feedback,
            resumed=resumed,
        )
        self.checkpoints = checkpoints
        self._taken_over = taken_over  # a run taken over: the replies that came while no driver lived
        self._recording = Recording(facts, self._journal_snapshot) if facts is not None else None  # a durable run's
        self.services.recording = self._recording

    # --- lifecycle ----------------------------------------------------------------------------
    async def execute(self) -> WorkflowResult:
        """Run to the end; return the result or raise what failed the run."""
        self.emitter.record("run_started", workflow=self.graph.workflow_name)
        started = time.perf_counter()
        routes = distinct(self.routes)
        try:
            async with Supervisor(f"run {self.run_id}") as sup:
                self._sup = sup
                detach = [self._connect(route, sup) for route in routes]
                held = [route for route in routes if route.epoch]
                if held:
                    sup.spawn(hold(held, self.options.owner_lease, self.emitter.log), name=f"lease {self.run_id}")
                try:
                    await self.run(self._inbox)
                finally:
                    for undo in detach:
                        undo()
                sup.cancel_children()  # executors, pumps, timers, tasks of a failed run
        finally:
            self._sup = None
            for route in routes:
                await route.close()
        return await self._conclude(time.perf_counter() - started)

    def _connect(self, route: Route, sup: Supervisor) -> Callable[[], None]:
        """Start the executor (a child actor) of a route whose tasks run here; feed the
        route's reply queue into the mailbox."""
        if route.local:
            executor = Executor(
                route.transport,
                route.task_queue,
                context_queue=route.context_queue,
                max_threads=self.options.max_threads,
            )
            sup.spawn(executor.run(), name=f"executor {self.run_id}")
        detach = route.transport.attach(route.reply_to, self._feed)
        if detach is not None:
            return detach
        sup.spawn(self._pump(route), name=f"replies {route.reply_to}")
        return lambda: None

    def _ours(self, message: TaskReply | ContextRequest) -> bool:
        """Whether `message` comes from this incarnation of the run (its epoch), or is the
        reply of an attempt it inherited from the driver that died (`recording`)."""
        only = self._only_route
        epoch = only.epoch if only is not None else self._epoch_of(message.node)
        if message.epoch == epoch:
            return True
        recording = self._recording
        return recording is not None and type(message) is TaskReply and recording.takes(message, epoch)

    def _epoch_of(self, node: int) -> int | None:
        """The epoch of the route task `node` takes; None for a node this run does not have."""
        if not 0 <= node < len(self.plan.status):
            return None
        return self._route(node).epoch

    def _feed(self, messages: Any) -> None:
        """Put what a reply queue hands over into the mailbox."""
        send = self._sender.send_nowait
        try:
            for message in messages:
                send(message)
        except MailboxClosed:  # the run has ended: what still comes is dropped
            pass

    async def _pump(self, route: Route) -> None:
        inbox = route.transport.inbox(route.reply_to)
        try:
            while True:
                self._feed(await inbox.receive_batch())
        except MailboxClosed:
            raise TransportError(
                f"the reply queue of run {self.run_id} was closed under it (its transport was closed?)"
            ) from None
        finally:
            inbox.close()

    def post(self, fn: Callable[[], None]) -> None:
        self._sender.send_nowait(Later(fn))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self._sup is not None
        return self._sup.spawn(coro)

    def emit(self, kind: Any, task_id: str | None = None, **data: Any) -> None:
        self.emitter.record(kind, task_id, **data)

    def queue_reply(self, request: ContextRequest, reply: ContextReply) -> None:
        self._outbox.append((self._route(request.node).transport, request.reply_to, reply))

    def is_remote(self, node: int) -> bool:
        return not self._route(node).local

    def _journal_snapshot(self) -> bytes:
        """The run now, as its journal's snapshot (`run.takeover`)."""
        assert self._recording is not None
        doc = self.services.snapshot(None, None, 0, keep_running=True)
        return snapshot_bytes(doc, self._recording.retry_at)

    # --- the actor ---------------------------------------------------------------------------------
    async def on_start(self) -> None:
        plan = self.plan
        plan.start()
        taken = self._taken_over
        if taken is not None:  # what ran in the driver that died runs again; its retries at their deadlines
            if self._recording is not None:
                self._recording.inherit(plan)
                self.feedback.keep_deadlines = True
            for reply in taken.backlog:  # unless its reply came meanwhile
                if self._ours(reply):
                    self._on_reply(reply)
            flight = plan.in_flight()
            if flight.nodes:
                plan.actions.append(flight)
            plan.actions.extend(taken.retries(plan, current_clock().wall()))
        await self._act()

    async def on_batch(self, messages: list[Any]) -> None:
        plan = self.plan
        for message in messages:
            kind = type(message)
            if kind is TaskReply:
                if self._ours(message):
                    self._on_reply(message)
                else:
                    self._stale(message)
            elif kind is ContextRequest:
                if self._ours(message):
                    self.services.handle(message)
                else:
                    self._stale(message)
            elif kind is StreamChunk:
                self._streamed(message)
            elif kind is RetryDue:
                if self._recording is not None:
                    self._recording.retry_came(plan, message.node)
                else:
                    plan.retry_due(message.node)
            elif kind is Later:
                message.fn()
            elif kind is Delivered:
                if self._recording is not None:
                    self._recording.consumed = message.upto
            elif kind is QueueLost:
                await reclaim(self.routes, message.queue, self.options.owner_lease)  # Redis lost its owner record too
                self._send_again(message.queue)
            elif kind is TasksLost:
                self._send_again(message.queue, set(message.tasks))
            elif kind is QueueFailed:
                raise message.error
            else:
                self.emitter.log.warning("run dropped an unexpected message", kind=kind.__name__)
        await self._act()

    def _streamed(self, chunk: StreamChunk) -> None:
        """A chunk a task in this process streamed: into the run's stream (SPEC 12)."""
        only = self._only_route
        epoch = only.epoch if only is not None else self._epoch_of(chunk.node)
        if chunk.run_id == self.run_id and chunk.epoch == epoch and self.stream is not None:
            self.stream.add(chunk.task_id, chunk.attempt, chunk.data)

    def _on_reply(self, r: TaskReply) -> None:
        plan = self.plan
        if self._awaited:
            self._awaited.pop(r.node, None)
        if r.run_id != self.run_id:
            self.emitter.log.warning("run dropped a reply meant for another run", from_run=r.run_id)
        elif self._recording is not None:  # a durable run: each reply becomes a fact first
            self._recording.reply(plan, r, r.task_id or f"#{r.node}")
        elif r.ok:
            try:
                directives = resolved(r.directives) if r.directives else ()
            except Exception as exc:  # an added task the run cannot find or build: the adding task fails
                plan.task_failed(r.node, r.cycle, r.attempt, add_error(exc), r.duration, retryable=False)
                return
            plan.task_succeeded(r.node, r.cycle, r.attempt, r.value, r.duration, directives)
        elif r.suspended:
            plan.task_suspended(r.node, r.cycle, r.attempt)
        else:
            plan.task_failed(r.node, r.cycle, r.attempt, r.error, r.duration, r.retryable)

    def _stale(self, message: TaskReply | ContextRequest) -> None:
        """A message of another incarnation of this run (a replay, or one that outlived a
        former driver): dropped (quietly when it is a reply already taken at the takeover)."""
        if self._recording is not None and self._recording.taken_before(message):
            return
        self.emitter.log.warning(
            "run dropped a message of another incarnation",
            kind=type(message).__name__,
            node=message.node,
            epoch=message.epoch,
        )

    async def _act(self) -> None:
        """Carry out what the plan decided; send queued context replies."""
        batches: Sends = []
        for action in self.plan.step():
            kind = type(action)
            if kind is Dispatch:
                self._messages(action, batches)
            elif kind is Emit:
                self.emitter.record(action.kind, action.task_id, **action.data)
            elif kind is RetryLater:
                if self._recording is not None:
                    self._recording.retry_armed(action.node, action.delay)
                self.spawn(self._retry_after(action.node, action.delay))
            else:
                self.outcome = action
                self.stop()
        recording = self._recording
        if recording is not None and not recording.flush_now():  # written before anything leaves
            batches = await recording.flush(batches)
        for route, messages in batches:
            if not route.transport.send_nowait(route.task_queue, messages):
                await route.transport.send(route.task_queue, messages)
        while self._outbox:
            outbox, self._outbox = self._outbox, []
            for transport, queue, message in outbox:
                await transport.send(queue, (message,))
        await self.emitter.flush()

    def _messages(self, d: Dispatch, batches: Sends) -> None:
        """The task messages of `d`, batched by the route each task takes. A message to this
        process's executor carries the task itself, and is made when the executor reads it
        (`dispatch.local_messages`); one to workers, its import path."""
        routes, route_of, run_id, resumed = self.routes, self.graph.route_of, self.run_id, self.resumed_metadata
        trace, priority = self.trace, self.options.priority
        if self._only_route is not None and self._only_route.local:  # every task runs here
            route = self._only_route
            picked = range(len(d.nodes))
            messages = local_messages(
                d, picked, run_id=run_id, reply_to=route.reply_to, resumed=resumed, trace=trace, priority=priority
            )
            batches.append((route, messages))
            return
        picks: dict[int, tuple[Route, list[int]]] = {}
        remote: dict[int, tuple[Route, list[TaskMessage]]] = {}
        for i, node in enumerate(d.nodes):
            route = routes[route_of(node)]
            if route.local:
                picks.setdefault(id(route), (route, []))[1].append(i)
                continue
            batch = remote.get(id(route))
            if batch is None:
                batch = remote[id(route)] = (route, [])
            message = remote_message(d, i, run_id, route.reply_to, route.epoch, resumed, trace, priority)
            self._awaited[node] = (route, message)
            batch[1].append(message)
        batches.extend(remote.values())
        for route, chosen in picks.values():
            messages = local_messages(
                d, chosen, run_id=run_id, reply_to=route.reply_to, resumed=resumed, trace=trace, priority=priority
            )
            batches.append((route, messages))

    def _send_again(self, queue: str, only: set[tuple[int, int, int]] | None = None) -> None:
        """`queue` (a route's reply stream) was lost with whatever it held, or the task
        entries `only` names vanished unanswered: send again the tasks still awaited there
        (a worker that has one already runs it twice; the run takes the first reply)."""
        plan = self.plan
        again = [
            (route, m)
            for node, (route, m) in self._awaited.items()
            if route.reply_to == queue
            and plan.is_current(node, m.cycle, m.attempt)
            and (only is None or (node, m.cycle, m.attempt) in only)
        ]
        self.emitter.log.warning(
            "tasks of the run were lost in Redis; sending them again",
            queue=queue,
            tasks=len(again),
            whole_queue=only is None,
        )
        for route, message in again:
            self._outbox.append((route.transport, route.task_queue, message))

    def _route(self, node: int) -> Route:
        return self.routes[self.graph.route_of(node)]

    async def _retry_after(self, node: int, delay: float) -> None:
        await current_clock().sleep(delay)
        self._sender.send_nowait(RetryDue(node))

    # --- the end -------------------------------------------------------------------------------------
    async def _conclude(self, duration: float) -> WorkflowResult:
        plan, outcome = self.plan, self.outcome
        if isinstance(outcome, Fail):
            self.emitter.record("run_failed", error=repr(outcome.error), duration=duration)
            await self.emitter.flush()
            raise outcome.error
        if isinstance(outcome, Suspend):
            result = await self.services.suspend(duration, outcome.nodes)
            await self.emitter.flush()
            return result
        if outcome is None:
            raise RuntimeError(f"run {self.run_id} stopped without an outcome")
        store = self.feedback.opened
        if store is not None:  # an answer resumed it, or it never suspended
            await store.set_suspension(self.run_id, None)
        result = WorkflowResult(
            run_id=self.run_id,
            status="completed",
            results=dict(plan.results),
            output=plan.output(),
            channel=self.channel.snapshot(),
            skipped=plan.skipped(),
        )
        self.emitter.record("run_completed", duration=duration, terminated=outcome.terminated)
        await self.emitter.flush()
        return result

    async def aclose(self) -> None:
        await self.feedback.aclose()

"""Running a workflow: `run`, `run_sync`, and `drive` (which `resume` uses).

`run` checks its keywords into a `RunOptions` record. `drive` opens what a run needs
(its transport and any Redis group routes, its checkpoint and feedback stores), builds
the plan (restored from a checkpoint when resuming), hands everything to a `RunActor`
and closes it all when the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from graflow_async.define.compile import CompiledGraph
from graflow_async.define.graph import Workflow
from graflow_async.define.policies import RetryPolicy
from graflow_async.define.tasks import load_task
from graflow_async.events import Event
from graflow_async.execute.handlers import get_handler
from graflow_async.execute.tracing import run_span
from graflow_async.feedback.defaults import store_for
from graflow_async.logs import library_logger
from graflow_async.plan import ChannelData, RunGraph, RunPlan
from graflow_async.plan.snapshot import from_doc, workflow_ref
from graflow_async.result import WorkflowResult
from graflow_async.run.actor import RunActor
from graflow_async.run.checkpoints import CheckpointManager
from graflow_async.run.emitter import Emitter
from graflow_async.run.frozen_heap import frozen
from graflow_async.run.options import Resumed, RunOptions, new_run_id
from graflow_async.run.recording import FactWriter, Takeover
from graflow_async.run.routes import open_routes
from graflow_async.run.streams import local_streams
from graflow_async.transports.base import Transport
from graflow_async.transports.memory import MemoryTransport

__all__ = ["WorkflowResult", "drive", "run", "run_sync"]


async def run(
    workflow: Workflow,
    *,
    run_id: str | None = None,
    transport: Transport | None = None,
    checkpoint_store: Any = None,
    feedback_store: Any = None,
    default_max_retries: int = 0,
    initial_channel: Mapping[str, Any] | None = None,
    on_event: Callable[[Event], Any] | None = None,
    max_cycles: int = 100,
    max_threads: int | None = None,
    durable: bool | None = None,
    owner_lease: float = 10.0,
    retention: float = 7 * 86400,
    priority: int = 5,
) -> WorkflowResult:
    """Run `workflow` to the end and return its `WorkflowResult` (SPEC section 2).

    Raises `TaskFailedError` (or a subclass), `ParallelGroupError` or
    `WorkflowCancelledError` when the run fails; running tasks are cancelled first.
    Cancelling the call cancels every task of the run. `max_cycles` caps how many
    times one task may run (SPEC section 9) unless the task sets its own. `max_threads`
    sizes the pool plain (sync) task functions run in (None: `ThreadPoolExecutor`'s default).
    `durable` (SPEC 10; None: True on Redis, False in-process): the run journals every
    fact it consumes (on its Redis server, or beside its local checkpoints) and outlives
    this process: on Redis a worker or `serve` adopts it when this driver dies, in-process
    `recover(run_id)` carries it on. A durable run id is an idempotency key: running it
    again attaches to it. `owner_lease`: the seconds this driver's hold on the run lasts
    unless renewed (every third of that); a non-durable run whose driver is gone has its
    tasks skipped by workers. `retention`: seconds an ended durable run keeps its outcome.
    `priority` (0-9, SPEC 11): that of the run's tasks that set none; workers take the
    ready task of highest priority first.
    """
    options = RunOptions(
        run_id=new_run_id() if run_id is None else run_id,
        transport=transport,
        checkpoint_store=checkpoint_store,
        feedback_store=feedback_store,
        default_max_retries=default_max_retries,
        initial_channel=initial_channel or {},
        on_event=on_event,
        max_cycles=max_cycles,
        max_threads=max_threads,
        owner_lease=owner_lease,
        durable=durable,
        retention=retention,
        priority=priority,
    )
    if options.is_durable:
        from graflow_async.run.durable import run_durable

        return await run_durable(workflow, options)
    return await drive(workflow, options)


async def drive(
    workflow: Workflow,
    options: RunOptions,
    snapshot: dict[str, Any] | None = None,
    *,
    facts: FactWriter | None = None,
    restore: Callable[[RunPlan], None] | None = None,
    takeover: Takeover | None = None,
) -> WorkflowResult:
    """Run `workflow` with `options`, continuing from checkpoint document `snapshot` when
    given (`resume` does this): open what the run needs, hand it to a `RunActor`, close it
    all when the run ends. `facts`: where the run writes the facts of each turn before
    acting on them (a durable run's journal; see `plan.facts`); `restore`: puts a run taken
    over into the fresh plan (its journal replayed), whose running attempts are sent again
    unless `takeover` (replies that came while no driver lived) holds their replies."""
    compiled = _compiled(workflow)
    run_id = options.run_id
    main = options.transport or MemoryTransport()
    emitter = Emitter(run_id, options.on_event, library_logger().bind(run_id=run_id))
    plan = _plan(compiled, options, snapshot, emitter)
    async with contextlib.AsyncExitStack() as stack:
        if options.transport is None:
            stack.push_async_callback(main.aclose)
        routes = await open_routes(compiled, run_id, main, stack, lease=options.owner_lease, epoch=options.epoch)
        checkpoints = CheckpointManager(options.checkpoint_store)
        stack.push_async_callback(checkpoints.aclose)
        resumed = None
        if snapshot is not None:
            from_doc(plan, snapshot, load_task)
            resumed = Resumed.of(snapshot)
        if restore is not None:
            restore(plan)
            resumed = resumed or Resumed()  # its later checkpoints are numbered after those already saved
        feedback_store = options.feedback_store if options.feedback_store is not None else store_for(main)
        actor = RunActor(
            plan,
            options,
            routes=routes,
            emitter=emitter,
            checkpoints=checkpoints,
            feedback_store=feedback_store,
            workflow_ref=workflow_ref(workflow),
            resumed=resumed,
            facts=facts,
            taken_over=None if restore is None else (takeover or Takeover([], {})),
        )
        stack.push_async_callback(actor.aclose)
        streams = local_streams()
        actor.stream = streams.open(run_id)
        ended = True  # its stream ends with it, unless it suspends (a resume carries it on)
        try:
            with run_span(run_id, compiled.workflow_name) as actor.trace, frozen(len(plan.graph)):
                result = await actor.execute()
            ended = result.status != "suspended"
        finally:
            streams.close(run_id, ended=ended)
            if ended and main.keeps_streams:
                await _quietly_ended(main, run_id)
        if result.status == "completed" and checkpoints.saved:
            await checkpoints.mark_completed(run_id)  # resuming its checkpoints now needs force=True
        return result
    raise AssertionError("unreachable")  # pragma: no cover


async def _quietly_ended(transport: Transport, run_id: str) -> None:
    """Close the run's stream on its server (its readers stop); a failure is only logged."""
    try:
        await transport.stream_end(run_id)
    except Exception as exc:
        library_logger().warning("could not close a run's stream", run_id=run_id, error=str(exc)[:200])


def _plan(compiled: CompiledGraph, options: RunOptions, snapshot: dict[str, Any] | None, emitter: Emitter) -> RunPlan:
    """A fresh plan of the run, its channel the checkpoint's (if any) and the run's own."""
    channel = ChannelData({**(snapshot or {}).get("channel", {}), **options.initial_channel})
    return RunPlan(
        RunGraph(compiled),
        channel,
        default_retry=RetryPolicy(max_retries=options.default_max_retries),
        max_cycles=options.max_cycles,
        wants_steps=emitter.wants_steps,
    )


def _compiled(workflow: Any) -> CompiledGraph:
    """The compiled workflow, once every task's handler is checked."""
    if not isinstance(workflow, Workflow):
        raise TypeError(f"run() takes a workflow, got {workflow!r}")
    compiled = workflow.compile()
    for t in compiled.tasks:
        if t is not None:
            get_handler(t.handler)  # HandlerError for an unknown name
    return compiled


def run_sync(workflow: Workflow, **kwargs: Any) -> WorkflowResult:
    """`run` for scripts: starts an event loop, runs the workflow, returns the result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run(workflow, **kwargs))
    raise RuntimeError("run_sync() cannot be called from a running event loop; use `await run(...)`")

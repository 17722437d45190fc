"""Running a workflow: `run`, `run_sync`, and `drive` (which `resume` uses).

`drive` opens what a run needs (its transport and any Redis group routes, its
checkpoint and feedback stores), builds the plan (restored from a checkpoint when
resuming), hands everything to a `RunActor` and closes it all when the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
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
from graflow_async.options import run_id as check_run_id
from graflow_async.options import whole
from graflow_async.plan import ChannelData, RunGraph, RunPlan
from graflow_async.plan.snapshot import from_doc, workflow_ref
from graflow_async.result import WorkflowResult
from graflow_async.run.actor import RunActor
from graflow_async.run.checkpoints import CheckpointManager
from graflow_async.run.emitter import Emitter
from graflow_async.run.frozen_heap import frozen
from graflow_async.run.routes import open_routes
from graflow_async.transports.base import Transport
from graflow_async.transports.memory import MemoryTransport
from graflow_async.wire.codec import check_value

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
) -> WorkflowResult:
    """Run `workflow` to the end and return its `WorkflowResult` (SPEC section 2).

    Raises `TaskFailedError` (or a subclass), `ParallelGroupError` or
    `WorkflowCancelledError` when the run fails; running tasks are cancelled first.
    Cancelling the call cancels every task of the run. `max_cycles` caps how many
    times one task may run (SPEC section 9) unless the task sets its own. `max_threads`
    sizes the pool plain (sync) task functions run in (None: `ThreadPoolExecutor`'s default).
    """
    return await drive(
        workflow, run_id=run_id, transport=transport, checkpoint_store=checkpoint_store,
        feedback_store=feedback_store, default_max_retries=default_max_retries,
        initial_channel=initial_channel, on_event=on_event, max_cycles=max_cycles, max_threads=max_threads,
    )


async def drive(
    workflow: Workflow,
    *,
    snapshot: dict[str, Any] | None = None,
    run_id: str | None = None,
    transport: Transport | None = None,
    checkpoint_store: Any = None,
    feedback_store: Any = None,
    default_max_retries: int = 0,
    initial_channel: Mapping[str, Any] | None = None,
    on_event: Callable[[Event], Any] | None = None,
    max_cycles: int = 100,
    max_threads: int | None = None,
) -> WorkflowResult:
    """`run`, optionally continuing from a checkpoint document (`resume` uses this)."""
    compiled = _checked(workflow, default_max_retries, max_cycles, max_threads)
    run_id = check_run_id(run_id) if run_id is not None else uuid.uuid4().hex
    main = transport or MemoryTransport()
    emitter = Emitter(run_id, on_event, library_logger().bind(run_id=run_id))
    channel = ChannelData(_travelling({**(snapshot or {}).get("channel", {}), **(initial_channel or {})}))
    plan = RunPlan(RunGraph(compiled), channel, default_retry=RetryPolicy(max_retries=default_max_retries),
                   max_cycles=max_cycles, wants_steps=emitter.wants_steps)
    async with contextlib.AsyncExitStack() as stack:
        if transport is None:
            stack.push_async_callback(main.aclose)
        routes = await open_routes(compiled, run_id, main, stack)
        checkpoints = CheckpointManager(checkpoint_store)
        stack.push_async_callback(checkpoints.aclose)
        sequence, resumed = 0, None
        if snapshot is not None:
            from_doc(plan, snapshot, load_task)
            sequence = int(snapshot.get("sequence", 0))
            if snapshot.get("task_id") is not None:
                resumed = {str(snapshot["task_id"]): dict(snapshot.get("metadata") or {})}
        supervisor = RunActor(
            plan, compiled, channel, run_id=run_id, routes=routes, emitter=emitter, checkpoints=checkpoints,
            feedback_store=feedback_store if feedback_store is not None else store_for(main),
            owns_feedback_store=feedback_store is None, workflow_ref=workflow_ref(workflow),
            resumed_metadata=resumed, sequence=sequence, resumed=snapshot is not None, load_task=load_task,
            max_threads=max_threads,
        )
        stack.push_async_callback(supervisor.aclose)
        with run_span(run_id, compiled.workflow_name) as supervisor.trace, frozen(len(plan.graph)):
            result = await supervisor.execute()
        if result.status == "completed" and checkpoints.saved:
            await checkpoints.mark_completed(run_id)  # resuming its checkpoints now needs force=True
        return result
    raise AssertionError("unreachable")  # pragma: no cover


def _checked(workflow: Any, default_max_retries: Any, max_cycles: Any, max_threads: Any) -> CompiledGraph:
    """The compiled workflow, once the options and every task's handler are checked."""
    if not isinstance(workflow, Workflow):
        raise TypeError(f"run() takes a workflow, got {workflow!r}")
    _check_options(default_max_retries, max_cycles)
    if max_threads is not None:
        whole("max_threads", max_threads, minimum=1)
    compiled = workflow.compile()
    for t in compiled.tasks:
        if t is not None:
            get_handler(t.handler)  # HandlerError for an unknown name
    return compiled


def _check_options(default_max_retries: Any, max_cycles: Any) -> None:
    whole("default_max_retries", default_max_retries)
    whole("max_cycles", max_cycles, minimum=1)


def run_sync(workflow: Workflow, **kwargs: Any) -> WorkflowResult:
    """`run` for scripts: starts an event loop, runs the workflow, returns the result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run(workflow, **kwargs))
    raise RuntimeError("run_sync() cannot be called from a running event loop; use `await run(...)`")


def _travelling(values: dict[str, Any]) -> dict[str, Any]:
    """`values`, once each is shown to be serializable (TypeError naming the key otherwise)."""
    for key, value in values.items():
        check_value(key, value)
    return values

"""Running a workflow: `run`, `run_sync`, and `start_run` (which `resume` uses).

`start_run` opens what a run needs (its transport and any Redis group routes, its
channel, checkpoint and feedback stores), hands them to a `RunState` and closes
them when the run ends; see `run_state` for the supervisor itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from .checkpoints.manager import CheckpointManager
from .checkpoints.snapshot import restore_snapshot, workflow_ref
from .events import Emitter, Event, library_logger
from .graph import Workflow
from .handlers import get_handler
from .policies import RetryPolicy
from .routes import check_sendable, open_channel, open_group_routes
from .run_state import RunState, WorkflowResult
from .transports.base import Transport
from .transports.memory import MemoryTransport

__all__ = ["RunState", "WorkflowResult", "run", "run_sync", "start_run"]


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
) -> WorkflowResult:
    """Run `workflow` to the end and return its `WorkflowResult` (SPEC section 2).

    Raises `TaskFailedError` (or a subclass), `ParallelGroupError` or
    `WorkflowCancelledError` when the run fails; running tasks are cancelled first.
    Cancelling the call cancels every task of the run.
    """
    return await start_run(
        workflow, run_id=run_id, transport=transport, checkpoint_store=checkpoint_store,
        feedback_store=feedback_store, default_max_retries=default_max_retries,
        initial_channel=initial_channel, on_event=on_event,
    )


async def start_run(
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
) -> WorkflowResult:
    """`run`, optionally continuing from a checkpoint document (`resume` uses this)."""
    if not isinstance(workflow, Workflow):
        raise TypeError(f"run() takes a workflow, got {workflow!r}")
    graph = workflow.compile()
    for t in graph.tasks:
        if t is not None:
            get_handler(t.handler)  # HandlerError for an unknown name
    run_id = run_id or uuid.uuid4().hex
    owned = transport is None
    main = transport or MemoryTransport()
    async with contextlib.AsyncExitStack() as stack:
        if owned:
            stack.push_async_callback(main.aclose)
        group_routes = await open_group_routes(graph, run_id, stack)
        remote = [i for i, t in enumerate(graph.tasks) if t is not None and not main.in_process]
        remote += [node for nodes, route in group_routes for node in nodes if route.remote]
        check_sendable(graph, remote)
        initial = {**(snapshot or {}).get("channel", {}), **(initial_channel or {})}
        channel = await open_channel(main, [r for _, r in group_routes], run_id, initial)
        checkpoints = CheckpointManager(checkpoint_store)
        stack.push_async_callback(checkpoints.aclose)
        state = RunState(
            graph, run_id=run_id, transport=main, channel=channel,
            emitter=Emitter(run_id, on_event, library_logger().bind(run_id=run_id)),
            default_retry=RetryPolicy(max_retries=default_max_retries), checkpoints=checkpoints,
            workflow_ref=workflow_ref(workflow), feedback_store=feedback_store,
        )
        stack.push_async_callback(state.close_feedback_store)
        for nodes, route in group_routes:
            state.add_route(nodes, route)
        if snapshot is not None:
            restore_snapshot(state, snapshot)
        return await state.execute()
    raise AssertionError("unreachable")  # pragma: no cover


def run_sync(workflow: Workflow, **kwargs: Any) -> WorkflowResult:
    """`run` for scripts: starts an event loop, runs the workflow, returns the result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run(workflow, **kwargs))
    raise RuntimeError("run_sync() cannot be called from a running event loop; use `await run(...)`")

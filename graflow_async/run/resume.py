"""`resume`: continue a run from a checkpoint, safely (SPEC section 6)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from graflow_async.checkpoints.locations import default_store_root, holds, load_checkpoint
from graflow_async.checkpoints.runlock import completed_at, mark_completed, run_lease
from graflow_async.checkpoints.stores import CheckpointStore, open_store
from graflow_async.exceptions import CheckpointError, RunCompletedError
from graflow_async.loading import load_instance
from graflow_async.plan.snapshot import check_same_graph

if TYPE_CHECKING:
    from graflow_async.define.graph import Workflow
    from graflow_async.result import WorkflowResult


def _import_workflow(ref: str | None, location: str) -> Workflow:
    from graflow_async.define.graph import Workflow

    hint = "pass resume(..., workflow=...)"
    if not ref:
        raise CheckpointError(
            f"checkpoint {location!r} does not record an importable workflow "
            f"(it was defined in a script or a function): {hint}"
        )
    try:
        return load_instance(ref, Workflow, "workflow")
    except LookupError as exc:
        raise CheckpointError(f"cannot import workflow {ref} for {location!r}: {exc}; {hint}") from exc
    except TypeError as exc:
        raise CheckpointError(f"{exc}; {hint}") from None


async def resume(
    location: str, *, workflow: Workflow | None = None, force: bool = False, **run_options: Any
) -> WorkflowResult:
    """Continue the run saved at `location` and return its `WorkflowResult`.

    Completed tasks do not run again (their results and the channel are restored); the
    task that saved the checkpoint and every task not yet completed run, the former
    seeing ``context.resumed_metadata``. `workflow` may be omitted when the checkpoint
    records an importable ``module:attr``. `run_options` are those of `run`; the run id
    stays the checkpoint's unless given.

    Safe to call twice: `RunCompletedError` when the run has completed since (``force=True``
    runs it again), and `RunAlreadyRunningError` when another process is resuming it
    through the same store (the resumed run holds a lease next to its checkpoints); both
    are `CheckpointError`.
    """
    from graflow_async.run.options import RunOptions
    from graflow_async.run.runner import drive

    location = str(location)
    store = run_options.get("checkpoint_store")
    given = store if isinstance(store, CheckpointStore) else None
    doc = await load_checkpoint(location, store=given)
    wf = workflow if workflow is not None else _import_workflow(doc.get("workflow_ref"), location)
    graph = wf.compile()
    check_same_graph(doc, graph, location)
    if run_options.get("run_id") is None:
        run_options["run_id"] = doc["run_id"]
    run_options.setdefault("checkpoint_store", default_store_root(location, doc["run_id"]))
    options = RunOptions(**run_options)
    run_id = options.run_id
    async with _guard_store(location, doc["run_id"], given) as guard:
        if not force and await completed_at(guard, run_id) is not None:
            raise RunCompletedError(
                run_id,
                f"run {run_id} has completed since checkpoint {location!r} was saved; "
                "resume(..., force=True) runs it again",
            )
        async with run_lease(guard, run_id):
            result = await drive(wf, options, doc)
            if result.status == "completed":
                await mark_completed(guard, run_id)
            return result


@contextlib.asynccontextmanager
async def _guard_store(location: str, run_id: str, given: CheckpointStore | None) -> AsyncIterator[CheckpointStore]:
    """The store holding the run's checkpoints, where its lease and completion live: the
    given store when the checkpoint lies in it, else one opened on the checkpoint's root."""
    if given is not None and holds(given, location):
        yield given
        return
    async with open_store(default_store_root(location, run_id)) as own:
        yield own

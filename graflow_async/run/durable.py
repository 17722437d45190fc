"""Durable runs in this process (SPEC 10): the run journals every fact its plan consumes
to a `FileJournal` beside its checkpoints, before acting on it; when the process driving
it dies, `recover(run_id)` in another process replays the facts into the plan, sends
again what was running, and carries on. No rule is imposed on the tasks' code: their
results are facts, never recomputed.

    <checkpoints>/<run_id>/journal/run.msgpack      what the run was started with
    <checkpoints>/<run_id>/journal/outcome.msgpack  how it ended (kept for `recover`)

Not built yet (see the README): Redis journals and adoption by workers, compaction,
retry deadlines and feedback timeouts kept across a takeover (a retry comes due at once).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from graflow_async import files
from graflow_async.checkpoints import FileCheckpointStore
from graflow_async.checkpoints.stores import open_store
from graflow_async.clock import current_clock
from graflow_async.define.graph import Workflow
from graflow_async.exceptions import CheckpointError, GraphError, RunAlreadyRunningError
from graflow_async.loading import load_object
from graflow_async.plan import RunPlan
from graflow_async.plan.facts import replay
from graflow_async.plan.snapshot import workflow_ref
from graflow_async.result import WorkflowResult
from graflow_async.run.journal import FileJournal
from graflow_async.run.journal.facts import JournalWriter, read_facts
from graflow_async.run.options import RunOptions
from graflow_async.transports.base import Transport
from graflow_async.wire.codec import packb, unpackb
from graflow_async.wire.envelope import MAX_NESTING
from graflow_async.wire.errors import error_from, error_info

HEADER, OUTCOME = "run.msgpack", "outcome.msgpack"
WAIT_STEP = 0.2  # seconds between looks at a run whose owner lives


def journal_root(checkpoint_store: Any) -> Path:
    """The local directory a durable run journals to (its checkpoints')."""
    store = open_store(checkpoint_store)
    if not isinstance(store, FileCheckpointStore):
        raise ValueError(
            "a durable run without Redis journals beside its checkpoints: give a local checkpoint directory "
            "(an S3 checkpoint store needs a Redis transport)"
        )
    return store.root


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def run_durable(workflow: Workflow, options: RunOptions) -> WorkflowResult:
    """Start durable run `options.run_id` (or, when it exists, return its outcome or
    carry it on, as `recover` does: a run id is an idempotency key)."""
    root = journal_root(options.checkpoint_store)
    if (root / options.run_id / "journal" / HEADER).exists():
        return await recover(options.run_id, workflow=workflow, checkpoint_store=options.checkpoint_store)
    ref = workflow_ref(workflow) or ""  # "": recover must be given the workflow
    journal = FileJournal(root, options.run_id)
    epoch = await journal.claim(_holder(), options.owner_lease)
    if epoch is None:
        raise RunAlreadyRunningError(options.run_id, f"run {options.run_id} is already running")
    header = {
        "workflow": ref,
        "fingerprint": workflow.compile().fingerprint,
        "initial_channel": dict(options.initial_channel),
        "default_max_retries": options.default_max_retries,
        "max_cycles": options.max_cycles,
    }
    files.replace(journal.path / HEADER, packb(header))
    return await _carry(workflow, options, journal, epoch, None)


async def recover(
    run_id: str,
    *,
    workflow: Workflow | None = None,
    transport: Transport | None = None,
    checkpoint_store: Any = None,
    **run_options: Any,
) -> WorkflowResult:
    """Carry on durable run `run_id` whose driver died: replay its journal, send again what
    was running, go on. Of an ended run, its outcome (returned or raised); of a run whose
    owner lives, its outcome once it has one."""
    if transport is not None and not transport.in_process:
        raise NotImplementedError("durable runs on Redis are not built yet: recover works for in-process runs")
    root = journal_root(checkpoint_store)
    journal = FileJournal(root, run_id)
    header = _header(_read(journal.path / HEADER, run_id), run_id)
    if header is None:
        raise CheckpointError(f"no durable run {run_id!r} in {root}")
    if workflow is None and not header["workflow"]:
        raise CheckpointError(
            f"durable run {run_id} recorded no importable workflow (a script's, or one defined in a function): "
            "give it (workflow= / --workflow MODULE:ATTR)"
        )
    wf = workflow if workflow is not None else load_object(str(header["workflow"]))
    if wf.compile().fingerprint != header["fingerprint"]:
        raise GraphError(f"durable run {run_id} was started with workflow {header['workflow']}, not {wf.name!r}")
    options = RunOptions(
        run_id=run_id,
        checkpoint_store=checkpoint_store,
        initial_channel=header["initial_channel"],
        default_max_retries=header["default_max_retries"],
        max_cycles=header["max_cycles"],
        **run_options,
    )
    while True:
        ended = _outcome(journal, run_id)
        if ended is not None:
            return ended
        epoch = await journal.claim(_holder(), options.owner_lease)
        if epoch is not None:
            break
        await current_clock().sleep(WAIT_STEP)  # its owner lives: wait for its outcome
    facts = read_facts((await journal.read()).facts, run_id)

    def restore(plan: RunPlan) -> None:
        replay(plan, facts)
        plan.restored = True

    return await _carry(wf, options, journal, epoch, restore)


async def _carry(
    workflow: Workflow, options: RunOptions, journal: FileJournal, epoch: int, restore: Any
) -> WorkflowResult:
    from graflow_async.run.runner import drive

    try:
        async with journal.held(epoch, options.owner_lease):
            result = await drive(workflow, options, facts=JournalWriter(journal, epoch), restore=restore)
    except RunAlreadyRunningError:  # its lease was lost: another process carries the run on
        raise
    except asyncio.CancelledError:  # the caller cancelled it: it ends cancelled
        cancelled = error_info(CheckpointError(f"durable run {options.run_id} was cancelled"))
        files.replace(journal.path / OUTCOME, packb({"status": "failed", "error": cancelled}))
        await journal.release(epoch)
        raise
    except Exception as exc:
        files.replace(journal.path / OUTCOME, packb({"status": "failed", "error": error_info(exc)}))
        await journal.release(epoch)
        raise
    finally:
        await journal.aclose()
    if result.status == "completed":
        doc = {"status": "completed", "results": result.results, "output": result.output, "channel": result.channel}
        files.replace(journal.path / OUTCOME, packb({**doc, "skipped": result.skipped}))
    await journal.release(epoch)
    return result


def _read(path: Path, run_id: str) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = unpackb(data, max_nesting=MAX_NESTING)
    except Exception as exc:
        raise CheckpointError(f"durable run {run_id}: {path.name} is not msgpack ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"durable run {run_id}: {path.name} is not a map")
    return doc


_HEADER_TYPES = {
    "workflow": str,
    "fingerprint": str,
    "initial_channel": dict,
    "default_max_retries": int,
    "max_cycles": int,
}


def _header(doc: dict[str, Any] | None, run_id: str) -> dict[str, Any] | None:
    """What the run was started with, checked (it is read from a file)."""
    if doc is None:
        return None
    for name, kind in _HEADER_TYPES.items():
        value = doc.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"durable run {run_id}: {HEADER} has no valid {name!r}")
    if not all(isinstance(k, str) for k in doc["initial_channel"]):
        raise CheckpointError(f"durable run {run_id}: {HEADER} has a channel key that is not text")
    return doc


def _outcome(journal: FileJournal, run_id: str) -> WorkflowResult | None:
    """The ended run's result; its error raised; None while it has not ended."""
    doc = _read(journal.path / OUTCOME, run_id)
    if doc is None:
        return None
    if doc.get("status") == "failed":
        error = error_from(doc.get("error"))
        raise error if error is not None else CheckpointError(f"durable run {run_id} failed")
    return WorkflowResult(
        run_id=run_id,
        status="completed",
        results=dict(doc.get("results") or {}),
        output=doc.get("output"),
        channel=dict(doc.get("channel") or {}),
        skipped=list(doc.get("skipped") or []),
    )

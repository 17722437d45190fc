"""Durable runs (SPEC 10): the run journals every fact its plan consumes before acting on
it, on its Redis server or beside its local checkpoints (`run.homes`); when the process
driving it dies, another takes it over (`recover`, or on Redis a worker or `serve` that
adopts it: `run.adopt`), replays the facts into the plan, takes the replies that came
meanwhile, sends again what was running, and carries on. No rule is imposed on the
tasks' code: their results are facts, never recomputed.

A run id is an idempotency key: `run` of an existing durable run attaches to it.
`run_result` waits, from any process, for a durable run's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import uuid
from typing import Any

from graflow_async.clock import current_clock
from graflow_async.define.graph import Workflow
from graflow_async.exceptions import CheckpointError, GraphError, RunAlreadyRunningError
from graflow_async.loading import load_instance
from graflow_async.logs import library_logger
from graflow_async.plan.snapshot import workflow_ref
from graflow_async.result import WorkflowResult
from graflow_async.run.homes import Home, home_for, pack
from graflow_async.run.journal import Fenced
from graflow_async.run.options import RunOptions
from graflow_async.run.ownership import TakenOver
from graflow_async.run.recording import Takeover
from graflow_async.run.routes import check_sendable
from graflow_async.run.run_record import DurableRecord
from graflow_async.run.takeover import read_back
from graflow_async.transports.base import Transport
from graflow_async.wire.errors import error_from, error_info

WAIT_STEP = 0.2  # seconds between looks at a run whose owner lives


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def run_durable(workflow: Workflow, options: RunOptions, *, let_go_on_cancel: bool = False) -> WorkflowResult:
    """Start durable run `options.run_id`, or attach to it when it exists (a run id is an
    idempotency key): its outcome, once it has one, adopting it if its driver died.
    `let_go_on_cancel` (a scheduler's runs on Redis): cancelling the call lets the run go
    for another process to adopt instead of ending it cancelled."""
    result = await _start_or_attach(workflow, options, let_go_on_cancel=let_go_on_cancel, attach=True)
    assert result is not None
    return result


async def start_durable(
    workflow: Workflow, options: RunOptions, *, let_go_on_cancel: bool = False
) -> WorkflowResult | None:
    """`run_durable`, but None at once when the run exists: another process started it
    (a scheduler that lost a tick to another moves on; adopters carry on a run whose
    driver died)."""
    return await _start_or_attach(workflow, options, let_go_on_cancel=let_go_on_cancel, attach=False)


async def _start_or_attach(
    workflow: Workflow, options: RunOptions, *, let_go_on_cancel: bool, attach: bool
) -> WorkflowResult | None:
    home = home_for(options.run_id, options.transport, options.checkpoint_store)
    compiled = workflow.compile()
    if options.transport is not None and not options.transport.in_process:  # refused before the run exists
        check_sendable(compiled, [n for n, t in enumerate(compiled.tasks) if t is not None])
    header = {
        "workflow": workflow_ref(workflow) or "",  # "": recover must be given the workflow
        "fingerprint": compiled.fingerprint,
        "initial_channel": dict(options.initial_channel),
        "default_max_retries": options.default_max_retries,
        "max_cycles": options.max_cycles,
        "priority": options.priority,
    }
    epoch = await home.create(pack(header), _holder(), options.owner_lease)
    if epoch is None and not attach:
        return None
    if epoch is None:  # it exists (its header may be a moment from being written by its creator)
        found = await home.header()
        for _ in range(50):
            if found is not None:
                break
            await current_clock().sleep(0.1)
            found = await home.header()
        return await _attach(home, workflow, _checked(found, home), options, let_go_on_cancel=let_go_on_cancel)
    return await _carry(home, workflow, options, epoch, None, let_go_on_cancel=let_go_on_cancel)


async def recover(
    run_id: str,
    *,
    workflow: Workflow | None = None,
    transport: Transport | None = None,
    checkpoint_store: Any = None,
    **run_options: Any,
) -> WorkflowResult:
    """Carry on durable run `run_id` whose driver died: replay its journal, take the
    replies that came meanwhile, send again what was running, go on. Of an ended run, its
    outcome (returned or raised); of a run whose owner lives, its outcome once it has one."""
    result = await carry_on(
        run_id, workflow=workflow, transport=transport, checkpoint_store=checkpoint_store, **run_options
    )
    assert result is not None
    return result


async def carry_on(
    run_id: str,
    *,
    workflow: Workflow | None = None,
    transport: Transport | None = None,
    checkpoint_store: Any = None,
    let_go_on_cancel: bool = False,
    adopting: bool = False,
    **run_options: Any,
) -> WorkflowResult | None:
    """`recover`. For an adopter (`run.adopt`): `let_go_on_cancel`, a cancelled carrier
    lets the run go for another process to adopt instead of ending it cancelled;
    `adopting`, None at once when another process holds the run."""
    home = home_for(run_id, transport, checkpoint_store)
    header = _checked(await home.header(), home)
    if workflow is None and not header["workflow"]:
        raise CheckpointError(
            f"durable run {run_id} recorded no importable workflow (a script's, or one defined in a function): "
            "give it (workflow= / --workflow MODULE:ATTR)"
        )
    wf = workflow if workflow is not None else load_instance(str(header["workflow"]), Workflow, "workflow")
    options = RunOptions(
        run_id=run_id,
        transport=transport,
        checkpoint_store=checkpoint_store,
        initial_channel=header["initial_channel"],
        default_max_retries=header["default_max_retries"],
        max_cycles=header["max_cycles"],
        priority=run_options.pop("priority", _priority(header)),
        durable=True,
        **run_options,
    )
    return await _attach(home, wf, header, options, let_go_on_cancel=let_go_on_cancel, adopting=adopting)


async def run_result(
    run_id: str, *, transport: Transport | None = None, checkpoint_store: Any = None, timeout: float | None = None
) -> WorkflowResult:
    """Wait, from any process, for durable run `run_id` to end: its `WorkflowResult`, or
    its error raised; `TimeoutError` after `timeout` seconds."""
    home = home_for(run_id, transport, checkpoint_store)
    _checked(await home.header(), home)
    async with asyncio.timeout(timeout):
        return await _outcome_of(home)


async def _attach(
    home: Home,
    wf: Workflow,
    header: dict[str, Any],
    options: RunOptions,
    *,
    let_go_on_cancel: bool = False,
    adopting: bool = False,
) -> WorkflowResult | None:
    run_id = options.run_id
    if wf.compile().fingerprint != header["fingerprint"]:
        raise GraphError(
            f"durable run {run_id} was started with workflow {header['workflow'] or '(unnamed)'}, "
            f"not {workflow_ref(wf) or wf.name!r} (another graph)"
        )
    while True:
        ended = await _ended(home)
        if ended is not None:
            return ended
        epoch = await home.journal.claim(_holder(), options.owner_lease)
        if epoch is not None:
            break
        if adopting:  # another process holds it
            return None
        await current_clock().sleep(WAIT_STEP)  # its owner lives: wait for its outcome
    try:
        back = await read_back(home)
    except BaseException:
        await home.let_go(epoch)
        raise
    if back.channel is not None:  # the snapshot's channel already holds the initial one
        options = dataclasses.replace(options, initial_channel=back.channel)
    return await _carry(home, wf, options, epoch, back.restore, back.takeover, let_go_on_cancel=let_go_on_cancel)


async def _carry(
    home: Home,
    workflow: Workflow,
    options: RunOptions,
    epoch: int,
    restore: Any,
    takeover: Takeover | None = None,
    *,
    let_go_on_cancel: bool = False,
) -> WorkflowResult:
    options = dataclasses.replace(options, epoch=epoch, durable=True)
    key = workflow_ref(workflow) or workflow.name
    record = DurableRecord.of(options, key, workflow.name, _holder(), adoptable=home.adoptable)
    try:
        return await _carried(home, workflow, options, epoch, restore, takeover, record, let_go_on_cancel)
    finally:  # once its outcome is kept (a file journal's owner then still knows that no newer owner came)
        await home.journal.aclose()
        if record is not None:
            await _quietly(record.aclose())


async def _carried(
    home: Home,
    workflow: Workflow,
    options: RunOptions,
    epoch: int,
    restore: Any,
    takeover: Takeover | None,
    record: DurableRecord | None,
    let_go_on_cancel: bool,
) -> WorkflowResult:
    """`_carry`: drive the run, keep its outcome (or give it up)."""
    try:
        result = await _drive(home, workflow, options, restore, takeover, record)
    except _TakenOver:  # its lease was lost: another process carries the run on
        library_logger().warning("a durable run was taken over; waiting for its outcome", run_id=options.run_id)
        return await _outcome_of(home)
    except asyncio.CancelledError:
        if let_go_on_cancel:
            await _quietly(home.let_go(epoch))
        else:  # the caller cancelled it: it ends cancelled
            cancelled = error_info(CheckpointError(f"durable run {options.run_id} was cancelled"))
            await _quietly(home.conclude(epoch, pack({"status": "failed", "error": cancelled}), options.retention))
            await _quietly(_record_ended(record, None))
        raise
    except Exception as exc:
        await _quietly(home.conclude(epoch, pack({"status": "failed", "error": error_info(exc)}), options.retention))
        await _quietly(_record_ended(record, None, exc))
        raise
    doc = {"status": result.status, "results": result.results, "output": result.output, "channel": result.channel}
    doc.update(skipped=result.skipped, checkpoint=result.checkpoint)
    try:
        await asyncio.gather(home.conclude(epoch, pack(doc), options.retention), _record_ended(record, result))
    except Fenced:  # it was taken over as it ended here (paused past its lease): the new owner's outcome
        return await _outcome_of(home)
    return result


class _TakenOver(Exception):
    """The run's lease was lost while it was driven here."""


async def _drive(
    home: Home,
    workflow: Workflow,
    options: RunOptions,
    restore: Any,
    takeover: Takeover | None,
    record: DurableRecord | None,
) -> WorkflowResult:
    from graflow_async.run.runner import drive

    try:
        async with home.held(options.epoch, options.owner_lease), _kept(record, restore is not None):
            return await drive(workflow, options, facts=home.writer(options.epoch), restore=restore, takeover=takeover)
    except (RunAlreadyRunningError, Fenced, TakenOver) as exc:
        raise _TakenOver() from exc


def _kept(record: DurableRecord | None, taken_over: bool) -> contextlib.AbstractAsyncContextManager[Any]:
    return record.kept(taken_over) if record is not None else contextlib.nullcontext()


async def _record_ended(
    record: DurableRecord | None, result: WorkflowResult | None, error: Exception | None = None
) -> None:
    if record is not None:
        await record.ended(result, error)


async def _quietly(step: Any) -> None:
    """An outcome written on the way out of a failed run: its own failure is only logged."""
    try:
        await step
    except Exception as exc:
        library_logger().warning("could not keep a durable run's outcome", error=repr(exc)[:200])


_HEADER_TYPES = {
    "workflow": str,
    "fingerprint": str,
    "initial_channel": dict,
    "default_max_retries": int,
    "max_cycles": int,
}


def _checked(doc: dict[str, Any] | None, home: Home) -> dict[str, Any]:
    """What the run was started with, checked (it is read from a file or Redis)."""
    run_id = home.run_id
    if doc is None:
        raise CheckpointError(f"no durable run {run_id!r} in {home.where}")
    for name, kind in _HEADER_TYPES.items():
        value = doc.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"durable run {run_id}: its header has no valid {name!r}")
    if not all(isinstance(k, str) for k in doc["initial_channel"]):
        raise CheckpointError(f"durable run {run_id}: its header has a channel key that is not text")
    return doc


def _priority(header: dict[str, Any]) -> int:
    """The run's priority as its header says (5 in a header of before priorities, or one
    that says something else)."""
    value = header.get("priority", 5)
    return value if type(value) is int and 0 <= value <= 9 else 5


async def _outcome_of(home: Home) -> WorkflowResult:
    """The run's outcome, once it has one; CheckpointError if the run itself is gone
    (its keys lost with a Redis that restarted without persistence), never a wait forever."""
    looks = 0
    while True:
        ended = await _ended(home)
        if ended is not None:
            return ended
        looks += 1
        if looks % 10 == 0 and await home.read_header() is None:
            raise CheckpointError(f"durable run {home.run_id} is gone from {home.where}: it has no outcome to wait for")
        await current_clock().sleep(WAIT_STEP)


async def _ended(home: Home) -> WorkflowResult | None:
    """The ended run's result; its error raised; None while it has not ended."""
    doc = await home.outcome()
    if doc is None:
        return None
    run_id = home.run_id
    status = doc.get("status")
    if status == "failed":
        error = error_from(doc.get("error"))
        raise error if error is not None else CheckpointError(f"durable run {run_id} failed")
    if status not in ("completed", "suspended"):
        raise CheckpointError(f"durable run {run_id}: its outcome has no valid status")
    checkpoint = doc.get("checkpoint")
    return WorkflowResult(
        run_id=run_id,
        status=status,
        results=_mapping(doc.get("results")),
        output=doc.get("output"),
        channel=_mapping(doc.get("channel")),
        skipped=[s for s in doc.get("skipped") or [] if isinstance(s, str)],
        checkpoint=checkpoint if isinstance(checkpoint, str) else None,
    )


def _mapping(value: Any) -> dict[str, Any]:
    return {k: v for k, v in value.items() if isinstance(k, str)} if isinstance(value, dict) else {}

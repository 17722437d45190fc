"""What a process taking a durable run over rebuilds it from (SPEC 10): the journal's
snapshot, when the run compacted its journal (the checkpoint document of SPEC 6, its
work under way kept as it was: `plan.snapshot.to_doc(keep_running=True)`), then the facts
after it, replayed into the plan, less the channel writes of attempts that never
finished (they run again, and write again: an `incr` of the crashed run counts once);
the replies that came while no driver lived; and the deadline of each pending retry.
Nothing read back is trusted: a snapshot that does not check is a `CheckpointError`
naming the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from graflow_async.checkpoints.format import decode_checkpoint, encode_checkpoint
from graflow_async.define.tasks import load_task
from graflow_async.plan import RunPlan
from graflow_async.plan.facts import apply, replay, retry_deadlines, without_unfinished_writes
from graflow_async.plan.snapshot import check_document, from_doc
from graflow_async.run.homes import Home
from graflow_async.run.journal.facts import read_facts
from graflow_async.run.recording import Takeover

RETRY_AT = "retry_at"  # a snapshot's metadata: node -> wall time its pending retry's backoff ends


class ReadBack(NamedTuple):
    restore: Callable[[RunPlan], None]  # puts the run as journaled into a fresh plan
    channel: dict[str, Any] | None  # the channel the fresh plan starts from (None: the run's initial one)
    takeover: Takeover


async def read_back(home: Home) -> ReadBack:
    """The run of `home` as its journal holds it."""
    run_id = home.run_id
    journal = await home.journal.read()
    backlog = await home.backlog()
    finished = [(r.node, r.cycle, r.attempt) for r in backlog]  # replies that came meanwhile
    facts = without_unfinished_writes(read_facts(journal.facts, run_id), finished)
    doc = None
    retry_at: dict[int, float] = {}
    if journal.snapshot is not None:
        where = f"the journal snapshot of durable run {run_id}"
        doc = check_document(decode_checkpoint(journal.snapshot, source=where), where)
        meta = doc.get("metadata")
        retry_at = _deadlines(meta.get(RETRY_AT) if isinstance(meta, dict) else None)
    retry_at.update(retry_deadlines(facts))

    def restore(plan: RunPlan) -> None:
        if doc is None:
            replay(plan, facts)
        else:
            from_doc(plan, doc, load_task, keep_running=True)
            for fact in facts:
                apply(plan, fact)
        plan.restored = True

    channel = dict(doc["channel"]) if doc is not None else None
    return ReadBack(restore, channel, Takeover(backlog, retry_at))


def snapshot_bytes(doc: dict[str, Any], retry_at: dict[int, float]) -> bytes:
    """A journal snapshot: checkpoint document `doc` (taken with ``keep_running``), with
    the deadlines of its pending retries."""
    doc["metadata"] = {RETRY_AT: {str(node): at for node, at in retry_at.items()}}
    return encode_checkpoint(doc)


def _deadlines(value: Any) -> dict[int, float]:
    if not isinstance(value, dict):
        return {}
    out = {}
    for node, at in value.items():
        if isinstance(node, str) and node.isdigit() and isinstance(at, int | float) and not isinstance(at, bool):
            out[int(node)] = float(at)
    return out

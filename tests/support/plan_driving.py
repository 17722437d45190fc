"""A run plan driven by hand as the run actor drives it, for the tests of its facts and
of its journal snapshots (`plan.facts`, `plan.snapshot`)."""

from __future__ import annotations

from typing import Any

from graflow_async.checkpoints import encode_checkpoint
from graflow_async.checkpoints.format import decode_checkpoint
from graflow_async.plan import Dispatch, RunPlan
from graflow_async.plan.facts import STEPPED, apply
from graflow_async.plan.snapshot import to_doc


class DrivenPlan:
    """`plan`, started, and the facts it was told; `step` gives what it dispatched."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        self.facts: list[Any] = []
        plan.start()

    def tell(self, *facts: Any) -> None:
        for fact in facts:
            self.facts.append(fact)
            apply(self.plan, fact)

    def step(self) -> dict[str, tuple[int, int, int]]:
        """Step: task id -> (node, cycle, attempt) of what was sent."""
        self.facts.append(STEPPED)
        sent = {}
        for action in self.plan.step():
            if isinstance(action, Dispatch):
                for i, node in enumerate(action.nodes):
                    sent[action.tasks[i].id] = (node, action.cycles[i], action.attempts[i])
        return sent


def journal_document(plan: RunPlan, *, keep_running: bool = True, run_id: str = "journal") -> dict[str, Any]:
    """`plan` as a journal snapshot keeps it, read back through the bytes (the attempts
    running kept, unless not `keep_running`)."""
    doc = to_doc(
        plan,
        plan.graph.compiled,
        run_id=run_id,
        workflow_ref=None,
        task_id=None,
        metadata=None,
        sequence=1,
        channel=plan.channel.snapshot(),
        keep_running=keep_running,
    )
    return decode_checkpoint(encode_checkpoint(doc))

"""The facts a run plan consumes, as values (SPEC 10: journal the facts, replay them
elsewhere). `apply(plan, fact)` is what the run actor does with each; `replay(plan,
facts)` rebuilds a plan from the facts of a run, with no rule imposed on the tasks'
code: their results are facts, never recomputed.

    Succeeded(node, cycle, attempt, value, duration, directives)
    Failed(node, cycle, attempt, error, duration, retryable)
    Suspended(node, cycle, attempt)     the task's feedback wait timed out
    RetryCame(node)                     its retry backoff ended
    RetryAt(node, at)                   its retry backoff was armed to end at wall time `at`
                                        (the plan does not consume it: a run taken over
                                        re-arms the backoff at its original deadline)
    Wrote(op, key, value, by)           a channel write: set, delete, append, incr; `by` the
                                        attempt (node, cycle, attempt) that made it
    Stepped()                           the plan was stepped (its actions taken)

Pure: no awaits, no I/O (their bytes are `run.journal.facts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from graflow_async.plan.core import RunPlan


class Succeeded(NamedTuple):
    node: int
    cycle: int
    attempt: int
    value: Any
    duration: float
    directives: tuple[Any, ...] = ()  # resolved: an AddTasks holds the tasks themselves


class Failed(NamedTuple):
    node: int
    cycle: int
    attempt: int
    error: BaseException | None
    duration: float
    retryable: bool = True


class Suspended(NamedTuple):
    node: int
    cycle: int
    attempt: int


class RetryCame(NamedTuple):
    node: int


class RetryAt(NamedTuple):
    node: int
    at: float  # seconds since the epoch


class Wrote(NamedTuple):
    op: str  # "set", "delete", "append", "incr"
    key: str
    value: Any = None  # the value set or appended, the amount added
    by: tuple[int, int, int] | None = None  # the attempt that made it (node, cycle, attempt)


class Stepped(NamedTuple):
    pass


STEPPED = Stepped()


def apply(plan: RunPlan, fact: Any) -> None:
    """Tell `plan` the fact (a `Stepped` steps it, its actions dropped)."""
    kind = type(fact)
    if kind is Succeeded:
        plan.task_succeeded(fact.node, fact.cycle, fact.attempt, fact.value, fact.duration, fact.directives)
    elif kind is Failed:
        plan.task_failed(fact.node, fact.cycle, fact.attempt, fact.error, fact.duration, fact.retryable)
    elif kind is Suspended:
        plan.task_suspended(fact.node, fact.cycle, fact.attempt)
    elif kind is RetryCame:
        plan.retry_due(fact.node)
    elif kind is Wrote:
        _write(plan, fact)
    elif kind is Stepped:
        plan.step()
    elif kind is RetryAt:
        pass
    else:
        raise TypeError(f"not a run fact: {kind.__name__}")


def _write(plan: RunPlan, fact: Wrote) -> None:
    channel = plan.channel
    if fact.op == "set":
        channel.set(fact.key, fact.value)
    elif fact.op == "delete":
        channel.delete(fact.key)
    elif fact.op == "append":
        channel.append(fact.key, fact.value)
    elif fact.op == "incr":
        channel.incr(fact.key, fact.value)
    else:
        raise ValueError(f"unknown channel write {fact.op!r}")


def without_unfinished_writes(facts: list[Any], also_finished: Iterable[tuple[int, int, int]] = ()) -> list[Any]:
    """`facts` less the channel writes of attempts that never finished in them (nor in
    `also_finished`): what a run taken over from a driver that died replays. Such an
    attempt was running when the driver died and runs again, making its writes again,
    so the channel ends as it would have without the crash (an `incr` counted once)."""
    done = set(also_finished)
    done.update((f.node, f.cycle, f.attempt) for f in facts if type(f) in (Succeeded, Failed, Suspended))
    return [f for f in facts if type(f) is not Wrote or f.by is None or f.by in done]


def retry_deadlines(facts: Iterable[Any]) -> dict[int, float]:
    """The wall time each node's latest retry backoff was armed to end at."""
    return {f.node: f.at for f in facts if type(f) is RetryAt}


def replay(plan: RunPlan, facts: Iterable[Any]) -> RunPlan:
    """`plan` (fresh, over the run's graph and initial channel) after the run's facts."""
    plan.start()
    for fact in facts:
        apply(plan, fact)
    return plan

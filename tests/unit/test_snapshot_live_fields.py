"""A journal snapshot's own fields, read back from a file or Redis (SPEC 6 and 10).

`to_doc(..., keep_running=True)` adds ``plan.live`` (the work under way) and keeps failed
members of unfinished groups with error documents (`plan.error_docs`). Whatever is read
back is checked before it is used: each malformed field below is refused with a
`CheckpointError` naming it, never another error and never a silent load; a checkpoint
is not taken for a journal snapshot; and errors come back as the errors they were.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from plan_driving import journal_document

from graflow_async import BestEffortGroupPolicy, CheckpointError, RetryPolicy, parallel, task, workflow
from graflow_async import exceptions as errors
from graflow_async.checkpoints import encode_checkpoint
from graflow_async.checkpoints.format import decode_checkpoint
from graflow_async.define.tasks import load_task
from graflow_async.plan import ChannelData, RunGraph, RunPlan
from graflow_async.plan.error_docs import error_doc, error_from_doc
from graflow_async.plan.snapshot import check_document, from_doc
from graflow_async.plan.state import FAILED, RETRY, RUNNING
from graflow_async.wire.codec import packb, unpackb


@task
def a() -> str:
    return "a"


@task(retry_policy=RetryPolicy(max_retries=2))
def b() -> str:
    return "b"


@task
def c() -> str:
    return "c"


@task
def d() -> str:
    return "d"


@task
def e() -> str:
    return "e"


with workflow("live-fields") as fields_wf:
    a >> parallel(b, c, d).with_execution(policy=BestEffortGroupPolicy()) >> e


def fresh_plan() -> RunPlan:
    return RunPlan(RunGraph(fields_wf.compile()), ChannelData())


def sent(plan: RunPlan) -> dict[str, tuple[int, int, int]]:
    [dispatch] = plan.step()
    columns = zip(dispatch.nodes, dispatch.tasks, dispatch.cycles, dispatch.attempts, strict=True)
    return {t.id: (node, cycle, attempt) for node, t, cycle, attempt in columns}


def under_way() -> RunPlan:
    """b waits to retry, c failed for good inside the unfinished group, d runs."""
    plan = fresh_plan()
    plan.start()
    plan.task_succeeded(*sent(plan)["a"], "a", 0.1)
    members = sent(plan)
    plan.task_failed(*members["b"], errors.RemoteTaskError("b", "ValueError", "once"), 0.2)
    plan.task_failed(*members["c"], errors.RemoteTaskError("c", "KeyError", "'k'", "Traceback ..."), 0.3, False)
    plan.step()
    return plan


def document(plan: RunPlan, *, keep_running: bool = True) -> dict[str, Any]:
    return journal_document(plan, keep_running=keep_running, run_id="fields")  # as a journal reads it back


def load(doc: dict[str, Any], *, keep_running: bool = True) -> RunPlan:
    plan = fresh_plan()
    from_doc(plan, check_document(doc, "snapshot"), load_task, keep_running=keep_running)
    return plan


NODES = {t: fields_wf.compile().index[t] for t in "abcde"}
BARRIER = fields_wf.compile().groups[0].barrier


def test_the_snapshot_restores_what_was_under_way() -> None:
    """The control: the unmutated document loads, and keeps the retry, the failure and the run."""
    plan = load(document(under_way()))
    assert plan.status[NODES["b"]] == RETRY and plan.retrying == {NODES["b"]} and plan.attempts[NODES["b"]] == 1
    assert plan.status[NODES["c"]] == FAILED and plan.status[NODES["d"]] == RUNNING and plan.inflight == 2
    failure = plan.graph.groups[0].failures[1].error
    assert isinstance(failure, errors.RemoteTaskError) and failure.traceback == "Traceback ..."
    assert [t.id for t in plan.in_flight().tasks] == ["d"]


def test_a_checkpoint_is_not_taken_for_a_journal_snapshot() -> None:
    checkpoint = document(under_way(), keep_running=False)
    assert "live" not in checkpoint["plan"]
    assert [entry[2] for entry in checkpoint["plan"]["groups"][0][1]] == []  # c runs again: not recorded
    with pytest.raises(CheckpointError, match=r"checkpoint field 'plan\.live' is missing"):
        load(checkpoint)
    legacy = {k: v for k, v in checkpoint.items() if k != "plan"}  # graflow-async 0.1
    with pytest.raises(CheckpointError, match="checkpoint field 'plan' is missing"):
        load(legacy)
    assert load(legacy, keep_running=False).status[NODES["a"]] != RUNNING  # both still read as checkpoints
    assert len(load(checkpoint, keep_running=False).in_flight().nodes) == 0


# --- one malformed field at a time ------------------------------------------------------------------
Mutation = Callable[[dict[str, Any]], None]


def live(name: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["plan"]["live"][name] = value(doc["plan"]["live"][name]) if callable(value) else value

    return mutate


def plan_field(name: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["plan"][name] = value

    return mutate


def member_error(value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["plan"]["groups"][0][1][0][4] = value

    return mutate


def drop_live(name: str) -> Mutation:
    return lambda doc: doc["plan"]["live"].pop(name)


def nested(depth: int) -> dict[str, Any]:
    error: dict[str, Any] = {"type": "ValueError", "args": ["deep"]}
    for _ in range(depth):
        error = {"type": "TaskFailedError", "args": ["t", error, "wrapped"]}
    return error


B, D = NODES["b"], NODES["d"]
MUTATIONS: dict[str, tuple[str, Mutation]] = {
    "live is a list": ("plan.live", plan_field("live", [1, 2])),
    "live has a field of another version": ("plan.live.extra", live("extra", 1)),
    "live lacks ready": ("plan.live.ready", drop_live("ready")),
    "attempts one node short": ("plan.live.attempts", live("attempts", lambda v: v[:-1])),
    "a negative attempt": (f"plan.live.attempts[{B}]", live("attempts", lambda v: [*v[:B], -1, *v[B + 1 :]])),
    "a running task at attempt 0": (f"plan.live.attempts[{D}]", live("attempts", lambda v: [*v[:D], 0, *v[D + 1 :]])),
    "an attempt that is a string": (f"plan.live.attempts[{D}]", live("attempts", lambda v: [*v[:D], "1", *v[D + 1 :]])),
    "retrying misses the task waiting to retry": ("plan.live.retrying", live("retrying", [])),
    "retrying lists a task that is done": ("plan.live.retrying[1]", live("retrying", [B, NODES["a"]])),
    "retrying lists a group's barrier": ("plan.live.retrying[0]", live("retrying", [BARRIER])),
    "ready lists a running task": ("plan.live.ready[0]", live("ready", [D])),
    "ready is a string": ("plan.live.ready", live("ready", "d")),
    "suspended names no node": ("plan.live.suspended[0]", live("suspended", [99])),
    "retrying lists a node twice": ("plan.live.retrying[1]", live("retrying", [B, B])),
    "inflight counts more than runs": ("plan.live.inflight", live("inflight", 5)),
    "inflight is a boolean": ("plan.live.inflight", live("inflight", True)),
    "terminated is a number": ("plan.live.terminated", live("terminated", 7)),
    "failure is a string": ("plan.live.failure", live("failure", "boom")),
    "failure names a function": ("plan.live.failure.type", live("failure", {"type": "print", "args": []})),
    "failure stops the process": ("plan.live.failure.type", live("failure", {"type": "SystemExit", "args": [0]})),
    "failure names a module's class": ("plan.live.failure.type", live("failure", {"type": "os.system", "args": []})),
    "failure with the wrong arguments": ("plan.live.failure", live("failure", {"type": "CycleLimitError", "args": []})),
    "failure with a set argument": ("plan.live.failure.args[0]", live("failure", {"type": "KeyError", "args": [{1}]})),
    "failure with a private attribute": (
        "plan.live.failure.state",
        live("failure", {"type": "KeyError", "args": [], "state": {"__class__": 1}}),
    ),
    "a nested error without args": (
        "plan.live.failure.args[1]",
        live("failure", {"type": "TaskFailedError", "args": ["t", {"type": "ValueError"}]}),
    ),
    "errors nested too deep": ("plan.live.failure" + ".args[1]" * 33, live("failure", nested(40))),
    "a member's error of an unknown type": ("plan.groups[0][1][0][4].type", member_error({"type": "Nope", "args": []})),
    "a member's error that is a number": ("plan.groups[0][1][0][4]", member_error(5)),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_malformed_field_is_refused_naming_it(name: str) -> None:
    field, mutate = MUTATIONS[name]
    doc = document(under_way())
    mutate(doc)
    with pytest.raises(CheckpointError) as refused:
        load(decode_checkpoint(encode_checkpoint(doc)))
    assert str(refused.value).startswith(f"checkpoint field '{field}' "), refused.value


JUNK: list[Any] = [None, True, -1, 0, 1, 3, 2**40, 1.5, "", "x", "ValueError", b"", [], [0], [[0]], {}, {"type": 1}]


def places(value: Any, at: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    found = [at]
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found.extend(places(child, (*at, key)))
    return found


def test_no_value_in_a_live_field_escapes_as_another_error() -> None:
    """Random values anywhere in `plan.live` and the kept errors: a load or a CheckpointError."""
    good = document(under_way())
    good["plan"]["live"]["failure"] = error_doc(errors.RetryLimitExceededError("b", KeyError("k"), 3, 2), "b")
    targets = places(good["plan"]["live"], ("plan", "live")) + places(
        good["plan"]["groups"][0][1][0][4], ("plan", "groups", 0, 1, 0, 4)
    )
    rng = random.Random(20250101)
    outcomes: Counter[str] = Counter()
    for _ in range(500):
        doc = copy.deepcopy(good)
        *parents, last = rng.choice(targets)
        target: Any = doc
        for key in parents:
            target = target[key]
        if isinstance(target, dict) and rng.random() < 0.2:
            target.pop(last, None)
        else:
            target[last] = copy.deepcopy(rng.choice(JUNK))
        try:
            load(doc)
            outcomes["loaded"] += 1
        except CheckpointError as exc:
            assert str(exc).startswith("checkpoint field '"), exc
            outcomes["refused"] += 1
    assert outcomes["refused"] > 300, outcomes


# --- errors, kept and rebuilt --------------------------------------------------------------------------
class Mine(Exception):
    """A user's own error: no document rebuilds it."""


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def described(value: Any) -> Any:
    """An error as what can be seen of it: type, message, attributes, cause (errors in them too)."""
    if isinstance(value, BaseException):
        attributes = {k: described(v) for k, v in vars(value).items()}
        return type(value).__name__, str(value), attributes, described(value.__cause__)
    if type(value) in (list, tuple):
        return type(value)(described(v) for v in value)
    return value


def group_failed() -> errors.ParallelGroupError:
    inner = errors.ParallelGroupError("inner", [("x", errors.TaskTimeoutError("x", 2.5))], ["y"])
    inner.args = (f"{inner.args[0]} (strict: every member must succeed)",)
    return errors.ParallelGroupError("outer", [("inner", inner), ("z", errors.CycleLimitError("z", 4, 4))], [])


KEPT: list[BaseException] = [
    errors.RemoteTaskError("t", "ValueError", "boom", "Traceback (most recent call last): ..."),
    errors.TaskTimeoutError("t", 1.5),
    errors.CycleLimitError("t", 3, 3, "loop"),
    errors.RetryLimitExceededError("t", errors.RemoteTaskError("t", "OSError", "disk"), 3, 2),
    errors.TaskFailedError("t", None, "task 't': no value for parameter 'n'"),
    errors.WorkflowCancelledError("t", "enough"),
    errors.GraphError("cannot add task 'x'"),
    errors.FeedbackValidationError("not an int", "age"),
    group_failed(),
    KeyError("k"),
    ValueError("v", 2, (3, b"4"), [None, 1.5]),
]


@pytest.mark.parametrize("exc", KEPT, ids=lambda exc: type(exc).__name__)
def test_an_error_comes_back_as_it_was(exc: BaseException) -> None:
    back = error_from_doc(unpackb(packb(error_doc(exc, "t"))), "failure")
    assert type(back) is type(exc) and described(back) == described(exc)


@pytest.mark.parametrize(
    "exc", [Mine("mine"), ValueError(object()), errors.TaskFailedError("t", Mine("inner")), Unprintable()]
)
def test_an_error_no_document_rebuilds_is_kept_as_a_worker_would_report_it(exc: BaseException) -> None:
    back = error_from_doc(unpackb(packb(error_doc(exc, "t"))), "failure")
    if type(exc) is errors.TaskFailedError:  # kept: only its cause, a user's error, is reported as remote
        assert type(back) is errors.TaskFailedError and str(back) == str(exc)
        assert isinstance(back.__cause__, errors.RemoteTaskError) and back.__cause__.type_name == "Mine"
        return
    assert isinstance(back, errors.RemoteTaskError) and back.task_id == "t"
    assert back.type_name == type(exc).__name__ and back.remote_message == (
        "" if type(exc) is Unprintable else str(exc)
    )

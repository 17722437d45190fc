"""A journal snapshot is the plan its facts built (SPEC 10: a durable run compacts its
journal into the checkpoint document of SPEC 6). Pure: no event loop, no I/O.

A plan is driven as the run actor drives it, fed facts made from its own dispatches
(replies with results, failures, retries, loops, added tasks, channel writes, terminate
and cancel) turn by turn. Cut anywhere, snapshotted with ``keep_running``, sent through
the checkpoint format and restored into a fresh plan, it must then be equal in
everything observable to the plan that replayed every fact so far: statuses, runs,
attempts, groups, the channel, `in_flight`. Fed the same remaining facts, both hand out
the same actions at every step and end the same way. The actions the cut plan held and
had not handed out yet are not state (a snapshot is taken between turns): the first
step after the cut hands them out before what both hand out.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from plan_driving import DrivenPlan, journal_document

from graflow_async import (
    AtLeastNGroupPolicy,
    BestEffortGroupPolicy,
    RetryPolicy,
    StrictGroupPolicy,
    parallel,
    task,
    workflow,
)
from graflow_async.define.graph import Workflow
from graflow_async.define.tasks import load_task
from graflow_async.exceptions import RemoteTaskError
from graflow_async.plan import ChannelData, Dispatch, Emit, Fail, Finish, RetryLater, RunGraph, RunPlan, Suspend
from graflow_async.plan.directives import AddTasks, Cancel, Iterate, Terminate
from graflow_async.plan.facts import STEPPED, Failed, RetryCame, Stepped, Succeeded, Suspended, Wrote, apply, replay
from graflow_async.plan.snapshot import check_document, from_doc
from graflow_async.plan.specs import component_spec
from graflow_async.plan.state import DONE, QUEUED, RETRY, RUNNING

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- the workflows: the tasks never run, their replies are made up from the dispatches -----
@task
def head(n: int = 0) -> str:
    return f"head{n}"


@task(retry_policy=RetryPolicy(max_retries=2))
def flaky(head: str = "") -> str:
    return head


@task
def member(n: int = 0) -> int:
    return n


@task
def looper(data: list[int] | None = None) -> list[int]:
    return data or []


@task
def spawner() -> None:
    return None


@task
def judge() -> None:
    return None


@task
def extra(n: int = 0) -> int:
    return n


with workflow("compact-groups") as groups_wf:
    fan = parallel(member(task_id="m1"), flaky(task_id="m2"), spawner(task_id="m3"))
    quorum = parallel(member(task_id="q1"), member(task_id="q2"), looper(task_id="q3"), judge(task_id="q4"))
    fan.with_execution(policy=BestEffortGroupPolicy())
    quorum.with_execution(policy=AtLeastNGroupPolicy(2))
    head >> fan >> judge >> quorum >> member(task_id="last")

with workflow("compact-nested") as nested_wf:
    inner = parallel(member(task_id="b1"), looper(task_id="b2")).with_execution(policy=BestEffortGroupPolicy())
    outer = parallel(spawner(task_id="a1") >> member(task_id="a2"), inner, flaky(task_id="f1"), judge(task_id="j1"))
    head >> outer.with_execution(policy=AtLeastNGroupPolicy(1)) >> judge >> member(task_id="last")

with workflow("compact-loops") as loops_wf:
    head >> looper >> spawner >> judge >> member(task_id="last")
    flaky >> spawner(task_id="s0") >> judge

WORKFLOWS: dict[str, Workflow] = {"groups": groups_wf, "nested": nested_wf, "loops": loops_wf}
GOTO = (looper, head, flaky, member(task_id="m1"), member(task_id="b1"), extra(task_id="x0"))


def fresh(wf: Workflow, channel: dict[str, Any] | None = None) -> RunPlan:
    return RunPlan(
        RunGraph(wf.compile()),
        ChannelData({"n": 1} if channel is None else channel),
        default_retry=RetryPolicy(max_retries=1),
        max_cycles=4,
        wants_steps=True,
    )


# --- a run, as facts ---------------------------------------------------------------------------
class Run:
    """Drives a plan with replies made up by `rng` for what it dispatches, keeping the facts."""

    def __init__(self, wf: Workflow, rng: random.Random) -> None:
        self.plan, self.rng = fresh(wf), rng
        self.facts: list[Any] = []
        self.running: dict[int, tuple[int, int]] = {}  # node -> (cycle, attempt)
        self.sent: list[tuple[int, int, int]] = []
        self.retries: list[int] = []
        self.added = 0
        self.plan.start()

    def tell(self, fact: Any) -> None:
        self.facts.append(fact)
        apply(self.plan, fact)

    def step(self) -> bool:
        """Step; whether the run is over."""
        self.facts.append(STEPPED)
        over = False
        for action in self.plan.step():
            if isinstance(action, Dispatch):
                for i, node in enumerate(action.nodes):
                    self.running[node] = (action.cycles[i], action.attempts[i])
                    self.sent.append((node, action.cycles[i], action.attempts[i]))
            elif isinstance(action, RetryLater):
                self.retries.append(action.node)
            over = over or isinstance(action, Finish | Fail | Suspend)
        return over

    def turn(self) -> None:
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if roll < 0.12:
                self.tell(self.write())
            elif roll < 0.16 and self.sent:
                node, cycle, attempt = rng.choice(self.sent)
                if self.running.get(node) != (cycle, attempt):  # a late duplicate: the plan ignores it
                    self.tell(Succeeded(node, cycle, attempt, "stale", 0.5))
            elif self.retries and (not self.running or roll < 0.3):
                self.tell(RetryCame(self.retries.pop(rng.randrange(len(self.retries)))))
            elif self.running:
                node = rng.choice(sorted(self.running))
                self.tell(self.reply(node, *self.running.pop(node)))

    def write(self) -> Wrote:
        op = self.rng.choice(("incr", "append", "set", "delete"))
        key = {"incr": "n", "append": "log", "set": "flag", "delete": "flag"}[op]
        return Wrote(op, key, None if op == "delete" else self.rng.randint(1, 3))

    def reply(self, node: int, cycle: int, attempt: int) -> Any:
        rng, task_id = self.rng, self.plan.graph.ids[node]
        roll = rng.random()
        if roll < 0.12:
            error = RemoteTaskError(task_id, "ValueError", f"boom {cycle}.{attempt}", "Traceback: ...")
            return Failed(node, cycle, attempt, error, rng.choice((0.0, 0.5)), retryable=rng.random() < 0.9)
        if roll < 0.13:
            return Suspended(node, cycle, attempt)
        func = self.plan.graph.tasks[node].func.__name__  # type: ignore[union-attr]
        directives = self.directives(func, cycle)
        return Succeeded(node, cycle, attempt, f"{task_id}@{cycle}.{attempt}", rng.choice((0.0, 0.5, 1.25)), directives)

    def directives(self, func: str, cycle: int) -> tuple[Any, ...]:
        rng = self.rng
        if func == "looper" and rng.random() < 0.7:
            return (Iterate([cycle]),)
        if func == "judge":
            roll = rng.random()
            return (Terminate("enough"),) if roll < 0.08 else (Cancel("stop"),) if roll < 0.14 else ()
        if func == "spawner":
            return tuple(AddTasks(*self.addition()) for _ in range(rng.choice((0, 1, 1, 2))))
        return ()

    def addition(self) -> tuple[Any, bool]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:  # to a task the run has: it runs again, in a new cycle (after its current
            # run, when it is running or waiting to retry)
            return rng.choice(GOTO), True
        if roll < 0.4 and self.added:
            return extra(task_id=f"x{rng.randrange(self.added)}", n=9), rng.random() < 0.5
        if roll < 0.6:
            return self.new(), False
        if roll < 0.75:
            return self.new() >> self.new(), rng.random() < 0.3
        policy = rng.choice((StrictGroupPolicy(), BestEffortGroupPolicy(), AtLeastNGroupPolicy(1)))
        group = parallel(self.new(), self.new(), spawner(task_id=f"s{self.added}")).with_execution(policy=policy)
        return group, False

    def new(self) -> Any:
        self.added += 1
        return extra(task_id=f"x{self.added - 1}", n=self.added)


def run_facts(wf: Workflow, rng: random.Random, budget: int = 150) -> list[Any]:
    """The facts of a run of `wf`, up to its end, then a few turns of replies that come
    late (a run terminated, cancelled or suspended while tasks still ran)."""
    run = Run(wf, rng)
    over = run.step()
    while not over and len(run.facts) < budget:
        run.turn()
        over = run.step()
    for _ in range(4):
        if run.running or run.retries:
            run.turn()
            run.step()
    return run.facts


# --- snapshots -----------------------------------------------------------------------------------
def snapshot(plan: RunPlan, *, keep_running: bool = True) -> dict[str, Any]:
    """`plan` as a journal snapshot, through the bytes a journal keeps."""
    return check_document(journal_document(plan, keep_running=keep_running, run_id="compact"), "snapshot")


def restored(wf: Workflow, doc: dict[str, Any], *, keep_running: bool = True) -> RunPlan:
    plan = fresh(wf, doc["channel"])
    from_doc(plan, doc, load_task, keep_running=keep_running)
    plan.start()  # what a run does with a plan; a restored one has its work under way already
    return plan


# --- what can be observed of a plan ----------------------------------------------------------------
def error(exc: BaseException | None, depth: int = 0) -> Any:
    if exc is None or depth > 4:
        return None
    return type(exc).__name__, str(exc), error(exc.__cause__, depth + 1)


def dispatched(d: Dispatch) -> list[Any]:
    return [
        (d.nodes[i], d.tasks[i].id, dict(d.tasks[i].bound), d.attempts[i], d.cycles[i], d.max_cycles[i], d.kwargs[i])
        for i in range(len(d.nodes))
    ]


def acted(actions: list[Any]) -> list[Any]:
    out: list[Any] = []
    for a in actions:
        if isinstance(a, Dispatch):
            out.append(("dispatch", dispatched(a)))
        elif isinstance(a, Fail):
            out.append(("fail", error(a.error)))
        else:
            assert isinstance(a, Emit | RetryLater | Finish | Suspend), a
            out.append(a)
    return out


def graph_of(plan: RunPlan) -> dict[str, Any]:
    graph = plan.graph
    return {
        "ids": list(graph.ids),
        "tasks": [None if t is None else (t.id, t.func.__name__, dict(t.bound)) for t in graph.tasks],
        "succs": [list(s) for s in graph.succs],
        "npreds": list(graph.npreds),
        "scopes": (list(graph.group_of), list(graph.member_of), graph.ends.items(), dict(graph.origin)),
        "index": dict(graph.index),
        "added": [(by, goto, component_spec(c)) for by, goto, c in plan.added],
    }


def groups_of(plan: RunPlan) -> list[Any]:
    return [
        (
            g.name,
            g.barrier,
            g.member_ids,
            type(g.policy).__name__,
            list(g.hold),
            bytes(g.outcome),
            g.finished,
            list(g.busy),
            {m: (r.task_id, r.success, error(r.error), r.duration) for m, r in g.failures.items()},
        )
        for g in plan.graph.groups
    ]


def observed(plan: RunPlan) -> dict[str, Any]:
    return {
        "graph": graph_of(plan),
        "groups": groups_of(plan),
        "status": bytes(plan.status),
        "released": bytes(plan.released),
        "counts": (plan.remaining, plan.runs, plan.attempts),
        "holds": (plan.holds, plan.end_holds, plan.iter_data, plan.again, plan.skip_roots),
        "under way": (plan.retrying, plan.ready, plan.inflight, plan.suspended, plan.terminated, error(plan.failure)),
        "in_flight": dispatched(plan.in_flight()),
        "results": plan.results,
        "channel": plan.channel.snapshot(),
        "outcome": (plan.output(), plan.skipped()),
    }


# --- the property --------------------------------------------------------------------------------
def assert_restores_at(wf: Workflow, facts: list[Any], cut: int) -> None:
    """Snapshot the plan of `facts[:cut]`, restore it, and feed both plans the rest."""
    replayed = replay(fresh(wf), facts[:cut])
    plan = restored(wf, snapshot(replayed))
    assert observed(plan) == observed(replayed)

    pending = acted(replayed.actions)  # handed out by the next step of the replayed plan only
    for fact in facts[cut:]:
        if type(fact) is Stepped:
            assert acted(replayed.step()) == pending + acted(plan.step())
            pending = []
        else:
            apply(replayed, fact)
            apply(plan, fact)
        assert observed(plan) == observed(replayed)


RNGS = st.randoms(use_true_random=False) | st.builds(random.Random, st.integers(0, 2**32))


@PROPERTY
@given(name=st.sampled_from(sorted(WORKFLOWS)), rng=RNGS, data=st.data())
def test_a_journal_snapshot_restores_the_plan_its_facts_built(name: str, rng: random.Random, data: Any) -> None:
    wf = WORKFLOWS[name]
    facts = run_facts(wf, rng)
    anywhere = st.integers(0, len(facts))
    near_the_end = st.integers(max(0, len(facts) - 12), len(facts))  # where runs end, and replies come late
    cut = data.draw(st.one_of(anywhere, anywhere, anywhere, near_the_end), label="cut")
    assert_restores_at(wf, facts, cut)
    plan = replay(fresh(wf), facts[:cut])
    assert_reads_as_its_checkpoint(wf, plan)
    for situation in situations(plan):  # how often each is cut into: --hypothesis-show-statistics
        event(situation)


def situations(plan: RunPlan) -> list[str]:
    status, runs, attempts = plan.status, plan.runs, plan.attempts
    running = [n for n, s in enumerate(status) if s == RUNNING]
    return [
        name
        for name, seen in (
            ("a task running", running),
            ("a task running its second cycle or later", any(runs[n] > 1 for n in running)),
            ("a task running its second attempt or later", any(attempts[n] > 1 for n in running)),
            ("a retry pending", RETRY in status),
            ("a retry due, not yet sent", any(status[n] == QUEUED for n in plan.retrying)),
            ("tasks added", plan.added),
            (
                "a failed member of an unfinished group",
                any(g.failures and status[g.barrier] != DONE for g in plan.graph.groups),
            ),
            ("iteration data", plan.iter_data),
            ("a task asked to run again", plan.again),
            ("terminated", plan.terminated is not None),
            ("failed", plan.failure is not None),
            ("suspended", plan.suspended),
            ("actions not handed out yet", plan.actions),
        )
        if seen
    ]


# --- runs told by hand, cut everywhere: what random runs reach seldom ---------------------------------
class Script(DrivenPlan):
    """A plan driven fact by fact; `step` gives what it dispatched, by task id."""

    def __init__(self, wf: Workflow) -> None:
        self.wf = wf
        super().__init__(fresh(wf))

    def ok(self, sent: tuple[int, int, int], value: Any = "v", *directives: Any) -> Succeeded:
        return Succeeded(*sent, value, 0.5, directives)

    def fail(self, sent: tuple[int, int, int], retryable: bool = True) -> Failed:
        node = sent[0]
        return Failed(*sent, RemoteTaskError(self.plan.graph.ids[node], "ValueError", "boom"), 0.25, retryable)

    def assert_restores_everywhere(self) -> None:
        for cut in range(len(self.facts) + 1):
            assert_restores_at(self.wf, self.facts, cut)


def into_the_quorum(script: Script) -> dict[str, tuple[int, int, int]]:
    """groups_wf up to `judge`: m2 retried, then failed for good; m3 added a task."""
    sent = script.step()
    script.tell(script.ok(sent["head"]))
    sent = script.step()
    script.tell(script.ok(sent["m1"]), script.fail(sent["m2"]), Wrote("incr", "n", 2))
    script.tell(script.ok(sent["m3"], "m3", AddTasks(extra(task_id="x0", n=1), False)))
    added = script.step()
    script.tell(RetryCame(sent["m2"][0]))  # cut here: due, not yet sent again
    retried = script.step()
    assert retried["m2"][2] == 2
    script.tell(script.fail(retried["m2"], retryable=False), script.ok(added["x0"]))
    return script.step()


@pytest.mark.parametrize("stop", [Terminate("enough"), Cancel("stop")])
def test_a_run_stopped_while_tasks_still_run_stays_stopped(stop: Any) -> None:
    script = Script(groups_wf)
    sent = into_the_quorum(script)
    script.tell(script.ok(sent["judge"]))
    sent = script.step()
    assert set(sent) == {"q1", "q2", "q3", "q4"}
    script.tell(script.ok(sent["q4"], None, stop), script.fail(sent["q1"]))
    script.step()  # Finish or Fail: the others still run
    script.tell(script.ok(sent["q2"]), script.ok(sent["q3"], [1], Iterate([1])), Wrote("append", "log", 1))
    script.step()
    assert script.plan.terminated == ("enough" if isinstance(stop, Terminate) else None)
    script.assert_restores_everywhere()


def test_a_suspended_task_and_a_loop_in_its_second_cycle_are_kept() -> None:
    script = Script(loops_wf)
    sent = script.step()
    script.tell(script.ok(sent["head"]), script.ok(sent["flaky"]))
    sent = script.step()
    script.tell(script.ok(sent["looper"], [1], Iterate([1])))
    again = script.step()
    assert again["looper"][1] == 2  # its second cycle runs
    script.tell(Suspended(*sent["s0"]))
    script.step()  # nothing is sent while a task waits for an answer
    script.tell(script.ok(again["looper"], [1, 2]))
    script.step()  # Suspend
    assert script.plan.suspended
    script.assert_restores_everywhere()


def test_a_goto_to_a_running_task_is_kept() -> None:
    script = Script(loops_wf)
    sent = script.step()
    script.tell(script.ok(sent["head"]), script.ok(sent["flaky"]))
    sent = script.step()
    script.tell(script.ok(sent["s0"], None, AddTasks(looper, True)))  # looper runs: once more after this run
    assert script.plan.again == {sent["looper"][0]}
    script.step()
    script.tell(script.ok(sent["looper"], [1]))
    again = script.step()
    assert again["looper"][1:] == (2, 1)  # its second cycle
    script.tell(script.ok(again["looper"], [2]))
    script.step()
    script.assert_restores_everywhere()


# --- the same document, read as a checkpoint -----------------------------------------------------------
def test_read_as_a_checkpoint_what_was_under_way_runs_again() -> None:
    """Without keep_running the snapshot is a checkpoint: nothing is in flight, and the
    tasks that were running, or waiting to retry, are sent again as new runs."""
    script = Script(groups_wf)
    sent = script.step()
    script.tell(script.ok(sent["head"]))
    sent = script.step()
    script.tell(script.fail(sent["m2"]))  # m2 waits to retry; m1 and m3 run
    doc = snapshot(script.plan)

    kept = restored(groups_wf, doc)
    assert sorted(t.id for t in kept.in_flight().tasks) == ["m1", "m3"]
    assert dispatch_of(kept.step()) == ([], [], [])  # nothing is sent twice

    checkpoint = restored(groups_wf, doc, keep_running=False)
    assert len(checkpoint.in_flight().nodes) == 0
    again = dispatch_of(checkpoint.step())
    assert sorted((t.id, c, a) for t, c, a in zip(*again, strict=True)) == [("m1", 1, 1), ("m2", 1, 1), ("m3", 1, 1)]


def dispatch_of(actions: list[Any]) -> tuple[list[Any], list[int], list[int]]:
    """The tasks, cycles and attempts the actions send."""
    tasks: list[Any] = []
    cycles: list[int] = []
    attempts: list[int] = []
    for action in actions:
        if isinstance(action, Dispatch):
            tasks.extend(action.tasks)
            cycles.extend(action.cycles)
            attempts.extend(action.attempts)
    return tasks, cycles, attempts


def test_a_journal_snapshot_read_as_a_checkpoint_is_that_checkpoint() -> None:
    script = Script(groups_wf)
    into_the_quorum(script)
    for cut in range(len(script.facts) + 1):
        assert_reads_as_its_checkpoint(groups_wf, replay(fresh(groups_wf), script.facts[:cut]))


def assert_reads_as_its_checkpoint(wf: Workflow, plan: RunPlan) -> None:
    """The journal snapshot of `plan` restored without keep_running is the plan its
    checkpoint restores (failed members' errors aside: the snapshot keeps them exactly,
    a checkpoint by type name and message)."""
    journal = restored(wf, snapshot(plan), keep_running=False)
    checkpoint = restored(wf, snapshot(plan, keep_running=False), keep_running=False)
    assert without_errors(observed(journal)) == without_errors(observed(checkpoint))


def without_errors(seen: dict[str, Any]) -> dict[str, Any]:
    return {**seen, "groups": [(*g[:-1], sorted(g[-1])) for g in seen["groups"]]}

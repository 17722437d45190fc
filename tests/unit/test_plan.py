"""The run plan as a pure state machine: plain facts in, actions out, no event loop.

`Sim` plays the executors: it takes the plan's `Dispatch` actions and feeds back what
the test says each task did.
"""

from __future__ import annotations

import pickle
from typing import Any, NamedTuple

import pytest

from graflow_async import (
    BestEffortGroupPolicy,
    CycleLimitError,
    GraphError,
    ParallelGroupError,
    RetryLimitExceededError,
    RetryPolicy,
    TaskFailedError,
    WorkflowCancelledError,
    parallel,
    task,
    workflow,
)
from graflow_async.plan import ChannelData, Dispatch, Emit, Fail, Finish, RetryLater, RunGraph, RunPlan, Suspend
from graflow_async.plan.directives import AddTasks, Cancel, Iterate, Terminate
from graflow_async.wire.codec import check_value


@task
def a() -> str:
    return "a"


@task
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


@task
def work(n: int = 0) -> int:
    return n


@task
def needs(missing: int) -> int:
    return missing


@task
def sink(a: str) -> str:
    return a


@task(max_cycles=3)
def capped() -> None:
    return None


@task
def loop_task(data: Any = None) -> Any:
    return data


class Sent(NamedTuple):
    node: int
    task: Any
    attempt: int
    cycle: int
    kwargs: dict[str, Any]


class Sim:
    """Drives a `RunPlan`: `run(...)` dispatches, the test answers for each task."""

    def __init__(self, wf: Any, channel: dict[str, Any] | None = None, **options: Any) -> None:
        self.plan = RunPlan(RunGraph(wf.compile()), ChannelData(channel), **options)
        self.running: dict[str, Sent] = {}
        self.log: list[str] = []  # task ids in dispatch order
        self.events: list[Emit] = []
        self.retries: list[RetryLater] = []
        self.end: Any = None
        self.plan.start()
        self.step()

    def step(self) -> list[str]:
        started = []
        for action in self.plan.step():
            if isinstance(action, Dispatch):
                for i, task_ in enumerate(action.tasks):
                    sent = Sent(action.nodes[i], task_, action.attempts[i], action.cycles[i], action.kwargs[i])
                    self.running[task_.id] = sent
                    self.log.append(task_.id)
                    started.append(task_.id)
            elif isinstance(action, Emit):
                self.events.append(action)
            elif isinstance(action, RetryLater):
                self.retries.append(action)
            else:
                self.end = action
        return started

    def ok(self, task_id: str, value: Any = None, *directives: Any) -> list[str]:
        d = self.running.pop(task_id)
        self.plan.task_succeeded(d.node, d.cycle, d.attempt, value, 0.1, tuple(directives))
        return self.step()

    def fail(self, task_id: str, error: BaseException, retryable: bool = True) -> list[str]:
        d = self.running.pop(task_id)
        self.plan.task_failed(d.node, d.cycle, d.attempt, error, 0.1, retryable)
        return self.step()

    def finish_all(self) -> None:
        """Complete whatever runs, repeatedly, with each task's id as its value."""
        while self.running:
            self.ok(next(iter(self.running)), "v")

    def added(self) -> list[Emit]:
        return [ev for ev in self.events if ev.kind == "task_added"]


# --- the static graph ---------------------------------------------------------------------------
def test_a_chain_runs_in_order_and_finishes() -> None:
    with workflow("chain") as wf:
        a >> b >> c
    sim = Sim(wf)
    assert sim.log == ["a"]
    assert sim.ok("a", 1) == ["b"]
    assert sim.ok("b", 2) == ["c"]
    assert sim.end is None
    sim.ok("c", 3)
    assert sim.end == Finish(None)
    assert sim.plan.results == {"a": 1, "b": 2, "c": 3}
    assert sim.plan.output() == 3
    assert sim.plan.skipped() == []


def test_fan_in_runs_once_after_every_predecessor() -> None:
    with workflow("fan") as wf:
        a >> (b | c) >> d
    sim = Sim(wf)
    assert sim.ok("a") == ["b", "c"]
    assert sim.ok("b") == []
    assert sim.ok("c") == ["d"]
    sim.ok("d")
    assert sim.log.count("d") == 1 and sim.end == Finish(None)


def test_a_failure_is_retried_after_the_policy_delay_then_gives_up() -> None:
    w = work.instance("w")
    with workflow("retry") as wf:
        w >> b
    sim = Sim(wf, default_retry=RetryPolicy(max_retries=1, initial_interval=2.0))
    assert sim.fail("w", ValueError("x")) == []
    assert sim.retries == [RetryLater(sim.plan.graph.index["w"], 2.0)]
    sim.plan.retry_due(sim.retries[0].node)
    assert sim.step() == ["w"]
    assert sim.running["w"].attempt == 2 and sim.running["w"].cycle == 1
    sim.fail("w", ValueError("again"))
    assert isinstance(sim.end, Fail)
    assert isinstance(sim.end.error, RetryLimitExceededError) and sim.end.error.attempts == 2


def test_a_stale_or_duplicate_reply_changes_nothing() -> None:
    with workflow("stale") as wf:
        a >> b
    sim = Sim(wf)
    d = sim.running["a"]
    sim.plan.task_succeeded(d.node, d.cycle, d.attempt + 1, "wrong attempt", 0.0)
    sim.plan.task_succeeded(d.node, d.cycle + 1, d.attempt, "wrong cycle", 0.0)
    assert sim.step() == []
    sim.ok("a", "right")
    sim.plan.task_succeeded(d.node, d.cycle, d.attempt, "duplicate", 0.0)
    assert sim.plan.results["a"] == "right" and sim.step() == []
    for node in (-1, 99):  # indices a forged or corrupted reply might carry
        sim.plan.task_succeeded(node, 1, 1, "forged", 0.0)
        sim.plan.task_failed(node, 1, 1, ValueError("forged"), 0.0)
        sim.plan.task_suspended(node, 1, 1)
        sim.plan.retry_due(node)
    assert sim.step() == [] and "forged" not in sim.plan.results.values()


def test_a_missing_parameter_fails_without_dispatching() -> None:
    with workflow("missing") as wf:
        wf.add(needs)
    sim = Sim(wf)
    assert sim.log == []
    assert isinstance(sim.end, Fail) and "'missing'" in str(sim.end.error)


def test_parameters_come_from_results_then_the_channel() -> None:
    with workflow("params") as wf:
        a >> sink
        wf.add(needs)
    sim = Sim(wf, channel={"missing": 7, "a": "from channel"})
    assert sim.running["needs"].kwargs == {"missing": 7}
    sim.ok("a", "from a")
    assert sim.running["sink"].kwargs == {"a": "from a"}


def test_strict_group_fails_the_run_and_best_effort_carries_on() -> None:
    with workflow("strict") as wf:
        (a | b) >> c
    sim = Sim(wf)
    sim.fail("a", ValueError("no"))
    sim.ok("b")
    assert isinstance(sim.end, Fail) and isinstance(sim.end.error, ParallelGroupError)
    assert sim.end.error.successful_tasks == ["b"]

    with workflow("best") as wf2:
        (a | b).with_execution(policy=BestEffortGroupPolicy()) >> c
    sim = Sim(wf2)
    sim.fail("a", ValueError("no"))
    assert sim.ok("b") == ["c"]


def test_a_suspended_task_stops_dispatch_and_the_run_suspends_when_idle() -> None:
    with workflow("hitl") as wf:
        (a | b) >> c
    sim = Sim(wf)
    d = sim.running.pop("a")
    sim.plan.task_suspended(d.node, d.cycle, d.attempt)
    assert sim.step() == [] and sim.end is None
    sim.ok("b")
    assert sim.end == Suspend((d.node,))
    assert "c" not in sim.log


# --- next_task ---------------------------------------------------------------------------------
def test_next_task_runs_after_the_task_and_its_successors_wait_for_it() -> None:
    with workflow("add") as wf:
        a >> c
    sim = Sim(wf)
    assert sim.ok("a", 1, AddTasks(b, False)) == ["b"]
    assert [(ev.data["added_by"], ev.data["ids"]) for ev in sim.added()] == [("a", "b")]
    assert sim.ok("b", 2) == ["c"]
    sim.ok("c")
    assert sim.end == Finish(None)


def test_waiting_is_transitive_through_tasks_added_by_added_tasks() -> None:
    with workflow("transitive") as wf:
        a >> d
    sim = Sim(wf)
    sim.ok("a", None, AddTasks(b, False))
    assert sim.ok("b", None, AddTasks(c, False)) == ["c"]
    assert sim.ok("c") == ["d"]


def test_several_additions_run_together_and_all_hold_the_successors() -> None:
    with workflow("several") as wf:
        a >> d
    sim = Sim(wf)
    assert sorted(sim.ok("a", None, AddTasks(b, False), AddTasks(c, False))) == ["b", "c"]
    assert sim.ok("b") == []
    assert sim.ok("c") == ["d"]


def test_a_runtime_fan_out_group_is_judged_by_its_policy() -> None:
    with workflow("fanout") as wf:
        a >> d
    sim = Sim(wf)
    fan = parallel(*[work.instance(f"w{i}", n=i) for i in range(3)]).with_execution(policy="best_effort")
    assert sorted(sim.ok("a", None, AddTasks(fan, False))) == ["w0", "w1", "w2"]
    assert sim.running["w2"].kwargs == {"n": 2}
    sim.ok("w0", 0)
    sim.fail("w1", ValueError("w1 broke"))
    assert sim.ok("w2", 2) == ["d"]
    assert [ev.data["success"] for ev in sim.events if ev.kind == "group_finished"] == [True]


def test_a_runtime_chain_runs_in_order() -> None:
    with workflow("runtime-chain") as wf:
        a >> d
    sim = Sim(wf)
    assert sim.ok("a", None, AddTasks(b >> c, False)) == ["b"]
    assert sim.ok("b") == ["c"]
    assert sim.ok("c") == ["d"]


def test_tasks_added_by_a_group_member_hold_the_group_and_fail_it() -> None:
    with workflow("member") as wf:
        (a | b) >> d
    sim = Sim(wf)
    sim.ok("a", None, AddTasks(c, False))
    assert sim.ok("b") == []  # the group waits for c, added by member a
    sim.fail("c", ValueError("c broke"))
    assert isinstance(sim.end, Fail) and isinstance(sim.end.error, ParallelGroupError)
    assert [t for t, _ in sim.end.error.failed_tasks] == ["c"]


def test_next_task_of_an_existing_task_runs_it_again() -> None:
    with workflow("again") as wf:
        a >> b >> d
    sim = Sim(wf)
    sim.ok("a", "a1")
    assert sim.ok("b", None, AddTasks(a, False)) == ["a"]
    assert sim.ok("a", "a2") == ["b"]  # a's successor b runs again after it, then d waits no more
    sim.ok("b", None)
    assert sim.log == ["a", "b", "a", "b", "d"]
    assert sim.plan.results["a"] == "a2"


def test_adding_a_task_whose_id_names_another_function_fails_the_adder() -> None:
    with workflow("clash") as wf:
        a >> b
    impostor = c.instance("b")
    sim = Sim(wf)
    sim.ok("a", None, AddTasks(impostor, False))
    assert isinstance(sim.end, Fail)
    assert isinstance(sim.end.error, TaskFailedError) and isinstance(sim.end.error.cause, GraphError)
    assert "'b'" in str(sim.end.error.cause) and sim.end.error.task_id == "a"


# --- goto, loops and skipping -------------------------------------------------------------------
def test_goto_skips_the_successors_and_their_successors() -> None:
    with workflow("goto") as wf:
        a >> b >> c
    sim = Sim(wf)
    assert sim.ok("a", None, AddTasks(e, True)) == ["e"]
    sim.ok("e")
    assert sim.end == Finish(None)
    assert sim.plan.skipped() == ["b", "c"]


def test_a_goto_back_loops_until_the_task_lets_it_continue() -> None:
    with workflow("loop") as wf:
        a >> b >> c >> d
    sim = Sim(wf)
    sim.ok("a")
    for _ in range(2):
        assert sim.ok("b") == ["c"]
        assert sim.ok("c", None, AddTasks(b, True)) == ["b"]
    sim.ok("b")
    assert sim.ok("c") == ["d"]
    sim.ok("d")
    assert sim.end == Finish(None) and sim.plan.skipped() == []
    assert sim.log == ["a", "b", "c", "b", "c", "b", "c", "d"]
    assert sim.running == {} and sim.plan.runs[sim.plan.graph.index["b"]] == 3


def test_a_goto_to_a_task_with_no_run_left_fails_the_asker() -> None:
    with workflow("cap") as wf:
        capped >> b
    sim = Sim(wf)
    for _ in range(2):
        sim.ok("capped")
        sim.ok("b", None, AddTasks(capped, True))
    sim.ok("capped")
    sim.ok("b", None, AddTasks(capped, True))
    assert isinstance(sim.end, Fail)
    error = sim.end.error
    assert isinstance(error, CycleLimitError)
    assert error.task_id == "b"  # the asker, as for every TaskFailedError
    assert (error.target, error.max_cycles, error.cycle_count) == ("capped", 3, 3)
    assert "task 'b'" in str(error) and "task 'capped'" in str(error)
    copied = pickle.loads(pickle.dumps(error))  # its facts survive a copy
    assert (copied.task_id, copied.target, str(copied)) == ("b", "capped", str(error))


def test_a_loop_over_a_group_runs_the_group_again() -> None:
    with workflow("group-loop") as wf:
        a >> (b | c) >> d
    sim = Sim(wf)
    sim.ok("a")
    sim.ok("b")
    sim.ok("c")
    assert sim.ok("d", None, AddTasks(a, True)) == ["a"]
    assert sorted(sim.ok("a")) == ["b", "c"]
    sim.ok("b")
    assert sim.ok("c") == ["d"]
    sim.ok("d")
    assert sim.end == Finish(None)


# --- next_iteration ----------------------------------------------------------------------------
def test_next_iteration_reruns_with_data_and_successors_run_once_after() -> None:
    with workflow("iterate") as wf:
        loop_task >> b
    sim = Sim(wf)
    assert sim.running["loop_task"].kwargs == {}
    for i in range(1, 3):
        assert sim.ok("loop_task", i, Iterate({"i": i})) == ["loop_task"]
        assert sim.running["loop_task"].kwargs == {"data": {"i": i}}
        assert sim.running["loop_task"].cycle == i + 1
    assert sim.ok("loop_task", "last") == ["b"]
    assert sim.log.count("b") == 1 and sim.plan.results["loop_task"] == "last"


def test_next_iteration_with_no_cycle_left_fails_the_task() -> None:
    with workflow("iterate-cap") as wf:
        wf.add(capped)
    sim = Sim(wf)
    sim.ok("capped", None, Iterate(None))
    sim.ok("capped", None, Iterate(None))
    sim.ok("capped", None, Iterate(None))
    assert isinstance(sim.end, Fail) and isinstance(sim.end.error, CycleLimitError)
    assert sim.end.error.cycle_count == 3


# --- cancel and terminate ----------------------------------------------------------------------
def test_cancel_wins_over_terminate_and_goto() -> None:
    with workflow("cancel") as wf:
        a >> b
    sim = Sim(wf)
    sim.ok("a", None, AddTasks(c, True), Terminate("done"), Cancel("stop"))
    assert isinstance(sim.end, Fail) and isinstance(sim.end.error, WorkflowCancelledError)
    assert sim.end.error.reason == "stop"


def test_after_terminate_nothing_starts_not_even_added_tasks() -> None:
    with workflow("terminate") as wf:
        a >> b
    sim = Sim(wf)
    assert sim.ok("a", 1, AddTasks(c, False), Terminate("enough")) == []
    assert sim.end == Finish("enough")
    assert sim.plan.results == {"a": 1}


# --- the channel --------------------------------------------------------------------------------
def test_channel_append_and_incr() -> None:
    channel = ChannelData({"n": 1})
    assert channel.append("log", "x") == 1
    assert channel.append("log", "y") == 2
    assert channel.incr("n") == 2
    assert channel.incr("f", 0.5) == 0.5
    with pytest.raises(TypeError, match="'n' holds a int, not a list"):
        channel.append("n", 1)
    with pytest.raises(TypeError, match="not a number"):
        channel.incr("log")
    with pytest.raises(TypeError, match="finite number"):
        channel.incr("n", float("nan"))
    with pytest.raises(TypeError, match=r"'bad'.*cannot be serialized"):
        check_value("bad", object())  # the run checks what it puts in a channel (ChannelData takes it as is)
    assert channel.snapshot() == {"n": 2, "log": ["x", "y"], "f": 0.5}

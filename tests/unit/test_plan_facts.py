"""A plan rebuilt from a run's facts (`plan.facts`) is the live plan: the same results,
channel and statuses, and `in_flight` hands back exactly the attempts that were running
(what a run taken over must send again). Pure: no event loop, no I/O."""

from __future__ import annotations

from plan_driving import DrivenPlan

from graflow_async import RetryPolicy, task, workflow
from graflow_async.plan import ChannelData, Dispatch, Finish, RunGraph, RunPlan
from graflow_async.plan.facts import STEPPED, Failed, RetryCame, Succeeded, Wrote, replay


@task
def a() -> str:
    return "a"


@task
def b(a: str) -> str:
    return a + "b"


@task(retry_policy=RetryPolicy(max_retries=2))
def c(a: str) -> str:
    return a + "c"


@task
def d(b: str, c: str, total: int = 0) -> str:
    return b + c + str(total)


def fresh() -> RunPlan:
    with workflow("plan-facts") as wf:
        a >> (b | c) >> d
    return RunPlan(RunGraph(wf.compile()), ChannelData({"total": 1}), default_retry=RetryPolicy())


class Live(DrivenPlan):
    """A plan driven as the run actor drives it, keeping the facts it was told."""

    def __init__(self) -> None:
        super().__init__(fresh())
        self.sent = self.step()


def running(plan: RunPlan) -> list[tuple[str, int, int]]:
    flight = plan.in_flight()
    return sorted((flight.tasks[i].id, flight.cycles[i], flight.attempts[i]) for i in range(len(flight.nodes)))


def test_a_replayed_plan_sends_again_exactly_what_was_running() -> None:
    live = Live()
    (na, ca, aa) = live.sent["a"]
    live.tell(Succeeded(na, ca, aa, "a", 0.1))
    sent = live.step()
    nb, nc = sent["b"][0], sent["c"][0]
    live.tell(Failed(nc, 1, 1, RuntimeError("flaky"), 0.1, True))  # c: a retry is due later
    live.tell(Wrote("incr", "total", 2))
    live.tell(Succeeded(nb, 1, 1, "ab", 0.1))
    live.step()
    live.tell(RetryCame(nc))
    retried = live.step()
    assert retried["c"] == (nc, 1, 2)  # c's second attempt is running when the driver dies

    rebuilt = replay(fresh(), live.facts)
    assert rebuilt.results == live.plan.results and rebuilt.channel.snapshot() == {"total": 3}
    assert list(rebuilt.status) == list(live.plan.status) and rebuilt.inflight == live.plan.inflight
    assert running(rebuilt) == running(live.plan) == [("c", 1, 2)]
    flight = rebuilt.in_flight()
    assert flight.kwargs == [{"a": "a"}]

    # the adopter sends c again as it was; its reply completes the run
    rebuilt.task_succeeded(nc, 1, 2, "ac", 0.1)
    [dispatch] = [x for x in rebuilt.step() if isinstance(x, Dispatch)]
    assert [t.id for t in dispatch.tasks] == ["d"] and dispatch.kwargs == [{"b": "ab", "c": "ac", "total": 3}]
    rebuilt.task_succeeded(dispatch.nodes[0], 1, 1, "abac3", 0.1)
    assert [type(x) for x in rebuilt.step()] == [Finish]
    assert rebuilt.output() == "abac3"


def test_nothing_is_in_flight_before_the_start_or_after_the_end() -> None:
    plan = fresh()
    assert len(plan.in_flight().nodes) == 0
    live = Live()
    node, cycle, attempt = live.sent["a"]
    assert running(live.plan) == [("a", 1, 1)]
    live.tell(Succeeded(node, cycle, attempt, "a", 0.1))
    assert running(live.plan) == []


def test_the_writes_of_an_attempt_that_never_finished_are_left_out_of_a_takeover() -> None:
    from graflow_async.plan.facts import Succeeded, Wrote, without_unfinished_writes

    done, running, retried = (0, 1, 1), (1, 1, 1), (2, 1, 1)
    facts = [
        Wrote("incr", "n", 1, done),
        Wrote("append", "log", "x", running),
        Succeeded(0, 1, 1, "ok", 0.0),
        Wrote("set", "k", 1, retried),
        Wrote("set", "legacy", 1),  # written before writes named their attempt: kept
        STEPPED,
    ]
    kept = without_unfinished_writes(facts, also_finished=[retried])
    assert kept == [facts[0], facts[2], facts[3], facts[4], STEPPED]

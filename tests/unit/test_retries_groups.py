"""Retries and parallel-group policies in real runs (SPEC sections 2 and 4)."""

from __future__ import annotations

import asyncio
import time

import pytest
from clocks import FastClock

from graflow_async import (
    AtLeastNGroupPolicy,
    BestEffortGroupPolicy,
    CoordinationBackend,
    CriticalGroupPolicy,
    GroupExecutionPolicy,
    ParallelGroupError,
    RetryLimitExceededError,
    RetryPolicy,
    StrictGroupPolicy,
    TaskFailedError,
    TaskResult,
    parallel,
    run,
    task,
    workflow,
)
from graflow_async.clock import use_clock

NO_WAIT = RetryPolicy(max_retries=3, initial_interval=0)


def ok(name, value=None, delay=0.0, log=None):
    """A task `name` that returns `value` (default: its name) after `delay`."""

    @task(name)
    async def t():
        if delay:
            await asyncio.sleep(delay)  # the task's work, for ordering
        if log is not None:
            log.append(name)
        return name if value is None else value

    return t


def fail(name, exc, delay=0.0, log=None):
    """A task `name` that raises `exc` (the same instance every attempt) after `delay`."""

    @task(name)
    async def t():
        if delay:
            await asyncio.sleep(delay)  # the task's work, for ordering
        if log is not None:
            log.append(name)
        raise exc

    return t


# --- retries --------------------------------------------------------------------------------


async def test_retry_policy_retries_then_succeeds():
    calls = []

    @task(retry_policy=NO_WAIT)
    async def flaky():
        calls.append(len(calls) + 1)
        if len(calls) < 3:
            raise ConnectionError("transient")
        return "finally"

    with workflow("w") as wf:
        wf.add(flaky)
    result = await run(wf)
    assert result.output == "finally"
    assert calls == [1, 2, 3]


async def test_retry_limit_exceeded_carries_the_facts():
    errors: list[Exception] = []

    @task(retry_policy=RetryPolicy(max_retries=2, initial_interval=0))
    async def doomed():
        errors.append(ValueError(f"try {len(errors) + 1}"))
        raise errors[-1]

    with workflow("w") as wf:
        wf.add(doomed)
    with pytest.raises(RetryLimitExceededError) as info:
        await run(wf)
    err = info.value
    assert isinstance(err, TaskFailedError)
    assert len(errors) == 3
    assert err.task_id == "doomed"
    assert err.attempts == 3
    assert err.max_retries == 2
    assert err.last_error is errors[-1]
    assert err.cause is errors[-1]
    assert err.__cause__ is errors[-1]
    assert "try 3" in str(err)


async def test_default_max_retries_applies_to_tasks_without_a_policy():
    calls = {"plain": 0, "pinned": 0}

    @task
    async def plain():
        calls["plain"] += 1
        if calls["plain"] < 3:
            raise OSError("again")
        return calls["plain"]

    with workflow("w") as wf:
        wf.add(plain)
    with use_clock(FastClock()) as clock:
        result = await run(wf, default_max_retries=2)
    assert result.output == 3
    assert clock.delays == [1.0, 2.0]  # the default policy's intervals


async def test_default_max_retries_exhausted_is_retry_limit_exceeded():
    calls = []

    @task
    async def always():
        calls.append(1)
        raise OSError("never")

    with workflow("w") as wf:
        wf.add(always)
    with use_clock(FastClock()), pytest.raises(RetryLimitExceededError) as info:
        await run(wf, default_max_retries=1)
    assert len(calls) == 2
    assert (info.value.attempts, info.value.max_retries) == (2, 1)


async def test_default_max_retries_does_not_override_an_explicit_zero():
    calls = []

    @task(retry_policy=RetryPolicy(max_retries=0))
    async def pinned():
        calls.append(1)
        raise OSError("once only")

    with workflow("w") as wf:
        wf.add(pinned)
    with use_clock(FastClock()), pytest.raises(TaskFailedError) as info:
        await run(wf, default_max_retries=5)
    assert calls == [1]
    assert info.value.task_id == "pinned"


async def test_max_retries_shorthand():
    calls = []

    @task(max_retries=1)
    async def once_more():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("first")
        return "second"

    with workflow("w") as wf:
        wf.add(once_more)
    with use_clock(FastClock()) as clock:
        assert (await run(wf)).output == "second"
    assert calls == [1, 1]
    assert clock.delays == [1.0]


async def test_backoff_delays_are_the_policy_delays():
    policy = RetryPolicy(max_retries=4, initial_interval=1.5, backoff_factor=3.0, max_interval=10.0)
    calls = []

    @task(retry_policy=policy)
    async def slow_to_recover():
        calls.append(1)
        if len(calls) <= 4:
            raise OSError("not yet")
        return "up"

    with workflow("w") as wf:
        wf.add(slow_to_recover)
    started = time.monotonic()
    with use_clock(FastClock()) as clock:
        assert (await run(wf)).output == "up"
    assert time.monotonic() - started < 1.0
    assert clock.delays == [1.5, 4.5, 10.0, 10.0]
    assert clock.delays == [policy.delay(n) for n in range(4)]


async def test_jittered_backoff_stays_within_its_bounds():
    policy = RetryPolicy(max_retries=3, initial_interval=2.0, max_interval=5.0, jitter=True)

    @task(retry_policy=policy)
    async def jittery():
        raise OSError("x")

    with workflow("w") as wf:
        wf.add(jittery)
    with use_clock(FastClock()) as clock, pytest.raises(RetryLimitExceededError):
        await run(wf)
    assert len(clock.delays) == 3
    for n, d in enumerate(clock.delays):
        base = min(2.0 * 2.0**n, 5.0)
        assert base * 0.5 <= d <= min(base * 1.5, 5.0)


async def test_backoff_does_not_block_another_branch():
    stamps: dict[str, float] = {}
    attempts = []

    @task(retry_policy=RetryPolicy(max_retries=1, initial_interval=0.3))
    async def retrying():
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise OSError("retry me")
        return "recovered"

    @task
    async def sibling():
        await asyncio.sleep(0.05)  # ends within the other branch's 0.3 s backoff
        stamps["sibling_done"] = time.monotonic()
        return "sibling"

    @task
    async def after_sibling(sibling):
        stamps["after_done"] = time.monotonic()
        return sibling + "+after"

    with workflow("w") as wf:
        wf.add(retrying)
        sibling >> after_sibling
    result = await run(wf)
    assert result.results["retrying"] == "recovered"
    assert result.results["after_sibling"] == "sibling+after"
    assert attempts[0] < stamps["sibling_done"] < stamps["after_done"] < attempts[1]
    assert attempts[1] - attempts[0] >= 0.29


# --- strict groups ----------------------------------------------------------------------------


async def test_strict_group_failure_lists_raw_errors_in_member_order():
    e_slow, e_fast = ValueError("slow failure"), KeyError("fast failure")
    ran = []
    with workflow("w") as wf:
        (ok("m1") | fail("m2", e_slow, delay=0.05) | ok("m3", delay=0.02) | fail("m4", e_fast)) >> ok("after", log=ran)
    with pytest.raises(ParallelGroupError) as info:
        await run(wf)
    err = info.value
    assert err.group_id == "ParallelGroup_1"
    assert err.failed_tasks == [("m2", e_slow), ("m4", e_fast)]
    assert err.failed_tasks[0][1] is e_slow and err.failed_tasks[1][1] is e_fast
    assert err.successful_tasks == ["m1", "m3"]
    assert "ParallelGroup_1" in str(err)
    assert ran == []


async def test_strict_is_the_default_and_waits_for_every_member():
    finished = []
    boom = RuntimeError("boom")
    with workflow("w") as wf:
        fail("bad", boom) | ok("slow", delay=0.05, log=finished)
    with pytest.raises(ParallelGroupError) as info:
        await run(wf)
    assert finished == ["slow"]  # policies are evaluated when every member has finished
    assert info.value.successful_tasks == ["slow"]
    assert info.value.failed_tasks == [("bad", boom)]


async def test_failed_member_error_is_its_last_attempt():
    errors = []

    @task(retry_policy=RetryPolicy(max_retries=2, initial_interval=0))
    async def retried():
        errors.append(OSError(f"attempt {len(errors) + 1}"))
        raise errors[-1]

    with workflow("w") as wf:
        retried | ok("fine")
    with pytest.raises(ParallelGroupError) as info:
        await run(wf)
    assert len(errors) == 3
    assert info.value.failed_tasks == [("retried", errors[-1])]
    assert info.value.failed_tasks[0][1] is errors[-1]


async def test_group_policy_names_as_strings():
    ran = []
    with workflow("w") as wf:
        (ok("a") | fail("b", ValueError())).with_execution(policy="best_effort") >> ok("c", log=ran)
    await run(wf)
    assert ran == ["c"]

    with workflow("w2") as wf2:
        (ok("a") | fail("b", ValueError())).with_execution(policy="strict") >> ok("c", log=ran)
    with pytest.raises(ParallelGroupError):
        await run(wf2)
    assert ran == ["c"]


async def test_with_execution_returns_the_group():
    g = ok("a") | ok("b")
    assert g.with_execution() is g
    assert g.with_execution(policy=BestEffortGroupPolicy()) is g
    assert g.with_execution(backend=CoordinationBackend.THREADING) is g
    assert g.with_execution(backend=CoordinationBackend.LOCAL, policy=StrictGroupPolicy()) is g


def test_redis_backend_and_config_are_accepted_when_building():
    g = ok("a") | ok("b")
    config = {"redis_url": "redis://localhost:6379/0"}
    assert g.with_execution(backend=CoordinationBackend.REDIS, backend_config=config) is g
    assert g.backend is CoordinationBackend.REDIS
    assert g.backend_config == config


async def test_threading_backend_runs_locally():
    with workflow("w") as wf:
        (ok("a") | ok("b")).with_execution(backend=CoordinationBackend.THREADING) >> ok("c")
    assert (await run(wf)).results == {"a": "a", "b": "b", "c": "c"}


# --- best effort --------------------------------------------------------------------------------


async def test_best_effort_successors_see_only_successful_members():
    seen = {}

    @task
    async def combine(good, also_good, bad="<no result>"):
        seen.update(good=good, also_good=also_good, bad=bad)
        return "combined"

    with workflow("w") as wf:
        (
            parallel(ok("good", 1), fail("bad", ValueError("x")), ok("also_good", 2)).with_execution(
                policy=BestEffortGroupPolicy()
            )
            >> combine
        )
    result = await run(wf)
    assert seen == {"good": 1, "also_good": 2, "bad": "<no result>"}
    assert result.output == "combined"
    assert "bad" not in result.results
    assert result.results["good"] == 1


async def test_best_effort_with_every_member_failing_still_succeeds():
    with workflow("w") as wf:
        (fail("x", ValueError()) | fail("y", KeyError())).with_execution(policy="best_effort") >> ok("z")
    result = await run(wf)
    assert result.results == {"z": "z"}


# --- at least N -------------------------------------------------------------------------------


async def test_at_least_n_passes():
    ran = []
    with workflow("w") as wf:
        (ok("a") | fail("b", ValueError()) | ok("c")).with_execution(policy=AtLeastNGroupPolicy(min_success=2)) >> ok(
            "next", log=ran
        )
    await run(wf)
    assert ran == ["next"]


async def test_at_least_n_fails():
    ran = []
    e1, e2 = ValueError("1"), ValueError("2")
    with workflow("w") as wf:
        (fail("a", e1) | ok("b") | fail("c", e2)).with_execution(
            policy=AtLeastNGroupPolicy(min_success=2)
        ).set_group_name("quorum") >> ok("next", log=ran)
    with pytest.raises(ParallelGroupError) as info:
        await run(wf)
    assert info.value.group_id == "quorum"
    assert info.value.failed_tasks == [("a", e1), ("c", e2)]
    assert info.value.successful_tasks == ["b"]
    assert ran == []


def test_at_least_n_negative_is_value_error():
    with pytest.raises(ValueError, match="min_success"):
        AtLeastNGroupPolicy(min_success=-1)


def test_at_least_n_more_than_members_is_value_error_at_with_execution():
    g = ok("a") | ok("b")
    with pytest.raises(ValueError, match="min_success"):
        g.with_execution(policy=AtLeastNGroupPolicy(min_success=3))


# --- critical ---------------------------------------------------------------------------------


async def test_critical_passes_when_only_non_critical_members_fail():
    ran = []
    with workflow("w") as wf:
        (ok("core") | fail("extra", ValueError())).with_execution(
            policy=CriticalGroupPolicy(critical_task_ids=["core"])
        ) >> ok("next", log=ran)
    await run(wf)
    assert ran == ["next"]


async def test_critical_fails_when_a_critical_member_fails():
    e = RuntimeError("core down")
    with workflow("w") as wf:
        (fail("core", e) | ok("extra")).with_execution(policy=CriticalGroupPolicy(critical_task_ids=["core"])) >> ok(
            "next"
        )
    with pytest.raises(ParallelGroupError) as info:
        await run(wf)
    assert info.value.failed_tasks == [("core", e)]
    assert info.value.successful_tasks == ["extra"]


def test_critical_unknown_id_is_value_error_naming_it():
    g = ok("a") | ok("b")
    with pytest.raises(ValueError, match="ghost"):
        g.with_execution(policy=CriticalGroupPolicy(critical_task_ids=["a", "ghost"]))


def test_unknown_policy_name_is_value_error_naming_it():
    g = ok("a") | ok("b")
    with pytest.raises(ValueError, match="quickest"):
        g.with_execution(policy="quickest")


# --- custom policies --------------------------------------------------------------------------


async def test_custom_policy_receives_task_results():
    received = {}
    boom = ValueError("boom")

    class Recording(GroupExecutionPolicy):
        def on_group_finished(self, group_id, results):
            received["group_id"] = group_id
            received["results"] = results

    with workflow("w") as wf:
        (ok("fast", 10) | ok("slow", 20, delay=0.05) | fail("bad", boom)).with_execution(policy=Recording()) >> ok(
            "next"
        )
    result = await run(wf)
    assert result.results["next"] == "next"
    assert received["group_id"] == "ParallelGroup_1"
    results = received["results"]
    assert list(results) == ["fast", "slow", "bad"]
    assert all(isinstance(r, TaskResult) for r in results.values())
    fast, slow, bad = results["fast"], results["slow"], results["bad"]
    assert (fast.task_id, fast.success, fast.value, fast.error) == ("fast", True, 10, None)
    assert (slow.task_id, slow.success, slow.value, slow.error) == ("slow", True, 20, None)
    assert (bad.task_id, bad.success, bad.value) == ("bad", False, None)
    assert bad.error is boom
    assert slow.duration >= 0.04
    assert 0 <= fast.duration < slow.duration


async def test_custom_policy_can_fail_the_group():
    class NeedsFast(GroupExecutionPolicy):
        def on_group_finished(self, group_id, results):
            if not results["fast"].success:
                raise ParallelGroupError(group_id, [("fast", results["fast"].error)], [])

    e = OSError("fast failed")
    ran = []
    with workflow("w") as wf:
        (fail("fast", e) | ok("other")).with_execution(policy=NeedsFast()) >> ok("after", log=ran)
    with pytest.raises(ParallelGroupError) as info:
        await run(wf)
    assert info.value.group_id == "ParallelGroup_1"
    assert info.value.failed_tasks == [("fast", e)]
    assert ran == []


# --- failures outside groups -------------------------------------------------------------------


async def test_failing_task_outside_a_group_raises_task_failed_error():
    original = ZeroDivisionError("division by zero")
    ran = []
    with workflow("w") as wf:
        ok("start") >> fail("divide", original) >> ok("after", log=ran)
    with pytest.raises(TaskFailedError) as info:
        await run(wf)
    err = info.value
    assert type(err) is TaskFailedError
    assert err.task_id == "divide"
    assert err.cause is original
    assert err.__cause__ is original
    assert "divide" in str(err) and "division by zero" in str(err)
    assert ran == []


async def test_siblings_of_a_failed_task_are_cancelled():
    sibling_started = asyncio.Event()
    log = []

    @task
    async def long_sibling():
        sibling_started.set()
        try:
            await asyncio.sleep(5)  # still running when its sibling fails
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        log.append("finished")

    @task
    async def breaker():
        await asyncio.wait_for(sibling_started.wait(), 2)
        raise RuntimeError("broken")

    with workflow("w") as wf:
        wf.add(long_sibling, breaker)
    started = time.monotonic()
    with pytest.raises(TaskFailedError) as info:
        await run(wf)
    assert time.monotonic() - started < 2
    assert info.value.task_id == "breaker"
    assert log == ["cancelled"]


async def test_group_members_are_cancelled_when_a_task_outside_fails():
    log = []

    @task
    async def member():
        try:
            await asyncio.sleep(5)  # still running when the task outside fails
        except asyncio.CancelledError:
            log.append("member cancelled")
            raise

    with workflow("w") as wf:
        wf.add(member | ok("quick"))
        wf.add(fail("outsider", ValueError("out"), delay=0.02))
    with pytest.raises(TaskFailedError) as info:
        await run(wf)
    assert info.value.task_id == "outsider"
    assert log == ["member cancelled"]


# --- chains as members, nested groups ------------------------------------------------------------


async def test_chain_member_failing_in_its_first_task_is_a_failed_member():
    ran = []
    e = ValueError("first link broke")
    with workflow("w") as wf:
        ((fail("link1", e) >> ok("link2", log=ran)) | ok("solo", log=ran)) >> ok("after", log=ran)
    with pytest.raises(ParallelGroupError) as info:
        await run(wf)
    err = info.value
    assert len(err.failed_tasks) == 1
    assert err.failed_tasks[0][0] == "link1"
    assert err.failed_tasks[0][1] is e
    assert err.successful_tasks == ["solo"]
    assert ran == ["solo"]


async def test_chain_member_failure_under_best_effort_skips_the_rest_of_the_chain():
    ran = []

    @task
    async def after(solo, link2="skipped"):
        return (solo, link2)

    with workflow("w") as wf:
        ((fail("link1", ValueError()) >> ok("link2", log=ran)) | ok("solo")).with_execution(
            policy="best_effort"
        ) >> after
    result = await run(wf)
    assert ran == []
    assert result.output == ("solo", "skipped")


async def test_chain_members_run_in_order_before_successors():
    order = []
    with workflow("w") as wf:
        ((ok("a1", log=order) >> ok("a2", delay=0.02, log=order)) | ok("b", log=order)) >> ok("z", log=order)
    await run(wf)
    assert order.index("a1") < order.index("a2") < order.index("z")
    assert order.index("b") < order.index("z")
    assert order[-1] == "z"


async def test_nested_groups_run_and_join():
    order = []
    inner = parallel(ok("i1", log=order), ok("i2", delay=0.02, log=order)).set_group_name("inner")
    with workflow("w") as wf:
        parallel(inner, ok("o1", log=order)) >> ok("end", log=order)
    result = await run(wf)
    assert order[-1] == "end"
    assert sorted(order[:-1]) == ["i1", "i2", "o1"]
    assert result.output == "end"


async def test_nested_group_failure_fails_the_outer_group():
    e = ValueError("inner member")
    ran = []
    with workflow("w") as wf:
        inner = parallel(ok("i1"), fail("i2", e)).set_group_name("inner")
        parallel(inner, ok("o1")).set_group_name("outer") >> ok("end", log=ran)
    with pytest.raises(ParallelGroupError) as info:
        await run(wf)
    outer = info.value
    assert outer.group_id == "outer"
    assert outer.successful_tasks == ["o1"]
    assert [tid for tid, _ in outer.failed_tasks] == ["inner"]
    inner_error = outer.failed_tasks[0][1]
    assert isinstance(inner_error, ParallelGroupError)
    assert inner_error.group_id == "inner"
    assert inner_error.failed_tasks == [("i2", e)]
    assert ran == []


async def test_nested_group_failure_tolerated_by_best_effort_outer():
    ran = []
    with workflow("w") as wf:
        inner = parallel(ok("i1"), fail("i2", ValueError()))
        parallel(inner, ok("o1")).with_execution(policy="best_effort") >> ok("end", log=ran)
    result = await run(wf)
    assert ran == ["end"]
    assert result.results["i1"] == "i1"
    assert "i2" not in result.results


async def test_best_effort_inner_group_inside_strict_outer():
    with workflow("w") as wf:
        inner = parallel(ok("i1"), fail("i2", ValueError())).with_execution(policy="best_effort")
        parallel(inner, ok("o1")) >> ok("end")
    result = await run(wf)
    assert result.output == "end"


async def test_critical_policy_can_name_an_auto_named_nested_group():
    e = ValueError("inner failed")
    with workflow("w") as wf:
        inner = fail("i1", e) | ok("i2")  # ParallelGroup_1 of this workflow
        parallel(inner, ok("o1")).with_execution(
            policy=CriticalGroupPolicy(critical_task_ids=["ParallelGroup_1"])
        ) >> ok("end")
    with pytest.raises(ParallelGroupError) as info:
        await run(wf)
    assert info.value.group_id == "ParallelGroup_2"
    assert [tid for tid, _ in info.value.failed_tasks] == ["ParallelGroup_1"]
    assert info.value.failed_tasks[0][1].failed_tasks == [("i1", e)]

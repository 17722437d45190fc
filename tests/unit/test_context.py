"""The task context (SPEC section 3): identity, attempts, channel, cancel/terminate, log."""

from __future__ import annotations

import asyncio
import time

import pytest

from graflow_async import (
    RetryPolicy,
    TaskContext,
    TaskFailedError,
    WorkflowCancelledError,
    parallel,
    run,
    task,
    workflow,
)

# --- identity --------------------------------------------------------------------------


async def test_context_carries_task_id_run_id_attempt_and_no_resume_metadata():
    seen = []

    @task(inject_context=True)
    async def first(context):
        seen.append(context)

    @task("second-id", inject_context=True)
    def second(context):  # sync tasks get the context too
        seen.append(context)

    with workflow("w") as wf:
        first >> second
    result = await run(wf, run_id="ctx-run")
    assert [type(c) for c in seen] == [TaskContext, TaskContext]
    assert [c.task_id for c in seen] == ["first", "second-id"]
    assert [c.run_id for c in seen] == ["ctx-run", "ctx-run"]
    assert [c.attempt for c in seen] == [1, 1]
    assert [c.resumed_metadata for c in seen] == [None, None]
    assert result.run_id == "ctx-run"


async def test_attempt_is_one_based_and_grows_on_each_retry():
    attempts = []

    @task(inject_context=True, retry_policy=RetryPolicy(max_retries=3, initial_interval=0))
    async def flaky(context):
        attempts.append(context.attempt)
        if context.attempt < 3:
            raise ConnectionError(f"attempt {context.attempt}")
        return context.attempt

    with workflow("w") as wf:
        wf.add(flaky)
    result = await run(wf)
    assert attempts == [1, 2, 3]
    assert result.output == 3


async def test_the_idempotency_key_is_the_same_for_every_attempt_and_new_for_each_cycle():
    keys = []

    @task(inject_context=True, retry_policy=RetryPolicy(max_retries=1, initial_interval=0))
    async def charge(context, data=0):
        keys.append((context.attempt, context.idempotency_key))
        if context.attempt == 1:
            raise ConnectionError("the gateway timed out")
        if data < 1:
            context.next_iteration(data + 1)

    with workflow("w") as wf:
        wf.add(charge)
    await run(wf, run_id="pay")
    assert keys == [(1, "pay/charge/1"), (2, "pay/charge/1"), (1, "pay/charge/2"), (2, "pay/charge/2")]


async def test_instances_see_their_own_task_id():
    seen = []

    @task(inject_context=True)
    async def worker(context, n):
        seen.append((context.task_id, n))

    with workflow("w") as wf:
        worker(task_id="w1", n=1) >> worker(task_id="w2", n=2)
    await run(wf)
    assert seen == [("w1", 1), ("w2", 2)]


# --- channel -------------------------------------------------------------------------------


async def test_channel_is_shared_between_tasks_and_visible_in_the_result():
    observed = {}

    @task(inject_context=True)
    async def producer(context):
        await context.channel.set("count", 3)
        await context.channel.set("items", ["a", "b"])
        await context.channel.set("temp", {"x": 1})

    @task(inject_context=True)
    async def consumer(context):
        ch = context.channel
        observed["count"] = await ch.get("count")
        observed["missing"] = await ch.get("nope")
        observed["missing_default"] = await ch.get("nope", "dflt")
        observed["keys_before"] = sorted(await ch.keys())
        await ch.delete("temp")
        await ch.delete("never-there")  # deleting an absent key is fine
        observed["keys_after"] = sorted(await ch.keys())
        await ch.set("count", observed["count"] + 1)

    with workflow("w") as wf:
        producer >> consumer
    result = await run(wf, initial_channel={"seed": True})
    assert observed == {
        "count": 3,
        "missing": None,
        "missing_default": "dflt",
        "keys_before": ["count", "items", "seed", "temp"],
        "keys_after": ["count", "items", "seed"],
    }
    assert result.channel == {"seed": True, "count": 4, "items": ["a", "b"]}


async def test_channel_values_feed_parameters_of_later_tasks():
    @task(inject_context=True)
    async def setter(context):
        await context.channel.set("threshold", 42)

    @task
    async def reader(threshold):
        return threshold

    with workflow("w") as wf:
        setter >> reader
    assert (await run(wf)).output == 42


async def test_unserializable_channel_value_raises_type_error_naming_the_key():
    @task(inject_context=True)
    async def bad_writer(context):
        await context.channel.set("the_lock", asyncio.Lock())

    with workflow("w") as wf:
        wf.add(bad_writer)
    with pytest.raises(TaskFailedError) as info:
        await run(wf)
    cause = info.value.cause
    assert isinstance(cause, TypeError)
    assert "the_lock" in str(cause)
    assert info.value.__cause__ is cause


async def test_unserializable_value_is_not_stored():
    outcome = {}

    @task(inject_context=True)
    async def careful(context):
        try:
            await context.channel.set("obj", object())
        except TypeError as exc:
            outcome["error"] = str(exc)
        outcome["stored"] = await context.channel.get("obj", "absent")

    with workflow("w") as wf:
        wf.add(careful)
    result = await run(wf)
    assert "obj" in outcome["error"]
    assert outcome["stored"] == "absent"
    assert result.channel == {}


async def test_unserializable_initial_channel_raises_type_error_naming_the_key():
    @task
    async def noop():
        pass

    with workflow("w") as wf:
        wf.add(noop)
    with pytest.raises(TypeError, match="bad_key"):
        await run(wf, initial_channel={"bad_key": object()})


# --- cancel_workflow -------------------------------------------------------------------------


async def test_cancel_workflow_raises_and_cancels_running_siblings():
    sibling_started = asyncio.Event()
    log: list[str] = []

    @task(inject_context=True)
    async def decider(context):
        await asyncio.wait_for(sibling_started.wait(), 2)
        context.cancel_workflow("budget exceeded")
        log.append("decider returned")
        return "decided"

    @task
    async def long_sibling():
        sibling_started.set()
        try:
            await asyncio.sleep(5)  # still running when the decider cancels the workflow
        except asyncio.CancelledError:
            log.append("sibling cancelled")
            raise
        log.append("sibling finished")

    @task
    async def after_decider():
        log.append("successor ran")

    with workflow("w") as wf:
        decider >> after_decider
        wf.add(long_sibling)
    started = time.monotonic()
    with pytest.raises(WorkflowCancelledError) as info:
        await run(wf)
    assert time.monotonic() - started < 2
    err = info.value
    assert err.task_id == "decider"
    assert err.reason == "budget exceeded"
    assert "budget exceeded" in str(err)
    assert log == ["decider returned", "sibling cancelled"]


async def test_cancel_workflow_from_a_sync_task():
    ran = []

    @task(inject_context=True)
    def stopper(context):
        context.cancel_workflow("sync stop")

    @task
    async def successor():
        ran.append(1)

    with workflow("w") as wf:
        stopper >> successor
    with pytest.raises(WorkflowCancelledError) as info:
        await run(wf)
    assert (info.value.task_id, info.value.reason) == ("stopper", "sync stop")
    assert ran == []


async def test_cancel_workflow_in_a_group_member_stops_the_run():
    ran = []

    @task(inject_context=True)
    async def member_a(context):
        context.cancel_workflow("from group")

    @task
    async def member_b():
        await asyncio.sleep(0.01)  # a member still running when its sibling cancels the workflow
        return "b"

    @task
    async def after_group():
        ran.append(1)

    with workflow("w") as wf:
        parallel(member_a, member_b).with_execution(policy="best_effort") >> after_group
    with pytest.raises(WorkflowCancelledError) as info:
        await run(wf)
    assert info.value.task_id == "member_a"
    assert ran == []


# --- terminate_workflow -----------------------------------------------------------------------


async def test_terminate_workflow_completes_without_successors():
    ran = []

    @task
    async def begin():
        return "begin"

    @task(inject_context=True)
    async def gate(context, begin):
        context.terminate_workflow("nothing to do")
        return "gate-value"

    @task
    async def after_gate():
        ran.append("after_gate")

    @task
    async def last():
        ran.append("last")

    with workflow("w") as wf:
        begin >> gate >> after_gate >> last
    result = await run(wf)
    assert result.status == "completed"
    assert result.results == {"begin": "begin", "gate": "gate-value"}
    assert ran == []


# --- context.log -------------------------------------------------------------------------------


async def test_context_log_is_bound_to_run_id_and_task_id(log_capture):
    @task(inject_context=True)
    async def chatty(context):
        context.log.info("hello from task", answer=42)

    @task(inject_context=True)
    def chatty_sync(context):
        context.log.warning("hello from thread")

    with workflow("w") as wf:
        chatty >> chatty_sync
    result = await run(wf, run_id="log-run")
    mine = {e["event"]: e for e in log_capture if e["event"].startswith("hello")}
    assert set(mine) == {"hello from task", "hello from thread"}
    assert mine["hello from task"]["run_id"] == "log-run"
    assert mine["hello from task"]["task_id"] == "chatty"
    assert mine["hello from task"]["answer"] == 42
    assert mine["hello from task"]["log_level"] == "info"
    assert mine["hello from thread"]["run_id"] == "log-run"
    assert mine["hello from thread"]["task_id"] == "chatty_sync"
    assert result.run_id == "log-run"

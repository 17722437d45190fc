"""Run events (SPEC section 8 "Events"): typed, ordered, delivered to on_event and to structlog."""

from __future__ import annotations

import time

import pytest

from graflow_async import RetryPolicy, TaskFailedError, parallel, run, task, workflow


def chain_with_a_retry():
    state = {"calls": 0}

    @task
    async def prepare():
        return 1

    @task(retry_policy=RetryPolicy(max_retries=2, initial_interval=0))
    async def flaky(prepare):
        state["calls"] += 1
        if state["calls"] == 1:
            raise ConnectionError("transient")
        return prepare + 1

    with workflow("events") as wf:
        prepare >> flaky
    return wf


EXPECTED_CHAIN = [
    ("run_started", None),
    ("task_started", "prepare"),
    ("task_completed", "prepare"),
    ("task_started", "flaky"),
    ("task_retrying", "flaky"),
    ("task_started", "flaky"),
    ("task_completed", "flaky"),
    ("run_completed", None),
]


async def test_sync_callback_gets_the_exact_event_sequence():
    events = []
    before = time.time()
    result = await run(chain_with_a_retry(), run_id="ev-1", on_event=events.append)
    after = time.time()
    assert result.output == 2
    assert [(e.kind, e.task_id) for e in events] == EXPECTED_CHAIN
    assert all(e.run_id == "ev-1" for e in events)
    stamps = [e.timestamp for e in events]
    assert all(isinstance(s, float) for s in stamps)
    assert before <= stamps[0] and stamps[-1] <= after
    assert stamps == sorted(stamps)


async def test_async_callback_gets_the_same_sequence():
    events = []

    async def on_event(event):
        events.append(event)

    await run(chain_with_a_retry(), on_event=on_event)
    assert [(e.kind, e.task_id) for e in events] == EXPECTED_CHAIN


async def test_retry_and_start_events_carry_attempt_numbers():
    events = []
    await run(chain_with_a_retry(), on_event=events.append)
    flaky = [e for e in events if e.task_id == "flaky"]
    assert [(e.kind, e.attempt) for e in flaky] == [
        ("task_started", 1),
        ("task_retrying", 1),
        ("task_started", 2),
        ("task_completed", 2),
    ]


async def test_run_failed_is_the_last_event_of_a_failed_run():
    events = []

    @task
    async def boom():
        raise ValueError("boom")

    with workflow("w") as wf:
        wf.add(boom)
    with pytest.raises(TaskFailedError):
        await run(wf, run_id="ev-fail", on_event=events.append)
    assert [(e.kind, e.task_id) for e in events] == [
        ("run_started", None),
        ("task_started", "boom"),
        ("task_failed", "boom"),
        ("run_failed", None),
    ]
    assert all(e.run_id == "ev-fail" for e in events)


async def test_group_finished_is_reported_for_each_group():
    events = []

    @task
    async def a():
        return 1

    @task
    async def b():
        return 2

    @task
    async def c():
        return 3

    @task
    async def d(c):
        return c

    with workflow("w") as wf:
        parallel(a, b).set_group_name("first") >> parallel(c, d(task_id="d2", c=0)) >> d
    await run(wf, on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds.count("group_finished") == 2
    finished = [e for e in events if e.kind == "group_finished"]
    assert finished[0].group_id == "first"
    assert finished[1].group_id == "ParallelGroup_2"
    # the first group finishes after its members and before anything after it starts
    first_index = kinds.index("group_finished")
    completed_before = {e.task_id for e in events[:first_index] if e.kind == "task_completed"}
    assert completed_before == {"a", "b"}
    started_after = [e.task_id for e in events[first_index:] if e.kind == "task_started"]
    assert sorted(started_after) == ["c", "d", "d2"]


async def test_a_raising_callback_does_not_fail_the_run():
    seen = []

    def broken(event):
        seen.append(event.kind)
        raise RuntimeError("listener bug")

    result = await run(chain_with_a_retry(), on_event=broken)
    assert result.status == "completed"
    assert result.output == 2
    assert seen == [kind for kind, _ in EXPECTED_CHAIN]


async def test_a_raising_async_callback_does_not_fail_the_run():
    async def broken(event):
        raise RuntimeError("async listener bug")

    result = await run(chain_with_a_retry(), on_event=broken)
    assert result.output == 2


async def test_events_are_logged_through_structlog(log_capture):
    result = await run(chain_with_a_retry(), run_id="ev-log")
    assert result.output == 2
    mine = [e for e in log_capture if e.get("run_id") == "ev-log" and e["event"] in _ALL_KINDS]
    assert [(e["event"], e.get("task_id")) for e in mine] == EXPECTED_CHAIN
    levels = {e["event"]: e["log_level"] for e in mine}
    assert levels["task_retrying"] == "warning"
    assert levels["run_completed"] == "info"


async def test_failure_events_are_logged_through_structlog(log_capture):
    @task
    async def boom():
        raise ValueError("boom")

    with workflow("w") as wf:
        wf.add(boom)
    with pytest.raises(TaskFailedError):
        await run(wf, run_id="ev-log-fail")
    mine = [(e["event"], e.get("task_id")) for e in log_capture if e.get("run_id") == "ev-log-fail"]
    assert ("task_failed", "boom") in mine
    assert mine[-1] == ("run_failed", None)


async def test_callback_and_log_see_the_same_events(log_capture):
    events = []
    await run(chain_with_a_retry(), run_id="ev-both", on_event=events.append)
    logged = [
        (e["event"], e.get("task_id")) for e in log_capture if e.get("run_id") == "ev-both" and e["event"] in _ALL_KINDS
    ]
    assert logged == [(e.kind, e.task_id) for e in events]


_ALL_KINDS = {
    "run_started",
    "run_completed",
    "run_failed",
    "run_suspended",
    "task_started",
    "task_completed",
    "task_failed",
    "task_retrying",
    "group_finished",
    "feedback_requested",
    "feedback_answered",
    "checkpoint_saved",
}

"""Dynamic control flow (SPEC section 9) and the message-based context, in local runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from clocks import FastClock

from graflow_async import (
    CheckpointError,
    CycleLimitError,
    GraphError,
    ParallelGroupError,
    TaskFailedError,
    TransportError,
    parallel,
    resume,
    run,
    task,
    workflow,
)
from graflow_async.clock import use_clock
from graflow_async.feedback import MemoryFeedbackStore


# --- next_task -------------------------------------------------------------------------------------
@task
async def double(n: int) -> int:
    return n * 2


@task(inject_context=True)
async def fan_out(context: Any) -> list[str]:
    """Adds one `double` per item in the channel, as a runtime parallel group."""
    items = await context.channel.get("items")
    group = parallel(*[double(task_id=f"double_{i}", n=n) for i, n in enumerate(items)])
    return context.next_task(group.with_execution(policy="best_effort"))


@task
async def gather_all(double_0: int, double_1: int, double_2: int) -> int:
    return double_0 + double_1 + double_2


async def test_a_runtime_fan_out_runs_before_the_successors_and_feeds_them() -> None:
    with workflow("fan-out") as wf:
        fan_out >> gather_all
    events: list[Any] = []
    result = await run(wf, initial_channel={"items": [1, 2, 3]}, on_event=events.append)
    assert result.results["fan_out"] == ["double_0", "double_1", "double_2"]
    assert [result.results[f"double_{i}"] for i in range(3)] == [2, 4, 6]
    assert result.output == 12
    [added] = [e for e in events if e.kind == "task_added"]
    assert added.data["added_by"] == "fan_out" and added.data["ids"] == ["double_0", "double_1", "double_2"]
    kinds = [(e.kind, e.task_id) for e in events if e.kind in ("task_completed", "group_finished")]
    assert kinds.index(("task_completed", "gather_all")) > kinds.index(("group_finished", None))


@task(inject_context=True)
async def route(context: Any, target: str) -> str:
    context.next_task(escalate if target == "escalate" else double(task_id="doubled", n=21), goto=True)
    return target


@task
async def normal_path() -> str:
    return "normal"


@task
async def after_normal(normal_path: str) -> str:
    return normal_path + " and after"


@task
async def escalate() -> str:
    return "escalated"


async def test_goto_runs_the_target_instead_of_the_successors_which_are_skipped() -> None:
    with workflow("goto") as wf:
        route >> normal_path >> after_normal
    result = await run(wf, initial_channel={"target": "escalate"})
    assert result.results == {"route": "escalate", "escalate": "escalated"}
    assert result.skipped == ["normal_path", "after_normal"]
    assert result.output is None  # the sink was skipped

    result = await run(wf, initial_channel={"target": "x"})
    assert result.results["doubled"] == 42 and result.skipped == ["normal_path", "after_normal"]


@task(inject_context=True)
async def draft(context: Any) -> int:
    return await context.channel.incr("drafts")


@task(inject_context=True)
async def review(context: Any, draft: int) -> str:
    if draft < 3:
        context.next_task(draft_task, goto=True)  # loop back
        return "again"
    return f"accepted draft {draft}"


draft_task = draft


async def test_a_loop_back_by_goto_runs_until_the_check_passes() -> None:
    with workflow("loop") as wf:
        draft >> review
    result = await run(wf)
    assert result.results == {"draft": 3, "review": "accepted draft 3"}
    assert result.channel["drafts"] == 3 and result.skipped == []


@task(inject_context=True, max_cycles=2)
async def capped_draft(context: Any) -> int:
    return context.cycle_count


@task(inject_context=True)
async def never_satisfied(context: Any, capped_draft: int) -> str:
    context.next_task(capped_draft_task, goto=True)  # loops back until the draft has no run left
    return f"rejected draft {capped_draft}"


capped_draft_task = capped_draft


async def test_a_goto_to_a_task_with_no_run_left_fails_the_task_that_asked() -> None:
    with workflow("loop-cap") as wf:
        capped_draft >> never_satisfied
    events: list[Any] = []
    with pytest.raises(CycleLimitError) as caught:
        await run(wf, on_event=events.append)
    error = caught.value
    assert error.task_id == "never_satisfied"  # the task whose goto found no run left, not its target
    assert (error.target, error.cycle_count, error.max_cycles) == ("capped_draft", 2, 2)
    assert "task 'never_satisfied' asked to go to task 'capped_draft', which has no run left" in str(error)
    assert isinstance(error, TaskFailedError)
    failed = [e.task_id for e in events if e.kind == "task_failed"]
    assert failed == ["never_satisfied"]  # the asker failed; the target did not run a third time


@task(inject_context=True)
async def refine(context: Any, data: dict[str, int] | None = None) -> dict[str, Any]:
    state = data or {"total": 0}
    state = {"total": state["total"] + context.cycle_count}
    if state["total"] < 10:
        context.next_iteration(state)
    return {"state": state, "cycle": context.cycle_count, "max": context.max_cycles, "more": context.can_iterate()}


@task
async def report(refine: dict[str, Any]) -> int:
    return refine["state"]["total"]


async def test_next_iteration_passes_data_and_the_successors_run_once_after() -> None:
    events: list[Any] = []
    with workflow("iterate") as wf:
        refine >> report
    result = await run(wf, on_event=events.append)
    assert result.results["refine"] == {"state": {"total": 10}, "cycle": 4, "max": 100, "more": True}
    assert result.output == 10  # 1 + 2 + 3 + 4
    assert [e.kind for e in events if e.task_id == "report"].count("task_started") == 1
    assert [e.data["cycle"] for e in events if e.kind == "task_started" and e.task_id == "refine"] == [1, 2, 3, 4]


@task(inject_context=True)
async def greedy(context: Any) -> int:
    context.next_iteration()
    return context.cycle_count


@task(inject_context=True, max_cycles=2)
async def polite(context: Any) -> list[Any]:
    if context.can_iterate():
        context.next_iteration()
        return ["iterating", context.cycle_count]
    try:
        context.next_iteration()
    except CycleLimitError as exc:
        return ["stopped", exc.cycle_count, exc.max_cycles]
    return ["unreachable"]


async def test_next_iteration_past_the_cap_raises_cycle_limit_error() -> None:
    with workflow("greedy") as wf:
        wf.add(greedy)
    with pytest.raises(CycleLimitError) as caught:
        await run(wf, max_cycles=3)
    assert (caught.value.task_id, caught.value.cycle_count, caught.value.max_cycles) == ("greedy", 3, 3)
    assert caught.value.target == "greedy" and str(caught.value).startswith("task 'greedy' has no cycle left")
    assert isinstance(caught.value, TaskFailedError)

    with workflow("polite") as wf2:
        wf2.add(polite)
    assert (await run(wf2)).results["polite"] == ["stopped", 2, 2]  # the task's own cap wins over run()'s


@task(inject_context=True)
async def adds_a_stranger(context: Any) -> None:
    context.next_task(impostor)


@task
async def adds_nothing() -> None:
    return None


async def stranger() -> None:
    return None


impostor = task(stranger, id="adds_nothing")  # the id of another function


async def test_bad_additions_fail_at_the_call_or_fail_the_adding_task() -> None:
    with workflow("clash") as wf:
        adds_a_stranger >> adds_nothing
    with pytest.raises(TaskFailedError) as caught:
        await run(wf)
    assert caught.value.task_id == "adds_a_stranger"
    assert isinstance(caught.value.cause, GraphError) and "different function" in str(caught.value.cause)

    seen: list[str] = []

    @task(inject_context=True)
    async def adds_a_function(context: Any) -> None:
        with pytest.raises(GraphError, match="decorate it with @task"):
            context.next_task(stranger)
        seen.append("raised")

    with workflow("not-a-task") as wf2:
        wf2.add(adds_a_function)
    await run(wf2)
    assert seen == ["raised"]


async def test_a_closure_added_locally_runs_but_cannot_be_checkpointed(tmp_path: Path) -> None:
    outcome: dict[str, Any] = {}

    @task(inject_context=True)
    async def local_only(context: Any) -> str:
        try:
            await context.checkpoint()
        except CheckpointError as exc:
            outcome["error"] = str(exc)
        return "ran"

    @task(inject_context=True)
    async def adder(context: Any) -> None:
        context.next_task(local_only)  # fine locally: nothing needs to import it

    with workflow("closure") as wf:
        wf.add(adder)
    result = await run(wf, checkpoint_store=str(tmp_path))
    assert result.results["local_only"] == "ran"
    assert "closure" in outcome["error"] and "local_only" in outcome["error"]


# --- the channel, atomically -------------------------------------------------------------------------
@task(inject_context=True)
async def counter(context: Any, worker: int) -> None:
    for _ in range(10):
        value = await context.channel.incr("count")
        await asyncio.sleep(0)  # yield: the workers' operations interleave
        await context.channel.append("seen", [worker, value])


async def test_incr_and_append_are_atomic_across_concurrent_tasks() -> None:
    with workflow("atomic") as wf:
        wf.add(parallel(*[counter(task_id=f"c{i}", worker=i) for i in range(20)]))
    result = await run(wf)
    assert result.channel["count"] == 200
    assert sorted(v for _, v in result.channel["seen"]) == list(range(1, 201))


# --- checkpoints ------------------------------------------------------------------------------------
@task(inject_context=True)
async def saver(context: Any, name: str) -> str:
    return await context.checkpoint(metadata={"by": name})


@task(inject_context=True)
async def first_save(context: Any) -> str:
    location = await context.checkpoint()
    if context.resumed_metadata is None:
        raise RuntimeError("crash after the first checkpoint")
    return location


async def test_concurrent_checkpoints_of_a_resumed_run_get_distinct_numbers(tmp_path: Path) -> None:
    with workflow("numbers") as wf:
        first_save >> parallel(
            saver(task_id="s1", name="s1"), saver(task_id="s2", name="s2"), saver(task_id="s3", name="s3")
        )
    with pytest.raises(TaskFailedError):
        await run(wf, checkpoint_store=str(tmp_path), run_id="numbers")
    assert sorted(p.name for p in (tmp_path / "numbers").iterdir()) == ["1.ckpt"]
    result = await resume(str(tmp_path / "numbers" / "1.ckpt"), workflow=wf)
    names = sorted(Path(result.results[s]).name for s in ("s1", "s2", "s3"))
    assert Path(result.results["first_save"]).name == "2.ckpt"
    assert names == ["3.ckpt", "4.ckpt", "5.ckpt"]


@task(inject_context=True)
async def looping_saver(context: Any, data: list[int] | None = None) -> list[int]:
    seen = [*(data or []), context.cycle_count]
    if context.cycle_count == 3 and context.resumed_metadata is None:
        await context.checkpoint(metadata={"at": 3})
        raise RuntimeError("crash in cycle 3")
    if context.cycle_count < 4:
        context.next_iteration(seen)
    return seen


@task(inject_context=True)
async def spawner(context: Any) -> None:
    context.next_task(double(task_id="spawned", n=5) >> looping_saver)


async def test_added_tasks_cycles_and_data_survive_a_checkpoint(tmp_path: Path) -> None:
    with workflow("dyn-resume") as wf:
        wf.add(spawner)
    with pytest.raises(TaskFailedError, match="crash in cycle 3"):
        await run(wf, checkpoint_store=str(tmp_path), run_id="dyn")
    events: list[Any] = []
    result = await resume(str(tmp_path / "dyn" / "1.ckpt"), workflow=wf, on_event=events.append)
    assert result.results["spawned"] == 10
    assert result.results["looping_saver"] == [1, 2, 3, 4]  # cycle 3 re-ran with cycle 2's data
    started = [(e.task_id, e.data["cycle"]) for e in events if e.kind == "task_started"]
    assert started == [("looping_saver", 3), ("looping_saver", 4)]  # spawner and spawned are not run again


# --- human in the loop, on the run's clock -----------------------------------------------------------
@task(inject_context=True)
async def ask_for_a_day(context: Any) -> bool:
    return await context.request_approval("ship it?", timeout=24 * 3600)


async def test_a_day_long_feedback_wait_suspends_at_once_on_a_fast_clock(tmp_path: Path) -> None:
    store = MemoryFeedbackStore()
    with workflow("day") as wf:
        wf.add(ask_for_a_day)
    with use_clock(FastClock()) as clock:
        async with asyncio.timeout(5):
            result = await run(wf, feedback_store=store, checkpoint_store=str(tmp_path))
    assert result.status == "suspended" and 24 * 3600 in clock.delays
    [pending] = result.pending_feedback
    await store.respond(pending.feedback_id, {"approved": True})
    resumed = await resume(result.checkpoint, workflow=wf, feedback_store=store)
    assert resumed.results["ask_for_a_day"] is True


# --- messages from tasks that no longer run -------------------------------------------------------------
@task(inject_context=True)
async def leaves_a_straggler(context: Any) -> None:
    async def late_write() -> None:
        try:
            await context.channel.set("late", True)
        except TransportError as exc:
            stragglers.append(str(exc))

    stragglers_tasks.append(asyncio.get_running_loop().create_task(late_write()))


@task
async def waits_for_the_straggler() -> None:
    await asyncio.gather(*stragglers_tasks)


stragglers: list[str] = []
stragglers_tasks: list[asyncio.Task[None]] = []


async def test_a_request_from_an_attempt_that_has_returned_is_dropped_and_logged(log_capture: list[dict]) -> None:
    with workflow("straggler") as wf:
        leaves_a_straggler >> waits_for_the_straggler
    result = await run(wf)
    assert "late" not in result.channel
    assert stragglers and "not running this attempt" in stragglers[0]
    assert any(
        e["event"] == "dropped a context request from a task that is not running in this run" for e in log_capture
    )


# --- checkpoints written before plan state existed ------------------------------------------------
@task
async def old_a() -> int:
    return 1


@task(inject_context=True)
async def old_b(context: Any, old_a: int) -> int:
    await context.checkpoint()
    if context.resumed_metadata is None:
        raise RuntimeError("crash")
    return old_a + 1


@task
async def old_c(old_b: int) -> int:
    return old_b + 1


async def test_a_checkpoint_without_plan_state_resumes_from_its_completed_tasks(tmp_path: Path) -> None:
    """graflow-async 0.1 wrote `completed` and `groups_done` but no plan state."""
    from graflow_async.checkpoints.format import decode_checkpoint, encode_checkpoint

    with workflow("old-format") as wf:
        old_a >> (old_b | old_c.instance("side", old_b=0)) >> old_c
    with pytest.raises(ParallelGroupError):
        await run(wf, checkpoint_store=str(tmp_path), run_id="old")
    path = tmp_path / "old" / "1.ckpt"
    doc = decode_checkpoint(path.read_bytes())
    del doc["plan"]
    path.write_bytes(encode_checkpoint(doc))
    events: list[Any] = []
    result = await resume(str(path), workflow=wf, on_event=events.append)
    assert result.results == {"old_a": 1, "old_b": 2, "side": 1, "old_c": 3}
    assert sorted(e.task_id for e in events if e.kind == "task_started") == ["old_b", "old_c", "side"]

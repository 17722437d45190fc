"""Running workflows (SPEC section 2 and the scheduling rules of section 1)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from graflow_async import (
    TaskFailedError,
    TaskTimeoutError,
    WorkflowResult,
    parallel,
    run,
    run_sync,
    task,
    workflow,
)


def simple_chain():
    @task
    async def first():
        return 1

    @task
    async def second(first):
        return first + 1

    with workflow("simple") as wf:
        first >> second
    return wf


# --- WorkflowResult ---------------------------------------------------------------------


async def test_run_returns_a_completed_workflow_result():
    result = await run(simple_chain(), run_id="run-42")
    assert isinstance(result, WorkflowResult)
    assert result.run_id == "run-42"
    assert result.status == "completed"
    assert result.results == {"first": 1, "second": 2}
    assert result.output == 2
    assert result.channel == {}
    assert result.checkpoint is None
    assert result.pending_feedback == []


async def test_run_generates_distinct_run_ids():
    wf = simple_chain()
    a, b = await run(wf), await run(wf)
    assert isinstance(a.run_id, str) and a.run_id
    assert a.run_id != b.run_id


async def test_several_sinks_give_a_dict_output_keyed_by_sink_id():
    @task
    async def src():
        return 2

    @task
    async def square(src):
        return src * src

    @task
    async def negate(src):
        return -src

    with workflow("w") as wf:
        src >> (square | negate)
    result = await run(wf)
    assert result.output == {"square": 4, "negate": -2}


async def test_result_channel_is_the_final_snapshot():
    @task(inject_context=True)
    async def writer(context):
        await context.channel.set("written", [1, 2])
        await context.channel.delete("gone")

    with workflow("w") as wf:
        wf.add(writer)
    result = await run(wf, initial_channel={"kept": "yes", "gone": 1})
    assert result.channel == {"kept": "yes", "written": [1, 2]}


async def test_results_hold_none_returning_tasks():
    @task
    async def nothing():
        return None

    with workflow("w") as wf:
        wf.add(nothing)
    result = await run(wf)
    assert result.results == {"nothing": None}


# --- run_sync ------------------------------------------------------------------------------


def test_run_sync_runs_from_sync_code():
    result = run_sync(simple_chain(), run_id="sync-1")
    assert result.run_id == "sync-1"
    assert result.status == "completed"
    assert result.output == 2


def test_run_sync_passes_keywords_through():
    @task
    def reader(x):
        return x * 3

    with workflow("w") as wf:
        wf.add(reader)
    assert run_sync(wf, initial_channel={"x": 5}).output == 15


async def test_run_sync_refuses_inside_a_running_loop():
    with pytest.raises(RuntimeError, match="run_sync"):
        run_sync(simple_chain())


# --- scheduling ------------------------------------------------------------------------------


async def test_and_join_runs_once_after_every_predecessor():
    calls: list[dict] = []
    finished: list[str] = []

    def branch(name, delay):
        @task(name)
        async def t():
            await asyncio.sleep(delay)  # branches that end in a known order
            finished.append(name)
            return name

        return t

    a, b, c = branch("a", 0.03), branch("b", 0.0), branch("c", 0.06)

    @task
    async def join(a, b, c):
        calls.append({"a": a, "b": b, "c": c, "finished": list(finished)})
        return "joined"

    with workflow("w") as wf:
        a >> join
        b >> join
        c >> join
    result = await run(wf)
    assert len(calls) == 1
    assert calls == [{"a": "a", "b": "b", "c": "c", "finished": ["b", "a", "c"]}]
    assert result.output == "joined"


async def test_fan_in_after_group_and_task_runs_once():
    calls = []

    @task
    async def x():
        return 1

    @task
    async def y():
        return 2

    @task
    async def z():
        return 3

    @task
    async def end(x, y, z):
        calls.append((x, y, z))

    with workflow("w") as wf:
        (x | y) >> end
        z >> end
    await run(wf)
    assert calls == [(1, 2, 3)]


async def test_every_root_starts_at_once():
    ev_a, ev_b = asyncio.Event(), asyncio.Event()

    @task
    async def root_a():
        ev_a.set()
        await asyncio.wait_for(ev_b.wait(), 2)  # deadlocks (times out) if run after root_b
        return "a"

    @task
    async def root_b():
        ev_b.set()
        await asyncio.wait_for(ev_a.wait(), 2)
        return "b"

    with workflow("w") as wf:
        wf.add(root_a, root_b)
    result = await run(wf)
    assert result.results == {"root_a": "a", "root_b": "b"}


async def test_group_members_run_concurrently():
    barrier_count = 0
    all_in = asyncio.Event()

    def member(name):
        @task(name)
        async def t():
            nonlocal barrier_count
            barrier_count += 1
            if barrier_count == 3:
                all_in.set()
            await asyncio.wait_for(all_in.wait(), 2)
            return name

        return t

    with workflow("w") as wf:
        parallel(member("m1"), member("m2"), member("m3"))
    result = await run(wf)
    assert result.results == {"m1": "m1", "m2": "m2", "m3": "m3"}


# --- parameter resolution ----------------------------------------------------------------------


def resolution_workflow(**bound):
    @task
    async def p():
        return "from-task"

    @task
    async def consumer(p="from-default"):
        return p

    with workflow("w") as wf:
        p >> consumer(task_id="use", **bound)
    return wf


async def test_bound_kwarg_wins_over_everything():
    wf = resolution_workflow(p="from-bound")
    result = await run(wf, initial_channel={"p": "from-channel"})
    assert result.results["use"] == "from-bound"


async def test_task_result_wins_over_channel_and_default():
    result = await run(resolution_workflow(), initial_channel={"p": "from-channel"})
    assert result.results["use"] == "from-task"


async def test_channel_wins_over_default():
    @task
    async def consumer(p="from-default"):
        return p

    with workflow("w") as wf:
        wf.add(consumer)
    assert (await run(wf, initial_channel={"p": "from-channel"})).output == "from-channel"


async def test_default_is_used_last():
    @task
    async def consumer(p="from-default"):
        return p

    with workflow("w") as wf:
        wf.add(consumer)
    assert (await run(wf)).output == "from-default"


async def test_channel_value_none_is_a_value_not_a_miss():
    @task
    async def consumer(p="from-default"):
        return p

    with workflow("w") as wf:
        wf.add(consumer)
    assert (await run(wf, initial_channel={"p": None})).output is None


async def test_task_result_none_is_a_value_not_a_miss():
    @task
    async def p():
        return None

    @task
    async def consumer(p="from-default"):
        return p

    with workflow("w") as wf:
        p >> consumer
    assert (await run(wf, initial_channel={"p": "from-channel"})).output is None


async def test_missing_parameter_fails_naming_it():
    ran = []

    @task
    async def needy(known, missing_param):
        ran.append(1)

    with workflow("w") as wf:
        wf.add(needy)
    with pytest.raises(TaskFailedError) as info:
        await run(wf, initial_channel={"known": 1}, default_max_retries=3)
    assert info.value.task_id == "needy"
    assert "missing_param" in str(info.value)
    assert "'known'" not in str(info.value)
    assert ran == []


async def test_context_is_the_first_argument_and_other_params_resolve():
    @task
    async def up():
        return 7

    @task(inject_context=True)
    async def down(ctx, up, extra="d"):
        return (ctx.task_id, up, extra)

    with workflow("w") as wf:
        up >> down
    assert (await run(wf)).output == ("down", 7, "d")


# --- sync functions ------------------------------------------------------------------------------


async def test_sync_task_runs_in_a_worker_thread():
    seen = {}

    @task
    def blocking():
        seen["thread"] = threading.current_thread()
        return "done"

    with workflow("w") as wf:
        wf.add(blocking)
    result = await run(wf)
    assert result.output == "done"
    assert seen["thread"] is not threading.main_thread()
    assert seen["thread"] is not threading.current_thread()


async def test_sync_sleep_does_not_block_an_async_sibling():
    stamps = {}

    @task
    def sleeper():
        time.sleep(0.3)  # the blocking call under test
        stamps["sleeper_done"] = time.monotonic()

    @task
    async def ticker():
        ticks = 0
        for _ in range(5):
            await asyncio.sleep(0.02)  # ticks while the sync sibling blocks
            ticks += 1
        stamps["ticker_done"] = time.monotonic()
        return ticks

    with workflow("w") as wf:
        wf.add(sleeper, ticker)
    result = await run(wf)
    assert result.results["ticker"] == 5
    assert stamps["ticker_done"] < stamps["sleeper_done"]


# --- timeouts ------------------------------------------------------------------------------------


async def test_task_timeout_raises_task_timeout_error():
    after = []

    @task(timeout=0.05)
    async def slow():
        await asyncio.sleep(5)  # outlasts its timeout

    @task
    async def later():
        after.append(1)

    with workflow("w") as wf:
        slow >> later
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError) as info:
        await run(wf)
    assert time.monotonic() - started < 1.0
    err = info.value
    assert isinstance(err, TaskFailedError)
    assert err.task_id == "slow"
    assert err.timeout == 0.05
    assert "slow" in str(err)
    assert after == []


async def test_task_within_its_timeout_succeeds():
    @task(timeout=1)
    async def quick():
        await asyncio.sleep(0.01)  # well within its timeout
        return "ok"

    with workflow("w") as wf:
        wf.add(quick)
    assert (await run(wf)).output == "ok"


async def test_timeout_error_raised_by_task_code_is_not_a_task_timeout():
    @task(timeout=5)
    async def raises_timeout():
        raise TimeoutError("upstream")

    with workflow("w") as wf:
        wf.add(raises_timeout)
    with pytest.raises(TaskFailedError) as info:
        await run(wf)
    assert not isinstance(info.value, TaskTimeoutError)
    assert isinstance(info.value.cause, TimeoutError)
    assert str(info.value.cause) == "upstream"


# --- concurrency of runs ------------------------------------------------------------------------


def channel_workflow():
    @task
    async def load(seed):
        await asyncio.sleep(0.01 * (seed % 3))  # runs that finish out of order
        return seed * 10

    @task(inject_context=True)
    async def store(context, load):
        await context.channel.set("stored", load + 1)
        return load + 1

    with workflow("w") as wf:
        load >> store
    return wf


async def test_concurrent_runs_of_one_workflow_are_independent():
    wf = channel_workflow()
    results = await asyncio.gather(*(run(wf, initial_channel={"seed": i}) for i in range(5)))
    assert [r.output for r in results] == [1, 11, 21, 31, 41]
    assert [r.channel for r in results] == [{"seed": i, "stored": i * 10 + 1} for i in range(5)]
    assert len({r.run_id for r in results}) == 5


def test_runs_from_two_event_loops_in_two_threads():
    wf = channel_workflow()
    outcomes: dict[int, object] = {}

    def worker(seed):
        try:
            outcomes[seed] = asyncio.run(run(wf, initial_channel={"seed": seed}))
        except BaseException as exc:  # reported below
            outcomes[seed] = exc

    threads = [threading.Thread(target=worker, args=(s,)) for s in (3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert all(isinstance(outcomes[s], WorkflowResult) for s in (3, 4)), outcomes
    assert outcomes[3].output == 31
    assert outcomes[4].output == 41
    assert outcomes[4].channel == {"seed": 4, "stored": 41}


def test_sequential_runs_on_fresh_loops():
    wf = channel_workflow()
    assert asyncio.run(run(wf, initial_channel={"seed": 1})).output == 11
    assert asyncio.run(run(wf, initial_channel={"seed": 2})).output == 21


# --- scale ----------------------------------------------------------------------------------------


async def test_thousand_task_fan_out_fan_in():
    sink_calls = []

    @task
    async def source():
        return 3

    @task
    async def work(source, i):
        return source * i

    @task(inject_context=True)
    async def sink(context):
        sink_calls.append(1)
        return len(await context.channel.keys())

    workers = [work(task_id=f"w{i}", i=i) for i in range(1000)]
    with workflow("big") as wf:
        source >> parallel(*workers) >> sink
    result = await run(wf, initial_channel={"k": 0})
    assert sink_calls == [1]
    assert len(result.results) == 1002
    assert all(result.results[f"w{i}"] == 3 * i for i in range(1000))
    assert result.output == 1


async def test_thousand_predecessor_and_join():
    @task
    async def leaf(i):
        return i

    total_calls = []

    @task
    async def total():
        total_calls.append(1)
        return "all done"

    leaves = [leaf(task_id=f"l{i}", i=i) for i in range(1000)]
    with workflow("join") as wf:
        for lf in leaves:
            lf >> total
    result = await run(wf)
    assert total_calls == [1]
    assert result.output == "all done"
    assert sum(result.results[f"l{i}"] for i in range(1000)) == sum(range(1000))


async def test_sync_roots_start_at_once_in_separate_threads():
    ev_a, ev_b = threading.Event(), threading.Event()

    @task
    def sync_a():
        ev_a.set()
        return ev_b.wait(2)  # False (after 2 s) if the roots ran one after the other

    @task
    def sync_b():
        ev_b.set()
        return ev_a.wait(2)

    with workflow("w") as wf:
        wf.add(sync_a, sync_b)
    result = await run(wf)
    assert result.results == {"sync_a": True, "sync_b": True}


async def test_sync_task_timeout_raises_task_timeout_error():
    @task(timeout=0.05)
    def stuck():
        time.sleep(0.2)  # outlasts its timeout

    with workflow("w") as wf:
        wf.add(stuck)
    with pytest.raises(TaskTimeoutError) as info:
        await run(wf)
    assert info.value.task_id == "stuck"
    assert info.value.timeout == 0.05

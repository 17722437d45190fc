"""Defining workflows (SPEC section 1): `task`, instances, operators and build-time errors."""

from __future__ import annotations

import inspect

import pytest
from clocks import FastClock

from graflow_async import (
    GraphError,
    GroupExecutionPolicy,
    HandlerError,
    RetryLimitExceededError,
    RetryPolicy,
    TaskCall,
    TaskTimeoutError,
    chain,
    parallel,
    run,
    task,
    workflow,
)
from graflow_async.clock import use_clock


class Recorder:
    """A task handler that runs the function in the loop and remembers each call."""

    def __init__(self) -> None:
        self.calls: list[TaskCall] = []

    async def run(self, call: TaskCall):
        self.calls.append(call)
        result = call.func(*call.args, **call.kwargs)
        return await result if inspect.isawaitable(result) else result


class NameRecorder(GroupExecutionPolicy):
    """Accepts every group and remembers the group ids it was asked about."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def on_group_finished(self, group_id, results):
        self.seen.append(group_id)


# --- the forms of @task -------------------------------------------------------------


async def test_bare_decorator_uses_function_name_as_id():
    @task
    async def fetch():
        return 1

    with workflow("w") as wf:
        wf.add(fetch)
    result = await run(wf)
    assert fetch.id == "fetch"
    assert result.results == {"fetch": 1}


async def test_empty_call_decorator_uses_function_name():
    @task()
    def compute():
        return 2

    with workflow("w") as wf:
        wf.add(compute)
    assert (await run(wf)).results == {"compute": 2}


async def test_positional_id_decorator():
    @task("custom-id")
    async def something():
        return 3

    with workflow("w") as wf:
        wf.add(something)
    assert something.id == "custom-id"
    assert (await run(wf)).results == {"custom-id": 3}


async def test_keyword_decorator_takes_every_option():
    handler = Recorder()
    policy = RetryPolicy(max_retries=2, initial_interval=0)
    seen_attempts = []

    @task(
        id="deploy",
        inject_context=True,
        retry_policy=policy,
        handler=handler,
        handler_kwargs={"image": "python:3.12"},
        timeout=5,
    )
    async def deploy_fn(context, target="prod"):
        seen_attempts.append(context.attempt)
        if context.attempt < 3:
            raise RuntimeError("flaky")
        return f"{context.task_id}->{target}"

    with workflow("w") as wf:
        wf.add(deploy_fn)
    result = await run(wf, initial_channel={"target": "staging"})
    assert result.results == {"deploy": "deploy->staging"}
    assert seen_attempts == [1, 2, 3]
    assert [c.attempt for c in handler.calls] == [1, 2, 3]
    call = handler.calls[-1]
    assert call.task_id == "deploy"
    assert call.run_id == result.run_id
    assert call.options == {"image": "python:3.12"}
    assert call.context is not None and call.context.task_id == "deploy"
    assert call.kwargs == {"target": "staging"}
    assert call.func is not deploy_fn and call.func.__name__ == "deploy_fn"
    assert deploy_fn.retry_policy == policy
    assert deploy_fn.timeout == 5


async def test_max_retries_keyword_is_retry_policy_shorthand():
    calls = []

    @task(max_retries=2)
    def shaky():
        calls.append(1)
        raise ValueError("no")

    assert shaky.retry_policy == RetryPolicy(max_retries=2)
    with workflow("w") as wf:
        wf.add(shaky)
    with use_clock(FastClock()) as clock, pytest.raises(RetryLimitExceededError) as info:
        await run(wf)
    assert len(calls) == 3
    assert info.value.attempts == 3
    assert clock.delays == [1.0, 2.0]


async def test_timeout_keyword_bounds_the_task():
    import asyncio

    @task(timeout=0.05)
    async def slow():
        await asyncio.sleep(5)  # outlasts its timeout

    with workflow("w") as wf:
        wf.add(slow)
    with pytest.raises(TaskTimeoutError) as info:
        await run(wf)
    assert info.value.task_id == "slow"


def test_task_rejects_unknown_keyword():
    with pytest.raises(TypeError, match="colour"):
        task(colour="red")


# --- instances: t(task_id=..., **bound) and t(**bound) --------------------------------


async def test_instances_with_task_id_inside_a_block_have_their_own_bound_kwargs():
    @task
    async def scale(x: int, factor: int = 10):
        return x * factor

    with workflow("w") as wf:
        scale(task_id="one", x=1) | scale(task_id="two", x=2, factor=100)
    result = await run(wf)
    assert result.results == {"one": 10, "two": 200}


async def test_instances_with_task_id_outside_a_block_join_later():
    @task
    def add(a: int, b: int):
        return a + b

    first = add(task_id="first", a=1, b=2)
    second = add(task_id="second", a=10, b=20)
    assert first.id == "first" and second.id == "second"
    with workflow("w") as wf:
        first >> second
    result = await run(wf)
    assert result.results == {"first": 3, "second": 30}


async def test_instances_without_task_id_in_a_block_get_unique_ids():
    @task
    async def echo(v):
        return v

    with workflow("w") as wf:
        a = echo(v="a")
        b = echo(v="b")
        c = echo(v="c")
        a >> b >> c
    ids = [a.id, b.id, c.id]
    assert len(set(ids)) == 3
    assert "echo" not in ids  # the base task keeps its own id free
    assert all(i.startswith("echo") for i in ids)
    result = await run(wf)
    assert result.results == {a.id: "a", b.id: "b", c.id: "c"}


async def test_auto_ids_do_not_collide_with_explicit_ones():
    @task
    async def echo(v):
        return v

    with workflow("w") as wf:
        explicit = echo(task_id="echo_1", v=0)
        auto = echo(v=1)
        explicit >> auto
    assert auto.id != "echo_1"
    assert (await run(wf)).results == {"echo_1": 0, auto.id: 1}


def test_outside_a_block_calling_a_sync_task_calls_the_function():
    @task
    def double(x):
        return 2 * x

    assert double(21) == 42
    assert double(x=4) == 8


async def test_outside_a_block_calling_an_async_task_gives_a_coroutine():
    @task
    async def triple(x):
        return 3 * x

    coro = triple(5)
    assert inspect.iscoroutine(coro)
    assert await coro == 15


# --- operators -------------------------------------------------------------------------


async def test_rshift_orders_tasks():
    order = []

    @task
    async def a():
        order.append("a")

    @task
    async def b():
        order.append("b")

    @task
    async def c():
        order.append("c")

    with workflow("w") as wf:
        a >> b >> c
    await run(wf)
    assert order == ["a", "b", "c"]


async def test_chain_and_parallel_functions_match_the_operators():
    order = []

    def make(name):
        @task(name)
        async def t():
            order.append(name)
            return name

        return t

    a, b, c, d = (make(n) for n in "abcd")
    with workflow("w") as wf:
        chain(a, parallel(b, c), d)
    result = await run(wf)
    assert order[0] == "a" and order[-1] == "d"
    assert sorted(order[1:3]) == ["b", "c"]
    assert result.output == "d"


async def test_wf_add_registers_fragments_built_outside_the_block():
    order = []

    def make(name):
        @task(name)
        async def t():
            order.append(name)

        return t

    a, b, c = (make(n) for n in "abc")
    fragment = a >> (b | c)
    with workflow("w") as wf:
        wf.add(fragment)
    assert sorted(t.id for t in wf) == ["a", "b", "c"]
    await run(wf)
    assert order[0] == "a" and sorted(order[1:]) == ["b", "c"]


async def test_wf_add_outside_the_block():
    @task
    async def alone():
        return "x"

    wf = workflow("w")
    wf.add(alone)
    assert (await run(wf)).output == "x"


async def test_group_members_may_be_chains():
    order = []

    def make(name):
        @task(name)
        async def t():
            order.append(name)
            return name

        return t

    a, b, c, d = (make(n) for n in "abcd")
    with workflow("w") as wf:
        ((a >> b) | c) >> d
    result = await run(wf)
    assert order.index("a") < order.index("b") < order.index("d")
    assert order.index("c") < order.index("d")
    assert result.results == {"a": "a", "b": "b", "c": "c", "d": "d"}
    assert result.output == "d"


async def test_groups_are_auto_named_per_workflow():
    seen: list[str] = []

    def make(name):
        @task(name)
        async def t():
            return name

        return t

    a, b, c, d, e = (make(n) for n in "abcde")
    with workflow("w1") as wf1:
        (a | b).with_execution(policy=NameRecorder(seen)) >> (c | d).with_execution(policy=NameRecorder(seen)) >> e
    await run(wf1)
    assert seen == ["ParallelGroup_1", "ParallelGroup_2"]

    seen.clear()
    x, y = make("x"), make("y")
    with workflow("w2") as wf2:
        (x | y).with_execution(policy=NameRecorder(seen))
    await run(wf2)
    assert seen == ["ParallelGroup_1"]  # numbering starts again in each workflow


async def test_set_group_name_overrides_the_auto_name():
    seen: list[str] = []

    @task
    async def a():
        return 1

    @task
    async def b():
        return 2

    with workflow("w") as wf:
        g = (a | b).set_group_name("fetchers")
        assert g.with_execution(policy=NameRecorder(seen)) is g
    await run(wf)
    assert seen == ["fetchers"]


async def test_one_task_object_used_twice_is_one_node():
    calls = []

    @task
    async def shared():
        calls.append(1)
        return "s"

    @task
    async def left(shared):
        return "L" + shared

    @task
    async def right(shared):
        return "R" + shared

    with workflow("w") as wf:
        shared >> left
        shared >> right
    assert len(wf) == 3
    result = await run(wf)
    assert calls == [1]
    assert result.output == {"left": "Ls", "right": "Rs"}


async def test_one_task_object_in_two_workflows():
    @task
    async def common(x):
        return x + 1

    @task
    async def first(common):
        return ("first", common)

    @task
    async def second(common):
        return ("second", common)

    with workflow("one") as wf1:
        common >> first
    with workflow("two") as wf2:
        common >> second
    r1 = await run(wf1, initial_channel={"x": 1})
    r2 = await run(wf2, initial_channel={"x": 10})
    assert r1.results == {"common": 2, "first": ("first", 2)}
    assert r2.results == {"common": 11, "second": ("second", 11)}


async def test_multiple_roots_all_run_and_join():
    @task
    async def r1():
        return 1

    @task
    async def r2():
        return 2

    @task
    async def r3():
        return 3

    @task
    async def total(r1, r2, r3):
        return r1 + r2 + r3

    with workflow("w") as wf:
        r1 >> total
        r2 >> total
        r3 >> total
    result = await run(wf)
    assert result.output == 6


async def test_separate_statements_in_a_block_connect():
    @task
    async def a():
        return 1

    @task
    async def b(a):
        return a + 1

    @task
    async def c(b):
        return b + 1

    with workflow("w") as wf:
        a >> b
        b >> c
    assert (await run(wf)).output == 3


# --- build-time errors ---------------------------------------------------------------


def test_duplicate_ids_from_two_objects_raise_graph_error():
    @task("same")
    async def one():
        pass

    @task("same")
    async def two():
        pass

    with pytest.raises(GraphError, match="'same'"), workflow("w"):
        one >> two


def test_duplicate_ids_via_wf_add_raise_graph_error():
    @task("dup")
    async def one():
        pass

    @task("dup")
    async def two():
        pass

    wf = workflow("w")
    wf.add(one)
    with pytest.raises(GraphError, match="dup"):
        wf.add(two)


def test_duplicate_instance_ids_raise_graph_error():
    @task
    async def t(v=0):
        return v

    with pytest.raises(GraphError, match="'x'"), workflow("w"):
        t(task_id="x", v=1) >> t(task_id="x", v=2)


def test_cycle_raises_graph_error_naming_the_tasks_on_it():
    @task
    async def start():
        pass

    @task
    async def ping():
        pass

    @task
    async def pong():
        pass

    @task
    async def bystander():
        pass

    with pytest.raises(GraphError, match="cycle") as info, workflow("w"):
        start >> ping >> pong
        pong >> ping
        start >> bystander
    message = str(info.value)
    assert "ping" in message and "pong" in message
    assert "bystander" not in message


def test_self_loop_is_a_cycle():
    @task
    async def selfish():
        pass

    with pytest.raises(GraphError, match="selfish"), workflow("w"):
        selfish >> selfish


def test_rshift_with_a_plain_function_on_the_right_names_it():
    @task
    async def a():
        pass

    async def not_a_task():
        pass

    with pytest.raises(GraphError, match="not_a_task"), workflow("w"):
        a >> not_a_task


def test_rshift_with_a_plain_function_on_the_left_names_it():
    @task
    async def a():
        pass

    def plain_left():
        pass

    with pytest.raises(GraphError, match="plain_left"), workflow("w"):
        plain_left >> a


@pytest.mark.parametrize("side", ["left", "right"])
def test_rshift_with_an_int_names_it(side):
    @task
    async def a():
        pass

    with pytest.raises(GraphError, match=r"int|42"), workflow("w"):
        if side == "left":
            42 >> a
        else:
            a >> 42


def test_rshift_with_a_non_task_outside_a_block_also_raises():
    @task
    async def a():
        pass

    with pytest.raises(GraphError, match=r"str|oops"):
        a >> "oops"


def test_pipe_with_a_non_task_raises_graph_error():
    @task
    async def a():
        pass

    def helper():
        pass

    with pytest.raises(GraphError, match="helper"):
        a | helper


def test_wf_add_rejects_non_tasks():
    def helper():
        pass

    with pytest.raises(GraphError, match="helper"):
        workflow("w").add(helper)


def test_chain_and_parallel_reject_non_tasks_naming_them():
    @task
    async def a():
        pass

    def stray():
        pass

    with pytest.raises(GraphError, match="stray"):
        chain(a, stray)
    with pytest.raises(GraphError, match="int"):
        parallel(a, 7)


def test_retry_policy_and_max_retries_together_are_rejected():
    with pytest.raises(ValueError, match="max_retries"):

        @task(retry_policy=RetryPolicy(max_retries=1), max_retries=2)
        async def both():
            pass


async def test_unknown_handler_name_raises_handler_error_naming_it():
    ran = []

    @task(handler="no-such-handler")
    async def orphan():
        ran.append(1)

    with workflow("w") as wf:
        wf.add(orphan)
    with pytest.raises(HandlerError, match="no-such-handler"):
        await run(wf)
    assert ran == []


async def test_a_group_in_two_workflows_is_numbered_per_workflow():
    seen: list[str] = []

    def make(name):
        @task(name)
        async def t():
            return name

        return t

    shared = (make("a") | make("b")).with_execution(policy=NameRecorder(seen))
    with workflow("one") as wf1:
        (make("x") | make("y")) >> shared
    with workflow("two") as wf2:
        wf2.add(shared)
        make("p") | make("q")
    await run(wf1)
    assert seen == ["ParallelGroup_2"]
    seen.clear()
    await run(wf2)
    assert seen == ["ParallelGroup_1"]  # the first group of workflow "two"

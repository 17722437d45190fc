"""Flow control in-process (SPEC 11): the admission decision as a pure function
(`LimitBook`, no event loop), the declarations' checks, and limits holding across the
runs of one event loop, waiters served best first."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import limit_flows as flows
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graflow_async import Concurrency, RateLimit, TaskFailedError, parallel, run, task, workflow
from graflow_async.define.limits import CONCURRENCY, RATE, LimitKeyError, Want, wants
from graflow_async.transports.admission import FREED, RATE_SLACK, LimitBook
from graflow_async.transports.limits import LocalLimits


# --- the decision, without a loop ----------------------------------------------------------------
def test_a_concurrency_limit_admits_up_to_its_slots_and_a_release_frees_one() -> None:
    book, want = LimitBook(), (Want(CONCURRENCY, "gpu", 2),)
    assert [book.admit(h, want, 0.0) for h in ("a", "b", "c")] == [None, None, FREED]
    assert book.admit("a", want, 1.0) is None  # a holder that holds it already keeps its slot
    assert book.release("a", want) == ["gpu"]
    assert book.admit("c", want, 2.0) is None
    assert book.release("nobody", want) == []


def test_a_held_slot_lapses_with_its_lease_unless_renewed() -> None:
    book, want = LimitBook(), (Want(CONCURRENCY, "k", 1),)
    assert book.admit("dead", want, 0.0, lapses=10.0) is None
    assert book.admit("other", want, 9.0) == FREED
    book.renew("dead", want, 20.0)
    assert book.admit("other", want, 15.0) == FREED
    assert book.admit("other", want, 20.0) is None  # lapsed at 20


def test_a_rate_limit_says_when_the_window_lets_the_next_start_in() -> None:
    book, want, per = LimitBook(), (Want(RATE, "api", 2, 10.0),), 10.0 + RATE_SLACK
    assert book.admit("a", want, 0.0) is None
    assert book.admit("b", want, 4.0) is None
    assert book.admit("c", want, 5.0) == per  # when the start at 0 leaves the window
    assert book.admit("c", want, 9.999) == per
    assert book.admit("c", want, per) is None
    assert book.admit("d", want, 12.0) == 4.0 + per


def test_an_attempt_takes_all_its_limits_or_none() -> None:
    book = LimitBook()
    both = (Want(CONCURRENCY, "slots", 5), Want(RATE, "rate", 1, 60.0))
    assert book.admit("a", both, 0.0) is None
    assert book.admit("b", both, 1.0) == 60.0 + RATE_SLACK
    assert book.running("slots", 1.0) == 1  # b took no slot while the rate refused it


@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 0.5), st.booleans()), max_size=60))
def test_no_window_ever_holds_more_starts_than_the_count(steps: list[tuple[int, float, bool]]) -> None:
    book, want, now, starts = LimitBook(), (Want(RATE, "r", 3, 1.0),), 0.0, []
    for holder, gap, _ in steps:
        now += gap
        if book.admit(str(holder), want, now) is None:
            starts.append(now)
    assert flows.most_in_window(starts, 1.0) <= 3


@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), max_size=80))
def test_never_more_holders_than_slots(steps: list[tuple[int, bool]]) -> None:
    book, want, held = LimitBook(), (Want(CONCURRENCY, "c", 2),), set()
    for holder, release in steps:
        if release and str(holder) in held:
            book.release(str(holder), want)
            held.discard(str(holder))
        elif book.admit(str(holder), want, 0.0) is None:
            held.add(str(holder))
        assert len(held) <= 2 and book.running("c", 0.0) == len(held)


# --- declarations ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "names"),
    [
        (lambda: Concurrency(0), "Concurrency limit"),
        (lambda: Concurrency(-1), "Concurrency limit"),
        (lambda: Concurrency(math.nan), "Concurrency limit"),  # type: ignore[arg-type]
        (lambda: RateLimit(0, per=1.0), "RateLimit count"),
        (lambda: RateLimit(1, per=0), "RateLimit per"),
        (lambda: RateLimit(1, per=math.nan), "RateLimit per"),
        (lambda: RateLimit(1, per=math.inf), "RateLimit per"),
        (lambda: Concurrency(1, key="{}"), "Concurrency key"),
        (lambda: Concurrency(1, key="{a"), "Concurrency key"),
        (lambda: task(limits=[Concurrency(1, key="{tenant}")])(lambda user: 1), "'tenant'"),
        (lambda: task(limits=["gpu"])(lambda: 1), "limits"),
        (lambda: task(priority=10)(lambda: 1), "priority"),
        (lambda: task(priority=-1)(lambda: 1), "priority"),
    ],
)
def test_bad_limits_are_refused_where_they_are_declared(make: Any, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        make()


def test_a_keyed_limit_is_shared_by_the_instances_of_its_task() -> None:
    made = [
        wants(t.id, t.limits, {"tenant": "acme", "i": i})
        for i, t in enumerate([flows.per_tenant, flows.per_tenant(task_id="x", tenant="acme", i=0)])
    ]
    assert made[0] == made[1] == (Want(CONCURRENCY, "per_tenant:acme", 2, 0.0, "per_tenant"),)
    with pytest.raises(LimitKeyError, match="'tenant'") as info:
        wants("per_tenant", flows.per_tenant.limits, {"i": 1})
    assert info.value.field == "tenant"
    long = wants("per_tenant", flows.per_tenant.limits, {"tenant": "x" * 500})[0]
    assert len(long.ident) <= 200


# --- in-process, across runs ----------------------------------------------------------------------
async def test_limits_hold_across_the_runs_of_a_loop_keys_side_by_side() -> None:
    events: list[Any] = []
    tenants, *gpus = await asyncio.gather(
        run(flows.tenants_wf(8), on_event=events.append), *(run(flows.gpu_wf(3, tag=str(k))) for k in range(3))
    )
    spans = list(tenants.results.values())
    assert all(flows.most_at_once([s for s in spans if s["tenant"] == t]) == 2 for t in "ab")
    assert flows.most_at_once(spans) == 4
    assert flows.most_at_once([s for g in gpus for s in g.results.values()]) == 3
    kinds = [e.kind for e in events]
    assert kinds.count("task_throttled") == kinds.count("task_admitted") == 4


async def test_waiters_start_best_first_and_a_throttled_task_can_be_cancelled() -> None:
    limits, order = LocalLimits(), []
    want = (Want(CONCURRENCY, "one", 1),)
    await limits.acquire("first", want)

    async def waiter(name: str, priority: int) -> None:
        await limits.acquire(name, want, priority=priority)
        order.append(name)
        await limits.release(name, want)

    waiting = [asyncio.create_task(waiter(n, p)) for n, p in [("low", 1), ("mid", 5), ("high", 9), ("mid2", 5)]]
    gone = asyncio.create_task(waiter("cancelled", 9))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    assert limits.waiting == {"": 4}
    await limits.release("first", want)
    await asyncio.gather(*waiting)
    assert order == ["high", "mid", "mid2", "low"]
    assert limits.waiting == {}


async def test_a_throttled_run_is_cancelled_in_process() -> None:
    with workflow("one-at-a-time") as wf:

        @task(limits=[Concurrency(1, name="solo")])
        async def slow(i: int) -> int:
            await asyncio.sleep(30)
            return i

        parallel(slow(task_id="a", i=1), slow(task_id="b", i=2))
    events: list[Any] = []
    running = asyncio.create_task(run(wf, on_event=events.append))
    while not any(e.kind == "task_throttled" for e in events):
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, 5)
    with workflow("after") as after:  # the slot was given back, and nobody waits any more
        after.add(task(limits=[Concurrency(1, name="solo")])(_quick))
    assert (await asyncio.wait_for(run(after), 5)).output == "quick"


def _quick() -> str:
    return "quick"


async def test_an_unformattable_key_fails_the_task_in_process() -> None:
    with pytest.raises(TaskFailedError, match="'order'"):
        await run(flows.customer_wf())


async def test_a_waiter_that_tries_again_keeps_its_place_behind_a_better_one() -> None:
    limits, order, slot = LocalLimits(), [], (Want(CONCURRENCY, "x", 1),)
    await limits.acquire("first", slot)

    async def waiter(name: str, priority: int, wake_first: bool = False) -> None:
        if wake_first:  # "low" is woken with no room; "high" comes in ahead of it before it tries again
            limits.wake(["x"])
        await limits.acquire(name, slot, priority=priority)
        order.append(name)
        await limits.release(name, slot)

    low = asyncio.create_task(waiter("low", 1))
    await asyncio.sleep(0.01)
    high = asyncio.create_task(waiter("high", 9, wake_first=True))
    mid = asyncio.create_task(waiter("mid", 5))
    await asyncio.sleep(0.01)  # "low" tried again, and went back to its place: behind both
    await limits.release("first", slot)
    await asyncio.wait_for(asyncio.gather(low, high, mid), 5)
    assert order == ["high", "mid", "low"]


def test_a_task_message_carries_its_priority_and_a_bad_one_is_malformed() -> None:
    from graflow_async.wire.envelope import MalformedMessage, decode, encode
    from graflow_async.wire.messages import TaskMessage

    message = TaskMessage("r", "t", 0, 1, "run:{r}:replies", {}, priority=9)
    assert decode(encode(message)).priority == 9
    assert decode(encode(message._replace(priority=5))).priority == 5
    with pytest.raises(MalformedMessage, match="priority"):
        decode(encode(message._replace(priority=12)))


async def test_a_run_s_priority_is_its_tasks_unless_they_set_their_own() -> None:
    from graflow_async.transports.memory import MemoryTransport
    from graflow_async.wire.messages import TaskMessage

    seen: list[tuple[str, int]] = []

    class Watching(MemoryTransport):
        def send_nowait(self, queue: str, messages: Any) -> bool:
            seen.extend((m.task_id, m.priority) for m in messages if isinstance(m, TaskMessage))
            return super().send_nowait(queue, messages)

    with workflow("prioritized") as wf:
        wf.add(flows.urgent, flows.backlog_item(task_id="plain", i=1))
    await run(wf, transport=Watching(), priority=2)
    assert sorted(seen) == [("plain", 2), ("urgent", 9)]
    with pytest.raises(ValueError, match="priority"):
        await run(wf, priority=10)


async def test_in_process_a_batch_starts_highest_priority_first() -> None:
    order: list[str] = []

    @task
    def note(name: str) -> str:  # plain functions: queued in the run's thread pool in start order
        order.append(name)
        return name

    with workflow("mixed") as wf:
        low = task(priority=1)(note.func)(task_id="low", name="low")
        parallel(note(task_id="plain", name="plain"), low, task(priority=9)(note.func)(task_id="high", name="high"))
    await run(wf, max_threads=1)
    assert order == ["high", "plain", "low"]

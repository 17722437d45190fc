"""The actor kernel: mailboxes, actors and supervisors (no workflow code involved)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from graflow_async.actors import (
    Actor,
    MailboxClosed,
    MailboxFull,
    Supervisor,
    open_mailbox,
)


async def test_mailbox_is_fifo_and_batches_what_is_queued() -> None:
    tx, rx = open_mailbox(10)
    for i in range(5):
        tx.send_nowait(i)
    assert await rx.receive() == 0
    assert await rx.receive_batch() == [1, 2, 3, 4]
    tx.send_nowait(9)
    assert await rx.receive_batch(max_items=1) == [9]


async def test_bounded_mailbox_refuses_nowait_and_makes_senders_wait() -> None:
    tx, rx = open_mailbox(2)
    tx.send_nowait(1)
    tx.send_nowait(2)
    with pytest.raises(MailboxFull):
        tx.send_nowait(3)
    blocked = asyncio.create_task(tx.send(3))
    await asyncio.sleep(0.01)  # a window in which the sender must stay blocked
    assert not blocked.done()  # backpressure: the sender waits
    assert await rx.receive() == 1
    await asyncio.wait_for(blocked, 1)
    assert await rx.receive_batch() == [2, 3]


async def test_cancelled_sender_passes_its_turn_on() -> None:
    tx, rx = open_mailbox(1)
    tx.send_nowait(0)
    first = asyncio.create_task(tx.send(1))
    second = asyncio.create_task(tx.send(2))
    await asyncio.sleep(0)  # yield: both senders queue up
    first.cancel()
    await asyncio.sleep(0)  # yield: the cancellation lands
    assert await rx.receive() == 0
    await asyncio.wait_for(second, 1)
    assert await rx.receive() == 2


async def test_receiver_waits_until_a_message_arrives() -> None:
    tx, rx = open_mailbox()
    waiting = asyncio.create_task(rx.receive())
    await asyncio.sleep(0.01)  # a window in which nothing may arrive
    assert not waiting.done()
    tx.send_nowait("hello")
    assert await asyncio.wait_for(waiting, 1) == "hello"


async def test_closing_wakes_the_receiver_after_it_drains() -> None:
    tx, rx = open_mailbox()
    tx.send_nowait(1)
    tx.close()
    with pytest.raises(MailboxClosed):
        tx.send_nowait(2)
    assert await rx.receive() == 1
    with pytest.raises(MailboxClosed):
        await rx.receive()
    waiting_tx, waiting_rx = open_mailbox()
    waiter = asyncio.create_task(waiting_rx.receive())
    await asyncio.sleep(0)  # yield: the receiver waits
    waiting_tx.close()
    with pytest.raises(MailboxClosed):
        await asyncio.wait_for(waiter, 1)


async def test_closing_releases_blocked_senders_with_an_error() -> None:
    tx, rx = open_mailbox(1)
    tx.send_nowait(1)
    blocked = asyncio.create_task(tx.send(2))
    await asyncio.sleep(0)  # yield: the sender blocks
    rx.close()
    with pytest.raises(MailboxClosed):
        await asyncio.wait_for(blocked, 1)


async def test_a_mailbox_has_one_receiver() -> None:
    _, rx = open_mailbox()
    first = asyncio.create_task(rx.receive())
    await asyncio.sleep(0)  # yield: the first receiver waits
    with pytest.raises(RuntimeError, match="one receiver"):
        await rx.receive()
    first.cancel()


def test_mailbox_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        open_mailbox(0)


class Counter(Actor[tuple[str, int]]):
    def __init__(self) -> None:
        self.total = 0
        self.seen: list[int] = []
        self.stopped_with: int | None = None

    async def on_message(self, message: tuple[str, int]) -> None:
        op, value = message
        if op == "add":
            self.total += value
            self.seen.append(value)
        elif op == "stop":
            self.stop()

    async def on_stop(self) -> None:
        self.stopped_with = self.total


async def test_actor_handles_messages_in_order_until_its_mailbox_closes() -> None:
    counter = Counter()
    tx, rx = open_mailbox(4)
    async with Supervisor("test") as sup:
        sup.spawn(counter.run(rx))
        for i in range(10):
            await tx.send(("add", i))  # waits whenever four are queued
        tx.close()
    assert counter.seen == list(range(10))
    assert counter.stopped_with == 45


async def test_actor_can_stop_itself_leaving_the_rest_unread() -> None:
    counter = Counter()
    tx, rx = open_mailbox()
    async with Supervisor("test") as sup:
        sup.spawn(counter.run(rx))
        tx.send_nowait(("add", 1))
        tx.send_nowait(("stop", 0))
        tx.send_nowait(("add", 100))
    assert counter.total == 1
    assert counter.stopped_with == 1
    assert tx.closed  # the loop closed its mailbox on the way out


class Batches(Actor[int]):
    """Reads at most three messages a batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def batch_limit(self) -> int:
        return 3

    async def on_batch(self, messages: list[int]) -> None:
        self.batches.append(messages)


async def test_an_actor_bounds_its_batches() -> None:
    actor, (tx, rx) = Batches(), open_mailbox()
    for i in range(7):
        tx.send_nowait(i)
    tx.close()
    await actor.run(rx)
    assert actor.batches == [[0, 1, 2], [3, 4, 5], [6]]


class Pushed:
    """An inbox that hands its messages over as they are sent (an in-process queue), or
    refuses to (`can_hand_over=False`) and is read instead."""

    def __init__(self, can_hand_over: bool = True) -> None:
        self.can_hand_over = can_hand_over
        self.consumer: Callable[[Sequence[int]], None] | None = None
        self.tx, self.rx = open_mailbox()

    def attach(self, consumer: Callable[[Sequence[int]], None]) -> Callable[[], None] | None:
        if not self.can_hand_over:
            return None
        self.consumer = consumer

        def detach() -> None:
            self.consumer = None

        return detach

    def send(self, messages: list[int]) -> None:
        if self.consumer is not None:
            self.consumer(messages)
        else:
            for m in messages:
                self.tx.send_nowait(m)

    async def receive_batch(self, max_items: int = 0) -> list[int]:
        return await self.rx.receive_batch(max_items)

    def close(self) -> None:
        self.rx.close()


class Taker(Actor[int]):
    """Handles each batch without awaiting: handed over when its inbox can."""

    def __init__(self) -> None:
        self.taken: list[tuple[str, list[int]]] = []

    def take(self, messages: Sequence[int]) -> None:
        self.taken.append((asyncio.current_task().get_name(), list(messages)))  # type: ignore[union-attr]

    async def on_batch(self, messages: list[int]) -> None:
        self.take(messages)


async def test_an_actor_that_never_awaits_is_handed_its_batches_in_the_senders_turn() -> None:
    inbox, actor = Pushed(), Taker()
    async with Supervisor() as sup:
        sup.spawn(actor.run(inbox), name="the actor")
        await asyncio.sleep(0)  # yield: the actor attaches to its inbox
        inbox.send([1, 2])
        inbox.send([3])
        sender = asyncio.current_task().get_name()  # type: ignore[union-attr]
        assert actor.taken == [(sender, [1, 2]), (sender, [3])]  # at once, in the sender's turn
        actor.stop()
    assert inbox.consumer is None  # detached when it stopped


async def test_an_actor_that_could_be_handed_its_messages_reads_an_inbox_that_cannot() -> None:
    inbox, actor = Pushed(can_hand_over=False), Taker()
    async with Supervisor() as sup:
        sup.spawn(actor.run(inbox), name="the actor")
        inbox.send([1, 2])
        inbox.send([3])
        assert actor.taken == []  # queued: the actor reads them when it next wakes
        inbox.tx.close()
    assert actor.taken == [("the actor", [1, 2, 3])]


async def test_a_handed_over_actor_runs_until_cancelled_and_then_detaches() -> None:
    inbox, actor = Pushed(), Taker()
    running = asyncio.create_task(actor.run(inbox))
    await asyncio.sleep(0)  # yield: the actor attaches to its inbox
    assert inbox.consumer is not None
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert inbox.consumer is None


async def test_supervisor_waits_for_its_children() -> None:
    finished = []

    async def child(i: int) -> None:
        await asyncio.sleep(0.01 * i)  # children that end at different times
        finished.append(i)

    async with Supervisor() as sup:
        for i in range(3):
            sup.spawn(child(i))
        assert sup.children == 3
    assert sorted(finished) == [0, 1, 2]
    assert sup.children == 0


async def test_a_failing_child_cancels_siblings_and_body_and_surfaces() -> None:
    cancelled, running = asyncio.Event(), asyncio.Event()

    async def sibling() -> None:
        running.set()
        try:
            await asyncio.sleep(10)  # until the failure cancels it
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def failing() -> None:
        await running.wait()  # fails once the sibling runs
        raise ValueError("boom")

    body_reached_end = False
    with pytest.raises(ValueError, match="boom"):
        async with Supervisor() as sup:
            sup.spawn(sibling())
            sup.spawn(failing())
            await asyncio.sleep(10)  # interrupted by the failure
            body_reached_end = True
    assert cancelled.is_set()
    assert not body_reached_end
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_several_failures_come_as_an_exception_group() -> None:
    async def fail(msg: str) -> None:
        raise KeyError(msg)

    with pytest.raises(BaseExceptionGroup) as info:
        async with Supervisor() as sup:
            sup.spawn(fail("a"))
            sup.spawn(fail("b"))
    assert sorted(str(e) for e in info.value.exceptions) == ["'a'", "'b'"]


async def test_cancelling_the_owner_cancels_every_child() -> None:
    started = asyncio.Event()
    unwound = []

    async def child(i: int) -> None:
        try:
            started.set()
            await asyncio.sleep(10)  # until the owner's cancellation reaches it
        finally:
            unwound.append(i)

    async def owner() -> None:
        async with Supervisor() as sup:
            for i in range(5):
                sup.spawn(child(i))
            await asyncio.sleep(10)  # until cancelled

    before = asyncio.all_tasks()
    task = asyncio.create_task(owner())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(unwound) == [0, 1, 2, 3, 4]
    assert asyncio.all_tasks() == before


async def test_cancel_children_then_leave() -> None:
    async with Supervisor() as sup:
        child = sup.spawn(asyncio.sleep(10))  # a child still running when cancelled
        sup.cancel_children()
    assert child.cancelled()


async def test_spawn_outside_the_block_is_refused() -> None:
    sup = Supervisor("idle")
    coro = asyncio.sleep(0)  # any coroutine: it is refused, never run
    with pytest.raises(RuntimeError, match="not accepting"):
        sup.spawn(coro)

"""A conformance kit for `Transport` implementations.

Subclass `TransportSuite` in a test module and give it a ``transport`` fixture that
yields a fresh, open transport; pytest then runs every check below against it:

    class TestMyTransport(TransportSuite):
        @pytest.fixture
        async def transport(self):
            async with MyTransport(...) as t:
                yield t

The suite covers every method and property `Transport` declares, the defaults
included, so a transport that passes it can carry runs and serve executors.

Leases. A transport whose claims lapse (a delivery neither acked nor touched is
delivered again after a while, like Redis Streams' leases) also mixes in
`LeaseSuite`, overrides the ``lease`` fixture with that while, in seconds, and gives
its ``transport`` fixture a short one (about a second). The checks of `ack`,
`send_and_ack`, `touch` and `dead_letter` then wait past it, and `LeaseSuite` checks
that an unacked delivery comes back. By default ``lease`` is None: claims do not lapse
(the memory transport), and those checks only wait briefly.

What travels. Plain msgpack-serializable dicts, which a transport that goes over the
wire must carry unchanged; and the runtime's own messages (`TaskMessage` without its
in-process ``task``, `TaskReply` with directives, `ContextRequest`, `ContextReply`),
which must arrive as the same type with equal fields: by reference in process,
through `wire.envelope` (``encode``/``decode``) over the wire, where an exception
comes back as an exception carrying its message. Two rules of the runtime a
transport may rely on:

* a `TaskMessage` whose ``lease_timeout`` and ``max_deliveries`` are None may be
  stamped with the transport's defaults on the way (the suite sends them set);
* replies (`TaskReply`, `ContextRequest`, `ContextReply`) may be dropped when sent to
  a queue that does not exist yet, so that a reply to a reader that has gone leaves
  nothing behind (Redis does this). Their readers make the queue first: sending a
  `TaskMessage` makes the queue its ``reply_to`` names, and a `receive` makes the
  queue it reads. The suite sends replies only to queues made that way.

`aclose` is called twice on a transport the suite closes (once by the check, once
by the fixture's ``async with``): the second call must do nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from graflow_async.actors.mailbox import MailboxClosed
from graflow_async.exceptions import TransportError
from graflow_async.plan.directives import AddTasks, Cancel, Iterate, Terminate
from graflow_async.transports.base import Delivery, Incarnation, Transport
from graflow_async.wire.messages import ContextReply, ContextRequest, TaskMessage, TaskReply

BRIEF = 0.2  # how long "nothing more arrives" is watched when claims do not lapse


async def _until(check: Any, timeout: float = 5.0) -> None:
    """Wait until `check()` holds (a transport may hand messages over from a reader of its own)."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 (a condition on another transport's reader, polled)
            await asyncio.sleep(0.01)


def _queue() -> str:
    return f"conformance-{uuid.uuid4().hex[:8]}"


async def _take(transport: Transport, queue: str, count: int, *, ack: bool = True) -> list[Delivery]:
    """The next `count` deliveries of `queue` (acked unless told otherwise)."""
    got: list[Delivery] = []
    async with asyncio.timeout(5):
        while len(got) < count:
            got.extend(await transport.receive(queue, max_messages=count - len(got), timeout=2))
    if ack:
        await transport.ack(queue, got)
    return got


def _quiet(lease: float | None) -> float:
    """How long to watch a queue to be sure a lapsed claim would have come back."""
    return BRIEF if lease is None else 2 * lease + 0.5


def _task_message(reply_to: str) -> TaskMessage:
    return TaskMessage(
        "run-1",
        "work",
        3,
        2,
        reply_to,
        {"n": 1, "items": [1, "two", None], "blob": b"\x00\xff", "pair": (1, 2)},
        timeout=2.5,
        task_ref="myapp.flows:work",
        lease_timeout=30.0,
        max_deliveries=4,
        inject_context=True,
        cycle=2,
        max_cycles=7,
        resumed_metadata={"step": 1},
    )


async def _reply_queue(transport: Transport) -> str:
    """A run's reply queue, made the way a run makes it: by sending a task that names it."""
    tasks, replies = _queue(), _queue()
    await transport.send(tasks, [_task_message(replies)])
    await _take(transport, tasks, 1)
    return replies


def _same(got: Sequence[Any], sent: Sequence[Any]) -> None:
    assert [type(m) for m in got] == [type(m) for m in sent]
    assert [m._asdict() for m in got] == [m._asdict() for m in sent]


class TransportSuite:
    """The behaviour every transport must show. Needs a ``transport`` fixture."""

    @pytest.fixture
    def lease(self) -> float | None:
        """Seconds after which a delivery neither acked nor touched is delivered again;
        None when claims do not lapse. Override for a transport with leases."""
        return None

    # --- send and receive --------------------------------------------------------------------------
    async def test_messages_arrive_in_order(self, transport: Transport) -> None:
        q = _queue()
        await transport.send(q, [{"n": i} for i in range(5)])
        await transport.send(q, [{"n": 5}])
        got: list[dict] = []
        while len(got) < 6:
            got.extend(d.message for d in await transport.receive(q, timeout=2))
        assert got == [{"n": i} for i in range(6)]

    async def test_receive_takes_at_most_max_messages(self, transport: Transport) -> None:
        q = _queue()
        await transport.send(q, [{"n": i} for i in range(10)])
        first = await transport.receive(q, max_messages=3, timeout=2)
        assert [d.message["n"] for d in first] == [0, 1, 2]

    async def test_receive_times_out_empty(self, transport: Transport) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await transport.receive(_queue(), timeout=0.2) == []
        assert 0.15 <= loop.time() - start < 2

    async def test_receive_waits_for_a_later_send(self, transport: Transport) -> None:
        q = _queue()
        waiting = asyncio.create_task(transport.receive(q, timeout=5))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await transport.send(q, [{"hello": "world"}])
        got = await asyncio.wait_for(waiting, 5)
        assert [d.message for d in got] == [{"hello": "world"}]

    async def test_receive_without_timeout_waits_as_long_as_it_takes(self, transport: Transport) -> None:
        q = _queue()
        waiting = asyncio.create_task(transport.receive(q))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await transport.send(q, [{"late": True}])
        got = await asyncio.wait_for(waiting, 5)
        assert [d.message for d in got] == [{"late": True}]

    async def test_queues_are_independent(self, transport: Transport) -> None:
        a, b = _queue(), _queue()
        await transport.send(a, [{"q": "a"}])
        await transport.send(b, [{"q": "b"}])
        assert [d.message for d in await transport.receive(b, timeout=2)] == [{"q": "b"}]
        assert [d.message for d in await transport.receive(a, timeout=2)] == [{"q": "a"}]

    async def test_payloads_round_trip(self, transport: Transport) -> None:
        q = _queue()
        payload = {"s": "text ✓", "i": -(2**40), "f": 1.5, "b": b"\x00\xff", "l": [1, [2]], "d": {"k": None}, "t": True}
        await transport.send(q, [payload])
        [delivery] = await transport.receive(q, timeout=2)
        assert delivery.message == payload

    # --- settling: ack, send_and_ack, touch, dead_letter -------------------------------------------
    async def test_acked_messages_are_not_delivered_again(self, transport: Transport, lease: float | None) -> None:
        q = _queue()
        await transport.send(q, [{"n": 1}, {"n": 2}])
        await _take(transport, q, 2)
        assert await transport.receive(q, timeout=_quiet(lease)) == []

    async def test_send_and_ack_sends_then_settles(self, transport: Transport, lease: float | None) -> None:
        tasks, replies = _queue(), _queue()
        await transport.send(tasks, [{"task": 1}, {"task": 2}])
        taken = await _take(transport, tasks, 2, ack=False)
        await transport.send_and_ack(replies, [{"reply": 1}, {"reply": 2}], tasks, taken)
        assert [d.message for d in await _take(transport, replies, 2)] == [{"reply": 1}, {"reply": 2}]
        assert await transport.receive(tasks, timeout=_quiet(lease)) == []

    async def test_touch_keeps_a_delivery_with_its_consumer(self, transport: Transport, lease: float | None) -> None:
        q = _queue()
        await transport.send(q, [{"n": 1}])
        [delivery] = await _take(transport, q, 1, ack=False)
        loop = asyncio.get_running_loop()
        until = loop.time() + (BRIEF if lease is None else 2 * lease)
        while loop.time() < until:  # a heartbeat, as an executor sends while the task runs
            await transport.touch(q, [delivery])
            assert await transport.receive(q, timeout=BRIEF if lease is None else lease / 4) == []
        await transport.ack(q, [delivery])  # still this consumer's to settle
        assert await transport.receive(q, timeout=_quiet(lease)) == []

    async def test_dead_lettered_deliveries_are_not_delivered_again(
        self, transport: Transport, lease: float | None
    ) -> None:
        q = _queue()
        await transport.send(q, [{"poison": True}, {"n": 2}])
        poison, fine = await _take(transport, q, 2, ack=False)
        await transport.dead_letter(q, poison, "not a task message")
        await transport.ack(q, [fine])
        assert await transport.receive(q, timeout=_quiet(lease)) == []

    # --- the runtime's messages --------------------------------------------------------------------
    async def test_task_messages_round_trip(self, transport: Transport) -> None:
        q = _queue()
        sent = [_task_message(_queue()), _task_message(_queue())._replace(timeout=None, task_ref="m:f.g", cycle=1)]
        await transport.send(q, sent)
        _same([d.message for d in await _take(transport, q, 2)], sent)

    async def test_task_replies_round_trip(self, transport: Transport) -> None:
        replies = await _reply_queue(transport)
        added = {"task": "myapp.flows:work", "id": "work_2", "bound": {"n": 2}}
        ok = TaskReply(
            "run-1",
            3,
            2,
            True,
            {"total": 230, "parts": [1, 2]},
            None,
            0.25,
            (Cancel("x"), Terminate("y"), Iterate({"data": 1}), AddTasks(added, True)),
            retryable=False,
            suspended=True,
            cycle=2,
        )
        failed = TaskReply("run-1", 4, 1, False, None, ValueError("it broke"), 0.5)
        await transport.send(replies, [ok])
        await transport.send(replies, [failed])
        got_ok, got_failed = (d.message for d in await _take(transport, replies, 2))
        _same([got_ok], [ok])
        assert [type(d) for d in got_ok.directives] == [Cancel, Terminate, Iterate, AddTasks]
        assert type(got_failed) is TaskReply
        assert got_failed._replace(error=None) == failed._replace(error=None)
        assert isinstance(got_failed.error, Exception) and "it broke" in str(got_failed.error)

    async def test_context_requests_round_trip(self, transport: Transport) -> None:
        replies = await _reply_queue(transport)
        sent = [
            ContextRequest("run-1", 3, 1, 2, "req-1", "channel.incr", {"key": "n", "amount": 2}, _queue()),
            ContextRequest("run-1", 3, 1, 2, "req-2", "channel.set", {"key": "k", "value": [1, {"a": b"x"}]}, _queue()),
        ]
        await transport.send(replies, sent)
        _same([d.message for d in await _take(transport, replies, 2)], sent)

    async def test_context_replies_round_trip(self, transport: Transport) -> None:
        answers = _queue()
        assert await transport.receive(answers, timeout=0.1) == []  # its reader makes it first
        ok = ContextReply("req-1", True, {"value": [1, 2], "n": 3})
        failed = ContextReply("req-2", False, None, ValueError("no such key"))
        await transport.send(answers, [ok, failed])
        got_ok, got_failed = (d.message for d in await _take(transport, answers, 2))
        _same([got_ok], [ok])
        assert type(got_failed) is ContextReply
        assert got_failed._replace(error=None) == failed._replace(error=None)
        assert isinstance(got_failed.error, ValueError) and str(got_failed.error) == "no such key"

    # --- queues for one reader: inbox, attach, discard, leave ----------------------------------------
    async def test_inbox_yields_messages_for_an_actor(self, transport: Transport) -> None:
        q = _queue()
        inbox = transport.inbox(q)
        await transport.send(q, [{"n": 1}, {"n": 2}])
        got: list[dict] = []
        while len(got) < 2:
            got.extend(await asyncio.wait_for(inbox.receive_batch(), 2))
        assert got == [{"n": 1}, {"n": 2}]

    async def test_inbox_closes_with_the_transport(self, transport: Transport) -> None:
        q = _queue()
        inbox = transport.inbox(q)
        await transport.send(q, [{"n": 1}])
        assert await asyncio.wait_for(inbox.receive_batch(), 2) == [{"n": 1}]
        waiting = asyncio.create_task(inbox.receive_batch())
        await asyncio.sleep(0.05)
        await transport.aclose()
        with pytest.raises(MailboxClosed):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(MailboxClosed):
            await asyncio.wait_for(inbox.receive_batch(), 5)

    async def test_attach_hands_messages_over_when_supported(self, transport: Transport) -> None:
        q = _queue()
        await transport.send(q, [{"n": 0}])
        taken: list[dict] = []
        detach = transport.attach(q, taken.extend)
        if detach is None:
            assert [d.message for d in await transport.receive(q, timeout=2)] == [{"n": 0}]
            return  # a pull-only transport: nothing more to check
        await _until(lambda: taken == [{"n": 0}])  # what was queued first
        await transport.send(q, [{"n": 1}, {"n": 2}])
        await _until(lambda: taken == [{"n": 0}, {"n": 1}, {"n": 2}])
        detach()
        await transport.send(q, [{"n": 3}])
        await asyncio.sleep(0.1)
        assert taken == [{"n": 0}, {"n": 1}, {"n": 2}]  # detached: nothing more handed over

    async def test_send_nowait_reaches_an_attached_consumer_or_says_it_cannot(self, transport: Transport) -> None:
        q = _queue()
        taken: list[dict] = []
        detach = transport.attach(q, taken.extend)
        if not transport.send_nowait(q, [{"n": 1}]):  # nothing sent: `send` must be used
            await asyncio.sleep(0.1)
            assert taken == []
            if detach is None:
                assert await transport.receive(q, timeout=0.2) == []
            else:
                detach()
            return
        assert detach is not None  # only an attached consumer can be handed messages now
        assert taken == [{"n": 1}]
        detach()
        assert transport.send_nowait(q, [{"n": 2}]) is False  # no consumer now
        assert taken == [{"n": 1}]

    async def test_discard_drops_what_a_queue_holds(self, transport: Transport) -> None:
        q = _queue()
        await transport.send(q, [{"n": 1}])
        await transport.discard(q)
        assert await transport.receive(q, timeout=0.2) == []
        await transport.discard(_queue())  # a queue never used: nothing to forget, no error

    async def test_leave_keeps_the_transport_working(self, transport: Transport) -> None:
        left, other = _queue(), _queue()
        await transport.send(left, [{"n": 1}])
        await _take(transport, left, 1)
        await transport.leave(left)
        await transport.send(other, [{"n": 2}])
        assert [d.message for d in await _take(transport, other, 1)] == [{"n": 2}]

    # --- the rest of the surface -----------------------------------------------------------------------
    async def test_in_process_is_declared(self, transport: Transport) -> None:
        assert isinstance(transport.in_process, bool)

    async def test_closed_says_whether_aclose_was_called(self, transport: Transport) -> None:
        assert transport.closed is False
        await transport.aclose()
        assert transport.closed is True
        await transport.aclose()  # again: nothing to do
        assert transport.closed is True

    async def test_closed_transport_refuses_work(self, transport: Transport) -> None:
        await transport.aclose()
        with pytest.raises(TransportError):
            await transport.send(_queue(), [{"n": 1}])
        with pytest.raises(TransportError):
            await transport.receive(_queue(), timeout=0.1)

    async def test_pending_receive_raises_when_the_transport_closes(self, transport: Transport) -> None:
        waiting = asyncio.create_task(transport.receive(_queue()))
        await asyncio.sleep(0.05)
        await transport.aclose()
        with pytest.raises(TransportError):
            await asyncio.wait_for(waiting, 5)

    async def test_a_run_has_ended_when_its_driver_ended_it_or_another_incarnation_began(
        self, transport: Transport
    ) -> None:
        run_id = f"run-{uuid.uuid4().hex[:8]}"
        epoch = await transport.begin_run(run_id, 30.0)
        first = Incarnation(run_id, epoch, f"run:{run_id}:replies")
        assert await transport.ended([]) == set()
        assert await transport.ended([first]) == set()  # running: never skipped
        if not epoch:
            return  # a transport whose runs have no incarnations (in-process) knows no ended run
        second = first._replace(epoch=await transport.begin_run(run_id, 30.0))
        assert second.epoch > first.epoch
        assert await transport.renew_run(run_id, second.epoch, 30.0) is True
        assert await transport.renew_run(run_id, first.epoch, 30.0) is False  # fenced out
        assert await transport.ended([first, second]) == {first}  # a replay of the first incarnation
        await transport.end_run(run_id, first.epoch)  # a stale driver ending changes nothing
        assert await transport.ended([second]) == set()
        await transport.end_run(run_id, second.epoch)
        assert await transport.ended([first, second]) == {first, second}
        never = Incarnation(f"run-{uuid.uuid4().hex[:8]}", 1, "run:x:replies")
        assert await transport.ended([never]) == {never}  # no owner record: nothing to run for


class LeaseSuite:
    """Mixed into `TransportSuite` by a transport whose claims lapse (with a ``lease``)."""

    async def test_unacked_deliveries_come_back_once_their_claim_lapses(
        self, transport: Transport, lease: float
    ) -> None:
        q = _queue()
        await transport.send(q, [{"n": 1}, {"n": 2}])
        first, _ = await _take(transport, q, 2, ack=False)
        await transport.ack(q, [first])
        [again] = await transport.receive(q, timeout=3 * lease + 2)
        assert again.message == {"n": 2} and again.delivery_count >= 2
        await transport.ack(q, [again])  # a redelivery settles like any delivery
        assert await transport.receive(q, timeout=_quiet(lease)) == []

    async def test_a_released_delivery_comes_back_at_once(self, transport: Transport, lease: float) -> None:
        q = _queue()
        await transport.send(q, [{"n": 1}])
        [taken] = await _take(transport, q, 1, ack=False)
        await transport.release(q, [taken])
        [again] = await transport.receive(q, timeout=lease / 2)  # well before the claim would lapse
        assert again.message == {"n": 1} and again.delivery_count >= 2
        await transport.ack(q, [again])
        assert await transport.receive(q, timeout=_quiet(lease)) == []

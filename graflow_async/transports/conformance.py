"""A conformance kit for `Transport` implementations.

Subclass `TransportSuite` in a test module and give it a ``transport`` fixture that
yields a fresh, open transport; pytest then runs every check below against it:

    class TestMyTransport(TransportSuite):
        @pytest.fixture
        async def transport(self):
            async with MyTransport(...) as t:
                yield t

Messages used here are plain msgpack-serializable dicts, so a transport that goes
over the wire must carry any such payload unchanged.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ..exceptions import TransportError
from .base import Transport


def _queue() -> str:
    return f"conformance-{uuid.uuid4().hex[:8]}"


class TransportSuite:
    """The behaviour every transport must show. Needs a ``transport`` fixture."""

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

    async def test_queues_are_independent(self, transport: Transport) -> None:
        a, b = _queue(), _queue()
        await transport.send(a, [{"q": "a"}])
        await transport.send(b, [{"q": "b"}])
        assert [d.message for d in await transport.receive(b, timeout=2)] == [{"q": "b"}]
        assert [d.message for d in await transport.receive(a, timeout=2)] == [{"q": "a"}]

    async def test_acked_messages_are_not_delivered_again(self, transport: Transport) -> None:
        q = _queue()
        await transport.send(q, [{"n": 1}, {"n": 2}])
        got = await transport.receive(q, timeout=2)
        await transport.ack(q, got)
        assert await transport.receive(q, timeout=0.2) == []

    async def test_payloads_round_trip(self, transport: Transport) -> None:
        q = _queue()
        payload = {"s": "text ✓", "i": -(2**40), "f": 1.5, "b": b"\x00\xff", "l": [1, [2]],
                   "d": {"k": None}, "t": True}
        await transport.send(q, [payload])
        [delivery] = await transport.receive(q, timeout=2)
        assert delivery.message == payload

    async def test_inbox_yields_messages_for_an_actor(self, transport: Transport) -> None:
        q = _queue()
        inbox = transport.inbox(q)
        await transport.send(q, [{"n": 1}, {"n": 2}])
        got: list[dict] = []
        while len(got) < 2:
            got.extend(await asyncio.wait_for(inbox.receive_batch(), 2))
        assert got == [{"n": 1}, {"n": 2}]

    async def test_discard_drops_what_a_queue_holds(self, transport: Transport) -> None:
        q = _queue()
        await transport.send(q, [{"n": 1}])
        await transport.discard(q)
        assert await transport.receive(q, timeout=0.2) == []

    async def test_attach_hands_messages_over_when_supported(self, transport: Transport) -> None:
        q = _queue()
        await transport.send(q, [{"n": 0}])
        taken: list[dict] = []
        detach = transport.attach(q, taken.extend)
        if detach is None:
            assert [d.message for d in await transport.receive(q, timeout=2)] == [{"n": 0}]
            return  # a pull-only transport: nothing more to check
        assert taken == [{"n": 0}]  # what was queued first
        await transport.send(q, [{"n": 1}, {"n": 2}])
        assert taken == [{"n": 0}, {"n": 1}, {"n": 2}]
        detach()
        await transport.send(q, [{"n": 3}])
        assert [d.message for d in await transport.receive(q, timeout=2)] == [{"n": 3}]

    async def test_closed_transport_refuses_work(self, transport: Transport) -> None:
        await transport.aclose()
        with pytest.raises(TransportError):
            await transport.send(_queue(), [{"n": 1}])
        with pytest.raises(TransportError):
            await transport.receive(_queue(), timeout=0.1)

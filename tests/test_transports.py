"""The transport conformance kit, run over every transport."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from graflow_async.transports import MemoryTransport
from graflow_async.transports.conformance import TransportSuite
from graflow_async.transports.redis_streams import RedisStreamsTransport


class TestMemoryTransport(TransportSuite):
    @pytest.fixture
    async def transport(self) -> AsyncIterator[MemoryTransport]:
        async with MemoryTransport() as transport:
            yield transport


async def test_memory_transport_applies_backpressure() -> None:
    import asyncio

    async with MemoryTransport(maxsize=2) as transport:
        await transport.send("q", [1, 2])
        blocked = asyncio.create_task(transport.send("q", [3]))
        await asyncio.sleep(0.01)
        assert not blocked.done()
        assert [d.message for d in await transport.receive("q", max_messages=1)] == [1]
        await asyncio.wait_for(blocked, 1)


class TestRedisStreamsTransport(TransportSuite):
    """The same checks over a real redis-server, in a fresh namespace per test."""

    @pytest.fixture
    async def transport(self, redis_url: str) -> AsyncIterator[RedisStreamsTransport]:
        namespace = f"conformance-{uuid.uuid4().hex[:8]}"
        async with RedisStreamsTransport(redis_url, namespace=namespace, connect_timeout=2) as transport:
            yield transport


async def test_the_default_inbox_acks_on_receipt_and_closes_with_the_transport() -> None:
    import asyncio

    from graflow_async.actors import MailboxClosed
    from graflow_async.transports.base import Transport, TransportInbox

    acked: list[int] = []

    class Recording(MemoryTransport):  # keeps the base class's inbox
        inbox = Transport.inbox

        async def ack(self, queue, deliveries):  # type: ignore[no-untyped-def]
            acked.append(len(deliveries))

    transport = Recording()
    inbox = transport.inbox("q")
    assert isinstance(inbox, TransportInbox)
    await transport.send("q", [1, 2])
    assert await inbox.receive_batch() == [1, 2] and acked == [2]
    waiting = asyncio.create_task(inbox.receive_batch())
    await asyncio.sleep(0.01)
    await transport.aclose()
    with pytest.raises(MailboxClosed):
        await asyncio.wait_for(waiting, 1)

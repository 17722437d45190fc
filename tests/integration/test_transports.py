"""The transport conformance kit, run over every transport: memory, Redis Streams, and a
third one written in the tests (`LoopbackTransport`), which also carries a whole run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import loopback_flows
import pytest
from loopback_transport import LoopbackTransport
from redis.asyncio import Redis

import graflow_async
from graflow_async.execute.executor import Executor
from graflow_async.execute.worker import TaskFinder
from graflow_async.transports import MemoryTransport, keys
from graflow_async.transports.conformance import LeaseSuite, TransportSuite
from graflow_async.transports.redis import RedisStreamsTransport


class TestMemoryTransport(TransportSuite):
    @pytest.fixture
    async def transport(self) -> AsyncIterator[MemoryTransport]:
        async with MemoryTransport() as transport:
            yield transport


async def test_memory_transport_applies_backpressure() -> None:
    async with MemoryTransport(maxsize=2) as transport:
        await transport.send("q", [1, 2])
        blocked = asyncio.create_task(transport.send("q", [3]))
        await asyncio.sleep(0.01)  # a window in which the sender must stay blocked
        assert not blocked.done()
        assert [d.message for d in await transport.receive("q", max_messages=1)] == [1]
        await asyncio.wait_for(blocked, 1)


class TestRedisStreamsTransport(TransportSuite, LeaseSuite):
    """The same checks over a real redis-server, in a fresh namespace per test, with a
    short lease so that the checks of acks and heartbeats see lapsed claims come back."""

    LEASE = 0.5

    @pytest.fixture
    def lease(self) -> float:
        return self.LEASE

    @pytest.fixture
    async def transport(self, redis_url: str) -> AsyncIterator[RedisStreamsTransport]:
        namespace = f"conformance-{uuid.uuid4().hex[:8]}"
        async with RedisStreamsTransport(
            redis_url, namespace=namespace, connect_timeout=2, lease_timeout=self.LEASE
        ) as transport:
            yield transport


class TestRedisStreamsTransportOnAGivenClient(TestRedisStreamsTransport):
    """The same again with a redis-py client given by the caller: the hot path (XADD,
    XREAD, XREADGROUP, XACK) then runs on redis-py instead of the lean connections."""

    @pytest.fixture
    async def transport(self, redis_url: str) -> AsyncIterator[RedisStreamsTransport]:
        client = Redis.from_url(redis_url)
        namespace = f"conformance-{uuid.uuid4().hex[:8]}"
        try:
            async with RedisStreamsTransport(
                client=client, namespace=namespace, connect_timeout=2, lease_timeout=self.LEASE
            ) as transport:
                assert transport.hot_path == "redis-py"
                yield transport
        finally:
            await client.aclose()


class TestLoopbackTransport(TransportSuite):
    """A transport written outside the package, on nothing but the seam's contract."""

    @pytest.fixture
    async def transport(self) -> AsyncIterator[LoopbackTransport]:
        async with LoopbackTransport() as transport:
            yield transport


async def test_a_workflow_runs_over_a_third_transport() -> None:
    """A run on the loopback transport, served by an executor that finds its tasks by
    import path (as a worker does): results, parameters, a parallel group, the channel
    and a task added at runtime all cross the seam serialized."""
    transport = LoopbackTransport()
    worker = Executor(
        transport,
        keys.TASK_QUEUE,
        context_queue="worker:loop:context",
        remote=True,
        concurrency=4,
        find_task=TaskFinder(["loopback_flows"]),
    )
    async with transport, asyncio.TaskGroup() as tg:
        serving = tg.create_task(worker.run(), name="loopback worker")
        try:
            result = await asyncio.wait_for(graflow_async.run(loopback_flows.flow(), transport=transport), 30)
        finally:
            serving.cancel()
    assert result.status == "completed"
    assert result.results == {"prepare": 5, "double": 10, "triple": 15, "combine": 25, "extra": 26}
    channel = result.channel
    assert channel["config"] == {"factor": 3} and channel["total"] == 25 and channel["count"] == 4
    log = channel["log"]
    assert log[0] == "prepare" and sorted(log[1:3]) == ["double", "triple"] and log[3:] == ["extra"]
    # 5 tasks and their replies, 10 context requests and their answers: all serialized
    assert transport.encoded == transport.decoded >= 30
    assert worker.done == 5 and worker.failed == 0
    assert transport.pending(keys.TASK_QUEUE) == 0  # every task acked after its reply
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_the_default_inbox_acks_on_receipt_and_closes_with_the_transport() -> None:
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
    await asyncio.sleep(0)  # yield: the receiver waits on the empty inbox
    await transport.aclose()
    with pytest.raises(MailboxClosed):
        await asyncio.wait_for(waiting, 1)


async def test_the_default_feedback_store_of_each_transport(redis_url: str, tmp_path: object) -> None:
    from graflow_async.feedback import MemoryFeedbackStore, RedisFeedbackStore
    from graflow_async.feedback.defaults import store_for

    assert store_for(MemoryTransport()) is None  # runs keep the default file store
    async with RedisStreamsTransport(redis_url, namespace="shared") as redis:
        store = store_for(redis)
        assert isinstance(store, RedisFeedbackStore)
        assert store.conn is redis.conn and store.keys.namespace == "shared"  # its connection, where web apps look
        assert await store.get_suspension(f"r-{uuid.uuid4().hex}") is None  # and it works

    class Elsewhere(LoopbackTransport):  # a transport written elsewhere says its own
        pass

    mine = MemoryFeedbackStore()
    store_for.register(Elsewhere, lambda transport: mine)
    assert store_for(Elsewhere()) is mine
    assert store_for(LoopbackTransport()) is None

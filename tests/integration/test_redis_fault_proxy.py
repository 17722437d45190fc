"""The fault-injecting Redis proxy (`tests/support/redis_faults.py`) against the real test Redis:
it forwards faithfully, and each fault does exactly what it says (raw sockets and
hiredis as the client, redis-py's asyncio client where convenient)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import hiredis
import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis_faults import (
    Cut,
    Drip,
    ErrorReply,
    FaultProxy,
    HugeLength,
    Malformed,
    ReplyError,
    Stall,
    Vanish,
    encode_command,
)
from redis_server import RedisServer
from worker_processes import wait_for


class Raw:
    """A client on a bare asyncio socket: commands out as RESP arrays, replies parsed by hiredis."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = hiredis.Reader(replyError=ReplyError)

    @classmethod
    async def open(cls, port: int, db: int) -> Raw:
        raw = cls(*await asyncio.open_connection("127.0.0.1", port))
        raw.send("SELECT", db)
        assert await raw.reply() == b"OK"
        return raw

    def send(self, *args: object) -> None:
        self.writer.write(encode_command([a if isinstance(a, bytes) else str(a).encode() for a in args]))

    async def reply(self, timeout: float = 2.0) -> Any:
        async with asyncio.timeout(timeout):
            while (reply := self.parser.gets()) is False:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("closed by the proxy")
                self.parser.feed(data)
        return reply

    async def raw(self, n: int, timeout: float = 2.0) -> bytes:
        """Exactly `n` bytes as they come (no parsing)."""
        async with asyncio.timeout(timeout):
            return await self.reader.readexactly(n)

    async def until_eof(self, timeout: float = 2.0) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.reader.read()

    async def aclose(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


def _db(redis_url: str) -> int:
    return int(redis_url.rsplit("/", 1)[1])


@pytest.fixture
def proxy(fault_proxy: FaultProxy) -> FaultProxy:
    return fault_proxy


@pytest.fixture
async def raw(proxy: FaultProxy, redis_url: str) -> AsyncIterator[Raw]:
    client = await Raw.open(proxy.port, _db(redis_url))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def via(proxy: FaultProxy, redis_url: str) -> AsyncIterator[Redis]:
    """redis-py through the proxy (RESP2: the proxy refuses HELLO 3)."""
    r = Redis.from_url(proxy.url(_db(redis_url)), protocol=2)
    try:
        yield r
    finally:
        await r.aclose()


async def _eventually(condition: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- forwarding ---------------------------------------------------------------------


async def test_set_get_and_a_pipeline_of_200_in_order(proxy: FaultProxy, via: Redis, client: Redis) -> None:
    assert await via.set("k", "v") is True
    assert await via.get("k") == b"v" and await client.get("k") == b"v"
    async with via.pipeline(transaction=False) as pipe:
        for i in range(100):
            pipe.set(f"k{i}", i).get(f"k{i}")
        answers = await pipe.execute()
    assert answers == [x for i in range(100) for x in (True, str(i).encode())]
    assert proxy.commands[-200:] == ["SET", "GET"] * 100
    assert proxy.connections == 1 and proxy.open_connections == 1


async def test_a_transaction_its_errors_and_nils_come_back_as_sent(via: Redis) -> None:
    async with via.pipeline(transaction=True) as pipe:
        answers = (
            await pipe.set("s", "x")
            .incr("s")
            .get("missing")
            .lpush("l", 1, 2)
            .lrange("l", 0, -1)
            .execute(raise_on_error=False)
        )
    assert answers[0] is True and answers[2] is None and answers[3] == 2 and answers[4] == [b"2", b"1"]
    assert isinstance(answers[1], redis_errors.ResponseError) and "not an integer" in str(answers[1])


async def test_redis_py_asking_for_resp3_falls_back_to_resp2(proxy: FaultProxy, redis_url: str) -> None:
    r = Redis.from_url(proxy.url(_db(redis_url)))
    try:
        assert await r.ping() is True
        assert await r.hset("h", mapping={"a": "1"}) == 1 and await r.hgetall("h") == {b"a": b"1"}
    finally:
        await r.aclose()
    assert "HELLO" in proxy.commands


async def blocked_in(client: Redis, command: str) -> set[int]:
    """The ids of the server's clients blocked in `command`."""
    return {c["id"] for c in await client.client_list() if c["cmd"] == command and "b" in c["flags"]}


async def blocked(client: Redis, before: set[int]) -> bool:
    return bool(await blocked_in(client, "xread") - before)


async def test_xread_block_times_out_and_gets_an_entry_added_elsewhere(via: Redis, client: Redis) -> None:
    started = time.monotonic()
    assert not await via.xread({"s": "$"}, block=200)
    assert 0.18 < time.monotonic() - started < 1.5
    before = await blocked_in(client, "xread")
    waiting = asyncio.ensure_future(via.xread({"s": "$"}, block=5000))
    await wait_for(lambda: blocked(client, before), 5, "the XREAD to block on the server")
    assert not waiting.done()
    entry_id = await client.xadd("s", {"f": "v"})
    async with asyncio.timeout(2):
        assert await waiting == [[b"s", [(entry_id, {b"f": b"v"})]]]


# -- faults -------------------------------------------------------------------------


async def test_error_reply_not_executed(proxy: FaultProxy, raw: Raw, client: Redis) -> None:
    rule = proxy.inject("set", ErrorReply("READONLY You can't write against a read only replica."))
    raw.send("SET", "k", "v")
    raw.send("SET", "k2", "v2")
    first, second = await raw.reply(), await raw.reply()
    assert isinstance(first, ReplyError) and str(first) == "READONLY You can't write against a read only replica."
    assert second == b"OK" and rule.applied == 1
    assert await client.get("k") is None and await client.get("k2") == b"v2"


async def test_error_reply_executed_replaces_the_real_reply(proxy: FaultProxy, via: Redis, client: Redis) -> None:
    proxy.inject("SET", ErrorReply("OOM command not allowed when used memory > 'maxmemory'.", execute=True))
    with pytest.raises(redis_errors.OutOfMemoryError):
        await via.set("k", "v")
    assert await client.get("k") == b"v"
    assert await via.get("k") == b"v"


async def test_malformed_bytes_reach_the_client_and_the_connection_stays(
    proxy: FaultProxy, raw: Raw, client: Redis
) -> None:
    rule = proxy.inject("SET", Malformed())
    raw.send("SET", "k", "v")
    raw.send("PING")
    assert await raw.raw(len(b"!garbage\r\n$4\r\nPONG\r\n")) == b"!garbage\r\n$4\r\nPONG\r\n"
    assert await client.get("k") == b"v" and rule.applied == 1
    assert proxy.open_connections == 1


async def test_huge_length_trickles_until_the_client_leaves(proxy: FaultProxy, redis_url: str, client: Redis) -> None:
    tasks_before = asyncio.all_tasks()
    raw = await Raw.open(proxy.port, _db(redis_url))
    proxy.inject("SET", HugeLength())
    raw.send("SET", "k", "v")
    assert await raw.raw(len(b"$99999999999\r\n")) == b"$99999999999\r\n"
    chunks: list[bytes] = []
    started = time.monotonic()
    while time.monotonic() - started < 0.3:
        async with asyncio.timeout(1):
            chunks.append(await raw.reader.read(1024))
    assert all(chunks) and len(chunks) >= 3 and sum(map(len, chunks)) < 100  # a trickle, not a flood
    assert await client.get("k") == b"v"
    await raw.aclose()
    await _eventually(lambda: proxy.open_connections == 0)
    await _eventually(
        lambda: asyncio.all_tasks() == tasks_before
    )  # the connection's tasks, the trickle's too, are gone


async def test_drip_delivers_the_real_reply_a_byte_at_a_time(proxy: FaultProxy, raw: Raw, client: Redis) -> None:
    await client.set("k", "0123456789")
    proxy.inject("GET", Drip(delay=0.01))
    started = time.monotonic()
    raw.send("GET", "k")
    expected = b"$10\r\n0123456789\r\n"
    chunks: list[bytes] = []
    while sum(map(len, chunks)) < len(expected):
        chunks.append(await raw.raw(1))
        await asyncio.sleep(0)  # yield between reads: the drip, not the reader, paces them
    assert b"".join(chunks) == expected
    assert time.monotonic() - started >= 0.01 * (len(expected) - 1) * 0.9
    raw.send("PING")
    assert await raw.raw(len(b"$4\r\nPONG\r\n")) == b"$4\r\nPONG\r\n"  # nothing more came before it


async def test_drip_is_transparent_to_redis_py(proxy: FaultProxy, via: Redis) -> None:
    await via.set("k", "value")
    proxy.inject("GET", Drip(delay=0.005))
    assert await via.get("k") == b"value"


async def test_cut_sends_half_a_reply_then_closes(proxy: FaultProxy, raw: Raw, client: Redis) -> None:
    await client.set("k", "hello world")
    rule = proxy.inject("GET", Cut())
    raw.send("GET", "k")
    raw.send("PING")
    full = b"$11\r\nhello world\r\n"
    assert await raw.until_eof() == full[: len(full) // 2]
    await _eventually(lambda: proxy.open_connections == 0)
    assert rule.applied == 1


async def test_stall_holds_the_later_replies(proxy: FaultProxy, raw: Raw, client: Redis) -> None:
    proxy.inject("SET", Stall())
    raw.send("SET", "k", "v")
    raw.send("PING")
    with pytest.raises(TimeoutError):
        await raw.reply(timeout=0.3)
    assert await client.get("k") == b"v"  # executed, never answered
    assert proxy.open_connections == 1


async def test_stall_not_executed(proxy: FaultProxy, raw: Raw, client: Redis) -> None:
    proxy.inject("SET", Stall(execute=False))
    raw.send("SET", "k", "v")
    with pytest.raises(TimeoutError):
        await raw.reply(timeout=0.2)
    assert await client.get("k") is None


async def test_vanish_answers_an_id_for_an_entry_that_is_not_there(
    proxy: FaultProxy, via: Redis, client: Redis
) -> None:
    real = await via.xadd("s", {"f": "1"})
    rule = proxy.inject("XADD", Vanish(), times=2)
    gone = [await via.xadd("s", {"f": "2"}), await via.xadd("s", {"f": "3"})]
    assert rule.applied == 2
    ms = [int(g.split(b"-")[0]) for g in gone]
    assert all(g.endswith(b"-0") for g in gone) and ms[0] < ms[1]
    assert ms[0] > int(real.split(b"-")[0]) and ms[0] > time.time() * 1000 + 3_000_000
    assert [e[0] for e in await client.xrange("s")] == [real]
    assert await via.xadd("s", {"f": "4"}) != gone[1] and await client.xlen("s") == 2
    with pytest.raises(ValueError, match="XADD"):
        proxy.inject("SET", Vanish())


# -- rules ----------------------------------------------------------------------------


async def test_skip_and_times(proxy: FaultProxy, raw: Raw) -> None:
    rule = proxy.inject("INCR", ErrorReply("LOADING Redis is loading the dataset in memory"), skip=2, times=2)
    for _ in range(6):
        raw.send("incr", "n")
    answers = [await raw.reply() for _ in range(6)]
    assert [a if isinstance(a, int) else str(a) for a in answers] == [
        1, 2, "LOADING Redis is loading the dataset in memory", "LOADING Redis is loading the dataset in memory", 3, 4
    ]  # fmt: skip
    assert rule.applied == 2 and rule.exhausted


async def test_match_and_times_none_until_cleared(proxy: FaultProxy, via: Redis) -> None:
    rule = proxy.inject(
        "XADD", ErrorReply("MASTERDOWN Link with MASTER is down"), times=None, match=lambda a: a[0] == b"a"
    )
    for _ in range(3):
        with pytest.raises(redis_errors.MasterDownError, match="Link with MASTER is down"):
            await via.xadd("a", {"f": "v"})
        assert await via.xadd("b", {"f": "v"})
    assert rule.applied == 3
    proxy.clear()
    assert await via.xadd("a", {"f": "v"}) and rule.applied == 3


async def test_the_first_rule_that_takes_a_command_applies(proxy: FaultProxy, raw: Raw) -> None:
    first = proxy.inject("PING", ErrorReply("ERR first"))
    second = proxy.inject("PING", ErrorReply("TRYAGAIN second"), times=None)
    for _ in range(3):
        raw.send("PING")
    assert [str(await raw.reply()) for _ in range(3)] == ["ERR first", "TRYAGAIN second", "TRYAGAIN second"]
    assert (first.applied, second.applied) == (1, 2)
    proxy.remove(second)
    raw.send("PING")
    assert await raw.reply() == b"PONG"


# -- bounds and closing ---------------------------------------------------------------


@pytest.mark.parametrize("garbage", [b"!nonsense\r\n", b":1\r\n", b"*2\r\n$4\r\nECHO\r\n:5\r\n", b"*0\r\n"])
async def test_a_client_sending_garbage_is_disconnected(proxy: FaultProxy, raw: Raw, garbage: bytes) -> None:
    raw.writer.write(garbage)
    assert await raw.until_eof() == b""
    await _eventually(lambda: proxy.open_connections == 0)


async def test_an_oversized_command_is_disconnected(redis_server: RedisServer, redis_url: str) -> None:
    async with FaultProxy("127.0.0.1", redis_server.port, max_command_bytes=1000) as small:
        raw = await Raw.open(small.port, _db(redis_url))
        try:
            raw.writer.write(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n" + b"x" * 5000)
            assert await raw.until_eof() == b""
        finally:
            await raw.aclose()


def _sockets() -> int:
    """How many sockets this process has open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # the directory's own descriptor, gone
    return count


async def test_aclose_leaves_no_socket_and_no_task(redis_server: RedisServer, redis_url: str) -> None:
    tasks, sockets = asyncio.all_tasks(), _sockets()
    proxy = FaultProxy("127.0.0.1", redis_server.port)
    await proxy.start()
    proxy.inject("GET", Stall())
    proxy.inject("SET", HugeLength())
    clients = [await Raw.open(proxy.port, _db(redis_url)) for _ in range(3)]
    clients[0].send("GET", "k")
    clients[1].send("SET", "k", "v")
    clients[2].send("BLPOP", "nothing", 0)
    await clients[1].raw(5)
    # the listener, 3 clients, their 3 ends in the proxy, 3 upstream
    assert proxy.open_connections == 3 and _sockets() == sockets + 10
    await proxy.aclose()
    assert [await c.until_eof() for c in clients[:1] + clients[2:]] == [b"", b""]
    for c in clients:
        await c.aclose()
    assert asyncio.all_tasks() == tasks and proxy.open_connections == 0 and proxy.errors == []
    assert _sockets() == sockets
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", proxy.port)


async def test_when_the_server_dies_what_it_answered_arrives_then_clients_are_closed() -> None:
    server = RedisServer()
    server.start()
    try:
        async with FaultProxy("127.0.0.1", server.port) as proxy:
            proxy.inject("GET", Stall())
            proxy.inject("ECHO", Drip(delay=0.01))
            stalled, dying = [Raw(*await asyncio.open_connection("127.0.0.1", proxy.port)) for _ in range(2)]
            stalled.send("GET", "k")
            await _eventually(lambda: "GET" in proxy.commands)
            dying.send("ECHO", "first")
            assert await dying.raw(1) == b"$"  # the reply has reached the proxy, which drips it
            direct = Raw(*await asyncio.open_connection("127.0.0.1", server.port))
            direct.send("SHUTDOWN", "NOSAVE")
            assert await direct.until_eof() == b""
            await direct.aclose()
            assert await dying.raw(10) == b"5\r\nfirst\r\n"  # all of it, after the server died
            for client in (dying, stalled):
                with pytest.raises(ConnectionError):
                    await client.reply()
                await client.aclose()
            await _eventually(lambda: proxy.open_connections == 0)
    finally:
        server.cleanup()

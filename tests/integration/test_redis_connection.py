"""The Redis connection layer (`transports.redis.connection`) against a real server, and
through a proxy that corrupts chosen answers: outage replies waited out, refusals
raised, malformed answers dropped and tried once more, never a hang, never unbounded
memory; the hiredis protocol fed one byte at a time."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis_faults import Cut, Drip, ErrorReply, FaultProxy, HugeLength, Malformed, Stall
from redis_server import RedisServer
from worker_processes import wait_for

from graflow_async.exceptions import TransportError
from graflow_async.transports.redis import MalformedReply, Refused
from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.transports.redis.errors import ReplyError, Unavailable, error_code
from graflow_async.transports.redis.protocol import LeanConnection

PATHS = ["lean", "redis-py"]


@pytest.fixture(params=PATHS)
async def conn(request: pytest.FixtureRequest, fault_proxy: FaultProxy) -> AsyncIterator[RedisConnection]:
    """A connection through the proxy, on the lean path or on redis-py's (a given client)."""
    url = fault_proxy.url(3)
    client = Redis.from_url(url, protocol=2) if request.param == "redis-py" else None
    connection = RedisConnection(url, client=client, connect_timeout=2.0, op_timeout=1.0)
    assert connection.hot_path == request.param
    await connection.call("FLUSHDB")
    try:
        yield connection
    finally:
        await connection.aclose()
        if client is not None:
            await client.aclose()


# --- the protocol, without a server --------------------------------------------------------------
class FakeSocket:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


REPLIES = (
    b"+OK\r\n"
    b":-42\r\n"
    b"$5\r\nhello\r\n"
    b"$-1\r\n"
    b"*-1\r\n"
    b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    b"*2\r\n*2\r\n$9\r\ns:replies\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nm\r\n$3\r\n\x81\xa1t\r\n:7\r\n"
    b"$0\r\n\r\n"
)
EXPECTED = [b"OK", -42, b"hello", None, None, "WRONGTYPE", [[b"s:replies", [[b"1-0", [b"m", b"\x81\xa1t"]]]], 7], b""]


async def _fed(chunks: list[bytes]) -> list[Any]:
    connection = LeanConnection()
    connection.connection_made(FakeSocket())  # type: ignore[arg-type]
    futures = connection.send([("PING",)] * len(EXPECTED), 5.0)
    for chunk in chunks:
        connection.data_received(chunk)
    answers = [f.result() for f in futures]
    return [error_code(str(a)) if isinstance(a, ReplyError) else a for a in answers]


async def test_the_parser_takes_answers_one_byte_at_a_time() -> None:
    assert await _fed([REPLIES[i : i + 1] for i in range(len(REPLIES))]) == EXPECTED


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(REPLIES) - 1), max_size=20))
def test_the_parser_takes_answers_cut_anywhere(cuts: list[int]) -> None:
    points = [0, *sorted(set(cuts)), len(REPLIES)]
    chunks = [REPLIES[a:b] for a, b in itertools.pairwise(points)]
    assert asyncio.run(_fed(chunks)) == EXPECTED


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"!garbage\r\n", "not a reply"),
        (b"$abc\r\n", "not a reply"),
        (b"*-5\r\n", "not a reply"),
        (b"$99999999999\r\n" + b"x" * 5000, "over 4096 bytes"),
        (b"*100\r\n" + (b"$500\r\n" + b"y" * 500 + b"\r\n") * 10, "over 4096 bytes"),
    ],
)
async def test_garbage_and_endless_answers_break_the_connection(data: bytes, why: str) -> None:
    connection = LeanConnection(max_reply_bytes=4096)
    socket = FakeSocket()
    connection.connection_made(socket)  # type: ignore[arg-type]
    [future] = connection.send([("GET", "k")], 5.0)
    for i in range(0, len(data), 7):  # in small pieces, as a slow peer would send it
        connection.data_received(data[i : i + 7])
        if future.done():
            break
    with pytest.raises(MalformedReply, match=why):
        future.result()
    assert connection.broken and socket.closed
    with pytest.raises(Unavailable):
        connection.send([("PING",)], 5.0)


async def test_an_answer_nobody_asked_for_breaks_the_connection() -> None:
    connection = LeanConnection()
    connection.connection_made(FakeSocket())  # type: ignore[arg-type]
    [future] = connection.send([("PING",)], 5.0)
    connection.data_received(b"+PONG\r\n+EXTRA\r\n")
    assert future.result() == b"PONG"
    assert connection.broken


def test_nesting_is_bounded_by_the_parser() -> None:
    reader = hiredis.Reader(protocolError=MalformedReply, replyError=ReplyError)
    reader.feed(b"*1\r\n" * 100_000 + b":1\r\n")
    with pytest.raises(MalformedReply, match="nesting"):
        reader.gets()


# --- the rules, through the proxy --------------------------------------------------------------------
@pytest.mark.parametrize("code", ["LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY"])
async def test_outage_replies_are_waited_out_and_the_command_sent_again(
    conn: RedisConnection, fault_proxy: FaultProxy, code: str
) -> None:
    rule = fault_proxy.inject("SET", ErrorReply(f"{code} try later"), times=3)
    assert await conn.call("SET", "k", "v") == b"OK"
    assert rule.applied == 3
    assert await conn.call("GET", "k") == b"v"


@pytest.mark.parametrize(
    "text",
    [
        "OOM command not allowed when used memory > 'maxmemory'.",
        "NOPERM no rights",
        "ERR syntax error",
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "MISCONF cannot persist",
    ],
)
async def test_a_refusal_goes_to_the_sender_at_once_naming_it(
    conn: RedisConnection, fault_proxy: FaultProxy, text: str
) -> None:
    rule = fault_proxy.inject("SET", ErrorReply(text), times=None)
    with pytest.raises(Refused) as caught:
        await conn.call("SET", "k", "v")
    assert rule.applied == 1  # not sent again: the answer would be the same
    assert caught.value.code == text.split()[0] and caught.value.command == "SET"
    assert text.split()[0] in str(caught.value) and conn.url in str(caught.value)


async def test_one_malformed_answer_is_forgiven_two_are_not(conn: RedisConnection, fault_proxy: FaultProxy) -> None:
    fault_proxy.inject("GET", Malformed(), times=1)
    await conn.call("SET", "k", "v")
    assert await conn.call("GET", "k") == b"v"  # on a fresh connection
    fault_proxy.inject("GET", Malformed(b"*2\r\n:1\r\n?nonsense\r\n"), times=2)
    with pytest.raises(MalformedReply):
        await conn.call("GET", "k")
    assert await conn.call("GET", "k") == b"v"  # and the layer goes on


@pytest.mark.parametrize("fault", [Cut(), Stall(), Drip(delay=0.4), HugeLength()], ids=lambda f: type(f).__name__)
async def test_a_cut_a_stall_a_drip_or_an_endless_answer_is_retried_within_the_op_timeout(
    conn: RedisConnection, fault_proxy: FaultProxy, fault: Any
) -> None:
    await conn.call("SET", "k", "value")
    rule = fault_proxy.inject("GET", fault, times=1)
    async with asyncio.timeout(5):
        assert await conn.call("GET", "k") == b"value"
    assert rule.applied == 1


async def test_a_pipeline_sends_again_only_what_did_not_take_effect(
    conn: RedisConnection, fault_proxy: FaultProxy
) -> None:
    fault_proxy.inject("XADD", ErrorReply("LOADING not yet"), times=2, match=lambda args: args[0] == b"s2")
    answers = await conn.pipeline([("XADD", s, "*", "m", "1") for s in ("s1", "s2", "s3")])
    assert all(isinstance(a, bytes) for a in answers)
    assert [await conn.call("XLEN", s) for s in ("s1", "s2", "s3")] == [1, 1, 1]  # each exactly once


async def test_a_refusal_in_a_pipeline_stays_in_its_place(conn: RedisConnection, fault_proxy: FaultProxy) -> None:
    fault_proxy.inject("XADD", ErrorReply("OOM full"), times=1, match=lambda args: args[0] == b"s2")
    first, second, third = await conn.pipeline([("XADD", s, "*", "m", "1") for s in ("s1", "s2", "s3")])
    assert isinstance(first, bytes) and isinstance(third, bytes)
    assert isinstance(second, Refused) and second.code == "OOM"


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    conn: RedisConnection, fault_proxy: FaultProxy, log_capture: list[dict[str, Any]]
) -> None:
    fault_proxy.inject("SET", ErrorReply("LOADING wait"), times=6)
    await conn.call("SET", "k", "v")
    lines = [e["event"] for e in log_capture if "redis" in e["event"]]
    assert lines == ["redis unavailable; waiting and retrying", "redis is back"], lines


async def test_closing_ends_the_wait_of_a_command_in_an_outage(conn: RedisConnection, fault_proxy: FaultProxy) -> None:
    outage = fault_proxy.inject("SET", ErrorReply("LOADING forever"), times=None)
    waiting = asyncio.ensure_future(conn.call("SET", "k", "v"))
    await wait_for(lambda: outage.applied >= 2, 5, "the SET to be refused and sent again")  # waiting it out
    await conn.aclose()
    with pytest.raises(TransportError, match="closed"):
        await asyncio.wait_for(waiting, 3)


async def test_the_first_contact_fails_fast_naming_the_url() -> None:
    server = RedisServer()  # never started: nothing listens on its port
    conn = RedisConnection(f"redis://127.0.0.1:{server.port}/0", connect_timeout=0.5)
    try:
        with pytest.raises(TransportError, match=f"cannot reach Redis at redis://127.0.0.1:{server.port}/0"):
            await conn.call("PING")
    finally:
        await conn.aclose()
        server.cleanup()


# --- redis-py's path on a real server ------------------------------------------------------------
async def test_execute_on_pool_answers_each_command_in_place_and_keeps_the_connection_usable(
    redis_url: str,
) -> None:
    from redis.asyncio import BlockingConnectionPool, Redis

    from graflow_async.transports.redis.errors import ReplyError
    from graflow_async.transports.redis.redispy import execute_on_pool

    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1)
    client = Redis.from_pool(pool)
    try:
        await client.set("not-a-stream", "x")
        answers = await execute_on_pool(
            pool,
            [
                ("XADD", "batch:s", "*", "m", b"1"),
                ("XADD", "not-a-stream", "*", "m", b"2"),  # WRONGTYPE: an error in its place
                ("XADD", "batch:absent", "NOMKSTREAM", "*", "m", b"3"),  # no stream made: nil
            ],
        )
        assert isinstance(answers[0], bytes) and answers[2] is None
        assert isinstance(answers[1], ReplyError) and str(answers[1]).startswith("WRONGTYPE")
        assert await client.xlen("batch:s") == 1 and not await client.exists("batch:absent")
        entry = answers[0]
        assert await execute_on_pool(pool, [("XACK", "batch:s", "nobody", entry), ("XDEL", "batch:s", entry)]) == [0, 1]
    finally:
        await client.delete("not-a-stream", "batch:s")
        await client.aclose()


# --- a real server at maxmemory ------------------------------------------------------------------------
async def test_under_maxmemory_a_reply_and_its_ack_take_effect_together_or_not_at_all() -> None:
    """Redis refuses the XADD of a reply under maxmemory (noeviction) but would take the XACK
    that follows it: in a transaction neither takes effect, and the task stays pending."""
    server = RedisServer()
    server.start()
    conn = RedisConnection(server.url, connect_timeout=2.0)
    try:
        await conn.call("XGROUP", "CREATE", "tasks", "g", "0", "MKSTREAM")
        task = await conn.call("XADD", "tasks", "*", "m", "t")
        await conn.call("XREADGROUP", "GROUP", "g", "c", "COUNT", 1, "STREAMS", "tasks", ">")
        await conn.call("SET", "ballast", b"x" * 1_000_000)
        used = int(
            dict(line.split(":", 1) for line in (await conn.call("INFO", "memory")).decode().split() if ":" in line)[
                "used_memory"
            ]
        )
        await conn.call("CONFIG", "SET", "maxmemory", used + 10_000)
        with pytest.raises(Refused) as caught:
            await conn.transaction(
                [("XADD", "replies", "*", "m", b"r" * 50_000), ("XACK", "tasks", "g", task), ("XDEL", "tasks", task)]
            )
        assert caught.value.code == "OOM" and "OOM" in str(caught.value)
        await conn.call("CONFIG", "SET", "maxmemory", 0)
        assert await conn.call("XLEN", "tasks") == 1  # not deleted
        pending = await conn.call("XPENDING", "tasks", "g")
        assert pending[0] == 1  # not acked: another worker will take it once its lease lapses
        assert await conn.call("EXISTS", "replies") == 0
    finally:
        await conn.aclose()
        server.cleanup()


async def test_a_late_answer_breaks_the_connection_by_its_watchdog() -> None:
    connection = LeanConnection()
    socket = FakeSocket()
    connection.connection_made(socket)  # type: ignore[arg-type]
    [early] = connection.send([("PING",)], 0.05)
    [late] = connection.send([("PING",)], 5.0)
    connection.data_received(b"+PONG\r\n")  # the first is answered in time
    assert early.result() == b"PONG"
    await asyncio.sleep(0.1)  # a window past the first deadline in which the second must not fail
    assert not late.done()  # its own deadline is 5 s away
    [due] = connection.send([("PING",)], 0.0)
    await asyncio.sleep(0.05)  # a window: the watchdog wakes for the oldest answer, which is not late...
    assert not late.done()
    connection2 = LeanConnection()
    connection2.connection_made(FakeSocket())  # type: ignore[arg-type]
    [stuck] = connection2.send([("PING",)], 0.05)
    await wait_for(stuck.done, 5, "the watchdog to fail the answer that is late")
    with pytest.raises(Unavailable, match="in time"):
        stuck.result()
    assert connection2.broken
    connection.close()
    for future in (late, due):
        with pytest.raises(Unavailable):
            future.result()

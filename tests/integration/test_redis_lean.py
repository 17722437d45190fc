"""The Redis transport's lean hot path (`transports.redis.lean`) against a real server:
answers matched to callers in order, callers that give up, dropped connections,
authentication and databases from the URL, and what it leaves to redis-py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import remote_flows
from redis.asyncio import Redis
from redis_faults import FaultProxy, Stall
from redis_server import RedisServer
from worker_processes import Workers, wait_for

from graflow_async import run, workflow
from graflow_async.exceptions import TransportError
from graflow_async.transports.redis import RedisStreamsTransport, Refused
from graflow_async.transports.redis.errors import ReplyError, Unavailable
from graflow_async.transports.redis.lean import LeanRedis
from graflow_async.transports.redis.replies import streams


def lean_for(url: str) -> LeanRedis | None:
    settings = LeanRedis.settings_for(url)
    return None if settings is None else LeanRedis(settings, connect_timeout=2.0)


def entries(answer: object) -> list[tuple[bytes, dict[bytes, object]]]:
    return [entry for found in streams(answer).values() for entry in found]


@pytest.fixture
async def lean(redis_url: str) -> AsyncIterator[LeanRedis]:
    found = lean_for(redis_url)
    assert found is not None
    try:
        yield found
    finally:
        await found.aclose()


async def _connections(client: Redis) -> list[dict[str, object]]:
    return [c for c in await client.client_list() if c["cmd"] != "client|list"]


async def _running(client: Redis, command: str) -> bool:
    """Whether a connection other than `client`'s is in `command` (a blocking one, waiting)."""
    return command in [c["cmd"] for c in await _connections(client)]


async def test_concurrent_callers_share_one_connection_and_each_gets_its_own_answers(
    lean: LeanRedis, client: Redis
) -> None:
    async def caller(i: int) -> list[object]:
        return await lean.execute([("SET", f"k{i}", i), ("GET", f"k{i}"), ("INCR", "counter")])

    answers = await asyncio.gather(*(caller(i) for i in range(200)))
    assert [a[1] for a in answers] == [str(i).encode() for i in range(200)]
    assert sorted(a[2] for a in answers) == list(range(1, 201))
    assert len(await _connections(client)) == 1


async def test_an_error_answer_takes_its_place_and_the_rest_are_answered(lean: LeanRedis) -> None:
    answers = await lean.execute([("SET", "s", "v"), ("INCR", "s"), ("GET", "s")])
    assert answers[0] == b"OK" and answers[2] == b"v"
    assert isinstance(answers[1], ReplyError)
    answer = await lean.blocking(("XREAD", "BLOCK", 10, "STREAMS", "s", "0"))
    assert isinstance(answer, ReplyError) and str(answer).startswith("WRONGTYPE")


async def test_a_caller_that_gives_up_leaves_the_next_answers_in_step(lean: LeanRedis, client: Redis) -> None:
    slow = asyncio.ensure_future(lean.execute([("BLPOP", "nothing", 0.3), ("ECHO", "lost")]))
    await wait_for(lambda: _running(client, "blpop"), 5, "the BLPOP to block on the server")
    slow.cancel()
    assert await lean.execute([("ECHO", "mine")]) == [b"mine"]


async def test_a_blocking_read_given_up_closes_its_connection(lean: LeanRedis, client: Redis) -> None:
    reader = asyncio.ensure_future(lean.blocking(("XREAD", "BLOCK", 5000, "STREAMS", "st", "$")))
    await wait_for(lambda: _running(client, "xread"), 5, "the XREAD to block on the server")
    assert [c["cmd"] for c in await _connections(client)] == ["xread"]
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    for _ in range(50):
        if not await _connections(client):
            break
        await asyncio.sleep(0.02)
    assert await _connections(client) == []
    await client.xadd("st", {b"m": b"1"})
    answer = await lean.blocking(("XREAD", "BLOCK", 1000, "STREAMS", "st", "0"))
    assert [fields for _, fields in entries(answer)] == [{b"m": b"1"}]


async def test_a_dropped_connection_fails_its_callers_and_the_next_call_reconnects(
    lean: LeanRedis, client: Redis
) -> None:
    assert await lean.execute([("PING",)]) == [b"PONG"]
    waiting = asyncio.ensure_future(lean.execute([("BLPOP", "nothing", 5)]))
    await wait_for(lambda: _running(client, "blpop"), 5, "the BLPOP to block on the server")
    [victim] = await _connections(client)
    await client.client_kill_filter(_id=victim["id"])
    with pytest.raises(Unavailable):
        await waiting
    assert await lean.execute([("ECHO", "again")]) == [b"again"]


async def test_a_password_and_a_database_come_from_the_url() -> None:
    server = RedisServer()
    server.start()
    try:
        admin = Redis.from_url(server.url)
        await admin.acl_setuser(
            "lean", enabled=True, passwords=["+s3cret"], keys=["*"], channels=["*"], commands=["+@all"]
        )
        lean = lean_for(f"redis://lean:s3cret@127.0.0.1:{server.port}/5")
        assert lean is not None
        try:
            await lean.execute([("SET", "where", "db5")])
        finally:
            await lean.aclose()
        async with Redis.from_url(server.db_url(5)) as check:
            assert await check.get("where") == b"db5"
        refused = lean_for(f"redis://lean:wrong@127.0.0.1:{server.port}/5")
        assert refused is not None
        with pytest.raises(Refused, match="WRONGPASS"):
            await refused.execute([("PING",)])
        await refused.aclose()
        with pytest.raises(TransportError, match="WRONGPASS") as caught:
            async with RedisStreamsTransport(f"redis://lean:wrong@127.0.0.1:{server.port}/5", connect_timeout=1):
                pass
        assert "lean:***@" in str(caught.value) and ":wrong@" not in str(caught.value)  # never the password
        await admin.aclose()
    finally:
        server.cleanup()


@pytest.mark.parametrize(
    "url",
    [
        "rediss://127.0.0.1:6390/0",
        "redis://127.0.0.1:6390/0?protocol=3",
        "redis://127.0.0.1:6390/0?socket_keepalive=true",
    ],
)
def test_what_it_does_not_speak_is_left_to_redis_py(url: str) -> None:
    assert LeanRedis.settings_for(url) is None


async def test_a_run_with_a_worker_on_a_unix_socket_url(tmp_path: Path) -> None:
    """The hot path over a unix socket and a database other than 0, end to end: the run
    and a worker process both on `unix://...?db=3`."""
    server = RedisServer(extra_args=["--unixsocket", "redis.sock", "--unixsocketperm", "700"])
    server.start()
    url = f"unix://{server.directory}/redis.sock?db=3"
    workers = Workers(url=url, logs=tmp_path)
    try:
        [worker] = workers.start(1)
        async with RedisStreamsTransport(url) as transport:
            assert transport.hot_path == "lean"
            with workflow("unix") as wf:
                remote_flows.where(task_id="a") >> remote_flows.where(task_id="b")
            result = await run(wf, transport=transport)
        assert result.results == {"a": worker.pid, "b": worker.pid}
        async with Redis.from_url(server.db_url(3)) as check:
            assert await check.exists("graflow:tasks") == 1
    finally:
        workers.close()
        server.cleanup()


async def test_a_blocking_connection_the_server_closed_while_idle_is_not_used_again(
    lean: LeanRedis, client: Redis
) -> None:
    assert await lean.blocking(("XREAD", "BLOCK", 10, "STREAMS", "idle", "0")) is None
    [idle] = await _connections(client)
    await client.client_kill_filter(_id=idle["id"])
    await wait_for(lambda: all(c.broken for c in lean._idle), 5, "the close to reach the idle connection")
    assert await lean.blocking(("XREAD", "BLOCK", 10, "STREAMS", "idle", "0")) is None


async def test_a_connection_still_opening_at_aclose_leaves_no_socket(fault_proxy: FaultProxy) -> None:
    fault_proxy.inject("SELECT", Stall(), times=None)  # the connection's set-up never ends
    lean = lean_for(fault_proxy.url(4))
    assert lean is not None
    shared = asyncio.ensure_future(lean.execute([("PING",)]))
    blocking = asyncio.ensure_future(lean.blocking(("XREAD", "BLOCK", 100, "STREAMS", "s", "0")))
    await wait_for(lambda: fault_proxy.open_connections == 2, 5, "both connections to be opening")
    await lean.aclose()
    for opening in (shared, blocking):
        with pytest.raises((TransportError, Unavailable, asyncio.CancelledError)):
            await asyncio.wait_for(opening, 2)
    await wait_for(lambda: fault_proxy.open_connections == 0, 2, "the sockets to be closed")

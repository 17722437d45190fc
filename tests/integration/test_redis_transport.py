"""The Redis Streams transport on a real redis-server, without workers (SPEC section 7).

The conformance kit runs over it in test_transports.py; runs on worker processes are
in test_workers.py. Here: what the transport itself promises (leases, reclaiming, dead
letters, no pickle, replies after a run), the checks before anything is dispatched,
an unreachable server, and ``queue-stats``.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import socket
import sys
import time
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import remote_flows
from redis.asyncio import Redis

from graflow_async import CoordinationBackend, TransportError, parallel, run, task, workflow
from graflow_async.exceptions import RemoteTaskError
from graflow_async.transports import keys
from graflow_async.transports.redis import RedisStreamsTransport
from graflow_async.wire.codec import packb
from graflow_async.wire.envelope import MalformedMessage, decode, encode
from graflow_async.wire.messages import TaskMessage, TaskReply

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def transport(redis_url: str) -> AsyncIterator[RedisStreamsTransport]:
    async with RedisStreamsTransport(redis_url, lease_timeout=1.0, max_deliveries=3, consumer="a") as t:
        yield t


def message(task_id: str = "t", **kwargs: Any) -> TaskMessage:
    return TaskMessage("run1", task_id, 0, 1, keys.reply_queue("run1"), {"x": 1}, None, "mod:fn", **kwargs)


# --- what travels -----------------------------------------------------------------------------------
async def test_tasks_carry_the_transports_lease_and_max_deliveries(
    transport: RedisStreamsTransport, client: Redis
) -> None:
    await transport.send("tasks", [message(), message("own", lease_timeout=7.0, max_deliveries=9)])
    entries = await client.xrange("graflow:tasks")
    sent = [decode(fields[b"m"]) for _, fields in entries]
    assert [(m.task_id, m.lease_timeout, m.max_deliveries) for m in sent] == [("t", 1.0, 3), ("own", 7.0, 9)]
    assert sent[0].kwargs == {"x": 1} and sent[0].task_ref == "mod:fn"


def test_a_remote_error_travels_as_type_message_and_traceback() -> None:
    try:
        raise ValueError("bad input")
    except ValueError as exc:
        error = exc
    reply = decode(encode(TaskReply("run1", 3, 2, False, None, error)))
    assert isinstance(reply.error, RemoteTaskError)
    assert (reply.error.type_name, reply.error.remote_message) == ("ValueError", "bad input")
    assert reply.error.traceback == "".join(traceback.format_exception(error))
    assert (reply.node, reply.attempt, reply.ok) == (3, 2, False)


def test_a_pickle_is_never_loaded(tmp_path: Path) -> None:
    trap = tmp_path / "unpickled"
    with pytest.raises(MalformedMessage):
        decode(pickle.dumps(remote_flows.Trap(trap)))
    assert not trap.exists()


# --- leases, reclaiming, dead letters ------------------------------------------------------------------
async def test_a_lapsed_claim_is_reclaimed_with_its_delivery_count(redis_url: str) -> None:
    async with (
        RedisStreamsTransport(redis_url, lease_timeout=1.0, consumer="dies") as first,
        RedisStreamsTransport(redis_url, lease_timeout=1.0, consumer="takes-over") as second,
    ):
        await first.send("tasks", [message()])
        [taken] = await first.receive("tasks", timeout=2)
        assert taken.delivery_count == 1
        assert await second.receive("tasks", timeout=0.3) == []  # claimed, lease not over
        start = time.monotonic()
        got: list[Any] = []
        while not got and time.monotonic() - start < 5:
            got = await second.receive("tasks", timeout=0.5)
        [again] = got
        assert (again.id, again.message, again.delivery_count) == (taken.id, taken.message, 2)
        assert 0.5 <= time.monotonic() - start <= 2.5
        await second.ack("tasks", [again])
        assert await first.receive("tasks", timeout=1.5) == []


async def test_a_late_heartbeat_does_not_take_back_a_reclaimed_entry(redis_url: str, client: Redis) -> None:
    """A worker cut off past its lease comes back and beats: the entry stays with the
    worker that reclaimed it (which is running it now)."""
    async with (
        RedisStreamsTransport(redis_url, lease_timeout=1.0, consumer="was-cut") as cut,
        RedisStreamsTransport(redis_url, lease_timeout=1.0, consumer="took-over") as other,
    ):
        await cut.send("tasks", [message()])
        [taken] = await cut.receive("tasks", timeout=2)
        got: list[Any] = []
        while not got:
            got = await other.receive("tasks", timeout=0.5)
        await cut.touch("tasks", [taken])  # its link is back
        [pending] = await client.xpending_range("graflow:tasks", "graflow:workers", "-", "+", 10)
        assert pending["consumer"] == b"took-over"


async def test_heartbeats_keep_a_claim(redis_url: str) -> None:
    async with (
        RedisStreamsTransport(redis_url, lease_timeout=1.0, consumer="alive") as first,
        RedisStreamsTransport(redis_url, lease_timeout=1.0, consumer="other") as second,
    ):
        await first.send("tasks", [message()])
        [taken] = await first.receive("tasks", timeout=2)
        for _ in range(5):  # 2 s, twice the lease
            await first.touch("tasks", [taken])
            assert await second.receive("tasks", timeout=0.4) == []


async def test_malformed_entries_go_to_the_dead_letter_stream(
    transport: RedisStreamsTransport, client: Redis, tmp_path: Path
) -> None:
    trap = tmp_path / "unpickled"
    raw = [os.urandom(32), pickle.dumps(remote_flows.Trap(trap)), packb({"t": "reply", "node": 1})]
    for data in raw:
        await client.xadd("graflow:tasks", {b"m": data})
    await transport.send("tasks", [message()])
    got = await transport.receive("tasks", timeout=2)
    assert [d.message.task_id for d in got] == ["t"]  # only the real one
    dead = await client.xrange("graflow:dead")
    assert [fields[b"m"] for _, fields in dead] == raw
    assert all(fields[b"queue"] == b"tasks" for _, fields in dead)
    assert b"not a msgpack envelope" in dead[0][1][b"reason"]
    assert b"malformed reply envelope" in dead[2][1][b"reason"]
    assert not trap.exists()
    info = await client.xinfo_groups("graflow:tasks")
    assert info[0]["pending"] == 1  # the dead ones were settled, the real one waits for its ack


# --- a run's keys ------------------------------------------------------------------------------------
async def test_a_reply_to_a_finished_run_leaves_nothing_behind(transport: RedisStreamsTransport, client: Redis) -> None:
    reply_queue = keys.reply_queue("gone")
    await transport.send(reply_queue, [TaskReply("gone", 0, 1, True, 42)])
    assert await client.exists(f"graflow:{reply_queue}") == 0


async def test_sending_tasks_makes_their_reply_stream_first(transport: RedisStreamsTransport, client: Redis) -> None:
    await transport.send("tasks", [message()])
    await transport.send(keys.reply_queue("run1"), [TaskReply("run1", 0, 1, True, 42)])
    [delivery] = await transport.receive(keys.reply_queue("run1"), timeout=2)
    assert delivery.message.value == 42
    await transport.discard(keys.reply_queue("run1"))
    assert await client.exists("graflow:run:{run1}:replies") == 0


# --- what cannot be sent fails before anything is --------------------------------------------------------
def _in_main() -> Any:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec("async def scripted():\n    return 1\n", namespace)
    return namespace["scripted"]


def _closure() -> Any:
    async def inner() -> int:
        return 1

    return inner


UNSENDABLE = {
    "lambda": (lambda: task(lambda: 1, id="anonymous"), "it is a lambda"),
    "closure": (lambda: task(_closure(), id="nested"), "it is defined inside a function (a closure)"),
    "__main__": (lambda: task(_in_main(), id="scripted"), "it is defined in __main__"),
}


@pytest.mark.parametrize("kind", list(UNSENDABLE))
async def test_a_task_workers_cannot_import_fails_before_dispatch(kind: str, redis_url: str, client: Redis) -> None:
    make, why = UNSENDABLE[kind]
    bad = make()
    with workflow(f"unsendable-{kind}") as wf:
        remote_flows.where >> bad
    async with RedisStreamsTransport(redis_url) as transport:
        with pytest.raises(TransportError) as info:
            async with asyncio.timeout(5):
                await run(wf, transport=transport)
    message = str(info.value)
    assert repr(bad.id) in message and why in message
    assert "import path" in message
    assert await client.keys("*") == []  # nothing was dispatched, not even `where`


async def test_a_redis_groups_members_are_checked_before_dispatch(redis_url: str, client: Redis) -> None:
    bad = task(lambda: 1, id="anonymous")
    with workflow("unsendable-group") as wf:
        local = remote_flows.where(task_id="local")
        local >> parallel(remote_flows.where(task_id="fine"), bad).with_execution(
            backend=CoordinationBackend.REDIS, backend_config={"redis_url": redis_url}
        )
    with pytest.raises(TransportError, match=r"'anonymous' cannot be sent to workers.*it is a lambda"):
        async with asyncio.timeout(5):
            await run(wf)
    assert await client.keys("*") == []


# --- an unreachable server ---------------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it any more


async def test_an_unreachable_server_fails_fast_naming_the_url() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    start = time.monotonic()
    with pytest.raises(TransportError, match=f"cannot reach Redis at {url}"):
        async with RedisStreamsTransport(url, connect_timeout=0.5):
            pass
    assert time.monotonic() - start < 1.5


async def test_a_run_on_an_unreachable_server_fails_fast_naming_the_url() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    with workflow("unreachable") as wf:
        wf.add(remote_flows.where)
    transport = RedisStreamsTransport(url, connect_timeout=0.5)
    start = time.monotonic()
    try:
        with pytest.raises(TransportError, match=f"cannot reach Redis at {url}"):
            async with asyncio.timeout(5):
                await run(wf, transport=transport)
    finally:
        await transport.aclose()
    assert time.monotonic() - start < 1.5


async def test_a_redis_group_on_an_unreachable_server_fails_fast() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    with workflow("unreachable-group") as wf:
        parallel(remote_flows.where(task_id="a"), remote_flows.where(task_id="b")).with_execution(
            backend="redis", backend_config={"redis_url": url}
        )
    start = time.monotonic()
    with pytest.raises(TransportError, match=f"cannot reach Redis at {url}"):
        async with asyncio.timeout(15):
            await run(wf)
    assert time.monotonic() - start < 6  # the group's transport uses the default 5 s connect timeout


# --- queue-stats ----------------------------------------------------------------------------------------------
async def queue_stats(redis_url: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graflow_async",
        "queue-stats",
        "--redis-url",
        redis_url,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_queue_stats_prints_lengths_pending_and_consumers(
    transport: RedisStreamsTransport, client: Redis, redis_url: str
) -> None:
    await transport.send("tasks", [message(f"t{i}") for i in range(3)])
    taken = await transport.receive("tasks", max_messages=1, timeout=2)  # consumer "a" holds one
    assert len(taken) == 1
    await client.xadd("graflow:tasks", {b"m": b"garbage"})
    async with RedisStreamsTransport(redis_url, consumer="b") as other:  # dead-letters the garbage
        assert len(await other.receive("tasks", max_messages=3, timeout=2)) == 2

    code, out, err = await queue_stats(redis_url, "--json")
    assert code == 0, err
    stats = json.loads(out)
    assert stats["stream"] == "graflow:tasks"
    assert stats["length"] == 3  # the garbage left the stream
    assert stats["pending"] == 3 and stats["lag"] == 0
    assert stats["dead_letters"] == 1
    assert sorted((c["name"], c["pending"]) for c in stats["consumers"]) == [("a", 1), ("b", 2)]
    assert all(c["idle_ms"] >= 0 for c in stats["consumers"])

    code, out, err = await queue_stats(redis_url)
    assert code == 0, err
    assert "stream graflow:tasks: 3 entries, 3 pending, 0 not yet delivered, 1 dead letters" in out
    assert "consumer a: 1 pending" in out and "consumer b: 2 pending" in out


async def test_queue_stats_of_an_empty_namespace(redis_url: str) -> None:
    code, out, err = await queue_stats(redis_url, "--json", "--namespace", "nothing-here")
    assert code == 0, err
    assert json.loads(out) == {
        "stream": "nothing-here:tasks",
        "length": 0,
        "pending": 0,
        "lag": 0,
        "consumers": [],
        "dead_letters": 0,
    }


async def test_queue_stats_on_an_unreachable_server_exits_1() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    code, _, err = await queue_stats(url)
    assert code == 1
    assert f"cannot reach Redis at {url}" in err
    assert "Traceback" not in err


async def test_two_hundred_runs_replies_are_read_on_one_blocking_connection(redis_url: str, client: Redis) -> None:
    async with RedisStreamsTransport(redis_url) as transport:
        queues = [f"run:r{i}:replies" for i in range(200)]
        inboxes = [transport.inbox(q) for q in queues]
        try:
            for i, q in enumerate(queues):
                await transport.send(q, [{"n": i}])
            got = await asyncio.gather(*(asyncio.wait_for(inbox.receive_batch(), 5) for inbox in inboxes))
            assert got == [[{"n": i}] for i in range(200)]
            readers = [c for c in await client.client_list() if c["cmd"] == "xread"]
            assert len(readers) == 1, readers
            late = transport.inbox("run:late:replies")  # joins while the read blocks: it is cut short
            started = time.monotonic()
            await transport.send("run:late:replies", [{"n": "late"}])
            assert await asyncio.wait_for(late.receive_batch(), 5) == [{"n": "late"}]
            assert time.monotonic() - started < 0.3
            late.close()
        finally:
            for inbox in inboxes:
                inbox.close()
        await transport.reader.settled()
        # no read blocks any more (a read that had just answered leaves an idle connection
        # whose last command was XREAD: CLIENT LIST's flag "b" tells a blocked one)
        deadline = time.monotonic() + 2
        while blocked := [c for c in await client.client_list() if c["cmd"] == "xread" and "b" in c["flags"]]:
            assert time.monotonic() < deadline, blocked
            await asyncio.sleep(0.02)

"""A Redis's worst night, with a run and two worker processes on it (SPEC section 7):
a restart that loads its data for seconds, maxmemory reached, CLIENT PAUSE, DEBUG
SLEEP, and a proxy answering the workers' or the run's commands with garbage, endless
lengths, error replies, drips, cut answers and writes that vanish. Each ends in a
completed run, or a `TransportError` naming what Redis refused, within the task lease
+ 10 s; no worker ever exits. A night (server and workers) goes on to the next test
when the test left it settled (`Nights`); the restart gets one of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import remote_faults
import remote_flows
from redis.asyncio import Redis
from redis_faults import Cut, Drip, ErrorReply, Fault, FaultProxy, HugeLength, Malformed, ProxyThread, Rule, Vanish
from redis_server import RedisServer
from worker_processes import Workers, background, wait_for

from graflow_async import parallel, run, workflow
from graflow_async.exceptions import TransportError
from graflow_async.transports.redis import RedisStreamsTransport

LEASE = 2.0  # the runs' task lease, in seconds: every fault must be over within LEASE + 10 s
BOUND = LEASE + 10.0


SETTLE = 1.0  # seconds a test's tasks may take to settle after it, or its night is not used again


@dataclass
class Night:
    """A redis-server of its own, two workers on it (through `proxy` when given)."""

    server: RedisServer
    workers: Workers
    proxy: ProxyThread | None = None

    def inject(self, command: str, fault: Fault, *, times: int) -> Rule:
        """A rule in the workers' proxy (added on the proxy's loop)."""
        assert self.proxy is not None
        rule: Rule = self.proxy.call(self.proxy.proxy.inject, command, fault, times=times)
        return rule

    def alive(self) -> None:
        for w in self.workers.all:
            assert w.process.poll() is None, f"worker {w.worker_id} exited:\n{w.output()}"

    def settled(self, timeout: float) -> bool:
        """Whether, within `timeout`, the server takes no memory limit and every task queued
        has been settled (the stream empty, nothing taken from it waiting for an ack), as
        on a night just begun."""
        client = redis.Redis.from_url(self.server.url)
        try:
            client.config_set("maxmemory", 0)
            deadline = time.monotonic() + timeout
            while not _queue_settled(client):
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
            return True
        finally:
            client.close()

    def close(self) -> None:
        try:
            self.workers.close()
            if self.proxy is not None:
                self.proxy.close()
                assert self.proxy.proxy.errors == []
        finally:
            self.server.cleanup()


def _queue_settled(client: redis.Redis) -> bool:
    try:
        groups = client.xinfo_groups("graflow:tasks")
    except redis.ResponseError:  # no stream yet
        return True
    return client.xlen("graflow:tasks") == 0 and all(g["pending"] == 0 for g in groups)


def begin_night(logs: Path, *, proxied: bool = False) -> Night:
    """A server (append-only, DEBUG allowed) and two workers on it, through a fault proxy
    (on a thread of its own) when `proxied`; runs reach the server directly."""
    server = RedisServer(appendonly=True, extra_args=["--enable-debug-command", "yes"])
    night = Night(server, Workers(server.url, logs))
    try:
        server.start()
        if proxied:
            night.proxy = ProxyThread("127.0.0.1", server.port)
            night.workers.url = night.proxy.start().url()
        night.workers.start(2, "--concurrency", "4")
    except BaseException:
        night.close()
        raise
    return night


class Nights:
    """The nights of this module's tests, kept for the next test once a test's tasks have
    settled: starting a server and two workers cost more than most tests here take. A test
    begins with workers alive, a proxy without rules and nothing queued, as on a new night."""

    def __init__(self, logs: pytest.TempPathFactory) -> None:
        self.logs = logs
        self.kept: dict[bool, Night] = {}

    def take(self, *, proxied: bool) -> Night:
        night = self.kept.pop(proxied, None)
        if night is None:
            night = begin_night(self.logs.mktemp("night"), proxied=proxied)
        night.alive()
        return night

    def give_back(self, night: Night) -> None:
        proxied = night.proxy is not None
        try:
            if night.proxy is not None:
                night.proxy.call(night.proxy.proxy.clear)
                assert night.proxy.proxy.errors == []
            keep = night.settled(SETTLE) and all(w.process.poll() is None for w in night.workers.all)
        except BaseException:
            night.close()
            raise
        if keep:
            self.kept[proxied] = night
        else:
            night.close()

    def close(self) -> None:
        while self.kept:
            self.kept.popitem()[1].close()


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nights]:
    kept = Nights(tmp_path_factory)
    try:
        yield kept
    finally:
        kept.close()


@pytest.fixture
def night(nights: Nights) -> Iterator[Night]:
    night = nights.take(proxied=False)
    yield night
    nights.give_back(night)


@pytest.fixture
def own_night(tmp_path: Path) -> Iterator[Night]:
    """A night of this test alone (it leaves its server loaded with data)."""
    night = begin_night(tmp_path)
    try:
        yield night
    finally:
        night.close()


@pytest.fixture
def proxied_workers(nights: Nights) -> Iterator[Night]:
    """Two workers that reach Redis through a fault proxy; runs reach it directly."""
    night = nights.take(proxied=True)
    yield night
    nights.give_back(night)


async def completed(url: str, wf: Any, bound: float = BOUND) -> Any:
    started = time.monotonic()
    async with RedisStreamsTransport(url, lease_timeout=LEASE) as transport, asyncio.timeout(bound):
        result = await run(wf, transport=transport)
    assert result.status == "completed"
    return time.monotonic() - started


def steps(n: int, seconds: float = 0.1) -> Any:
    return remote_flows.counting(n, seconds)


def completed_steps(events: list[Any]) -> int:
    return sum(e.kind == "task_completed" for e in events)


async def delivered(url: str, count: int) -> bool:
    """Whether the workers have taken `count` tasks (pending in their group)."""
    async with Redis.from_url(url) as probe:
        groups = await probe.xinfo_groups("graflow:tasks")
    return sum(g["pending"] for g in groups) >= count


# --- a real server -------------------------------------------------------------------------------------
async def test_a_restart_that_loads_for_seconds_is_waited_out(own_night: Night) -> None:
    night = own_night
    server = night.server
    admin = Redis.from_url(server.url)
    try:
        await admin.execute_command("DEBUG", "POPULATE", 3_000_000)
        await admin.bgrewriteaof()
        while (await admin.info("persistence"))["aof_rewrite_in_progress"]:
            await asyncio.sleep(0.1)
    finally:
        await admin.aclose()
    events: list[Any] = []
    async with (
        RedisStreamsTransport(server.url, lease_timeout=LEASE) as transport,
        background(run(steps(12, 0.15), transport=transport, on_event=events.append)) as running,
    ):
        await wait_for(lambda: completed_steps(events) >= 2, 10, "two steps to complete")
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start, loaded=False)
        loading = await _loading_seen(server)
        async with asyncio.timeout(BOUND + 5):
            result = await running
    assert loading, "the restart should have answered LOADING for a while"
    assert result.channel == {"count": 12}
    night.alive()
    for w in night.workers.all:  # one line when it began, one when it ended: not one per attempt
        assert w.output().count("unavailable; waiting and retrying") <= 3, w.output()


async def _loading_seen(server: RedisServer) -> bool:
    probe = Redis.from_url(server.url, protocol=2)
    try:
        await probe.ping()
        return False
    except Exception as exc:
        return "loading" in str(exc).lower()
    finally:
        await probe.aclose()


async def test_maxmemory_refusing_the_runs_writes_fails_it_naming_oom(night: Night) -> None:
    """400 tasks of 20 KB against a 3 MB limit: the run's XADDs are refused."""
    async with RedisStreamsTransport(night.server.url, lease_timeout=LEASE) as transport:
        await transport.conn.call("CONFIG", "SET", "maxmemory", 3 * 1024 * 1024)
        await transport.conn.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
        with workflow("heavy") as wf:
            wf.add(*(remote_faults.carry(task_id=f"c{i}", data=b"x" * 20_000, index=i) for i in range(400)))
        started = time.monotonic()
        with pytest.raises(TransportError, match="OOM"):
            async with asyncio.timeout(BOUND):
                await run(wf, transport=transport)
        assert time.monotonic() - started < BOUND
        await transport.conn.call("CONFIG", "SET", "maxmemory", 0)
    night.alive()
    await completed(night.server.url, steps(3))  # the same workers serve the next run


async def test_maxmemory_reached_mid_run_ends_it_within_the_bound(night: Night) -> None:
    """The limit falls while the tasks run: their 200 KB replies are refused on the workers;
    the run, waiting past its tasks' lease, finds Redis refusing writes and fails naming OOM."""
    async with RedisStreamsTransport(night.server.url, lease_timeout=LEASE) as transport:
        with workflow("big-replies") as wf:
            wf.add(*(remote_faults.blob(task_id=f"b{i}", size=200_000, index=i, seconds=0.5) for i in range(6)))
        async with background(run(wf, transport=transport)) as running:
            await wait_for(lambda: delivered(night.server.url, 6), 10, "the workers to take the six tasks")
            await transport.conn.call("CONFIG", "SET", "maxmemory", 1)
            started = time.monotonic()
            with pytest.raises(TransportError, match="OOM"):
                async with asyncio.timeout(BOUND + 2):
                    await running
            assert time.monotonic() - started < BOUND + 1
        await transport.conn.call("CONFIG", "SET", "maxmemory", 0)
    night.alive()
    await completed(night.server.url, steps(3))


@pytest.mark.parametrize(
    "command", [("CLIENT", "PAUSE", 2000, "ALL"), ("DEBUG", "SLEEP", 2)], ids=["client-pause", "debug-sleep"]
)
async def test_a_server_that_stops_answering_for_seconds_is_waited_out(night: Night, command: tuple[Any]) -> None:
    events: list[Any] = []
    async with RedisStreamsTransport(night.server.url, lease_timeout=LEASE) as transport:
        async with background(run(steps(10, 0.1), transport=transport, on_event=events.append)) as running:
            await wait_for(lambda: completed_steps(events) >= 2, 10, "two steps to complete")
            admin = Redis.from_url(night.server.url)
            try:
                await admin.execute_command(*command)
            finally:
                await admin.aclose()
            async with asyncio.timeout(BOUND):
                result = await running
    assert result.channel == {"count": 10}
    night.alive()


# --- a proxy that lies to the workers ---------------------------------------------------------------------
WORKER_FAULTS: list[tuple[str, Fault, int]] = [
    ("XREADGROUP", Malformed(), 2),
    ("XREADGROUP", Malformed(b"*1\r\n*2\r\n$1\r\nx\r\n:5\r\n"), 2),  # RESP, but not an XREADGROUP answer
    ("XREADGROUP", HugeLength(), 1),
    ("XREADGROUP", ErrorReply("ERR unknown trouble"), 3),
    ("XREADGROUP", ErrorReply("READONLY You can't write against a read only replica."), 3),
    ("XREADGROUP", ErrorReply("LOADING Redis is loading the dataset in memory"), 3),
    ("XREADGROUP", Cut(), 2),
    ("EXEC", Cut(), 1),
    ("EXEC", Drip(delay=0.01), 2),
    ("XPENDING", Malformed(), 3),
]


@pytest.mark.parametrize(
    ("command", "fault", "times"),
    WORKER_FAULTS,
    ids=[f"{c}-{type(f).__name__}-{i}" for i, (c, f, _) in enumerate(WORKER_FAULTS)],
)
async def test_a_worker_survives_what_redis_answers_its_commands(
    proxied_workers: Night, command: str, fault: Fault, times: int
) -> None:
    rule = proxied_workers.inject(command, fault, times=times)
    await completed(proxied_workers.server.url, steps(8, 0.05), bound=BOUND + 10)  # + a 10 s op timeout
    assert rule.applied >= 1, f"the fault on {command} never fired"
    proxied_workers.alive()


# --- a proxy that lies to the run ---------------------------------------------------------------------------
@pytest.fixture
async def run_proxy(night: Night) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", night.server.port) as proxy:
        yield proxy
    assert proxy.errors == []


RUN_FAULTS: list[tuple[str, Fault, int]] = [
    ("XREAD", Malformed(), 1),
    ("XREAD", Cut(), 2),
    ("XREAD", HugeLength(), 1),
    ("XADD", ErrorReply("LOADING Redis is loading the dataset in memory"), 3),
    ("XADD", ErrorReply("READONLY You can't write against a read only replica."), 3),
    ("XADD", Drip(delay=0.005), 3),
    ("XADD", Vanish(), 2),
    ("XGROUP", Malformed(), 1),
]


@pytest.mark.parametrize(
    ("command", "fault", "times"),
    RUN_FAULTS,
    ids=[f"{c}-{type(f).__name__}-{i}" for i, (c, f, _) in enumerate(RUN_FAULTS)],
)
async def test_a_run_survives_transient_faults_on_its_commands(
    night: Night, run_proxy: FaultProxy, command: str, fault: Fault, times: int
) -> None:
    rule = run_proxy.inject(
        command, fault, times=times, match=(lambda args: args[0].endswith(b":tasks")) if command == "XADD" else None
    )
    with workflow("fanned") as wf:
        remote_flows.nap(task_id="first", seconds=0.05) >> parallel(
            *(remote_flows.nap(task_id=f"n{i}", seconds=0.05) for i in range(4))
        )
    elapsed = await completed(run_proxy.url(), wf, bound=BOUND + 10)  # + a 10 s op timeout
    assert rule.applied >= 1
    night.alive()
    if isinstance(fault, Vanish):
        assert elapsed < BOUND  # noticed once the lease had passed, and sent again


@pytest.mark.parametrize(
    ("command", "fault", "match"),
    [
        ("XADD", ErrorReply("ERR max allowed stream length exceeded"), "ERR max allowed"),
        ("XADD", ErrorReply("NOPERM this user has no permissions to run the 'xadd' command"), "NOPERM"),
        ("XREAD", Malformed(), "not a reply"),
    ],
    ids=["xadd-err", "xadd-noperm", "xread-always-malformed"],
)
async def test_a_run_fails_with_a_clear_transport_error_on_what_persists(
    night: Night, run_proxy: FaultProxy, command: str, fault: Fault, match: str
) -> None:
    run_proxy.inject(
        command, fault, times=None, match=(lambda args: args[0].endswith(b":tasks")) if command == "XADD" else None
    )
    started = time.monotonic()
    with pytest.raises(TransportError, match=match):
        async with RedisStreamsTransport(run_proxy.url(), lease_timeout=LEASE) as transport, asyncio.timeout(BOUND):
            await run(steps(3), transport=transport)
    assert time.monotonic() - started < BOUND
    night.alive()

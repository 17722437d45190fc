"""Streams from running tasks (SPEC 12): in-process, the stream lives with the run; on
Redis, tasks on real worker processes append to a stream of the run on a real
redis-server, which another process reads while the run goes on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import stream_flows as flows
from worker_processes import PYTHONPATH, RUN_TIMEOUT, Workers

from graflow_async import StreamItem, TaskFailedError, run, run_stream
from graflow_async.run import streams
from graflow_async.transports.redis import RedisStreamsTransport

pytestmark = pytest.mark.xdist_group("streams")


async def read_all(run_id: str, **kwargs: Any) -> list[StreamItem]:
    return [item async for item in run_stream(run_id, **kwargs)]


async def started(run_id: str, wf: Any, **kwargs: Any) -> asyncio.Task[Any]:
    """`wf` running as `run_id` in the background, its stream open by the time this returns."""
    running = asyncio.create_task(run(wf, run_id=run_id, **kwargs))
    while streams.local_streams().find(run_id) is None:
        await asyncio.sleep(0)
    return running


# --- in-process ------------------------------------------------------------------------------
async def test_a_reader_gets_each_task_s_chunks_in_order_while_several_stream_at_once() -> None:
    running = await started("duet", flows.duet_wf(300))
    items = await read_all("duet")
    await running
    for side in ("left", "right"):
        mine = [i for i in items if i.task_id == side]
        assert [i.data for i in mine] == [f"{side[0].upper()}{n}" for n in range(300)]
        assert {i.attempt for i in mine} == {1}
    ids = [int(i.id) for i in items]
    assert ids == sorted(ids) == list(range(1, 601))
    tasks = [i.task_id for i in items]
    assert tasks.index("right") < tasks.index("left", 100)  # interleaved, not one after the other


async def test_a_retried_attempt_s_chunks_are_kept_and_told_apart() -> None:
    result = await run(flows.flaky_wf(), run_id="flaky-stream")
    assert result.output == "ok"
    items = await read_all("flaky-stream")  # after the end: the stream is still there, then ends
    assert [(i.attempt, i.data["part"]) for i in items] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all(i.data["attempt"] == i.attempt for i in items)


async def test_after_resumes_past_an_item_and_a_slow_reader_is_told_what_it_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await run(flows.talk_wf(100), run_id="resumable")
    tail = await read_all("resumable", after="90")
    assert [i.data for i in tail] == [f"tok{n}" for n in range(90, 100)] and tail[0].missed == 0
    monkeypatch.setattr(streams, "CAP", 50)  # kept: the newest 50
    await run(flows.talk_wf(120), run_id="capped")
    items = await read_all("capped")
    assert len(items) == 50 and items[0].id == "71" and items[0].missed == 70
    assert [i.missed for i in items[1:]] == [0] * 49
    with pytest.raises(LookupError, match="nowhere"):
        await read_all("nowhere")


async def test_a_chunk_that_cannot_be_kept_fails_its_task() -> None:
    with pytest.raises(TaskFailedError, match="bad_chunk") as info:
        await run(flows.bad_wf())
    assert isinstance(info.value.__cause__, TypeError) and "object" in str(info.value.__cause__)


# --- on Redis workers ----------------------------------------------------------------------------
async def test_chunks_from_a_worker_reach_a_reader_in_another_connection_in_order(
    workers: Workers, redis_url: str
) -> None:
    workers.start(1, "--import", "stream_flows")
    async with RedisStreamsTransport(redis_url) as driving, RedisStreamsTransport(redis_url) as reading:
        running = asyncio.create_task(run(flows.duet_wf(2000), run_id="remote-duet", transport=driving))
        async with asyncio.timeout(RUN_TIMEOUT):
            items = await read_all("remote-duet", transport=reading)
            await running
        for side in ("left", "right"):
            assert [i.data for i in items if i.task_id == side] == [f"{side[0].upper()}{n}" for n in range(2000)]
        middle = items[1500].id
        async with asyncio.timeout(RUN_TIMEOUT):
            rest = await read_all("remote-duet", transport=reading, after=middle)
        assert rest == items[1501:]
        with pytest.raises(TaskFailedError, match="bad_chunk"):
            await asyncio.wait_for(run(flows.bad_wf(), transport=driving), RUN_TIMEOUT)


# --- from another process, through the handler's relay -----------------------------------------------
async def test_a_task_in_another_process_streams_through_its_handler_and_a_forged_chunk_is_refused() -> None:
    running = await started("far", flows.elsewhere_wf(30))
    items = await read_all("far")
    assert (await running).output == 30
    assert [i.data for i in items] == [f"far{n}" for n in range(30)] and {i.task_id for i in items} == {"far"}
    with pytest.raises(TaskFailedError, match="forged_chunk") as info:  # refused by the relay: the task fails
        await run(flows.forged_wf())
    assert "larger than" in str(info.value)


async def test_on_redis_a_reader_that_fell_behind_the_cap_is_told_how_many_it_missed(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graflow_async.transports.redis import streams as redis_streams

    monkeypatch.setattr(redis_streams, "CAP", 100)  # about 100 kept (trimmed a node at a time)
    async with RedisStreamsTransport(redis_url) as transport:
        for start in range(0, 1000, 50):
            await transport.stream_append("capped", [("t", 1, n) for n in range(start, start + 50)])
        await transport.stream_end("capped")
        items = await read_all("capped", transport=transport)
        assert 100 <= len(items) < 1000 and [i.data for i in items] == list(range(1000 - len(items), 1000))
        assert items[0].missed == 1000 - len(items) and all(i.missed == 0 for i in items[1:])
        tail = await read_all("capped", transport=transport, after=items[-3].id)
        assert [i.data for i in tail] == [998, 999] and tail[0].missed == 0


async def test_a_reader_slower_than_the_writer_holds_nothing_up(workers: Workers, redis_url: str) -> None:
    workers.start(1, "--import", "stream_flows")
    async with RedisStreamsTransport(redis_url) as driving, RedisStreamsTransport(redis_url) as reading:
        running = asyncio.create_task(run(flows.talk_wf(5000), run_id="slow-reader", transport=driving))
        got: list[StreamItem] = []
        async with asyncio.timeout(RUN_TIMEOUT):
            async for item in run_stream("slow-reader", transport=reading):
                got.append(item)
                if len(got) < 20:
                    await asyncio.sleep(0.05)  # slow at first: the run does not wait for it
                if len(got) == 20:
                    assert running.done() and (await running).output == 5000
        assert [i.data for i in got] == [f"tok{n}" for n in range(5000)] and all(i.missed == 0 for i in got)


@contextlib.asynccontextmanager
async def web_app_on(transport: RedisStreamsTransport) -> AsyncIterator[Any]:
    """A client of the web app on `transport`'s Redis (its feedback store and run records there)."""
    from aiohttp.test_utils import TestClient, TestServer

    from graflow_async.feedback.redis import RedisFeedbackStore
    from graflow_async.web import create_app

    store = RedisFeedbackStore(connection=transport.conn, namespace=transport.namespace)
    async with TestClient(TestServer(create_app(transport=transport, feedback_store=store))) as client:
        yield client


async def first_chunks(client: Any, run_id: str, count: int) -> tuple[str, str]:
    """The SSE text of the run's events until `count` chunks came (the client then drops),
    once the run has a record (a durable run's), and the id of the last event read."""
    while (await client.get(f"/api/runs/{run_id}")).status == 404:
        await asyncio.sleep(0.02)
    events = await client.get(f"/api/runs/{run_id}/events")
    seen = ""
    while seen.count("event: stream\n") < count:
        seen += (await events.content.readuntil(b"\n\n")).decode()
    events.close()
    return seen, [line for line in seen.splitlines() if line.startswith("id: ")][-1][4:]


def chunks_of(sse: str) -> list[Any]:
    return [json.loads(line[6:])["data"] for line in sse.splitlines() if line.startswith('data: {"task')]


async def test_the_web_app_serves_the_stream_of_a_run_driven_elsewhere_and_a_reconnect_resumes(
    workers: Workers, redis_url: str
) -> None:
    workers.start(1, "--import", "stream_flows")
    async with RedisStreamsTransport(redis_url) as driving, RedisStreamsTransport(redis_url) as serving:
        async with web_app_on(serving) as client:
            running = asyncio.create_task(run(flows.talk_wf(300), run_id="elsewhere", transport=driving, durable=True))
            async with asyncio.timeout(RUN_TIMEOUT):
                seen, last_id = await first_chunks(client, "elsewhere", 100)
                again = await client.get("/api/runs/elsewhere/events", headers={"Last-Event-ID": last_id})
                rest = await again.text()
                await running
        assert chunks_of(seen + rest) == [f"tok{n}" for n in range(300)]  # each once, in order, across the reconnection
        assert rest.rstrip().splitlines()[-2] == "event: end"


async def test_a_reconnect_gets_each_chunk_once_across_a_takeover(
    workers: Workers, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graflow_async import run_result

    gate = tmp_path / "gate"
    monkeypatch.setenv("GFT_STREAM_GATE", str(gate))  # before the workers start: their task waits for it
    workers.start(2, "--import", "stream_flows")  # both adopt durable runs of stream_flows
    code = (
        "import asyncio, sys, durable_flows as d, stream_flows as f; "
        "asyncio.run(d.drive(sys.argv[1], sys.argv[2], f.talk_across_wf))"
    )
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "GFT_REDIS_URL": redis_url, "GFT_DURABLE_DIR": str(tmp_path)}
    driver = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, "across", str(tmp_path / "ckpt"), env=env, stdout=asyncio.subprocess.DEVNULL
    )
    async with RedisStreamsTransport(redis_url) as serving, web_app_on(serving) as client:
        async with asyncio.timeout(RUN_TIMEOUT):
            seen, last_id = await first_chunks(client, "across", 100)
            driver.kill()  # the driver dies; a worker adopts the run after its lease
            await driver.wait()
            gate.touch()
            again = await client.get("/api/runs/across/events", headers={"Last-Event-ID": last_id})
            rest = await again.text()
            assert (await run_result("across", transport=serving, timeout=RUN_TIMEOUT)).output == 200
            assert await serving.client.hget("graflow:run:{across}:owner", "epoch") == b"2"  # adopted
    assert chunks_of(seen + rest) == [f"a{i}" for i in range(100)] + [f"b{i}" for i in range(100)]
    assert rest.rstrip().splitlines()[-2] == "event: end"

"""The whole task context on Redis workers (SPEC sections 3, 7 and 9), with real worker
processes on a real redis-server: checkpoints written by the run, feedback stored in
the run's store and answered from elsewhere, atomic channel operations across
workers, and dynamic control flow asked for by remote tasks."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import remote_dynamic as rd
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from worker_processes import RUN_TIMEOUT, Pool, Workers, wait_exit, wait_for

from graflow_async import RetryLimitExceededError, TaskFailedError, parallel, resume, run, workflow
from graflow_async.feedback.redis import RedisFeedbackStore
from graflow_async.transports.redis import RedisStreamsTransport
from graflow_async.web import create_app


async def remote_run(url: str, wf: Any, **kwargs: Any) -> Any:
    async with RedisStreamsTransport(url, connect_timeout=2) as transport:
        async with asyncio.timeout(RUN_TIMEOUT):
            return await run(wf, transport=transport, **kwargs)


async def remote_resume(url: str, location: str, wf: Any, **kwargs: Any) -> Any:
    async with RedisStreamsTransport(url, connect_timeout=2) as transport:
        async with asyncio.timeout(RUN_TIMEOUT):
            return await resume(location, workflow=wf, transport=transport, **kwargs)


# --- checkpoints ------------------------------------------------------------------------------------
async def test_a_worker_tasks_checkpoint_is_written_by_the_run_and_resumes_on_any_worker(
    workers: Workers, redis_url: str, tmp_path: Path
) -> None:
    [first] = workers.start(1)
    with workflow("remote-ckpt") as wf:
        rd.remote_checkpoint >> rd.after_ask.instance("after", remote_ask={"approved": True})
    with pytest.raises(TaskFailedError, match="crash after saving") as caught:
        await remote_run(redis_url, wf, checkpoint_store=str(tmp_path), run_id="ckpt-run")
    location = str(tmp_path / "ckpt-run" / "1.ckpt")
    assert location in str(caught.value)  # the location the run handed back to the task
    assert Path(location).exists()  # written by the run, in its own store

    first.process.terminate()
    assert await wait_exit(first, 10) == 0
    [second] = workers.start(1)
    result = await remote_resume(redis_url, location, wf)
    assert result.results["remote_checkpoint"] == {"resumed": {"saved_by": first.pid}, "pid": second.pid}
    assert result.output == "shipped"


# --- human in the loop ------------------------------------------------------------------------------
def asking() -> Any:
    with workflow("remote-ask") as wf:
        rd.remote_ask >> rd.after_ask
    return wf


async def test_feedback_from_a_worker_task_is_answered_through_the_rest_api(pool: Pool) -> None:
    store = RedisFeedbackStore(pool.url)  # the run's default store: same server, same namespace
    running = asyncio.ensure_future(remote_run(pool.url, asking(), initial_channel={"wait": 30.0}))
    try:
        async with TestClient(TestServer(create_app(feedback_store=store))) as client:

            async def listed() -> list[dict[str, Any]]:
                body = await (await client.get("/api/feedback")).json()
                return [r for r in body["requests"] if r["task_id"] == "remote_ask"]

            await wait_for(listed, 10, "the worker task's request in the REST API")
            [request] = await listed()
            assert request["metadata"]["pid"] in pool.workers.pids  # asked on a worker
            page = await (await client.get("/ui/feedback/")).text()
            assert "ship it?" in page and request["feedback_id"] in page  # and shown in the UI
            answer = await client.post(
                f"/api/feedback/{request['feedback_id']}/respond", json={"approved": True, "responded_by": "ops"}
            )
            assert answer.status == 200
        result = await asyncio.wait_for(running, RUN_TIMEOUT)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await store.aclose()
    assert result.status == "completed"
    assert result.results["remote_ask"]["approved"] is True
    assert result.results["remote_ask"]["by"] == "ops"
    assert result.results["remote_ask"]["pid"] in pool.workers.pids
    assert result.output == "shipped"


async def test_a_worker_tasks_feedback_timeout_suspends_the_run_and_other_workers_resume_it(
    workers: Workers, redis_url: str, tmp_path: Path
) -> None:
    [first] = workers.start(1)
    result = await remote_run(redis_url, asking(), initial_channel={"wait": 0.3}, checkpoint_store=str(tmp_path))
    assert result.status == "suspended" and Path(result.checkpoint).exists()
    [pending] = result.pending_feedback
    assert pending.task_id == "remote_ask" and pending.status == "pending"

    store = RedisFeedbackStore(redis_url)
    try:
        assert [r.feedback_id for r in await store.list_pending(result.run_id)] == [pending.feedback_id]
        assert (await store.get_suspension(result.run_id))["checkpoint"] == result.checkpoint
        await store.respond(pending.feedback_id, {"approved": False, "responded_by": "later"})
    finally:
        await store.aclose()
    first.process.terminate()
    await wait_exit(first, 10)
    [second] = workers.start(1)
    resumed = await remote_resume(redis_url, result.checkpoint, asking())
    assert resumed.results["remote_ask"] == {"approved": False, "by": "later", "pid": second.pid}
    assert resumed.output == "held"


# --- the channel --------------------------------------------------------------------------------------
async def test_incr_and_append_are_atomic_across_workers(pool: Pool) -> None:
    with workflow("remote-atomic") as wf:
        wf.add(parallel(*[rd.remote_count(task_id=f"count{i}", times=20) for i in range(8)]))
    result = await remote_run(pool.url, wf)
    assert result.channel["count"] == 160
    assert len(result.channel["pids"]) == 160
    assert set(result.channel["pids"]) <= pool.workers.pids


# --- dynamic control flow -------------------------------------------------------------------------------
async def test_a_worker_task_fans_out_at_runtime(pool: Pool) -> None:
    with workflow("remote-fan-out") as wf:
        rd.remote_fan_out >> rd.total
    events: list[Any] = []
    result = await remote_run(pool.url, wf, initial_channel={"n": 6}, on_event=events.append)
    assert result.results["remote_fan_out"] == [f"sq{i}" for i in range(6)]
    assert [result.results[f"sq{i}"]["value"] for i in range(6)] == [i * i for i in range(6)]
    assert {result.results[f"sq{i}"]["pid"] for i in range(6)} <= pool.workers.pids
    assert result.output == 55
    assert [e.data["added_by"] for e in events if e.kind == "task_added"] == ["remote_fan_out"]


async def test_a_goto_loop_and_next_iteration_on_workers(pool: Pool) -> None:
    with workflow("remote-loop") as wf:
        rd.remote_draft >> rd.remote_review
        wf.add(rd.remote_iterate)
    result = await remote_run(pool.url, wf, max_cycles=4)
    assert result.results["remote_review"]["draft"] == 3
    assert result.channel["drafts"] == 3
    assert result.results["remote_iterate"] == [1, 2, 3, 4]


async def test_a_closure_cannot_be_added_by_a_worker_task(pool: Pool) -> None:
    with workflow("remote-closure") as wf:
        wf.add(rd.remote_adds_a_closure)
    result = await remote_run(pool.url, wf)
    message = result.results["remote_adds_a_closure"]
    assert "import path" in message and "closure" in message


async def test_terminate_from_a_worker_ends_the_run(pool: Pool) -> None:
    with workflow("remote-terminate") as wf:
        rd.remote_terminate >> rd.total
    result = await remote_run(pool.url, wf)
    assert result.results == {"remote_terminate": "terminated"}


# --- messages from a run that has ended -----------------------------------------------------------------
async def test_a_request_to_a_run_that_has_ended_is_dropped_and_the_task_gives_up(
    workers: Workers, client: Redis, redis_url: str
) -> None:
    """The run fails while a sibling on a worker sleeps; the sibling's later channel write
    finds no run: it leaves nothing in Redis and the task gives up after --context-timeout."""
    [worker] = workers.start(1, "--context-timeout", "0.5")
    run_id = uuid.uuid4().hex
    with workflow("remote-ended") as wf:
        wf.add(rd.remote_boom, rd.remote_late_write)
    with pytest.raises((TaskFailedError, RetryLimitExceededError)):
        await remote_run(redis_url, wf, run_id=run_id)
    await wait_for(lambda: "did not answer a context request" in worker.output(), 10, "the worker to give up")
    assert not await client.exists(f"graflow:run:{{{run_id}}}:replies")  # the late write made no stream again
    assert os.getpid() != worker.pid

"""The docker handler against a real engine (a private dockerd the fixture starts):
tasks run in containers with no network, the code mounted read-only and this host's
Python; failures come back with their facts and the container's log tail; containers
are removed in every case, cancellation included; context, retries, groups and Redis
workers work as they do for direct tasks."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import docker_flows as df
import pytest
from docker_engine import DockerEngine, single, unique_tag, variant
from worker_processes import Workers

from graflow_async import (
    BestEffortGroupPolicy,
    HandlerError,
    RemoteTaskError,
    TaskFailedError,
    TaskTimeoutError,
    parallel,
    resume,
    run,
    workflow,
)
from graflow_async.define.tasks import Task
from graflow_async.feedback import MemoryFeedbackStore
from graflow_async.transports.redis import RedisStreamsTransport


@pytest.fixture
def engine(docker_engine: DockerEngine) -> DockerEngine:
    df.configure(docker_engine.url, docker_engine.image, docker_engine.python)
    return docker_engine


async def test_a_task_runs_in_a_container_without_network_as_nobody(engine: DockerEngine) -> None:
    result = await run(single(df.add, a=2, b=3))
    out = result.output
    assert out["sum"] == 5
    assert out["pid"] == 1 and out["hostname"] != os.uname().nodename  # its own process namespace
    assert out["interfaces"] == ["lo"]  # network_mode "none" by default
    assert out["uid"] == 65534  # not this host's user: nobody, unless the task declares `user`
    assert engine.labelled_containers(result.run_id) == []  # removed after it ran


async def test_what_the_task_raises_comes_back_as_a_remote_task_error(engine: DockerEngine) -> None:
    with pytest.raises(RemoteTaskError) as caught:
        await run(single(df.boom, code=7))
    error = caught.value
    assert error.task_id == "boom" and error.type_name == "ValueError"
    assert error.remote_message == "bad input 7"
    assert 'raise ValueError(f"bad input {code}")' in error.traceback
    assert engine.labelled_containers() == []


async def test_a_non_zero_exit_fails_the_task_with_the_log_tail_and_is_retried(engine: DockerEngine) -> None:
    with pytest.raises(TaskFailedError) as caught:
        await run(single(df.exit_hard))
    message = str(caught.value)
    assert "exited with status 3" in message and "about to exit with 3" in message

    retried = Task(
        df.exit_hard.func, id="exit_hard", handler="docker", handler_kwargs=df.exit_hard.handler_kwargs, max_retries=1
    )
    events: list[str] = []
    with pytest.raises(TaskFailedError) as again:
        await run(single(retried), on_event=lambda e: events.append(e.kind))
    assert type(again.value).__name__ == "RetryLimitExceededError" and events.count("task_started") == 2
    assert engine.labelled_containers() == []


async def test_an_out_of_memory_kill_is_reported_with_the_log_tail(engine: DockerEngine) -> None:
    with pytest.raises(TaskFailedError) as caught:
        await run(single(df.hog))
    message = str(caught.value)
    assert "out of memory" in message and "allocating 400 MiB" in message


async def test_a_container_past_its_timeout_is_killed_and_removed(engine: DockerEngine) -> None:
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError) as caught:
        await run(single(df.sleepy))
    assert time.monotonic() - started < 10
    assert caught.value.task_id == "sleepy" and caught.value.timeout == 1.0
    assert "sleeping" in str(caught.value.__cause__)  # the log tail
    assert engine.labelled_containers() == []


async def test_a_missing_image_fails_the_task_naming_it(engine: DockerEngine) -> None:
    tag = unique_tag()
    with pytest.raises(TaskFailedError) as caught:
        await run(single(variant(df.add, image=tag), a=1, b=1))
    assert tag in str(caught.value)


async def test_an_engine_out_of_reach_is_a_handler_error_naming_it_and_not_retried(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/nothing.sock"
    t = Task(df.add.func, id="add", handler="docker", handler_kwargs={"image": "any", "docker_url": url}, max_retries=3)
    events: list[str] = []
    with pytest.raises(HandlerError) as caught:
        await run(single(t, a=1, b=1), on_event=lambda e: events.append(e.kind))
    assert url in str(caught.value) and "Traceback" not in str(caught.value)
    assert events.count("task_started") == 1


def test_unknown_and_bad_options_are_refused_where_the_task_is_declared() -> None:
    with pytest.raises(HandlerError, match="'memory'"):
        Task(df.add.func, handler="docker", handler_kwargs={"image": "x", "memory": "1g"})
    with pytest.raises(HandlerError, match="'image'"):
        Task(df.add.func, handler="docker", handler_kwargs={})
    with pytest.raises(HandlerError, match="mem_limit"):
        Task(df.add.func, handler="docker", handler_kwargs={"image": "x", "mem_limit": "lots"})
    with pytest.raises(HandlerError, match="cpus"):
        Task(df.add.func, handler="docker", handler_kwargs={"image": "x", "cpus": float("nan")})


async def test_a_result_msgpack_cannot_carry_fails_naming_the_task_and_type(engine: DockerEngine) -> None:
    with pytest.raises(TaskFailedError) as caught:
        await run(single(df.unserializable))
    assert "'unserializable'" in str(caught.value) and "object" in str(caught.value)


async def test_environment_limits_and_read_only_code(engine: DockerEngine) -> None:
    out = (await run(single(df.limits))).output
    assert out["greeting"] == "hello"
    assert out["memory"] in ("67108864", str(64 << 20))
    assert out["cpu_quota"] in ("50000", "50000 100000")
    assert out["code_writable"] is False


async def test_volumes_in_both_forms(engine: DockerEngine, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # the container's user (nobody) may write there
    volumes = {**df.write_file.handler_kwargs["volumes"], str(shared): {"bind": "/out", "mode": "rw"}}
    written = (await run(single(variant(df.write_file, volumes=volumes), directory="/out", text="hi"))).output
    assert written == "/out/out.txt" and (shared / "out.txt").read_text() == "hi"

    for undeclared in ("/out", {"bind": "/out"}):  # read-only unless declared "rw"
        read_only = {**volumes, str(shared): undeclared}
        with pytest.raises(RemoteTaskError) as caught:
            await run(single(variant(df.write_file, volumes=read_only), directory="/out", text="no"))
        assert caught.value.type_name == "OSError" and "Read-only" in caught.value.remote_message


async def test_a_gpu_request_reaches_the_engine(engine: DockerEngine) -> None:
    with pytest.raises(TaskFailedError) as caught:  # no GPU here: the engine refuses the device request
        await run(single(df.on_gpu))
    assert "nvidia" in str(caught.value)  # the device request reached the engine
    assert engine.labelled_containers() == []


async def test_without_mount_code_the_image_must_bring_graflow_async(engine: DockerEngine) -> None:
    with pytest.raises(TaskFailedError) as caught:
        await run(single(df.without_code))
    assert "No module named 'graflow_async'" in str(caught.value)


async def test_cancelling_the_run_removes_the_running_container(engine: DockerEngine, tmp_path: Path) -> None:
    shared = tmp_path / "marks"
    shared.mkdir()
    shared.chmod(0o777)
    volumes = {**df.nap.handler_kwargs["volumes"], str(shared): {"bind": "/marks", "mode": "rw"}}
    wf = single(variant(df.nap, volumes=volumes), seconds=60, marker="/marks/started")
    running = asyncio.create_task(run(wf, run_id="cancel-me"))
    deadline = time.monotonic() + 20
    while not (shared / "started").exists():
        assert time.monotonic() < deadline and not running.done()
        await asyncio.sleep(0.05)
    assert len(engine.labelled_containers("cancel-me")) == 1
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert engine.labelled_containers("cancel-me") == []


async def test_docker_members_of_a_best_effort_group_with_retries(engine: DockerEngine) -> None:
    with workflow("docker-group") as wf:
        parallel(*(df.member(task_id=f"m{i}", i=i) for i in range(1, 5))).with_execution(policy=BestEffortGroupPolicy())
    events: list[Any] = []
    result = await run(wf, on_event=events.append)
    assert result.results == {"m1": 10, "m2": 20, "m4": 40}
    assert sum(1 for e in events if e.kind == "task_retrying" and e.task_id == "m3") == 1
    assert engine.labelled_containers(result.run_id) == []


async def test_the_context_works_in_a_container_after_a_retry(engine: DockerEngine) -> None:
    result = await run(single(df.with_context, n=5), initial_channel={"total": 10})
    assert result.results["with_context"] == {"attempt": 2, "total": 15, "run_id": result.run_id}
    assert result.results["after_docker"] == "after"  # added by next_task in the container
    assert result.channel["seen"] == 5 and result.channel["log"] == ["docker:2"]


async def test_a_checkpoint_from_a_container_is_written_by_the_run(engine: DockerEngine, tmp_path: Path) -> None:
    result = await run(single(df.checkpoint_in_container), checkpoint_store=tmp_path)
    location = result.output
    assert Path(location).is_file() and Path(location).is_relative_to(tmp_path)


async def test_feedback_from_a_container_is_answered_or_suspends_the_run(engine: DockerEngine, tmp_path: Path) -> None:
    store = MemoryFeedbackStore()

    async def answer_when_asked() -> None:
        while not (pending := await store.list_pending()):
            await asyncio.sleep(0.02)
        await store.respond(pending[0].feedback_id, {"approved": True})

    answering = asyncio.create_task(answer_when_asked())
    assert (await run(single(df.ask_in_container), feedback_store=store)).output is True
    await answering

    suspended = await run(single(df.approve_in_container), feedback_store=store, checkpoint_store=tmp_path)
    assert suspended.status == "suspended" and suspended.checkpoint is not None
    [pending] = suspended.pending_feedback
    assert pending.prompt == "ship it?"
    await store.respond(pending.feedback_id, {"approved": True})
    resumed = await resume(suspended.checkpoint, workflow=single(df.approve_in_container), feedback_store=store)
    assert resumed.status == "completed" and resumed.output is True


async def test_docker_tasks_on_a_redis_worker(
    engine: DockerEngine, workers: Workers, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in df.configure(engine.url, engine.image, engine.python).items():
        monkeypatch.setenv(key, value)  # the worker's environment
    workers.start(1, "--import", "docker_flows")
    with workflow("docker-remote") as wf:
        df.add(task_id="add", a=20, b=22) >> df.with_context(task_id="with_context", n=1)
    async with RedisStreamsTransport(redis_url) as transport:
        result = await run(wf, transport=transport)
    assert result.results["add"]["sum"] == 42 and result.results["add"]["pid"] == 1
    assert result.results["with_context"]["attempt"] == 2
    assert result.results["after_docker"] == "after"
    assert engine.labelled_containers(result.run_id) == []

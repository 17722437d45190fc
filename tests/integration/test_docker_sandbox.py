"""The docker handler is a sandbox for untrusted code (SPEC 8), tried as an attacker
would against a real engine: least privilege by default, a limited context with quotas,
nothing the container leaves blocks the run, and containers whose owner was SIGKILLed
are removed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker_flows as df
import pytest
from docker_engine import DockerEngine, single, variant

from graflow_async import HandlerError, TaskFailedError, run, run_stream
from graflow_async.define.tasks import Task
from graflow_async.execute.handlers import housekeeping
from graflow_async.feedback import MemoryFeedbackStore
from graflow_async.handlers import docker as docker_module
from graflow_async.handlers.docker import DockerHandler

SUPPORT = Path(__file__).resolve().parent.parent / "support"


@pytest.fixture
def engine(docker_engine: DockerEngine) -> DockerEngine:
    df.configure(docker_engine.url, docker_engine.image, docker_engine.python)
    return docker_engine


async def test_by_default_the_code_runs_unprivileged_on_a_read_only_system(
    engine: DockerEngine, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # writable for anyone on the host: only the mount's mode keeps it read-only
    volumes = {**df.privileges.handler_kwargs["volumes"], str(shared): "/shared"}
    out = (await run(single(variant(df.privileges, volumes=volumes), shared="/shared"))).output
    assert (out["uid"], out["gid"]) == (65534, 65534)
    assert out["cap_eff"] == "0000000000000000" and out["no_new_privs"] == "1"
    assert out["root_writable"] is False and out["tmp_writable"] is True
    assert out["code_writable"] is False and out["call_writable"] is False and out["shared_writable"] is False
    assert out["pids_max"] == "128"
    assert list(shared.iterdir()) == []


async def test_each_privilege_is_opened_only_when_declared(engine: DockerEngine, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    volumes = {**df.privileges.handler_kwargs["volumes"], str(shared): {"bind": "/shared", "mode": "rw"}}
    opened = variant(
        df.privileges,
        volumes=volumes,
        user="0:0",
        cap_add=["CHOWN"],
        no_new_privileges=False,
        read_only=False,
        pids_limit=64,
    )
    out = (await run(single(opened, shared="/shared"))).output
    assert out["uid"] == 0 and int(out["cap_eff"], 16) == 1  # CAP_CHOWN alone
    assert out["no_new_privs"] == "0" and out["root_writable"] is True and out["shared_writable"] is True
    assert out["pids_max"] == "64"


async def test_the_untrusted_code_example_stops_every_hostile_snippet(engine: DockerEngine) -> None:
    from examples import untrusted_code as uc

    outcomes = await uc.main(**engine.handler_kwargs())
    assert outcomes["friendly"] == {"ok": True, "result": "285", "output": "squares summed\n"}
    assert "BlockingIOError" in outcomes["fork bomb"]["error"]  # the pids limit
    assert "Read-only file system" in outcomes["write outside /tmp"]["error"]
    assert outcomes["reach the network"]["error"].startswith("OSError")  # no network
    assert outcomes["read host files"]["error"].startswith(("FileNotFoundError", "PermissionError"))
    refused = outcomes["ask the host to run a task"]
    assert refused["stopped"] == "HandlerError" and "does not allow next_task" in refused["error"]
    assert outcomes["eat memory"]["stopped"] == "TaskFailedError" and "out of memory" in outcomes["eat memory"]["error"]
    assert outcomes["spin forever"]["stopped"] == "TaskTimeoutError"
    assert all(not o["ok"] for name, o in outcomes.items() if name != "friendly")
    assert engine.labelled_containers() == []


@pytest.mark.parametrize(
    ("task", "operation"),
    [(df.ask_host_task, "next_task"), (df.ask_cancel, "cancel_workflow"), (df.checkpoint_swallowed, "checkpoint()")],
)
async def test_a_limited_context_refuses_the_graph_and_checkpoints(
    engine: DockerEngine, tmp_path: Path, task: Task, operation: str
) -> None:
    events: list[Any] = []
    with pytest.raises(HandlerError) as caught:
        await run(single(task), checkpoint_store=tmp_path, on_event=events.append)
    assert f"does not allow {operation}" in str(caught.value) and repr(task.id) in str(caught.value)
    assert not any(e.kind == "task_started" and e.task_id == "after_docker" for e in events)
    assert list(tmp_path.rglob("*.json*")) == []  # no checkpoint written
    assert engine.labelled_containers() == []


async def test_checkpoints_in_a_loop_hit_the_request_rate(engine: DockerEngine, tmp_path: Path) -> None:
    loop = variant(df.checkpoint_loop, max_requests_per_second=20)
    with pytest.raises(HandlerError, match="20 context requests per second"):
        await run(single(loop, times=2000), checkpoint_store=tmp_path)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert 0 < len(written) <= 25


async def test_a_burst_of_requests_hits_the_rate(engine: DockerEngine) -> None:
    with pytest.raises(HandlerError, match="100 context requests per second"):
        await run(single(df.request_burst, n=1000))
    assert (await run(single(df.request_burst, n=50))).output == 50  # within the burst


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_connections_to_the_context_socket_are_capped(engine: DockerEngine) -> None:
    await run(single(df.add, a=1, b=1))  # warm: the engine's client, the threads
    before = open_fds()
    started = time.monotonic()
    with pytest.raises(HandlerError, match="4 open context connections"):
        await run(single(df.many_connections, n=2000))
    assert time.monotonic() - started < 25  # ended at the breach, not after the task's 30 s nap
    await asyncio.sleep(0.2)  # closed transports let go of their sockets on the next turns
    assert open_fds() <= before + 2
    assert engine.labelled_containers() == []


async def test_feedback_requests_are_capped(engine: DockerEngine) -> None:
    store = MemoryFeedbackStore()
    with pytest.raises(HandlerError, match="8 pending feedback requests"):
        await run(single(df.feedback_flood, n=300), feedback_store=store)
    assert 1 <= len(await store.list_pending()) <= 8


async def test_a_sandboxed_task_streams_within_its_byte_quota(engine: DockerEngine) -> None:
    streamed: list[Any] = []

    async def follow(run_id: str) -> None:
        while True:
            try:
                streamed.extend([item async for item in run_stream(run_id)])
                return
            except LookupError:
                await asyncio.sleep(0.01)

    reading = asyncio.ensure_future(follow("sandbox-streams"))
    result = await run(single(variant(df.stream_flood, max_channel_bytes="4m"), n=3, kib=1), run_id="sandbox-streams")
    await asyncio.wait_for(reading, 10)
    assert result.output == 3 and [s.data[:2] for s in streamed] == ["0:", "1:", "2:"]
    with pytest.raises(HandlerError, match="bytes written to the channel and streams"):
        await run(single(variant(df.stream_flood, max_channel_bytes="4m"), n=20, kib=512))


async def test_bytes_written_to_the_channel_are_capped(engine: DockerEngine) -> None:
    with pytest.raises(HandlerError, match="bytes written to the channel"):
        await run(single(variant(df.channel_flood, max_channel_bytes="4m"), megabytes=10))
    assert (await run(single(variant(df.channel_flood, max_channel_bytes="4m"), megabytes=2))).output == 2


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("fifo", "reply.msgpack is a FIFO"),
        ("symlink", "reply.msgpack is a symbolic link"),
        ("directory", "reply.msgpack is a directory"),
        ("huge", "reply.msgpack is larger than"),
        ("garbage", "left an unusable reply"),
    ],
)
async def test_what_the_container_leaves_as_its_reply_fails_the_task_at_once(
    engine: DockerEngine, kind: str, says: str
) -> None:
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    beating = asyncio.create_task(heartbeat())
    started = time.monotonic()
    try:
        with pytest.raises(TaskFailedError) as caught:
            await run(single(df.leave_reply, kind=kind))
    finally:
        beating.cancel()
    assert says in str(caught.value) and "'leave_reply'" in str(caught.value)
    elapsed = time.monotonic() - started
    assert elapsed < 30 and ticks >= elapsed / 0.05 / 4  # the loop kept turning
    assert engine.labelled_containers() == []


def start_driver(engine: DockerEngine, run_id: str, marks: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), *sys.path])}
    args = [engine.url, engine.image, engine.python, run_id, str(marks)]
    return subprocess.Popen([sys.executable, "-m", "docker_driver", *args], env=env, cwd=SUPPORT)


async def orphan(engine: DockerEngine, tmp_path: Path, run_id: str) -> None:
    """A driver SIGKILLed while its docker task runs: the container is left behind."""
    marks = tmp_path / run_id
    marks.mkdir()
    marks.chmod(0o777)
    driver = start_driver(engine, run_id, marks)
    try:
        deadline = time.monotonic() + 60
        while not (marks / "started").exists():
            assert time.monotonic() < deadline and driver.poll() is None, "the driver's task did not start"
            await asyncio.sleep(0.1)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
    assert len(engine.labelled_containers(run_id)) == 1  # still there, running


async def test_containers_of_a_sigkilled_driver_are_removed_by_the_next_handler(
    engine: DockerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await orphan(engine, tmp_path, "orphan-1")
    fresh = DockerHandler()  # a handler starting on this engine (a new process's)
    assert (await run(single(variant(df.add, handler=fresh), a=1, b=2))).output["sum"] == 3
    assert engine.labelled_containers("orphan-1") == []

    monkeypatch.setattr(docker_module, "REAP_EVERY", 3600.0)
    await run(single(df.add, a=1, b=2))  # the registered handler knows this engine
    await orphan(engine, tmp_path, "orphan-2")
    await run(single(df.add, a=1, b=2))  # and reaped it lately: not again yet
    assert len(engine.labelled_containers("orphan-2")) == 1
    monkeypatch.setattr(docker_module, "REAP_EVERY", 0.0)
    await housekeeping()  # what a worker runs periodically
    assert engine.labelled_containers("orphan-2") == []

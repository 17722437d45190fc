"""examples/custom_handler.py's `SubprocessHandler`: tasks really run in child processes,
failures come back with their facts, the context reaches the run from the child, and a
cancelled run leaves no process behind. The context relay refuses malformed frames."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import isolated_flows as flows
import pytest

from graflow_async import RemoteTaskError, RetryLimitExceededError, TaskContext, run, workflow
from graflow_async.define.tasks import Task
from graflow_async.handlers.relay import ContextRelay, frame
from graflow_async.wire import envelope
from graflow_async.wire.codec import packb
from graflow_async.wire.messages import TaskMessage


def single(t: Task, **bound: Any) -> Any:
    with workflow(f"isolated-{t.id}") as wf:
        wf.add(t(task_id=t.id, **bound))
    return wf


async def test_a_task_runs_in_another_process() -> None:
    pid = (await run(single(flows.whoami))).output
    assert isinstance(pid, int) and pid != os.getpid()


async def test_failures_come_back_with_their_facts() -> None:
    with pytest.raises(RemoteTaskError) as raised:
        await run(single(flows.refuse, value=4))
    assert raised.value.type_name == "KeyError" and "no such item 4" in raised.value.remote_message
    with pytest.raises(RetryLimitExceededError) as crashed:
        await run(single(flows.crash))
    assert crashed.value.attempts == 2
    assert "exited with status 5" in str(crashed.value.last_error)
    assert "crashing on purpose" in str(crashed.value.last_error)


async def test_the_context_reaches_the_run_from_the_child() -> None:
    result = await run(single(flows.counting))
    assert result.output == 6 and result.channel["count"] == 6
    assert len(result.channel["pids"]) == 3 and os.getpid() not in result.channel["pids"]


async def test_cancelling_the_run_kills_the_child(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    running = asyncio.create_task(run(single(flows.linger, marker=str(marker))))
    deadline = time.monotonic() + 20
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline and not running.done()
        await asyncio.sleep(0.02)
    child = int(marker.read_text())
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


class RecordingPort:
    """Answers every operation with its name: what the relay passes on is visible."""

    remote = True

    def __init__(self) -> None:
        self.ops: list[str] = []

    async def call(self, message: TaskMessage, op: str, args: dict[str, Any], *, timeout: float | None = None) -> Any:
        self.ops.append(op)
        return op


async def test_the_relay_closes_a_connection_sending_malformed_frames(tmp_path: Path) -> None:
    port = RecordingPort()
    context = TaskContext(port, TaskMessage("r", "t", 0, 1, "", {}))
    path = str(tmp_path / "ctx.sock")
    malformed = [frame(b"\xc1garbage"), frame(packb([1, 2, 3])), b"\xff\xff\xff\xff"]  # junk, a list, 4 GiB
    async with ContextRelay(context, path):
        for sent in malformed:
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(sent)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing answered
            writer.close()
        reader, writer = await asyncio.open_unix_connection(path)  # a good one is still served
        writer.write(frame(packb({"id": "1", "op": "channel.keys", "args": {}, "timeout": None})))
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(4), "big")
        reply = envelope.decode(await reader.readexactly(size))
        assert reply.ok and reply.value == "channel.keys" and port.ops == ["channel.keys"]
        writer.close()

"""Workers trust nothing they read and survive every fault (SPEC section 7): real worker
processes on a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import remote_faults as rf
from worker_processes import RUN_TIMEOUT, Workers

from graflow_async import TaskFailedError, parallel, run, workflow
from graflow_async.exceptions import RemoteTaskError
from graflow_async.transports.redis_streams import RedisStreamsTransport


async def remote_run(url: str, wf: Any, **kwargs: Any) -> Any:
    async with RedisStreamsTransport(url, connect_timeout=2) as transport:
        async with asyncio.timeout(RUN_TIMEOUT):
            return await run(wf, transport=transport, **kwargs)


# --- results the wire cannot carry ---------------------------------------------------------------
async def test_an_unserializable_result_fails_its_task_and_the_worker_carries_on(
    workers: Workers, redis_url: str
) -> None:
    [worker] = workers.start(1)
    with workflow("unserializable") as wf:
        wf.add(parallel(rf.unserializable, rf.pid(task_id="sibling")).with_execution(policy="best_effort"))
    events: list[Any] = []
    result = await remote_run(redis_url, wf, on_event=events.append)
    assert result.results["sibling"] == worker.pid
    [failed] = [e for e in events if e.kind == "task_failed"]
    assert failed.task_id == "unserializable" and "lock" in failed.error
    assert [e.task_id for e in events if e.kind == "task_started"].count("unserializable") == 1  # not retried

    with workflow("unserializable-alone") as wf2:
        wf2.add(rf.unserializable)
    with pytest.raises(TaskFailedError) as caught:
        await remote_run(redis_url, wf2)
    error = caught.value  # a TaskFailedError: the remote one, named after its task
    assert isinstance(error, RemoteTaskError) and error.task_id == "unserializable"
    assert error.type_name == "TypeError"
    assert "task 'unserializable' returned a lock that cannot be serialized" in str(error)
    assert worker.process.poll() is None  # alive, and still serving:
    assert (await remote_run(redis_url, workflow_of(rf.pid))).output == worker.pid


def workflow_of(*tasks: Any) -> Any:
    with workflow(f"just-{tasks[0].id}") as wf:
        wf.add(*tasks)
    return wf

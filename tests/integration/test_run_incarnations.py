"""Run incarnations on Redis (SPEC 10): every run, and every start again of a run id (a
resume, a run started under the same id), is a new epoch; task entries, replies and
context requests carry it, and whatever carries another epoch is dropped: a worker
judges from the run's owner record whether a task's run has ended, never from whether a
stream exists. Tried with signed entries, as a replay of captured ones would be."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
import remote_flows as rf
from worker_processes import PYTHONPATH, Worker, Workers

from graflow_async import TaskFailedError, resume, run
from graflow_async.execute.ended import ALIVE_FOR
from graflow_async.transports import keys
from graflow_async.transports.redis import RedisStreamsTransport
from graflow_async.wire.messages import TaskMessage, TaskReply

SECRET = "incarnations-secret"


@pytest.fixture
def signed(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GRAFLOW_SECRET", SECRET)  # the workers' too: they inherit it
    return SECRET


def new_run_id() -> str:
    return f"inc-{uuid.uuid4().hex[:8]}"


def replayed_task(run_id: str, count: Path, epoch: int) -> TaskMessage:
    """A task entry of incarnation `epoch`, as a captured (validly signed) one replays."""
    kwargs = {"path": str(count), "wait_for": "", "seconds": 0.0}
    return TaskMessage(
        run_id, "tally", 0, 1, keys.reply_queue(run_id), kwargs, task_ref="remote_flows:tally", epoch=epoch
    )


async def wait_for_log(worker: Worker, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in worker.output():
        assert time.monotonic() < deadline, f"the worker never logged {text!r}:\n{worker.output()}"
        await asyncio.sleep(0.05)


async def wait_for_file(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_a_failed_run_resumed_on_the_same_worker_runs_its_tasks(
    workers: Workers, redis_url: str, tmp_path: Path, signed: str
) -> None:
    workers.start(1)
    marker, store = tmp_path / "failed", tmp_path / "checkpoints"
    async with RedisStreamsTransport(redis_url, secret=signed) as transport:
        with pytest.raises(TaskFailedError):
            await run(rf.fails_after_a_checkpoint(str(marker)), transport=transport, checkpoint_store=store)
        [location] = store.rglob("*.ckpt")
        resumed = await asyncio.wait_for(
            resume(str(location), workflow=rf.fails_after_a_checkpoint(str(marker)), transport=transport), 30
        )
    assert resumed.results["fail_first"] == "ran again"


async def test_a_task_entry_of_a_former_incarnation_is_skipped_not_run(
    workers: Workers, redis_url: str, tmp_path: Path, signed: str
) -> None:
    [worker] = workers.start(1)
    run_id, count, gate = new_run_id(), tmp_path / "count", tmp_path / "gate"
    async with RedisStreamsTransport(redis_url, secret=signed) as transport:
        assert (
            await run(rf.tallied(str(count)), transport=transport, run_id=run_id, durable=False)
        ).output == 1  # epoch 1
        again = asyncio.create_task(
            run(
                rf.tallied(str(count), wait_for=str(gate)), transport=transport, run_id=run_id, durable=False
            )  # epoch 2
        )
        await wait_for_file(Path(f"{gate}.waiting"))  # the worker runs the second incarnation's task
        await transport.send(keys.TASK_QUEUE, [replayed_task(run_id, count, epoch=1)])
        await wait_for_log(worker, "skipped a task of a run that has ended")
        gate.touch()
        result = await asyncio.wait_for(again, 30)
    assert result.output == 2 and lines(count) == 2  # once per incarnation; the replay never ran


async def test_a_reply_of_a_former_incarnation_is_dropped_by_the_run(
    workers: Workers, redis_url: str, tmp_path: Path, signed: str
) -> None:
    workers.start(1)
    run_id, count, gate = new_run_id(), tmp_path / "count", tmp_path / "gate"
    async with RedisStreamsTransport(redis_url, secret=signed) as transport:
        await run(rf.tallied(str(count)), transport=transport, run_id=run_id, durable=False)  # epoch 1
        again = asyncio.create_task(
            run(rf.tallied(str(count), wait_for=str(gate)), transport=transport, run_id=run_id, durable=False)
        )
        await wait_for_file(Path(f"{gate}.waiting"))
        for forged in (
            TaskReply(run_id, 0, 1, True, "forged", task_id="tally", epoch=1),
            TaskReply(run_id, 0, 1, False, None, RuntimeError("forged failure"), task_id="tally", epoch=1),
        ):
            await transport.send(keys.reply_queue(run_id), [forged])
        done, _ = await asyncio.wait({again}, timeout=1.0)  # a taken replay ends the run at once
        assert not done
        gate.touch()
        result = await asyncio.wait_for(again, 30)
    assert result.output == 2


async def test_an_entry_replayed_after_the_run_ended_into_a_recreated_stream_is_skipped(
    workers: Workers, redis_url: str, tmp_path: Path, signed: str
) -> None:
    [worker] = workers.start(1)
    run_id, count = new_run_id(), tmp_path / "count"
    async with RedisStreamsTransport(redis_url, secret=signed) as transport:
        await run(rf.tallied(str(count)), transport=transport, run_id=run_id, durable=False)
        client = redis.Redis.from_url(redis_url)
        try:
            client.xadd(f"graflow:{keys.reply_queue(run_id)}", {"m": b"x"})  # the reply stream exists again
        finally:
            client.close()
        await asyncio.sleep(ALIVE_FOR + 0.1)  # a verdict of "running" is trusted this long (revocation's delay)
        await transport.send(keys.TASK_QUEUE, [replayed_task(run_id, count, epoch=1)])
        await wait_for_log(worker, "skipped a task of a run that has ended")
    assert lines(count) == 1


DRIVER = """
import asyncio, sys
import remote_flows as rf
from graflow_async import run
from graflow_async.transports.redis import RedisStreamsTransport

async def main(url, run_id, path):
    async with RedisStreamsTransport(url) as transport:
        await run(rf.tally_fan(200, path, 0.2), transport=transport, run_id=run_id, owner_lease=1.0, durable=False)

asyncio.run(main(*sys.argv[1:4]))
"""


async def test_the_tasks_of_a_non_durable_run_whose_driver_was_killed_are_revoked_and_its_keys_expire(
    workers: Workers, redis_url: str, tmp_path: Path
) -> None:
    [worker] = workers.start(1, "--concurrency", "2")
    run_id, count = new_run_id(), tmp_path / "count"
    driver = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DRIVER, redis_url, run_id, str(count), env={"PYTHONPATH": PYTHONPATH}
    )
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 20
        while lines(count) < 4:
            assert time.monotonic() < deadline and driver.returncode is None, "the run did not start"
            await asyncio.sleep(0.02)
        driver.kill()
        await driver.wait()
        await wait_for_log(worker, "skipped a task of a run that has ended", timeout=20)
        ran = lines(count)
        await asyncio.sleep(1.0)
        assert lines(count) <= ran + 2  # at most what was running when the skipping began
        assert ran < 60  # of 200: the rest were skipped, not run for nobody
        assert 0 < client.ttl(f"graflow:{keys.reply_queue(run_id)}") <= 3600  # the run's keys expire
        assert 0 < client.ttl(f"graflow:run:{{{run_id}}}:owner") <= 3600
    finally:
        client.close()
        if driver.returncode is None:
            driver.kill()

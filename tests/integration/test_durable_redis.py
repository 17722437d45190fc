"""Durable runs on Redis (SPEC 10), against a real redis-server, real worker processes
and a real driver process that is SIGKILLed mid-run: the run is durable by default, its
facts are journaled on Redis, and another process carries it on from there. What
completed never runs again, a reply that came while no driver lived is taken (its task
is not run again), and the run id is an idempotency key."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from asyncio.subprocess import PIPE
from pathlib import Path

import durable_flows as flows
import pytest
from worker_processes import PYTHONPATH, ROOT, Workers

from graflow_async import (
    CheckpointError,
    GraphError,
    TaskFailedError,
    TransportError,
    recover,
    run,
    run_result,
    task,
    workflow,
)
from graflow_async.run.homes import pack
from graflow_async.run.journal.redis import RedisJournal
from graflow_async.transports.redis import RedisStreamsTransport

pytestmark = pytest.mark.timeout(90)


def notes(directory: Path) -> list[tuple[str, int]]:
    path = directory / "notes"
    if not path.exists():
        return []
    return [(line.split(":")[0], int(line.split(":")[1])) for line in path.read_text().split()]


async def wait_for(directory: Path, names: set[str], driver: asyncio.subprocess.Process) -> None:
    """Until tasks `names` have noted that they ran, while `driver` lives."""
    deadline = time.monotonic() + 30
    while names - {name for name, _ in notes(directory)}:
        assert time.monotonic() < deadline, notes(directory)
        assert driver.returncode is None, "the driver ended early"
        await asyncio.sleep(0.02)


async def driver_process(run_id: str, tmp_path: Path, redis_url: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "GFT_REDIS_URL": redis_url}
    code = "import asyncio, sys, durable_flows as f; asyncio.run(f.drive(sys.argv[1], sys.argv[2], f.DEMO))"
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, run_id, str(tmp_path / "checkpoints"), env=env, cwd=ROOT, stdout=PIPE
    )


async def api_status(transport: RedisStreamsTransport, run_id: str) -> str:
    """The run's status as `GET /api/runs/{id}` of a web app on the same Redis tells it."""
    from aiohttp.test_utils import TestClient, TestServer

    from graflow_async.feedback import RedisFeedbackStore
    from graflow_async.web import create_app

    store = RedisFeedbackStore(connection=transport.conn, namespace=transport.namespace)
    async with TestClient(TestServer(create_app(feedback_store=store))) as client:
        answer = await client.get(f"/api/runs/{run_id}")
        assert answer.status == 200, await answer.text()
        return str((await answer.json())["status"])


@pytest.fixture
def durable_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GFT_DURABLE_DIR", str(tmp_path))  # before the workers start: their tasks note here
    return tmp_path


async def test_a_run_on_redis_is_durable_and_its_id_is_an_idempotency_key(
    workers: Workers, redis_url: str, durable_dir: Path
) -> None:
    workers.start(1, "--import", "durable_flows")
    (durable_dir / "gate").touch()
    async with RedisStreamsTransport(redis_url) as transport:
        result = await run(flows.DEMO, run_id="order-1", transport=transport)
        assert result.output == 45 and result.channel == {"fetched": 1, "slowed": 1}
        ran = len(notes(durable_dir))
        again = await run(flows.DEMO, run_id="order-1", transport=transport)  # attaches: nothing runs again
        assert again.results == result.results and len(notes(durable_dir)) == ran
        assert (await run_result("order-1", transport=transport, timeout=5)).output == 45
        assert (await recover("order-1", transport=transport)).output == 45  # an ended run: its outcome
        with pytest.raises(GraphError, match="order-1"):
            await run(flows.SAVING, run_id="order-1", transport=transport)  # another workflow under its id
        keys = {k.decode() for k in await transport.client.keys("graflow:run:{order-1}:*")}
        assert keys >= {"graflow:run:{order-1}:outcome", "graflow:run:{order-1}:journal"}
        assert await transport.client.ttl("graflow:run:{order-1}:outcome") > 6 * 86400  # kept `retention` seconds
        with pytest.raises(CheckpointError, match="no durable run 'nowhere'"):
            await run_result("nowhere", transport=transport)
        await transport.client.set("graflow:run:{idle}:header", pack(_header()))  # a run that never ends
        with pytest.raises(TimeoutError):
            await run_result("idle", transport=transport, timeout=0.3)


def _header() -> dict:
    return {
        "workflow": "durable_flows:DEMO",
        "fingerprint": flows.DEMO.compile().fingerprint,
        "initial_channel": {},
        "default_max_retries": 0,
        "max_cycles": 100,
    }


async def test_a_killed_driver_s_run_is_recovered_and_the_reply_that_came_meanwhile_is_taken(
    workers: Workers, redis_url: str, durable_dir: Path
) -> None:
    [worker] = workers.start(1, "--import", "durable_flows", "--no-adopt")
    driver = await driver_process("order-2", durable_dir, redis_url)
    await wait_for(durable_dir, {"slow", "side"}, driver)
    driver.send_signal(signal.SIGKILL)
    await driver.wait()
    (durable_dir / "gate").touch()  # `slow` ends on the worker while no driver lives
    await asyncio.sleep(0.5)
    async with RedisStreamsTransport(redis_url) as transport:
        assert await api_status(transport, "order-2") == "running"  # waiting to be adopted: not interrupted
        started = time.monotonic()
        result = await asyncio.wait_for(recover("order-2", transport=transport, owner_lease=2.0), 30)
        took = time.monotonic() - started
        assert await api_status(transport, "order-2") == "completed"
    assert result.output == 45 and result.channel == {"fetched": 1, "slowed": 1}
    ran = [name for name, _ in notes(durable_dir)]
    assert sorted(ran) == ["double", "fetch", "side", "slow", "total"], ran  # each once: nothing ran again
    assert {pid for _, pid in notes(durable_dir)} == {worker.process.pid}
    assert took < 2.0 + 2.5  # waited for the dead driver's lease (2 s) to lapse, and a bounded while more


@pytest.mark.parametrize(("value", "kind"), [(object(), "object"), (2**70, "int")])  # an int: the plain-result path
async def test_a_durable_run_s_unkeepable_result_fails_its_task(tmp_path: Path, value: object, kind: str) -> None:
    @task
    def opaque() -> object:
        return value

    with workflow("opaque") as wf:
        wf.add(opaque)

    with pytest.raises(TaskFailedError, match="opaque") as info:
        await run(wf, durable=True, checkpoint_store=tmp_path)
    assert f"returned a {kind}" in str(info.value.__cause__) and "journal" in str(info.value.__cause__)


async def test_workers_adopt_a_run_whose_driver_died_and_exactly_one_carries_it_on(
    workers: Workers, redis_url: str, durable_dir: Path
) -> None:
    pool = workers.start(2, "--import", "durable_flows")  # two adopters race for the run
    driver = await driver_process("order-3", durable_dir, redis_url)
    await wait_for(durable_dir, {"slow", "side"}, driver)
    driver.send_signal(signal.SIGKILL)
    await driver.wait()
    killed = time.monotonic()
    (durable_dir / "gate").touch()
    async with RedisStreamsTransport(redis_url) as transport:
        result = await run_result("order-3", transport=transport, timeout=30)
        ended = time.monotonic() - killed
        owner = await transport.client.hget("graflow:run:{order-3}:owner", "epoch")
    assert result.output == 45 and result.channel == {"fetched": 1, "slowed": 1}
    assert sorted(name for name, _ in notes(durable_dir)) == ["double", "fetch", "side", "slow", "total"]
    assert owner == b"2"  # one adoption: epoch 1 the driver's, 2 the adopter's
    adopted = [w for w in pool if "an adopted durable run ended" in w.log.read_text()]
    assert len(adopted) == 1, [w.log.read_text()[-2000:] for w in pool]
    assert ended < 2.0 + 1.0 + 2.5  # the lease (2 s), the adopter's look (<1 s), the rest of the run (a loaded CI)


async def test_a_paused_driver_that_comes_back_after_the_takeover_changes_nothing_and_returns_the_outcome(
    workers: Workers, redis_url: str, durable_dir: Path
) -> None:
    workers.start(1, "--import", "durable_flows")
    driver = await driver_process("order-4", durable_dir, redis_url)
    await wait_for(durable_dir, {"slow", "side"}, driver)
    driver.send_signal(signal.SIGSTOP)  # paused past its lease: a worker adopts the run
    (durable_dir / "gate").touch()
    try:
        async with RedisStreamsTransport(redis_url) as transport:
            result = await run_result("order-4", transport=transport, timeout=30)
            assert await transport.client.hget("graflow:run:{order-4}:owner", "epoch") == b"2"
    finally:
        driver.send_signal(signal.SIGCONT)
    out, _ = await asyncio.wait_for(driver.communicate(), 30)  # its `run` returns the run's outcome
    assert driver.returncode == 0 and out.decode().split() == ["output=45"]
    assert result.output == 45
    assert sorted(name for name, _ in notes(durable_dir)) == ["double", "fetch", "side", "slow", "total"]


async def test_a_durable_run_whose_redis_restarted_without_persistence_fails_clearly(tmp_path: Path) -> None:
    """Its journal is gone with the restart: the run fails with a TransportError saying so
    (never hangs, never carries on from a journal that forgot what ran)."""
    import remote_flows
    from redis_server import RedisServer

    server = RedisServer()  # no AOF, no RDB: a restart empties it
    server.start()
    workers = Workers(server.url, tmp_path)
    try:
        workers.start(1)
        async with RedisStreamsTransport(server.url, lease_timeout=2.0) as transport:
            events: list = []
            running = asyncio.create_task(
                run(remote_flows.counting(40, 0.05), transport=transport, run_id="forgotten", on_event=events.append)
            )
            while sum(e.kind == "task_completed" for e in events) < 3:
                assert not running.done(), running
                await asyncio.sleep(0.02)
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            with pytest.raises(TransportError, match="journal of durable run forgotten lost facts"):
                await asyncio.wait_for(running, 30)
    finally:
        workers.close()
        server.cleanup()


async def test_serve_adopts_a_run_whose_driver_died_when_workers_do_not(
    workers: Workers, redis_url: str, durable_dir: Path
) -> None:
    import argparse

    from graflow_async.cli.serve import add_serve_command, serve

    [worker] = workers.start(1, "--import", "durable_flows", "--no-adopt")
    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers(dest="command"))
    args = ["serve", "--port", "0", "--feedback-store", redis_url, "--workflow", "durable_flows:DEMO"]
    server = asyncio.create_task(serve(parser.parse_args(args)))
    try:
        driver = await driver_process("order-6", durable_dir, redis_url)
        await wait_for(durable_dir, {"slow", "side"}, driver)
        driver.send_signal(signal.SIGKILL)
        await driver.wait()
        (durable_dir / "gate").touch()
        async with RedisStreamsTransport(redis_url) as transport:
            result = await run_result("order-6", transport=transport, timeout=30)
            assert await transport.client.hget("graflow:run:{order-6}:owner", "epoch") == b"2"  # serve's
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
    assert result.output == 45
    assert sorted(name for name, _ in notes(durable_dir)) == ["double", "fetch", "side", "slow", "total"]
    assert "adopted" not in worker.log.read_text()  # --no-adopt: the worker left it to serve


async def test_a_durable_run_lets_the_replies_it_journaled_go(workers: Workers, redis_url: str) -> None:
    """Its reply stream holds only what it has not journaled yet (the journal's append
    trims the rest), so a long run's stream stays short and a takeover reads little."""
    import remote_flows

    workers.start(1)
    lengths: list[int] = []
    async with RedisStreamsTransport(redis_url) as transport:
        running = asyncio.create_task(run(remote_flows.counting(40, 0.01), transport=transport, run_id="trimmed"))
        while not running.done():
            lengths.append(await transport.client.xlen("graflow:run:{trimmed}:replies"))
            await asyncio.sleep(0.005)
        result = await running
        journaled = len((await RedisJournal(transport, "trimmed").read()).facts)
    assert result.channel == {"count": 40} and journaled >= 80  # 40 replies journaled (and a step each)
    assert len(lengths) > 20 and max(lengths) <= 3, lengths


async def test_an_adopter_pages_through_orphans_it_cannot_adopt(redis_url: str) -> None:
    """Runs whose workflow no process here imported do not hide the ones after them."""
    from graflow_async.run.adopt import PAGE, Adopter

    async with RedisStreamsTransport(redis_url) as transport:
        foreign = {**_header(), "workflow": "elsewhere:FLOW"}
        for i in range(PAGE + 5):
            await transport.client.set(f"graflow:run:{{lost-{i}}}:header", pack(foreign))
            await transport.client.zadd("graflow:durable", {f"lost-{i}": i})
        adopter = Adopter(transport)
        await adopter.look()
        await adopter.look()
        assert len(adopter.passed) == PAGE + 5 and not adopter.carrying


async def test_a_server_that_lost_its_scripts_gets_the_journal_whole(
    workers: Workers, redis_url: str, durable_dir: Path
) -> None:
    """A turn's append goes by digest in the round trip of its messages; a server that
    forgot the script (restarted, SCRIPT FLUSH) answers NOSCRIPT, and the append is sent
    again in full: every fact journaled, as in a run that never met it."""
    workers.start(1, "--import", "durable_flows")
    (durable_dir / "gate").touch()
    async with RedisStreamsTransport(redis_url) as transport:
        first = await run(flows.DEMO, run_id="order-scripts", transport=transport)
        await transport.client.script_flush()
        result = await run(flows.DEMO, run_id="order-noscript", transport=transport)
        assert result.results == first.results
        kept = await RedisJournal(transport, "order-scripts").read()
        again = await RedisJournal(transport, "order-noscript").read()
        assert len(again.facts) == len(kept.facts) > 0

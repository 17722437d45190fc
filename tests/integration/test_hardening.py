"""Workers trust nothing they read and survive every fault (SPEC section 7): real worker
processes on a real redis-server."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import guarded_pkg
import guarded_pkg.markers as guarded_markers
import pytest
import remote_faults as rf
from redis_server import RedisServer
from worker_processes import RUN_TIMEOUT, Workers, queue_settled, wait_exit, wait_for

from graflow_async import TaskFailedError, chain, parallel, run, workflow
from graflow_async.exceptions import RemoteTaskError
from graflow_async.logs import as_text
from graflow_async.transports.keys import Keys
from graflow_async.transports.redis import RedisStreamsTransport
from graflow_async.transports.redis.claims import ALIVE_FOR
from graflow_async.wire.messages import TaskMessage, TaskReply


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


# --- what a worker runs ------------------------------------------------------------------------------
def entry(ref: str, kwargs: dict[str, Any], reply_to: str = "run:forged:replies") -> TaskMessage:
    return TaskMessage("forged", "forged", 0, 1, reply_to, kwargs, None, ref, lease_timeout=30.0, max_deliveries=3)


async def test_workers_run_only_tasks_of_the_modules_they_import(
    workers: Workers, redis_url: str, client: Any, tmp_path: Path
) -> None:
    [worker] = workers.start(1)
    traps = {name: tmp_path / name for name in ("system", "plain", "rmtree", "other", "dotted")}
    keep = tmp_path / "keep"
    keep.mkdir()
    forged = [
        entry("os:system", {"command": f"touch {traps['system']}"}),  # a builtin of another module
        entry("remote_faults:not_a_task", {"path": str(traps["plain"])}),  # a plain function next to the tasks
        entry("shutil:rmtree", {"path": str(keep)}),
        entry("graflow_async.web.app:create_app", {}),  # importable, not a task, not an imported module
        entry("remote_faults:os.system", {"command": f"touch {traps['dotted']}"}),  # reached through a module
        entry("remote_flows.os:system", {"command": f"touch {traps['other']}"}),  # a "submodule" that is not one
    ]
    async with RedisStreamsTransport(redis_url) as transport:
        await transport.send("tasks", forged)
        await wait_for(lambda: dead_count(client, 6), 10, "the forged entries in the dead-letter stream")
    dead = await client.xrange("graflow:dead")
    assert [fields[b"reason"].decode().startswith("refused: ") for _, fields in dead] == [True] * 6
    assert not any(p.exists() for p in traps.values()) and keep.exists()  # nothing ran
    assert worker.process.poll() is None and "refused a task" in worker.output()
    assert await client.xlen("graflow:tasks") == 0  # settled, not left to be claimed again
    assert (await remote_run(redis_url, workflow_of(rf.pid))).output == worker.pid  # still serving


async def dead_count(client: Any, n: int) -> bool:
    return int(await client.xlen("graflow:dead")) >= n


async def test_an_entry_never_makes_a_worker_import_a_module(
    workers: Workers, redis_url: str, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`guarded_pkg` is imported at start (and imports `guarded_pkg.eager`); its submodule
    `lazy` and its `__main__` are not, and importing either leaves a marker file."""
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv(guarded_markers.ENV, str(markers))
    [worker] = workers.start(1, "--import", "guarded_pkg")
    refused = {
        "guarded_pkg.lazy": entry("guarded_pkg.lazy:lazy_task", {}),
        "guarded_pkg.__main__": entry("guarded_pkg.__main__:main_task", {}),
    }
    async with RedisStreamsTransport(redis_url) as transport:
        await transport.send("tasks", list(refused.values()))
        await wait_for(lambda: dead_count(client, 2), 10, "both entries in the dead-letter stream")
    reasons = [fields[b"reason"].decode() for _, fields in await client.xrange("graflow:dead")]
    for module in refused:
        [reason] = [r for r in reasons if f"{module}:" in r]
        assert reason.startswith("refused: ") and "not imported by this worker at start" in reason, reason
        assert f"add --import {module}" in reason, reason
    assert sorted(p.name for p in markers.iterdir()) == []  # neither module was imported: none of its code ran
    assert worker.process.poll() is None and await client.xlen("graflow:tasks") == 0
    # what the package imported at start still runs
    assert (await remote_run(redis_url, workflow_of(guarded_pkg.eager.eager_task))).output == worker.pid
    assert sorted(p.name for p in markers.iterdir()) == []


# --- signed entries ----------------------------------------------------------------------------------
NEW, OLD = "n3w-shared-secret-0123456789", "0ld-shared-secret-9876543210"


async def test_signed_fleet_accepts_old_and_new_secrets_and_buries_the_rest_unread(
    workers: Workers, redis_url: str, client: Any, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(f"{NEW}\n{OLD}\n")  # rotating: sign with the new one, still accept the old
    [worker] = workers.start(1, "--secret-file", str(secret_file))
    for secret in ([NEW, OLD], [OLD, NEW]):  # switched, and not yet switched: both accept both
        async with RedisStreamsTransport(redis_url, secret=secret) as transport:
            async with asyncio.timeout(RUN_TIMEOUT):
                assert (await run(workflow_of(rf.pid), transport=transport)).output == worker.pid
    trap = tmp_path / "ran"
    real = entry("remote_faults:count_and_nap", {"marker_dir": str(tmp_path), "index": 0, "seconds": 0})
    async with (
        RedisStreamsTransport(redis_url) as unsigned,
        RedisStreamsTransport(redis_url, secret="some-other-secret-000000") as stranger,
    ):
        await unsigned.send("tasks", [real])
        await stranger.send("tasks", [real])
    garbage = {b"m": b"\xc1 not msgpack at all", b"s": b"\x00" * 32}
    await client.xadd("graflow:tasks", garbage)
    await wait_for(lambda: dead_count(client, 3), 10, "three forged entries in the dead-letter stream")
    reasons = [fields[b"reason"] for _, fields in await client.xrange("graflow:dead")]
    assert reasons == [b"missing signature", b"wrong signature", b"wrong signature"]  # checked before decoding
    assert not trap.exists() and not list(tmp_path.glob("ran-*"))  # the real task was never run
    assert worker.process.poll() is None


async def test_a_run_with_a_secret_drops_unsigned_replies(redis_url: str) -> None:
    async with RedisStreamsTransport(redis_url, secret=NEW) as signed, RedisStreamsTransport(redis_url) as unsigned:
        await signed.open_queue("run:x:replies")
        inbox = signed.inbox("run:x:replies")
        forged = TaskReply("x", 0, 1, True, "forged")
        await unsigned.send("run:x:replies", [forged])
        await signed.send("run:x:replies", [TaskReply("x", 0, 1, True, "genuine")])
        batch = await asyncio.wait_for(inbox.receive_batch(), 5)
    assert [r.value for r in batch] == ["genuine"]


def test_secrets_from_the_environment_and_their_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    from graflow_async.transports.signing import signer_for

    monkeypatch.setenv("GRAFLOW_SECRET", NEW)
    monkeypatch.setenv("GRAFLOW_SECRET_PREVIOUS", OLD)
    signer = signer_for(None)
    assert signer is not None
    assert signer.verify("s", b"data", signer_for(OLD).sign("s", b"data"))  # type: ignore[union-attr]
    assert signer.sign("s", b"data") == signer_for(NEW).sign("s", b"data")  # type: ignore[union-attr]
    assert not signer.verify("other-stream", b"data", signer.sign("s", b"data"))  # bound to its stream
    with pytest.raises(ValueError, match="at least 16 bytes"):
        signer_for("short")


# --- revocation ----------------------------------------------------------------------------------------
def queued(marker_dir: Path, n: int, first: Any = None) -> Any:
    with workflow(f"queued-{n}") as wf:
        if first is not None:
            wf.add(first)
        wf.add(
            *[rf.count_and_nap(task_id=f"nap{i}", marker_dir=str(marker_dir), index=i, seconds=0.2) for i in range(n)]
        )
    return wf


@pytest.mark.parametrize("how", ["cancelled", "failed"])
async def test_tasks_of_a_run_that_has_ended_are_skipped_not_run(
    workers: Workers, redis_url: str, client: Any, tmp_path: Path, how: str
) -> None:
    [worker] = workers.start(1, "--concurrency", "1")
    if how == "cancelled":
        running = asyncio.ensure_future(remote_run(redis_url, queued(tmp_path, 40)))
        await wait_for(lambda: list(tmp_path.glob("ran-*")), 10, "the first task to start")
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    else:
        with pytest.raises(TaskFailedError, match="fails at once"):
            await remote_run(redis_url, queued(tmp_path, 40, first=rf.fail_fast))
    await wait_for(lambda: queue_settled(client), 15, "the worker to settle the 40 queued tasks")
    ran = len(list(tmp_path.glob("ran-*")))
    assert ran <= 2, f"{ran} of 40 tasks of a {how} run still ran"
    assert worker.process.poll() is None and "skipped a task of a run that has ended" in worker.output()


# --- a Redis restart that loses everything -------------------------------------------------------------
def completed_steps(events: list[Any]) -> int:
    return sum(e.kind == "task_completed" for e in events)


async def test_a_redis_restart_without_persistence_is_survived_by_workers_and_the_run(tmp_path: Path) -> None:
    server = RedisServer()  # no persistence: the restart loses every stream and group
    fleet = Workers(server.url, tmp_path)
    try:
        server.start()
        fleet.start(2)
        with workflow("restart") as wf:
            chain(*[rf.logged_step(task_id=f"step{i}", index=i) for i in range(6)])
        events: list[Any] = []
        async with RedisStreamsTransport(server.url, lease_timeout=5) as transport:
            # not durable: a durable run's journal is gone with the restart, and it stops
            # (test_durable_redis.py); this one carries on, sending again what was lost
            running = asyncio.ensure_future(run(wf, transport=transport, on_event=events.append, durable=False))
            try:
                await wait_for(lambda: completed_steps(events) >= 2, 10, "two steps to complete")
                await asyncio.to_thread(server.stop)
                await asyncio.sleep(0.5)  # the outage: Redis stays down this long
                await asyncio.to_thread(server.start)
                restarted = time.monotonic()
                async with asyncio.timeout(RUN_TIMEOUT):
                    result = await running
                recovered = time.monotonic() - restarted
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
        assert result.results == {f"step{i}": i for i in range(6)}
        assert sorted(set(result.channel["steps"])) == list(range(6))  # a step sent again may log twice
        for w in fleet.all:
            assert w.process.poll() is None, w.output()  # no worker exited
            assert "Traceback" not in w.output()
        print(f"\nrecovered {recovered:.2f} s after the restart; steps logged {result.channel['steps']}")
    finally:
        fleet.close()
        server.cleanup()


# --- SIGTERM past the grace period, and workers that died -------------------------------------------
async def test_sigterm_past_the_grace_period_hands_the_tasks_back_at_once(
    workers: Workers, redis_url: str, client: Any, tmp_path: Path
) -> None:
    [first] = workers.start(1, "--grace-period", "0.5")
    sync_marker, async_marker = tmp_path / "sync", tmp_path / "async"
    with workflow("handed-back") as wf:
        wf.add(
            rf.blocking_once(task_id="sync", marker=str(sync_marker)),
            rf.waiting_once(task_id="async", marker=str(async_marker)),
        )
    async with RedisStreamsTransport(redis_url) as transport:  # the default 30 s lease
        running = asyncio.ensure_future(run(wf, transport=transport))
        try:
            await wait_for(lambda: sync_marker.exists() and async_marker.exists(), 10, "both tasks to start")
            [second] = workers.start(1)
            first.process.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            assert await wait_exit(first, 5) == 0  # not held by the thread still sleeping
            async with asyncio.timeout(10):  # not after the 30 s lease
                result = await running
            handed_over = time.monotonic() - stopped
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    assert result.results == {"sync": second.pid, "async": second.pid}
    assert handed_over < 5, handed_over
    out = first.output()
    assert out.count("grace period over") == 1 and "Traceback" not in out
    consumers = {as_text(c["name"]) for c in await client.xinfo_consumers("graflow:tasks", "graflow:workers")}
    assert consumers == {second.worker_id}  # the stopped worker left the group
    print(f"\nhanded back and finished {handed_over:.2f} s after SIGTERM")


async def test_a_crashed_workers_consumer_goes_once_its_tasks_are_reclaimed(
    workers: Workers, redis_url: str, client: Any, tmp_path: Path
) -> None:
    [doomed, survivor] = workers.start(2, "--concurrency", "1")
    marker = tmp_path / "async"
    with workflow("crash") as wf:
        wf.add(rf.waiting_once(task_id="t", marker=str(marker)))
    async with RedisStreamsTransport(redis_url, lease_timeout=1.0) as transport:
        running = asyncio.ensure_future(run(wf, transport=transport))
        try:
            await wait_for(marker.exists, 10, "the task to start")
            holder = doomed if int(marker.read_text()) == doomed.pid else survivor
            other = survivor if holder is doomed else doomed
            holder.process.kill()
            async with asyncio.timeout(RUN_TIMEOUT):
                assert (await running).results == {"t": other.pid}
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)

    # The dead worker's word that it is alive runs out on its own, within ALIVE_FOR (10 s)
    # of its last refresh: the test checks that it would, then lets Redis's clock skip ahead.
    alive = Keys("graflow").alive(holder.worker_id)
    assert 0 < await client.pttl(alive) <= ALIVE_FOR * 1000
    await client.pexpire(alive, 1)

    async def only_the_live_one() -> bool:
        found = {as_text(c["name"]) for c in await client.xinfo_consumers("graflow:tasks", "graflow:workers")}
        return found == {other.worker_id}

    await wait_for(only_the_live_one, 15, "the dead worker's consumer to be removed")

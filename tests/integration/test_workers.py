"""Runs spread over real worker processes on a real redis-server (SPEC section 7).

Workers are ``python -m graflow_async worker`` subprocesses importing
`remote_flows`; every one is killed when its fixture ends. Tasks report the pid of
the process that ran them, so the tests can tell where each one ran.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import remote_flows
from redis.asyncio import Redis
from redis_server import RedisServer
from worker_processes import (
    ROOT,
    RUN_TIMEOUT,
    Pool,
    Workers,
    background,
    free_port,
    queue_settled,
    scrape,
    wait_exit,
    wait_for,
    worker_command,
    worker_env,
)

from graflow_async import (
    CoordinationBackend,
    ParallelGroupError,
    RetryLimitExceededError,
    TaskFailedError,
    WorkflowCancelledError,
    parallel,
    run,
    task,
    workflow,
)
from graflow_async.exceptions import RemoteTaskError
from graflow_async.transports.redis import RedisStreamsTransport


async def remote_run(url: str, wf: Any, **kwargs: Any) -> Any:
    async with RedisStreamsTransport(url, connect_timeout=2) as transport:
        async with asyncio.timeout(RUN_TIMEOUT):
            return await run(wf, transport=transport, **kwargs)


# --- runs on workers work as they do locally -------------------------------------------------------
async def test_results_output_channel_and_parameters(pool: Pool) -> None:
    result = await remote_run(pool.url, remote_flows.pipeline(), initial_channel={"seed": 5})
    worker_pids = pool.workers.pids
    assert result.status == "completed"
    assert result.results["start"] == 10  # seed from the initial channel, doubled
    assert result.results["square"]["value"] == 100  # `start` resolved from a result
    assert result.results["square"]["pid"] in worker_pids  # a plain function, on a worker
    assert result.results["scaled"] == 10 * 3 + 100  # `factor` from the channel, `offset` default
    summary = result.results["summary"]
    assert summary["total"] == 230
    assert summary["keys"] == ["factor", "seed", "started_by"]  # what tasks on workers wrote
    assert summary["run_id"] == result.run_id and summary["task_id"] == "summary"
    assert result.output == summary
    assert result.channel == {"seed": 5, "started_by": result.channel["started_by"], "total": 230}
    assert result.channel["started_by"] in worker_pids
    assert os.getpid() not in worker_pids
    assert summary["channel"] == "RunChannel"  # the run's channel, reached by messages from a worker

    local = await run(remote_flows.pipeline(), initial_channel={"seed": 5})  # the same, in-process
    assert local.results["summary"]["channel"] == "RunChannel"
    for outcome in (local, result):
        outcome.results["square"].pop("pid")
        outcome.results["summary"].pop("run_id")
        outcome.results["summary"].pop("channel")
        outcome.channel.pop("started_by")
    assert result.results == local.results
    assert result.output == local.output
    assert result.channel == local.channel


async def test_a_missing_parameter_fails_naming_it(pool: Pool) -> None:
    with workflow("remote-missing") as wf:
        wf.add(remote_flows.scaled)  # no `start` result, no channel key
    with pytest.raises(TaskFailedError, match="'start'") as info:
        await remote_run(pool.url, wf)
    assert info.value.task_id == "scaled"


async def test_retries_on_workers(pool: Pool) -> None:
    events: list[Any] = []
    result = await remote_run(pool.url, remote_flows.retrying(), on_event=events.append)
    assert result.results["flaky"]["attempt"] == 3
    assert result.results["flaky"]["pid"] in pool.workers.pids
    assert result.output == "after"
    assert [e.data["attempt"] for e in events if e.kind == "task_retrying"] == [1, 2]


async def test_retries_run_out_with_the_remote_error(pool: Pool) -> None:
    with workflow("remote-retries-out") as wf:
        wf.add(remote_flows.flaky(task_id="always", fail_times=10))
    with pytest.raises(RetryLimitExceededError) as info:
        await remote_run(pool.url, wf)
    err = info.value
    assert (err.task_id, err.attempts, err.max_retries) == ("always", 4, 3)
    assert isinstance(err.last_error, RemoteTaskError)
    assert err.last_error.type_name == "ConnectionError"
    assert err.last_error.remote_message == "attempt 4 failed"


async def test_strict_group_collects_the_remote_failures(pool: Pool) -> None:
    with pytest.raises(ParallelGroupError) as info:
        await remote_run(pool.url, remote_flows.failing_group("strict"))
    err = info.value
    assert err.group_id == "members"
    assert err.successful_tasks == ["where"]
    assert [task_id for task_id, _ in err.failed_tasks] == ["boom", "sync_boom"]
    (_, boom), (_, sync_boom) = err.failed_tasks
    assert isinstance(boom, RemoteTaskError) and isinstance(sync_boom, RemoteTaskError)
    assert (boom.type_name, boom.remote_message) == ("ValueError", "it broke")
    assert (sync_boom.type_name, sync_boom.remote_message) == ("KeyError", "'sync broke'")
    assert "remote_flows.py" in boom.traceback and "raise ValueError(message)" in boom.traceback
    assert "ValueError: it broke" in boom.traceback
    assert "raise KeyError(message)" in sync_boom.traceback


async def test_best_effort_group_carries_on(pool: Pool) -> None:
    result = await remote_run(pool.url, remote_flows.failing_group("best_effort"))
    assert result.output == "after"
    assert result.results["where"] in pool.workers.pids
    assert "boom" not in result.results and "sync_boom" not in result.results


async def test_cancel_workflow_from_a_worker_task(pool: Pool) -> None:
    with pytest.raises(WorkflowCancelledError) as info:
        await remote_run(pool.url, remote_flows.cancelling())
    assert info.value.task_id == "canceller"
    assert info.value.reason == "stopped by a worker task"
    assert "stopped by a worker task" in str(info.value)


async def test_parallel_tasks_spread_over_the_workers(pool: Pool) -> None:
    result = await remote_run(pool.url, remote_flows.fan(8, 0.3))
    pids = set(result.results.values())
    assert pids <= pool.workers.pids
    assert len(pids) == len(pool.workers.all)  # with 2 workers (4 tasks each at most), both worked


# --- one group on workers, the rest local ----------------------------------------------------------
@pytest.mark.parametrize("how", ["redis_url", "redis_client"])
async def test_only_the_redis_groups_members_run_on_workers(pool: Pool, how: str) -> None:
    client = Redis.from_url(pool.url)
    try:
        config = {"redis_url": pool.url} if how == "redis_url" else {"redis_client": client}
        async with asyncio.timeout(RUN_TIMEOUT):
            result = await run(remote_flows.routed(config))
        assert await client.ping()  # a client given in the config is not closed by the run
    finally:
        await client.aclose()
    here, workers = os.getpid(), pool.workers.pids
    note = f"from {here}"
    assert result.results["local_a"] == here
    assert result.results["remote_b"] in workers
    assert result.results["remote_c"] == {"pid": result.results["remote_c"]["pid"], "note": note}
    assert result.results["remote_c"]["pid"] in workers  # and it read what local_a wrote
    assert result.results["remote_d"] in workers
    assert result.results["local_e"] == {"pid": here, "note": note}
    assert result.channel == {"note": note}


@pytest.mark.parametrize("how", ["redis_url", "redis_client"])
async def test_a_lambda_outside_the_redis_group_runs_locally(pool: Pool, how: str) -> None:
    """The run ends with the group: the end of the run stops its reply pump at once
    (also with a client using a socket timeout, whose sends can swallow a cancellation)."""
    client = Redis.from_url(pool.url, socket_timeout=5)
    try:
        config = {"redis_url": pool.url} if how == "redis_url" else {"redis_client": client}
        local = task(lambda: os.getpid(), id="local_lambda")
        with workflow("lambda-outside") as wf:
            members = remote_flows.where(task_id="remote") | remote_flows.where(task_id="remote2")
            local >> members.with_execution(backend=CoordinationBackend.REDIS, backend_config=config)
        start = time.monotonic()
        async with asyncio.timeout(RUN_TIMEOUT):
            result = await run(wf)
        # a swallowed cancellation is noticed when the pump's poll returns (<= 0.5 s)
        assert time.monotonic() - start < (0.4 if how == "redis_url" else 2.0)
    finally:
        await client.aclose()
    assert result.results["local_lambda"] == os.getpid()
    assert {result.results["remote"], result.results["remote2"]} <= pool.workers.pids


async def test_a_redis_group_with_its_own_namespace(redis_url: str, workers: Workers) -> None:
    workers.namespace = "custom-ns"
    [worker] = workers.start(1)
    with workflow("namespaced") as wf:
        group = remote_flows.where(task_id="a") | remote_flows.where(task_id="b")
        group.with_execution(backend="redis", backend_config={"redis_url": redis_url, "namespace": "custom-ns"})
    async with asyncio.timeout(RUN_TIMEOUT):
        result = await run(wf)
    assert result.results == {"a": worker.pid, "b": worker.pid}


# --- reliability --------------------------------------------------------------------------------
async def test_a_killed_workers_task_is_reclaimed_within_the_lease(
    workers: Workers, redis_url: str, tmp_path: Path
) -> None:
    lease = 1.0
    started = workers.start(2)
    marker = tmp_path / "first-delivery"
    with workflow("reclaim") as wf:
        remote_flows.slow_once(task_id="slow", marker=str(marker)) >> remote_flows.after_group
    async with (
        RedisStreamsTransport(redis_url, lease_timeout=lease) as transport,
        background(run(wf, transport=transport)) as running,
    ):
        await wait_for(lambda: marker.exists() and marker.read_text(), 10, "the first delivery")
        victim = next(w for w in started if w.pid == int(marker.read_text()))
        victim.process.kill()
        killed = time.time()
        async with asyncio.timeout(RUN_TIMEOUT):
            result = await running
    survivor = next(w for w in started if w is not victim)
    assert result.results["slow"]["pid"] == survivor.pid
    assert result.results["slow"]["finished"] - killed <= lease + 1.0
    assert result.output == "after"


async def test_a_task_that_kills_every_worker_is_dead_lettered(
    workers: Workers, client: Redis, redis_url: str, tmp_path: Path
) -> None:
    workers.start(3)
    deliveries = tmp_path / "deliveries"
    deliveries.mkdir()
    with workflow("killer") as wf:
        remote_flows.kill_my_worker(task_id="killer", marker_dir=str(deliveries)) >> remote_flows.after_group
    async with RedisStreamsTransport(redis_url, lease_timeout=1.0, max_deliveries=2) as transport:
        with pytest.raises(TaskFailedError) as info:
            async with asyncio.timeout(RUN_TIMEOUT):
                await run(wf, transport=transport)
    assert info.value.task_id == "killer"
    assert "dead-lettered" in str(info.value)
    assert len(list(deliveries.iterdir())) == 2  # ran max_deliveries times, then never again
    [(_, fields)] = await client.xrange("graflow:dead")
    assert b"dead-lettered after 3 deliveries" in fields[b"reason"]
    assert await client.xlen("graflow:tasks") == 0


async def test_poison_messages_are_dead_lettered_and_the_worker_keeps_serving(
    workers: Workers, client: Redis, redis_url: str, tmp_path: Path
) -> None:
    from graflow_async.wire.codec import packb

    [worker] = workers.start(1)
    trap = tmp_path / "unpickled"
    poison = [
        {b"m": os.urandom(64)},
        {b"m": pickle.dumps(remote_flows.Trap(trap))},
        {b"m": packb({"t": "task", "run_id": "x"})},  # an incomplete envelope
        {b"m": packb([1, 2, 3])},  # msgpack, not an envelope
        {b"m": packb({"t": "raw", "v": "hello"})},  # an envelope, not a task
        {b"other": b"no m field"},
    ]
    for fields in poison:
        await client.xadd("graflow:tasks", fields)
    await wait_for(lambda: _dead_count(client, len(poison)), 10, "the poison messages to be dead-lettered")
    assert not trap.exists()
    dead = await client.xrange("graflow:dead")
    assert [f[b"m"] for _, f in dead][:2] == [poison[0][b"m"], poison[1][b"m"]]  # kept as they came
    assert all(f[b"queue"] == b"tasks" and f[b"reason"] for _, f in dead)
    result = await remote_run(redis_url, remote_flows.pipeline(), initial_channel={"seed": 1})
    assert result.results["square"]["pid"] == worker.pid
    assert worker.process.poll() is None
    assert not trap.exists()
    assert await client.xlen("graflow:tasks") == 0


async def _dead_count(client: Redis, n: int) -> bool:
    return int(await client.xlen("graflow:dead")) >= n


async def test_a_task_workers_cannot_import_fails_the_run_without_retries(
    workers: Workers, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers.start(1)
    name = f"only_here_{uuid.uuid4().hex[:8]}"  # importable here, not on the workers
    (tmp_path / f"{name}.py").write_text(
        "from graflow_async import RetryPolicy, task\n\n"
        "@task(retry_policy=RetryPolicy(max_retries=3, initial_interval=0.01))\n"
        "async def local_only():\n"
        "    return 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    monkeypatch.delitem(sys.modules, name)
    with workflow("unimportable") as wf:
        wf.add(module.local_only)
    events: list[Any] = []
    with pytest.raises(TaskFailedError) as info:
        await remote_run(redis_url, wf, on_event=events.append)
    assert not isinstance(info.value, RetryLimitExceededError)
    assert info.value.task_id == "local_only"
    assert f"{name}:local_only" in str(info.value)
    assert "outside the modules this worker runs tasks from" in str(info.value)
    assert f"--import {name}" in str(info.value)
    assert [e.kind for e in events if e.task_id == "local_only"] == ["task_started", "task_failed"]


async def test_duplicate_replies_are_dropped(workers: Workers, client: Redis, redis_url: str) -> None:
    """Every reply arrives twice. Taking fast's second copy as another completion would
    start parent_of_slow before slow finished, without its `slow` argument."""
    workers.start(1)
    run_id = uuid.uuid4().hex
    replies = f"graflow:run:{{{run_id}}}:replies"
    copied: list[bytes] = []
    stop = asyncio.Event()

    async def duplicate() -> None:
        last, ours = "0-0", set()
        async with Redis.from_url(redis_url) as reader:
            while not stop.is_set():
                for _, entries in await reader.xread({replies: last}, block=50) or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        if entry_id not in ours:
                            copy = await reader.xadd(replies, fields, nomkstream=True)  # as workers do
                            if copy is not None:
                                ours.add(copy)
                            copied.append(fields[b"m"])

    copier = asyncio.create_task(duplicate())
    try:
        result = await remote_run(redis_url, remote_flows.join(), run_id=run_id)
    finally:
        stop.set()
        await asyncio.wait_for(copier, 5)
    assert result.results["parent_of_slow"] == {"slow": "slow", "fast": 7}
    assert len(copied) >= 2  # fast's reply and slow's, at least, came twice
    assert await client.exists(replies) == 0


async def test_concurrent_runs_keep_separate_channels_and_leave_no_keys(
    workers: Workers, client: Redis, redis_url: str
) -> None:
    workers.start(2)
    wf = remote_flows.echo()
    async with RedisStreamsTransport(redis_url) as transport:
        async with asyncio.timeout(RUN_TIMEOUT):
            first, second = await asyncio.gather(
                run(wf, transport=transport, initial_channel={"tag": "first"}),
                run(wf, transport=transport, initial_channel={"tag": "second"}),
            )
    assert first.run_id != second.run_id
    for result, tag in ((first, "first"), (second, "second")):
        assert result.results["echo_channel"] == {"tag": tag, "run_id": result.run_id}
        assert result.channel == {"tag": tag, "echo": tag}
        assert await client.keys(f"graflow:run:{result.run_id}:*") == []  # its reply stream went with it
    assert await client.xlen("graflow:tasks") == 0


async def test_a_late_reply_does_not_bring_back_a_finished_runs_reply_stream(
    workers: Workers, client: Redis, redis_url: str
) -> None:
    """The run is cancelled while a sibling still runs on a worker; that sibling's
    reply, written after the run ended, must not leave a stream behind."""
    workers.start(1)
    with workflow("late-reply") as wf:
        wf.add(remote_flows.canceller, remote_flows.nap(task_id="late", seconds=0.5))
    run_id = uuid.uuid4().hex
    with pytest.raises(WorkflowCancelledError):
        await remote_run(redis_url, wf, run_id=run_id)
    await wait_for(lambda: queue_settled(client), 10, "the nap to end and its worker to reply")
    assert await client.xlen("graflow:tasks") == 0
    assert await client.exists(f"graflow:run:{{{run_id}}}:replies") == 0


# --- a Redis outage -----------------------------------------------------------------------------------
async def test_workers_and_the_run_wait_out_a_redis_restart(tmp_path: Path) -> None:
    server = RedisServer(appendonly=True)  # its streams and groups survive the restart
    workers = Workers(server.url, tmp_path)
    try:
        server.start()
        workers.start(2)
        events: list[Any] = []
        async with (
            RedisStreamsTransport(server.url, lease_timeout=5) as transport,
            background(run(remote_flows.counting(6, 0.25), transport=transport, on_event=events.append)) as running,
        ):
            await wait_for(lambda: sum(e.kind == "task_completed" for e in events) >= 2, 10, "a couple of steps")
            assert not running.done()
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(1.0)  # an outage window the run must wait through
            assert not running.done()  # waiting, not failed
            await asyncio.to_thread(server.start)
            async with asyncio.timeout(RUN_TIMEOUT):
                result = await running
        assert result.results == {f"step{i}": i + 1 for i in range(6)}
        assert result.channel == {"count": 6}
        for w in workers.all:
            assert w.process.poll() is None, w.output()  # they waited, they did not crash
    finally:
        workers.close()
        server.cleanup()


# --- starting and stopping workers ---------------------------------------------------------------------
async def test_a_worker_whose_import_fails_exits_non_zero(redis_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *worker_command(redis_url, "--import", "no_such_module"),
        env=worker_env(),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
            _, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode != 0
    assert "no_such_module" in stderr.decode()
    assert "ModuleNotFoundError" in stderr.decode()


async def test_sigterm_lets_the_running_task_finish_then_exits_0(
    workers: Workers, client: Redis, redis_url: str, tmp_path: Path
) -> None:
    [worker] = workers.start(1)
    started = tmp_path / "started"
    with workflow("graceful") as wf:
        remote_flows.sleep_then_mark(task_id="long", seconds=1.0, started=str(started)) >> remote_flows.where(
            task_id="next"
        )
    async with (
        RedisStreamsTransport(redis_url) as transport,
        background(run(wf, transport=transport)) as running,
    ):
        await wait_for(started.exists, 10, "the task to start")
        worker.process.send_signal(signal.SIGTERM)
        assert await wait_exit(worker, 10) == 0, worker.output()
        consumers = await client.xinfo_consumers("graflow:tasks", "graflow:workers")
        names = {c["name"].decode() if isinstance(c["name"], bytes) else c["name"] for c in consumers}
        assert worker.worker_id not in names  # a clean exit leaves the group
        # it finished `long` before exiting, and took nothing after the signal:
        # `next` waits in the stream for another worker
        await wait_for(lambda: _xlen(client, "graflow:tasks", 1), 5, "`next` to be queued")
        assert not running.done()
        [replacement] = workers.start(1)
        async with asyncio.timeout(RUN_TIMEOUT):
            result = await running
    assert result.results == {"long": worker.pid, "next": replacement.pid}


async def _xlen(client: Redis, stream: str, n: int) -> bool:
    return int(await client.xlen(stream)) == n


# --- metrics ------------------------------------------------------------------------------------------
async def test_a_worker_serves_prometheus_metrics(workers: Workers, client: Redis, redis_url: str) -> None:
    port = free_port()
    [worker] = workers.start(1, "--metrics-port", str(port))
    labels = '{stream="graflow:tasks"}'
    async with aiohttp.ClientSession() as http:
        _, idle = await scrape(http, port)
        assert idle[f"graflow_stream_consumers{labels}"] == 1  # listed before it took any task
        assert idle['graflow_worker_tasks_total{outcome="done"}'] == 0
        await remote_run(redis_url, remote_flows.retrying())  # flaky fails twice, then both tasks succeed
        await client.xadd("graflow:tasks", {b"m": b"\xc1 not msgpack"})
        await wait_for(lambda: _xlen(client, "graflow:dead", 1), 10, "the dead letter")
        text, samples = await scrape(http, port)
    assert samples[f"graflow_stream_length{labels}"] == 0
    assert samples[f"graflow_stream_pending{labels}"] == 0
    assert samples[f"graflow_stream_consumers{labels}"] == 1
    assert samples[f"graflow_dead_letters{labels}"] == 1
    assert samples['graflow_worker_tasks_total{outcome="done"}'] == 2
    assert samples['graflow_worker_tasks_total{outcome="failed"}'] == 2
    # per task, as this worker ran them: flaky's three attempts, two of them failed retries
    assert samples['graflow_tasks_started_total{task="flaky"}'] == 3
    assert samples['graflow_tasks_retried_total{task="flaky"}'] == 2
    assert samples['graflow_tasks_failed_total{task="flaky"}'] == 2
    assert samples['graflow_tasks_completed_total{task="flaky"}'] == 1
    assert samples['graflow_tasks_completed_total{task="after_group"}'] == 1
    assert samples['graflow_tasks_failed_total{task="after_group"}'] == 0
    assert samples['graflow_task_duration_seconds_count{task="flaky"}'] == 3
    assert samples['graflow_task_duration_seconds_bucket{le="+Inf",task="flaky"}'] == 3
    for name in (
        "graflow_stream_length",
        "graflow_stream_pending",
        "graflow_stream_consumers",
        "graflow_dead_letters",
        "graflow_worker_tasks_total",
        "graflow_tasks_started_total",
        "graflow_task_duration_seconds",
    ):
        assert f"# TYPE {name} " in text
    assert worker.process.poll() is None


async def test_worker_threads_sizes_the_workers_pool(workers: Workers, redis_url: str) -> None:
    workers.start(1, "--threads", "1", "--concurrency", "8")
    with workflow("threads") as wf:
        wf.add(parallel(*(remote_flows.thread_name(task_id=f"t{i}") for i in range(6))))
    async with RedisStreamsTransport(redis_url, connect_timeout=2) as transport:
        result = await run(wf, transport=transport)
    names = set(result.results.values())
    assert len(names) == 1 and next(iter(names)).startswith("graflow-task")


async def test_workers_run_on_uvloop_unless_told_asyncio(workers: Workers, redis_url: str) -> None:
    """The default loop is uvloop (the redis extra installs it); ``--loop asyncio`` keeps
    asyncio's own. Both run tasks, and the start line says which loop it is."""
    [fast] = workers.start(1)
    [plain] = workers.start(1, "--loop", "asyncio")
    with workflow("loops") as wf:
        parallel(*(remote_flows.where(task_id=f"t{i}") for i in range(8)))
    result = await remote_run(redis_url, wf)
    assert set(result.results.values()) <= {fast.pid, plain.pid}
    assert "loop=uvloop" in fast.output() and "loop=asyncio" in plain.output()


def test_loop_uvloop_without_uvloop_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from graflow_async.cli.main import EXIT_USAGE, main

    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    assert main(["worker", "--redis-url", "redis://127.0.0.1:1/0", "--loop", "uvloop"]) == EXIT_USAGE
    assert "uvloop is not installed" in capsys.readouterr().err

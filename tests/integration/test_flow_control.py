"""Flow control on real worker processes and a real redis-server (SPEC 11): limits hold
across workers and runs, judged from the tasks' own start and end times; a worker killed
while holding slots gives them up within its lease; a throttled task holds no slot and
can be cancelled; a key that cannot be formatted fails its task naming the field."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import limit_flows as flows
import pytest
from redis.asyncio import Redis
from worker_processes import RUN_TIMEOUT, Workers, background, free_port, scrape, wait_for

from graflow_async import TaskFailedError, run
from graflow_async.transports.redis import RedisStreamsTransport

pytestmark = pytest.mark.xdist_group("flow_control")
LIMITS = ("--import", "limit_flows")


async def on_redis(url: str, wf: Any, **kwargs: Any) -> Any:
    async with RedisStreamsTransport(url, connect_timeout=2) as transport:
        async with asyncio.timeout(RUN_TIMEOUT):
            return await run(wf, transport=transport, **kwargs)


async def test_limits_hold_across_two_workers_and_several_runs(workers: Workers, redis_url: str) -> None:
    workers.start(2, *LIMITS, "--concurrency", "3")  # neither worker can take every task
    events: list[Any] = []
    tenants, *gpus = await asyncio.gather(
        on_redis(redis_url, flows.tenants_wf(12), on_event=events.append),
        *(on_redis(redis_url, flows.gpu_wf(4, tag=str(k))) for k in range(3)),
    )
    spans = list(tenants.results.values())
    on_gpu = [s for result in gpus for s in result.results.values()]
    assert {s["pid"] for s in spans + on_gpu} == workers.pids  # both workers ran them
    for tenant in "ab":
        assert flows.most_at_once([s for s in spans if s["tenant"] == tenant]) == 2
    assert flows.most_at_once(spans) >= 3  # the tenants' keys ran side by side
    assert len(on_gpu) == 12 and flows.most_at_once(on_gpu) == 3  # one limit over three runs
    throttled = [e for e in events if e.kind == "task_throttled"]
    assert throttled and {tuple(e.limits) for e in throttled} == {("per_tenant",)}
    admitted = {e.task_id for e in events if e.kind == "task_admitted"}
    assert admitted == {e.task_id for e in throttled}  # each throttled task started in the end


async def test_a_rate_limit_never_exceeds_its_count_in_any_window(workers: Workers, redis_url: str) -> None:
    workers.start(2, *LIMITS)
    started = time.time()
    result = await on_redis(redis_url, flows.rated_wf(16))
    starts = [s["start"] for s in result.results.values()]
    # 5 per second: 16 starts take more than 3 s; a start is timed by its task a moment
    # after the server admitted it, so windows are judged a little shorter than a second
    assert flows.most_in_window(starts, 0.95) <= 5
    assert max(starts) - started >= 2.9
    assert flows.most_in_window(starts, 1.05) >= 5  # it does let 5 through in a window


async def test_a_worker_killed_holding_slots_gives_them_up_within_its_lease(
    workers: Workers, redis_url: str, tmp_path: Path
) -> None:
    lease = 2.0
    [holder] = workers.start(1, *LIMITS)
    async with RedisStreamsTransport(redis_url, lease_timeout=lease) as transport:
        async with background(run(flows.hold_wf(2, str(tmp_path)), transport=transport)) as holding:
            await wait_for(lambda: len(list(tmp_path.glob("hold-*"))) == 2, 10, "both slots held")
            holder.process.send_signal(signal.SIGKILL)
            holder.process.wait(5)
            killed = time.time()
            holding.cancel()  # its tasks are not run again: only the dead worker's slots stay held
        workers.start(1, *LIMITS)
        async with asyncio.timeout(RUN_TIMEOUT):
            result = await run(flows.after_hold_wf(2), transport=transport)
    waited = min(s["start"] for s in result.results.values()) - killed
    assert waited < lease + 1.5, waited  # the slots lapsed with the lease (and a sweep)
    assert waited > 0.5 * lease, waited  # ... and not before: they were held


async def test_a_throttled_task_holds_no_slot_and_can_be_cancelled(
    workers: Workers, redis_url: str, tmp_path: Path, client: Redis
) -> None:
    port = free_port()
    workers.start(1, *LIMITS, "--concurrency", "4", "--metrics-port", str(port))
    events: list[Any] = []
    async with RedisStreamsTransport(redis_url) as transport:
        async with background(run(flows.hold_wf(2, str(tmp_path)), transport=transport)):
            await wait_for(lambda: len(list(tmp_path.glob("hold-*"))) == 2, 10, "both slots held")
            waiting = asyncio.create_task(run(flows.after_hold_wf(1), transport=transport, on_event=events.append))
            await wait_for(lambda: any(e.kind == "task_throttled" for e in events), 10, "the task throttled")
            # throttled, it holds none of the worker's 4 slots: other work runs meanwhile
            other = await asyncio.wait_for(run(flows.rated_wf(2), transport=transport), RUN_TIMEOUT)
            assert len(other.results) == 2
            async with aiohttp.ClientSession() as http:
                _, samples = await scrape(http, port)
            assert samples['graflow_tasks_throttled{limit="held"}'] == 1
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(waiting, 5)
            assert not any(e.kind == "task_admitted" for e in events)

            async def settled() -> bool:  # the throttled task's entry: skipped, never run
                pending = await client.xpending("graflow:tasks", "graflow:workers")
                return bool(pending["pending"] == 2)  # only the two holds

            await wait_for(settled, 10, "the cancelled task's entry settled")


async def test_a_key_that_cannot_be_formatted_fails_its_task_naming_the_field(workers: Workers, redis_url: str) -> None:
    workers.start(1, *LIMITS)
    for where in ("redis", "here"):
        with pytest.raises(TaskFailedError, match="'order'") as info:
            if where == "redis":
                await on_redis(redis_url, flows.customer_wf())
            else:
                await run(flows.customer_wf())
        assert info.value.task_id == "c"
        assert "customer" in str(info.value)


async def test_a_high_priority_task_starts_ahead_of_a_ten_times_larger_backlog(
    workers: Workers, redis_url: str
) -> None:
    workers.start(1, *LIMITS, "--concurrency", "2")
    async with RedisStreamsTransport(redis_url) as transport:
        events: list[Any] = []
        async with background(run(flows.backlog_wf(20), transport=transport, priority=1, on_event=events.append)):
            await wait_for(lambda: sum(e.kind == "task_started" for e in events) == 20, 10, "the backlog queued")
            await asyncio.sleep(2 * flows.SPAN)  # the worker is busy with it
            sent = time.time()
            async with asyncio.timeout(RUN_TIMEOUT):
                result = await run(flows.urgent_wf(), transport=transport)
            # it waited for a slot (one backlog task's time), not behind the 16 or so still queued
            assert result.output["start"] - sent < flows.SPAN + 0.1
            later = [e for e in events if e.kind == "task_completed"]
        assert len(later) < 10, len(later)

"""Schedules on a real redis-server with real worker processes (SPEC 11): three
processes running one schedule start each tick once, judged from what Redis holds
(each tick's durable run, its outcome, its record) and from the task's own tally of
every time it ran."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from worker_processes import Workers, wait_for

from graflow_async.define.ticks import parse_tick
from graflow_async.wire.codec import unpackb

TICKS = 30
EVERY = 0.3  # seconds: 30 ticks in about 9 s


async def outcomes(client: aioredis.Redis, namespace: str) -> dict[str, dict]:
    """Every ended run of schedule `beat`: run id -> its outcome."""
    found = {}
    async for key in client.scan_iter(match=f"{namespace}:run:{{beat@*}}:outcome", count=1000):
        run_id = key.decode().split("{", 1)[1].rsplit("}", 1)[0]
        found[run_id] = unpackb(await client.get(key))
    return found


async def headers(client: aioredis.Redis, namespace: str) -> set[str]:
    """Every started run of schedule `beat` (its durable header), by run id; they sort by
    tick (one format per schedule)."""
    keys = client.scan_iter(match=f"{namespace}:run:{{beat@*}}:header", count=1000)
    return {key.decode().split("{", 1)[1].rsplit("}", 1)[0] async for key in keys}


async def test_three_processes_running_one_schedule_start_each_tick_once_over_30_ticks(
    workers: Workers, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tally = tmp_path / "ticks.txt"
    monkeypatch.setenv("GRAFLOW_TEST_TICKS", str(tally))
    procs = workers.start(3, "--import", "schedule_flows", "--schedule", f"beat=every:{EVERY}=schedule_flows:beat")
    client = aioredis.Redis.from_url(redis_url)
    ns = workers.namespace
    try:
        started: set[str] = set()

        async def enough_started() -> bool:
            started.update(await headers(client, ns))
            return len(started) >= TICKS + 2

        await wait_for(enough_started, 60, f"{TICKS + 2} ticks' runs to start")
        run_ids = sorted(started)[1 : TICKS + 1]  # in tick order; the first may predate a process: left out
        ticks = [parse_tick(r.partition("@")[2]) for r in run_ids]
        step = timedelta(milliseconds=round(EVERY * 1000))
        assert [b - a for a, b in itertools.pairwise(ticks)] == [step] * (TICKS - 1), run_ids  # no tick left out
        ended: dict[str, dict] = {}

        async def all_ended() -> bool:
            ended.update(await outcomes(client, ns))
            return set(run_ids) <= set(ended)

        await wait_for(all_ended, 30, "those runs to end")
        assert all(ended[r]["status"] == "completed" for r in run_ids)
        assert all(ended[r]["output"] == r.partition("@")[2] for r in run_ids)  # scheduled_at is the tick

        ran = [line.split()[0] for line in tally.read_text().splitlines()]
        for run_id in run_ids:
            assert ran.count(run_id) == 1, f"{run_id} ran {ran.count(run_id)} times"
        # every process ran the schedule (its log names the ticks' run ids); the runs were
        # driven by more than one of them (each tick's run went to whichever came first)
        for w in procs:  # its whole log (`output` is its last 4,000 characters: a few ticks')
            log = w.log.read_text(errors="replace")
            assert sum(r in log for r in run_ids) >= TICKS - 2, w.output()
        drivers = set()
        for run_id in run_ids:
            record = await client.get(f"{ns}:runs:record:{run_id}")
            assert record is not None, run_id
            drivers.add(json.loads(record)["owner"]["pid"])
        assert drivers <= {w.pid for w in procs} and len(drivers) >= 2, drivers
        last = await client.get(f"{ns}:schedule:beat:last")
        assert last is not None and int(last) >= int(ticks[-1].timestamp() * 1000)
    finally:
        await client.aclose()

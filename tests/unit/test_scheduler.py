"""The scheduler loop in-process (SPEC 11): each tick starts one durable run named
``<name>@<tick>`` (journaled in a temporary checkpoint directory), the loop never waits
for a run, a failing run does not stop it, the last tick is remembered, and after a
restart `catch_up` decides what the missed ticks start."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import schedule_flows
from worker_processes import wait_for

from graflow_async import Schedule, run_result
from graflow_async.define.ticks import latest_tick, parse_tick, run_id_for
from graflow_async.run.schedule_marks import FileMarks
from graflow_async.run.scheduler import Scheduler


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # run records go to .graflow/runs here


def started(checkpoints: Path, name: str) -> list[str]:
    """The run ids of `name`'s runs journaled under `checkpoints`, oldest first."""
    if not checkpoints.exists():
        return []
    return sorted(p.name for p in checkpoints.iterdir() if p.name.startswith(f"{name}@"))


def scheduler(tmp_path: Path, *schedules: Schedule) -> Scheduler:
    return Scheduler(schedules, checkpoint_store=str(tmp_path / "ckpt"), marks=FileMarks(tmp_path / "marks"))


async def test_each_tick_starts_one_durable_run_named_by_the_tick(tmp_path: Path) -> None:
    sched = scheduler(tmp_path, Schedule(schedule_flows.hello, every=0.2, name="hi", initial_channel={"who": "ops"}))
    async with sched.running():
        await wait_for(lambda: len(started(tmp_path / "ckpt", "hi")) >= 3, 10, "three ticks")
    run_ids = started(tmp_path / "ckpt", "hi")
    ticks = [parse_tick(r.partition("@")[2]) for r in run_ids]
    assert all((b - a) % timedelta(milliseconds=200) == timedelta(0) and b > a for a, b in itertools.pairwise(ticks))
    first = await run_result(run_ids[0], checkpoint_store=str(tmp_path / "ckpt"), timeout=10)
    assert first.output == f"hello ops at {run_ids[0].partition('@')[2]}"  # the tick is in the channel
    assert await sched.marks.last("hi") == ticks[-1]


async def test_the_loop_does_not_wait_for_runs_and_a_failing_run_does_not_stop_it(
    tmp_path: Path, log_capture: list[dict]
) -> None:
    sched = scheduler(tmp_path, Schedule(schedule_flows.boom, every=0.2))
    async with sched.running():
        await wait_for(lambda: len(started(tmp_path / "ckpt", "boom")) >= 3, 10, "three failing ticks")
        await wait_for(
            lambda: sum(e["event"] == "scheduled run failed" for e in log_capture) >= 2, 10, "failures logged"
        )
    failed = [e for e in log_capture if e["event"] == "scheduled run failed"]
    assert "scheduled failure" in failed[0]["error"] and failed[0]["run_id"].startswith("boom@")


async def test_two_schedulers_sharing_a_directory_start_each_tick_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = Schedule(schedule_flows.beat, every=0.2)
    tally = tmp_path / "ticks.txt"
    monkeypatch.setenv("GRAFLOW_TEST_TICKS", str(tally))

    def executed() -> list[str]:
        return [line.split()[0] for line in tally.read_text().splitlines()] if tally.exists() else []

    async with scheduler(tmp_path, schedule).running(), scheduler(tmp_path, schedule).running():
        await wait_for(lambda: len(executed()) >= 6, 10, "six ticks run")
    runs = executed()
    assert len(runs) == len(set(runs))  # no tick's run ran twice
    assert set(runs) <= set(started(tmp_path / "ckpt", "beat"))


@pytest.mark.parametrize("catch_up", [True, False])
async def test_after_a_restart_catch_up_decides_which_missed_ticks_start(tmp_path: Path, catch_up: bool) -> None:
    schedule = Schedule(schedule_flows.hello, every=60, name="minutely", catch_up=catch_up)
    now = datetime.now(UTC)
    latest = latest_tick(schedule, now)
    assert latest is not None
    if (now - latest).total_seconds() > 55:  # too near the next tick to tell the missed ones apart
        await asyncio.sleep(60 - (now - latest).total_seconds() + 0.1)  # the scenario: wait it out
        latest = latest_tick(schedule, datetime.now(UTC))
        assert latest is not None
    marks = FileMarks(tmp_path / "marks")
    await marks.advance("minutely", latest - timedelta(minutes=4))  # down for four ticks
    sched = Scheduler([schedule], checkpoint_store=str(tmp_path / "ckpt"), marks=marks)
    missed = [run_id_for(schedule, latest - timedelta(minutes=n)) for n in (3, 2, 1, 0)]
    expected = missed if catch_up else missed[-1:]
    async with sched.running():
        await wait_for(lambda: len(started(tmp_path / "ckpt", "minutely")) >= len(expected), 10, "missed ticks")
        await wait_for(lambda: marks._read("minutely") is not None, 5, "the mark")
    assert started(tmp_path / "ckpt", "minutely") == sorted(expected)
    assert await marks.last("minutely") == latest


async def test_a_first_start_starts_no_missed_tick(tmp_path: Path) -> None:
    begun = datetime.now(UTC)
    sched = scheduler(tmp_path, Schedule(schedule_flows.hello, every=0.2, name="fresh", catch_up=True))
    async with sched.running():
        await wait_for(lambda: started(tmp_path / "ckpt", "fresh"), 10, "a tick")
    ticks = [parse_tick(r.partition("@")[2]) for r in started(tmp_path / "ckpt", "fresh")]
    assert min(ticks) > begun  # nothing from before the first start


def test_a_mark_that_cannot_be_read_is_taken_as_none(tmp_path: Path, log_capture: list[dict]) -> None:
    marks = FileMarks(tmp_path)
    marks._path("x").write_bytes(b"\xc1 not msgpack")
    assert marks._read("x") is None
    marks._path("y").write_bytes(b"\x82\xa4name\xa1y\xa4last\xa3abc")  # {"name": "y", "last": "abc"}
    assert marks._read("y") is None
    assert sum(e["event"].startswith("a schedule's last tick is unreadable") for e in log_capture) == 2


async def test_a_mark_is_only_ever_raised(tmp_path: Path) -> None:
    marks = FileMarks(tmp_path)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    await marks.advance("s", t)
    await marks.advance("s", t - timedelta(hours=1))
    assert await marks.last("s") == t


def test_duplicate_names_and_channels_that_cannot_travel_are_refused() -> None:
    with pytest.raises(ValueError, match="two schedules are named 'hello'"):
        Scheduler([Schedule(schedule_flows.hello, every=1), Schedule(schedule_flows.hello, "@daily")])
    with pytest.raises(TypeError, match="who"):
        Scheduler([Schedule(schedule_flows.hello, every=1, initial_channel={"who": object()})])

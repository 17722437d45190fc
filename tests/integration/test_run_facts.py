"""The run plan is a pure function of the facts it consumed (SPEC 10): a real run
records the facts of every turn before acting on them, and replaying them into a fresh
plan rebuilds the run: results, channel, statuses; the tasks' code is never run again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from graflow_async import BestEffortGroupPolicy, RetryPolicy, TaskContext, parallel, task, workflow
from graflow_async.define.policies import RetryPolicy as Retry
from graflow_async.plan import RunGraph, RunPlan
from graflow_async.plan.channel import ChannelData
from graflow_async.plan.facts import Failed, RetryCame, Stepped, Succeeded, Wrote, replay
from graflow_async.plan.state import DONE
from graflow_async.run.journal import FileJournal, Journal
from graflow_async.run.journal.facts import JournalWriter, read_facts
from graflow_async.run.journal.redis import RedisJournal
from graflow_async.run.options import RunOptions
from graflow_async.run.runner import _compiled, drive
from graflow_async.transports.redis import RedisStreamsTransport

CALLS: dict[str, int] = {}


def called(name: str) -> int:
    CALLS[name] = CALLS.get(name, 0) + 1
    return CALLS[name]


@task(inject_context=True)
async def start(context: TaskContext) -> int:
    await context.channel.set("phase", "start")
    await context.channel.incr("count", 5)
    return 1


@task(inject_context=True)
async def worker(context: TaskContext, start: int, n: int) -> int:
    await context.channel.append("seen", n)
    if n == 2:
        raise ValueError("member 2 always fails")
    return start * n


@task(retry_policy=RetryPolicy(max_retries=2, initial_interval=0.01, backoff_factor=1.0))
async def flaky() -> str:
    if called("flaky") < 2:
        raise RuntimeError("once")
    return "steady"


@task(inject_context=True)
async def loop(context: TaskContext, data: int = 0) -> int:
    await context.channel.incr("count")
    if data < 3 and context.can_iterate():
        context.next_iteration(data + 1)
    if data == 3:
        context.next_task(extra(task_id="extra"))
    await context.channel.delete("phase")
    return data


@task(inject_context=True)
async def extra(context: TaskContext) -> str:
    await context.channel.set("extra", True)
    return "added"


@task
async def finish(loop: int, flaky: str) -> str:
    return f"{loop}-{flaky}"


def build() -> Any:
    with workflow("facts") as wf:
        members = parallel(*(worker(task_id=f"w{n}", n=n) for n in range(4))).with_execution(
            policy=BestEffortGroupPolicy()
        )
        start >> members >> loop >> finish
        flaky >> finish
    return wf


class Recorder:
    next_seq = 0  # it never compacts: its facts stay as they came
    write_now = None  # each turn goes through `write`

    def __init__(self) -> None:
        self.turns: list[list[Any]] = []

    async def compact(self, snapshot: bytes, upto: int) -> None:
        raise AssertionError("a run of a few facts compacts nothing")

    async def write(self, records: list[bytes], sends: list[Any], consumed: bytes | None = None) -> list[Any]:
        self.turns.append(read_facts(records, "recorded"))
        return sends

    @property
    def facts(self) -> list[Any]:
        return [f for turn in self.turns for f in turn]


async def test_replaying_a_runs_facts_rebuilds_it_without_running_any_task() -> None:
    wf, recorder = build(), Recorder()
    live = await drive(wf, RunOptions(initial_channel={"count": 1}), facts=recorder)
    assert live.status == "completed" and live.output == "3-steady"

    facts = recorder.facts
    kinds = {type(f) for f in facts}
    assert {Succeeded, Failed, RetryCame, Wrote, Stepped} <= kinds
    assert all(turn and type(turn[-1]) is Stepped for turn in recorder.turns)  # one write per turn, ended by its step

    calls_before = dict(CALLS)
    plan = replay(RunPlan(RunGraph(_compiled(wf)), ChannelData({"count": 1}), default_retry=Retry()), facts)
    assert CALLS == calls_before  # no task ran again
    assert plan.results == live.results and plan.output() == live.output
    assert plan.channel.snapshot() == live.channel
    assert sorted(plan.channel.snapshot()["seen"]) == [0, 1, 2, 3] and plan.channel.snapshot()["count"] == 10
    assert all(plan.status[n] == DONE for n in range(len(plan.status)) if plan.graph.ids[n] in live.results)


@pytest.mark.parametrize("where", ["file", "redis"])
async def test_a_run_journaled_turn_by_turn_is_rebuilt_from_its_journal(
    where: str, tmp_path: Path, redis_url: str
) -> None:
    wf = build()
    async with RedisStreamsTransport(redis_url) as transport:
        journal: Journal = (
            FileJournal(tmp_path, "journaled") if where == "file" else RedisJournal(transport, "journaled")
        )
        epoch = await journal.claim("driver", 30.0)
        assert epoch is not None
        writer = JournalWriter(journal, epoch)
        live = await drive(wf, RunOptions(run_id="journaled", initial_channel={"count": 1}), facts=writer)
        assert live.results["extra"] == "added"

        replay_doc = await journal.read()  # what a process taking the run over reads
        assert replay_doc.next_seq == writer.next_seq and replay_doc.epoch == epoch
        facts = read_facts(replay_doc.facts, "journaled")
        plan = replay(RunPlan(RunGraph(_compiled(wf)), ChannelData({"count": 1}), default_retry=Retry()), facts)
        assert plan.results == live.results and plan.channel.snapshot() == live.channel
        await journal.aclose()

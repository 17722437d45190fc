"""The sandbox's rules (what a container may ask of its context, its quotas) and the
orphan rule, as pure functions of facts: no event loop, no engine."""

from __future__ import annotations

import pytest

from graflow_async import HandlerError
from graflow_async.define.docker_options import Quotas
from graflow_async.handlers.reaper import BOOT, HOST, PID, START, Owner, owner_gone
from graflow_async.handlers.sandbox import Sandbox
from graflow_async.plan.directives import AddTasks, Cancel, Iterate, Terminate


def refusal(error: HandlerError | None) -> str:
    assert error is not None
    return str(error)


@pytest.mark.parametrize("op", ["channel.get", "channel.set", "channel.incr", "channel.snapshot", "feedback"])
def test_a_limited_context_allows_the_channel_and_feedback(op: str) -> None:
    assert Sandbox("t").admit(op, 10, now=0.0) is None


def test_a_limited_context_refuses_checkpoints_and_unknown_operations() -> None:
    sandbox = Sandbox("t")
    assert "checkpoint()" in refusal(sandbox.admit("checkpoint", 10, now=0.0))
    assert "'context': 'full'" in refusal(sandbox.admit("checkpoint", 10, now=0.0))
    assert "'shell'" in refusal(sandbox.admit("shell", 10, now=0.0))
    assert Sandbox("t", full=True).admit("checkpoint", 10, now=0.0) is None


@pytest.mark.parametrize(
    ("directive", "name"),
    [
        (AddTasks({"ref": "m:f"}, False), "next_task"),
        (Iterate(None), "next_iteration"),
        (Cancel("x"), "cancel_workflow"),
        (Terminate("x"), "terminate_workflow"),
    ],
)
def test_what_a_limited_task_asks_of_the_graph_is_refused_by_name(directive: object, name: str) -> None:
    assert name in refusal(Sandbox("t").directives_refusal((directive,)))
    assert Sandbox("t", full=True).directives_refusal((directive,)) is None
    assert Sandbox("t").directives_refusal(()) is None


def test_requests_per_second_allow_a_burst_of_one_second_then_refill() -> None:
    sandbox = Sandbox("t", quotas=Quotas(requests_per_second=10))
    assert all(sandbox.admit("channel.get", 1, now=0.0) is None for _ in range(10))
    assert "10 context requests per second" in refusal(sandbox.admit("channel.get", 1, now=0.0))
    assert sandbox.admit("channel.get", 1, now=0.5) is None  # 5 tokens back
    slow = Sandbox("t", quotas=Quotas(requests_per_second=0.5))
    assert slow.admit("channel.get", 1, now=0.0) is None
    assert slow.admit("channel.get", 1, now=1.0) is not None
    assert slow.admit("channel.get", 1, now=3.0) is None


def test_channel_bytes_count_writes_only() -> None:
    sandbox = Sandbox("t", quotas=Quotas(channel_bytes=100))
    assert sandbox.admit("channel.set", 60, now=0.0) is None
    assert sandbox.admit("channel.get", 1000, now=0.0) is None
    assert "100 bytes written to the channel" in refusal(sandbox.admit("channel.append", 41, now=0.0))


def test_pending_feedback_counts_what_is_not_answered() -> None:
    sandbox = Sandbox("t", quotas=Quotas(pending_feedback=2))
    assert sandbox.admit("feedback", 1, now=0.0) is None
    assert sandbox.admit("feedback", 1, now=0.0) is None
    assert "2 pending feedback requests" in refusal(sandbox.admit("feedback", 1, now=0.0))
    sandbox.feedback_answered()
    assert sandbox.admit("feedback", 1, now=0.0) is None


def test_connections_are_capped_while_open() -> None:
    sandbox = Sandbox("t", quotas=Quotas(connections=2))
    assert sandbox.connect() is None and sandbox.connect() is None
    assert "max_connections" in refusal(sandbox.connect())
    sandbox.disconnect()
    assert sandbox.connect() is None


ME = Owner(host="h1", boot="b1", pid=100, start="555")


def labels(**changes: str) -> dict[str, str]:
    return {**ME.labels(), **changes}


def test_an_owner_is_gone_when_its_boot_pid_or_start_time_is_not_there() -> None:
    starts = {100: "555", 200: "777"}

    def start_of(pid: int) -> str | None:
        return starts.get(pid)

    assert owner_gone(labels(), ME, start_of) is False  # alive (this very process)
    assert owner_gone(labels(**{PID: "200", START: "777"}), ME, start_of) is False  # another live process
    assert owner_gone(labels(**{PID: "300"}), ME, start_of) is True  # no such process
    assert owner_gone(labels(**{PID: "200", START: "111"}), ME, start_of) is True  # the pid was reused
    assert owner_gone(labels(**{BOOT: "b0"}), ME, start_of) is True  # the host rebooted
    assert owner_gone(labels(**{HOST: "h2", PID: "300"}), ME, start_of) is False  # not ours to judge
    assert owner_gone(labels(**{PID: "x"}), ME, start_of) is False


async def test_housekeeping_runs_each_handlers_chores_and_survives_a_failing_one() -> None:
    from graflow_async.execute import handlers

    done: list[str] = []

    class Tidy:
        async def run(self, call: object) -> None: ...

        async def housekeeping(self) -> None:
            done.append("tidy")

    class Broken(Tidy):
        async def housekeeping(self) -> None:
            raise OSError("engine gone")

    handlers.register_handler("broken-chores", Broken())
    handlers.register_handler("tidy-chores", Tidy())
    try:
        await handlers.housekeeping()  # the broken one is logged, the tidy one still runs
    finally:
        for name in ("broken-chores", "tidy-chores"):
            handlers._registry.pop(name)
    assert done == ["tidy"]

"""Numeric options refuse NaN, infinities and out-of-range values with a ValueError
naming the option, where they enter (a NaN timeout once made a run wait forever)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from graflow_async import RetryPolicy, run, task, workflow
from graflow_async.execute.worker import run_worker
from graflow_async.feedback import MemoryFeedbackStore, RedisFeedbackStore
from graflow_async.transports.redis import RedisStreamsTransport

BAD = [math.nan, math.inf, -math.inf, -1]


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("field", ["max_retries", "initial_interval", "backoff_factor", "max_interval"])
def test_retry_policy(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"RetryPolicy.{field}"):
        RetryPolicy(**{field: value})


@pytest.mark.parametrize("value", [*BAD, 0])
def test_task_timeout(value: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        task(timeout=value)(lambda: None)


@pytest.mark.parametrize("value", [math.nan, math.inf, 0, 2.5])
def test_task_max_cycles(value: float) -> None:
    with pytest.raises(ValueError, match="max_cycles"):
        task(max_cycles=value)(lambda: None)


@task
async def nothing() -> None:
    return None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("default_max_retries", math.nan),
        ("default_max_retries", -1),
        ("max_cycles", math.inf),
        ("max_cycles", 0),
    ],
)
async def test_run_options(option: str, value: float) -> None:
    with workflow("options") as wf:
        wf.add(nothing)
    with pytest.raises(ValueError, match=option):
        await run(wf, **{option: value})


def test_run_options_are_one_frozen_record_checked_when_made() -> None:
    import dataclasses

    from graflow_async.run.options import RunOptions

    options = RunOptions(initial_channel={"a": 1}, max_threads=2.0)  # type: ignore[arg-type]
    assert len(options.run_id) == 32 and options.max_cycles == 100 and options.initial_channel == {"a": 1}
    assert type(options.max_threads) is int
    assert RunOptions().run_id != options.run_id
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_cycles = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        options.initial_channel["b"] = 2  # type: ignore[index]  # a read-only copy
    assert not hasattr(options, "__dict__")  # slots
    for bad, named in [
        ({"max_threads": 0}, "max_threads"),
        ({"max_cycles": 0}, "max_cycles"),
        ({"default_max_retries": -1}, "default_max_retries"),
        ({"run_id": "a/b"}, "run_id"),
    ]:
        with pytest.raises(ValueError, match=named):
            RunOptions(**bad)
    with pytest.raises(TypeError, match="channel key 'f'"):
        RunOptions(initial_channel={"f": object()})
    with pytest.raises(TypeError, match="on_event must be callable"):
        RunOptions(on_event="print")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="transport must be a Transport"):
        RunOptions(transport="redis://localhost")  # type: ignore[arg-type]


@pytest.mark.parametrize("run_id", ["", ".", "..", "a/b", "a b", "tab\there", "x" * 201, 7])
async def test_a_run_id_that_cannot_name_files_and_keys_is_refused(run_id: Any) -> None:
    with workflow("run-ids") as wf:
        wf.add(nothing)
    with pytest.raises(ValueError, match="run_id must be"):
        await run(wf, run_id=run_id)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("lease_timeout", math.nan),
        ("lease_timeout", 0),
        ("max_deliveries", math.inf),
        ("max_deliveries", 0),
        ("connect_timeout", -math.inf),
        ("max_connections", 0),
    ],
)
def test_redis_transport_options(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        RedisStreamsTransport("redis://127.0.0.1:1/0", **{option: value})


def test_redis_feedback_store_ttl() -> None:
    with pytest.raises(ValueError, match="ttl"):
        RedisFeedbackStore("redis://127.0.0.1:1/0", ttl=math.nan)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("grace_period", math.nan),
        ("grace_period", 0),
        ("context_timeout", math.inf),
        ("concurrency", 0),
    ],
)
async def test_worker_options(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):  # refused before it connects anywhere
        await run_worker("redis://127.0.0.1:1/0", **{option: value})


@task(inject_context=True)
async def ask(context: Any, how: dict[str, Any]) -> str:
    try:
        await context.request_feedback(**how)
    except ValueError as exc:
        return f"{getattr(exc, 'field', None)}: {exc}"
    return "asked"


@pytest.mark.parametrize(
    ("how", "field"),
    [
        ({"feedback_type": "approval", "prompt": "ok?", "timeout": math.nan}, "timeout"),
        ({"feedback_type": "approval", "prompt": "ok?", "timeout": math.inf}, "timeout"),
        ({"feedback_type": "selection", "prompt": "which?", "options": ["a", 1]}, "options"),
        ({"feedback_type": "selection", "prompt": "which?", "options": "ab"}, "options"),
        ({"feedback_type": "selection", "prompt": "which?"}, "options"),
        (
            {
                "feedback_type": "approval",
                "prompt": "ok?",
                "notification_config": {"type": "pager", "url": "https://x"},
            },
            "notification_config",
        ),
        (
            {"feedback_type": "approval", "prompt": "ok?", "notification_config": {"type": "webhook"}},
            "notification_config",
        ),
        (
            {"feedback_type": "approval", "prompt": "ok?", "notification_config": {"url": "ftp://host/x"}},
            "notification_config",
        ),
    ],
)
async def test_request_feedback_checks_its_question(how: dict[str, Any], field: str) -> None:
    with workflow("ask") as wf:
        wf.add(ask)
    result = await run(wf, initial_channel={"how": how}, feedback_store=MemoryFeedbackStore())
    assert result.results["ask"].startswith(f"{field}: ")

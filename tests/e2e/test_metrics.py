"""Prometheus metrics (SPEC section 8): what runs and workers count, and the web app's
``GET /metrics`` over real HTTP (a worker's ``--metrics-port`` is in integration/test_workers.py).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from graflow_async import RetryPolicy, TaskFailedError, run, task, workflow
from graflow_async.events import Event
from graflow_async.execute import metrics as limits
from graflow_async.execute import metrics as metrics_module
from graflow_async.execute.metrics import Metrics, serve_metrics
from graflow_async.feedback import MemoryFeedbackStore
from graflow_async.transports.redis import RedisStreamsTransport
from graflow_async.web import WEB_STATE, create_app
from graflow_async.wire.messages import TaskMessage, TaskReply

TOKEN = "metrics-token"
attempts: dict[str, int] = {}


@task(retry_policy=RetryPolicy(max_retries=2, initial_interval=0.001))
async def flaky() -> str:
    attempts["flaky"] = attempts.get("flaky", 0) + 1
    if attempts["flaky"] < 3:
        raise RuntimeError("not yet")
    return "ok"


@task
async def after(flaky: str) -> str:
    await asyncio.sleep(0.02)  # a task with a duration to count
    return flaky + "!"


@task
async def broken() -> None:
    raise ValueError("always")


def retried_flow() -> Any:
    attempts.clear()
    with workflow("metrics-flow") as wf:
        flaky >> after
    return wf


def broken_flow() -> Any:
    with workflow("metrics-broken") as wf:
        wf.add(broken)
    return wf


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


# --- fed by run events and by executors ------------------------------------------------------------


async def test_run_events_count_tasks_and_their_durations() -> None:
    metrics = Metrics()
    assert (await run(retried_flow(), on_event=metrics.on_event)).output == "ok!"
    with pytest.raises(TaskFailedError):
        await run(broken_flow(), on_event=metrics.on_event)
    assert value(metrics, "graflow_tasks_started_total", task="flaky") == 3
    assert value(metrics, "graflow_tasks_retried_total", task="flaky") == 2  # failed attempts retried
    assert value(metrics, "graflow_tasks_failed_total", task="flaky") == 0  # it did not fail for good
    assert value(metrics, "graflow_tasks_completed_total", task="flaky") == 1
    assert value(metrics, "graflow_tasks_completed_total", task="after") == 1
    assert value(metrics, "graflow_tasks_failed_total", task="broken") == 1
    assert value(metrics, "graflow_task_duration_seconds_count", task="after") == 1
    after_took = value(metrics, "graflow_task_duration_seconds_sum", task="after")
    assert after_took is not None and 0.02 <= after_took < 1.0
    assert value(metrics, "graflow_task_duration_seconds_bucket", task="after", le="0.01") == 0
    assert value(metrics, "graflow_task_duration_seconds_bucket", task="after", le="0.05") == 1


def test_an_executor_counts_attempts_as_a_worker_sees_them() -> None:
    metrics = Metrics()
    first = TaskMessage("run", "t", 0, 1, "reply", {})
    second = first._replace(attempt=2)
    metrics.started(first)
    metrics.finished(first, TaskReply("run", 0, 1, False, error=RuntimeError("x"), duration=0.5))
    metrics.started(second)
    metrics.finished(second, TaskReply("run", 0, 2, True, "ok", duration=0.25))
    third = first._replace(task_id="waits")
    metrics.started(third)
    metrics.finished(third, TaskReply("run", 0, 1, False, duration=2.0, suspended=True))
    assert value(metrics, "graflow_tasks_started_total", task="t") == 2
    assert value(metrics, "graflow_tasks_retried_total", task="t") == 1
    assert value(metrics, "graflow_tasks_failed_total", task="t") == 1
    assert value(metrics, "graflow_tasks_completed_total", task="t") == 1
    assert value(metrics, "graflow_task_duration_seconds_sum", task="t") == 0.75
    assert value(metrics, "graflow_tasks_failed_total", task="waits") == 0  # a timed-out feedback wait
    assert value(metrics, "graflow_tasks_completed_total", task="waits") == 0


def test_task_labels_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_TASK_LABELS", 2)
    metrics = Metrics()
    for task_id in ("a", "b", "c", "d", "a"):
        metrics.on_event(Event("task_started", "run", task_id))
    assert value(metrics, "graflow_tasks_started_total", task="a") == 2
    assert value(metrics, "graflow_tasks_started_total", task="b") == 1
    assert value(metrics, "graflow_tasks_started_total", task="_other") == 2
    assert value(metrics, "graflow_tasks_started_total", task="c") is None


# --- the web app ----------------------------------------------------------------------------------------


@asynccontextmanager
async def serving(**kwargs: Any) -> AsyncIterator[TestClient[Any, Any]]:
    kwargs.setdefault("feedback_store", MemoryFeedbackStore())
    async with TestClient(TestServer(create_app(**kwargs))) as client:
        yield client


async def finished(client: TestClient[Any, Any], name: str, headers: dict[str, str]) -> str:
    response = await client.post("/api/runs", json={"workflow": name}, headers=headers)
    assert response.status == 202
    run_id: str = (await response.json())["run_id"]
    async with asyncio.timeout(10):
        while (await (await client.get(f"/api/runs/{run_id}", headers=headers)).json())["status"] == "running":
            await asyncio.sleep(0.01)
    return run_id


async def test_the_web_app_serves_metrics_of_its_runs_behind_the_token() -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    workflows = {"good": retried_flow(), "bad": broken_flow()}
    async with serving(workflows=workflows, auth_token=TOKEN) as client:
        await finished(client, "good", bearer)
        await finished(client, "bad", bearer)
        refused = await client.get("/metrics")
        assert refused.status == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
        response = await client.get("/metrics", headers=bearer)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        found = samples(await response.text())
    assert found["graflow_runs_total", (("status", "completed"),)] == 1
    assert found["graflow_runs_total", (("status", "failed"),)] == 1
    assert found["graflow_runs_running", ()] == 0
    assert found["graflow_tasks_started_total", (("task", "flaky"),)] == 3
    assert found["graflow_tasks_retried_total", (("task", "flaky"),)] == 2
    assert found["graflow_tasks_completed_total", (("task", "after"),)] == 1
    assert found["graflow_tasks_failed_total", (("task", "broken"),)] == 1
    assert found["graflow_task_duration_seconds_count", (("task", "after"),)] == 1
    assert not any(name.startswith("graflow_stream_") for name, _ in found)  # no Redis transport


async def test_metrics_are_open_without_a_token_and_speak_openmetrics_when_asked() -> None:
    async with serving(prefix="/wf") as client:
        app_metrics = client.server.app[WEB_STATE].metrics
        app_metrics.run_started()  # a run in flight
        response = await client.get("/wf/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert response.status == 200
        assert response.content_type == "application/openmetrics-text"
        text = await response.text()
        assert text.endswith("# EOF\n")
        assert "graflow_runs_running 1.0" in text


async def test_queue_gauges_come_from_the_redis_transport(redis_url: str, client: Any) -> None:
    async with RedisStreamsTransport(redis_url) as transport, serving(transport=transport) as http:
        await client.xadd("graflow:tasks", {b"m": b"queued"})
        await client.xadd("graflow:dead", {b"m": b"buried"})
        found = samples(await (await http.get("/metrics")).text())
    stream = (("stream", "graflow:tasks"),)
    assert found["graflow_stream_length", stream] == 1
    assert found["graflow_dead_letters", stream] == 1
    assert found["graflow_stream_consumers", stream] == 0
    assert found["graflow_stream_pending", stream] == 0


async def test_a_scrape_during_a_redis_outage_serves_everything_else(
    monkeypatch: pytest.MonkeyPatch, log_capture: list[dict[str, Any]]
) -> None:
    monkeypatch.setattr(metrics_module, "QUEUE_STATS_TIMEOUT", 0.5)
    transport = RedisStreamsTransport(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.2)
    try:
        async with serving(transport=transport) as http:
            started = time.perf_counter()
            response = await http.get("/metrics")
            assert response.status == 200
            assert time.perf_counter() - started < 2.0
            found = samples(await response.text())
    finally:
        await transport.aclose()
    assert ("graflow_runs_running", ()) in found
    assert not any(name.startswith("graflow_stream_") for name, _ in found)
    assert [e for e in log_capture if e["event"] == "queue figures unavailable for metrics"]


# --- a worker's metrics server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_the_metrics_server_answers_and_closes_half_sent_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "REQUEST_TIMEOUT", 0.5)
    metrics, port = Metrics(), free_port()
    metrics.on_event(Event("task_started", "run", "t"))
    runner = await serve_metrics(metrics, port, host="127.0.0.1")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(5):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200")
        assert b'graflow_tasks_started_total{task="t"} 1.0' in answer
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # never finished
        started = time.perf_counter()
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()
        assert time.perf_counter() - started < 2.0
    finally:
        await runner.cleanup()

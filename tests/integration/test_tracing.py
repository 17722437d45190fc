"""OpenTelemetry traces: a span per run and a child span per task attempt, in this
process, on a real Redis worker and into a Docker container."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker_flows as df
import pytest
import remote_flows
from docker_engine import DockerEngine
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from worker_processes import RUN_TIMEOUT, Workers

from graflow_async import run, task, workflow
from graflow_async.transports.redis import RedisStreamsTransport


def _reset_globals() -> None:  # as opentelemetry's own test utilities do
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset_globals()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        _reset_globals()


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for s in finished:
        out.setdefault(s.name, []).append(s)
    return out


calls: dict[str, int] = {}


@task
async def fetch() -> int:
    return 1


@task(max_retries=1)
async def flaky(fetch: int) -> int:
    calls["flaky"] = calls.get("flaky", 0) + 1
    if calls["flaky"] == 1:
        raise RuntimeError("first attempt fails")
    return fetch + 1


async def test_a_run_is_a_span_and_each_attempt_a_child_span(spans: InMemorySpanExporter) -> None:
    calls.clear()
    with workflow("traced") as wf:
        fetch >> flaky
    result = await run(wf)
    named = by_name(spans.get_finished_spans())
    [root] = named["run traced"]
    assert root.attributes["graflow.run_id"] == result.run_id and root.parent is None
    [first] = named["task fetch"]
    attempts = sorted(named["task flaky"], key=lambda s: s.attributes["graflow.attempt"])
    assert [s.attributes["graflow.attempt"] for s in attempts] == [1, 2]
    for s in (first, *attempts):
        assert s.parent is not None and s.parent.span_id == root.context.span_id
        assert s.context.trace_id == root.context.trace_id
        assert s.attributes["graflow.run_id"] == result.run_id
    assert attempts[0].status.status_code is trace.StatusCode.ERROR
    assert attempts[1].status.status_code is not trace.StatusCode.ERROR


async def test_a_task_sets_gen_ai_attributes_on_its_attempt_span(spans: InMemorySpanExporter) -> None:
    @task(inject_context=True)
    async def llm_call(context: Any) -> str:
        context.set_attributes(**{"gen_ai.request.model": "fake-1", "gen_ai.usage.input_tokens": 12})
        context.set_attributes(**{"gen_ai.usage.output_tokens": 34, "gen_ai.response.finish_reasons": ("stop",)})
        with pytest.raises(TypeError, match=r"gen_ai\.request\.messages"):
            context.set_attributes(**{"gen_ai.request.messages": {"role": "user"}})
        return "ok"

    with workflow("llm-span") as wf:
        wf.add(llm_call)
    await run(wf)
    [span] = by_name(spans.get_finished_spans())["task llm_call"]
    assert span.attributes["gen_ai.request.model"] == "fake-1"
    assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["gen_ai.usage.output_tokens"]) == (12, 34)
    assert tuple(span.attributes["gen_ai.response.finish_reasons"]) == ("stop",)


async def test_a_failed_run_span_records_the_error(spans: InMemorySpanExporter) -> None:
    @task(max_retries=0)
    async def broken() -> None:
        raise RuntimeError("no")

    with workflow("broken") as wf:
        wf.add(broken)
    with pytest.raises(Exception, match="no"):
        await run(wf)
    [root] = by_name(spans.get_finished_spans())["run broken"]
    assert root.status.status_code is trace.StatusCode.ERROR


async def test_untraced_runs_carry_no_trace_context() -> None:
    seen: list[Any] = []

    @task(inject_context=True)
    async def look(context: Any) -> None:
        seen.append(context._message.trace)

    with workflow("plain") as wf:
        wf.add(look)
    await run(wf)
    assert seen == [None]


async def test_an_attempt_on_a_worker_is_a_child_of_the_run_span(
    spans: InMemorySpanExporter, workers: Workers, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans_file = tmp_path / "worker-spans.jsonl"
    monkeypatch.setenv("GFT_SPANS_FILE", str(spans_file))
    workers.start(1, "--import", "otel_worker_setup")
    with workflow("remote-traced") as wf:
        wf.add(remote_flows.where(task_id="where"))
    async with RedisStreamsTransport(redis_url, connect_timeout=2) as transport:
        async with asyncio.timeout(RUN_TIMEOUT):
            result = await run(wf, transport=transport)
    [root] = by_name(spans.get_finished_spans())["run remote-traced"]
    remote: list[dict[str, Any]] = []
    for _ in range(100):
        if spans_file.exists():
            remote = [json.loads(line) for line in spans_file.read_text().splitlines() if line.strip()]
        if remote:
            break
        await asyncio.sleep(0.05)
    [attempt] = [s for s in remote if s["name"] == "task where"]
    assert attempt["attributes"]["graflow.run_id"] == result.run_id
    assert attempt["attributes"]["graflow.task_id"] == "where" and attempt["attributes"]["graflow.attempt"] == 1
    assert attempt["context"]["trace_id"] == f"0x{root.context.trace_id:032x}"
    assert attempt["parent_id"] == f"0x{root.context.span_id:016x}"
    assert result.output != os.getpid()  # the attempt ran in the worker process, which exported it


async def test_a_docker_task_gets_its_attempt_span_as_traceparent(
    spans: InMemorySpanExporter, docker_engine: DockerEngine
) -> None:
    df.configure(docker_engine.url, docker_engine.image, docker_engine.python)
    with workflow("docker-traced") as wf:
        wf.add(df.traceparent(task_id="traceparent"))
    result = await run(wf)
    [attempt] = by_name(spans.get_finished_spans())["task traceparent"]
    version, trace_id, parent_id, _ = result.output.split("-")
    assert version == "00"
    assert int(trace_id, 16) == attempt.context.trace_id and int(parent_id, 16) == attempt.context.span_id


def test_a_broken_carrier_from_a_worker_is_ignored() -> None:
    from graflow_async.wire.envelope import valid_carrier

    assert valid_carrier({"traceparent": "00-ab-cd-01"}) == {"traceparent": "00-ab-cd-01"}
    assert valid_carrier({"traceparent": 5}) is None
    assert valid_carrier({"x": "y" * 10_000}) is None
    assert valid_carrier([("traceparent", "x")]) is None

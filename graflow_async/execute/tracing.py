"""OpenTelemetry traces (the ``otel`` extra): a span per run and a child span per task
attempt, with the trace context carried in each task message, so an attempt on a Redis
worker or in a Docker container is a child of its run's span wherever it runs.

Nothing is traced, and nothing costs, unless opentelemetry is installed and the
application set a tracer provider (``trace.set_tracer_provider(...)``): then the run's
messages carry a W3C ``traceparent`` carrier (`TaskMessage.trace`), and each process
that runs an attempt opens its span under it.

    graflow.run_id     every span
    graflow.task_id    attempt spans (and the workflow's name on the run span:
    graflow.attempt    graflow.workflow)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # the otel extra is not installed
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from graflow_async.wire.messages import TaskMessage, TaskReply

TRACER = "graflow_async"


def active() -> bool:
    """Whether a tracer provider is configured (spans would be recorded somewhere)."""
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


@contextlib.contextmanager
def run_span(run_id: str, workflow: str) -> Iterator[dict[str, str] | None]:
    """The span of a run; yields the carrier its task messages take (None when not tracing)."""
    if not active():
        yield None
        return
    tracer = trace.get_tracer(TRACER)
    with tracer.start_as_current_span(
        f"run {workflow}",
        attributes={
            "graflow.run_id": run_id,
            "graflow.workflow": workflow,
        },
    ):
        yield carrier()


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``, ``tracestate``)."""
    headers: dict[str, str] = {}
    if trace is not None:
        propagate.inject(headers)
    return headers


@contextlib.contextmanager
def attempt_span(msg: TaskMessage) -> Iterator[Any]:
    """The span of one attempt, a child of the run's span named by `msg.trace`; yields
    the span (None when not tracing) for `finish_attempt`."""
    if msg.trace is None or not active():
        yield None
        return
    parent = propagate.extract(msg.trace)
    token = otel_context.attach(parent)
    try:
        tracer = trace.get_tracer(TRACER)
        with tracer.start_as_current_span(
            f"task {msg.task_id}",
            attributes={
                "graflow.run_id": msg.run_id,
                "graflow.task_id": msg.task_id,
                "graflow.attempt": msg.attempt,
                "graflow.cycle": msg.cycle,
            },
        ) as span:
            yield span
    finally:
        otel_context.detach(token)


_ATTRIBUTE_TYPES = (str, bool, int, float)


def set_attributes(attributes: dict[str, Any]) -> None:
    """Set `attributes` on the current attempt's span (nothing when not tracing); TypeError
    naming a key whose value OpenTelemetry cannot hold (text, a number, a bool, or a list
    of one of those)."""
    for key, value in attributes.items():
        items = value if isinstance(value, list | tuple) else [value]
        if not all(isinstance(v, _ATTRIBUTE_TYPES) for v in items):
            raise TypeError(f"span attribute {key!r}: {type(value).__name__} is not text, a number, a bool or a list")
    if trace is None or not active():
        return
    trace.get_current_span().set_attributes({k: list(v) if isinstance(v, tuple) else v for k, v in attributes.items()})


def finish_attempt(span: Any, reply: TaskReply) -> None:
    """Mark an attempt's span with how it went."""
    if span is None:
        return
    if reply.suspended:
        span.set_attribute("graflow.suspended", True)
    elif not reply.ok:
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(reply.error).__name__))
        if reply.error is not None:
            span.record_exception(reply.error)

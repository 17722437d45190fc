"""Prometheus metrics (SPEC section 8) and the task stream's figures (section 7).

Whoever serves metrics owns a `Metrics`: a `prometheus_client.CollectorRegistry` of its
own (never the process-wide default one) holding

- ``graflow_tasks_started_total``, ``graflow_tasks_completed_total``,
  ``graflow_tasks_failed_total``, ``graflow_tasks_retried_total`` and the
  ``graflow_task_duration_seconds`` histogram, all labelled ``task`` (the task id);
- ``graflow_runs_total{status}`` (runs that ended, by status) and ``graflow_runs_running``;
- the queue gauges ``graflow_stream_length``, ``graflow_stream_pending``,
  ``graflow_stream_lag``, ``graflow_stream_consumers`` and ``graflow_dead_letters``
  (label ``stream``), read from Redis at each scrape when a Redis transport is given;
- on a worker, ``graflow_worker_tasks_total{outcome}`` and ``graflow_tasks_throttled{limit}``
  (its attempts waiting for their limits now, SPEC 11);
- the process and garbage-collector metrics of `prometheus_client`.

Task series are fed in one place each: a run's events (`Metrics.on_event`, which the
web app hands to the runs it starts: *failed* counts tasks that failed for good,
*retried* failed attempts the run retries) or a worker's executor (`Metrics` is its
attempt observer: *failed* counts failed attempts, since the run decides about retries,
and *retried* attempts that were retries). Nothing is counted where no `Metrics` is
attached, so runs without one pay nothing per task. At most `MAX_TASK_LABELS` task ids
get series of their own; later ones share ``task="_other"``.

Served by a worker's ``--metrics-port`` (`serve_metrics`) and by the web app at
``GET /metrics`` (`exposition`), in the format the scraper asks for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder

from graflow_async.events import Event
from graflow_async.logs import LibraryLog

if TYPE_CHECKING:
    from aiohttp import web

    from graflow_async.execute.executor import Executor
    from graflow_async.transports.redis import RedisStreamsTransport
    from graflow_async.wire.messages import TaskMessage, TaskReply

log = LibraryLog()
REQUEST_TIMEOUT = 30.0  # seconds an HTTP client gets to send a request's head (and its body, on the web app)
LINGERING_TIME = 2.0  # seconds a server reads what a client still sends after answering early
MAX_TASK_LABELS = 1000
OTHER_TASKS = "_other"
QUEUE_STATS_TIMEOUT = 5.0  # seconds a scrape waits for Redis before serving without queue gauges
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class _Series(NamedTuple):
    """One task's children of the task metrics (labels resolved once, not per event)."""

    started: Any
    completed: Any
    failed: Any
    retried: Any
    duration: Any


class Metrics:
    """A registry of graflow-async metrics, and the ways to feed it."""

    def __init__(self, *, transport: RedisStreamsTransport | None = None) -> None:
        self.registry = registry = CollectorRegistry()

        def by_task(name: str, documentation: str) -> Counter:
            return Counter(name, documentation, ("task",), registry=registry)

        self._started = by_task("graflow_tasks_started", "Task attempts started.")
        self._completed = by_task("graflow_tasks_completed", "Task attempts that succeeded.")
        self._failed = by_task("graflow_tasks_failed", "Tasks that failed (see graflow_async.execute.metrics).")
        self._retried = by_task("graflow_tasks_retried", "Task retries (see graflow_async.execute.metrics).")
        self._duration = Histogram(
            "graflow_task_duration_seconds",
            "Time task attempts took.",
            ("task",),
            registry=registry,
            buckets=DURATION_BUCKETS,
        )
        self._runs = Counter("graflow_runs", "Runs that ended, by status.", ("status",), registry=registry)
        self._running = Gauge("graflow_runs_running", "Runs running now.", registry=registry)
        self._series: dict[str, _Series] = {}
        self.queue = QueueGauges(transport) if transport is not None else None
        if self.queue is not None:
            registry.register(self.queue)
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)

    def series(self, task_id: str) -> _Series:
        """The series of `task_id` (``_other`` once `MAX_TASK_LABELS` ids have theirs)."""
        found = self._series.get(task_id)
        if found is None:
            label = task_id if len(self._series) < MAX_TASK_LABELS else OTHER_TASKS
            found = self._series.get(label)
            if found is None:
                found = self._series[label] = _Series(
                    self._started.labels(label),
                    self._completed.labels(label),
                    self._failed.labels(label),
                    self._retried.labels(label),
                    self._duration.labels(label),
                )
        return found

    # --- fed by a run's events ---------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Count one run event (an ``on_event`` callback; events without a task are ignored)."""
        if event.task_id is None:
            return
        kind = event.kind
        if kind == "task_started":
            self.series(event.task_id).started.inc()
            return
        if kind == "task_completed":
            series = self.series(event.task_id)
            series.completed.inc()
        elif kind == "task_failed":
            series = self.series(event.task_id)
            series.failed.inc()
        elif kind == "task_retrying":
            series = self.series(event.task_id)
            series.retried.inc()
        else:
            return
        duration = event.data.get("duration")
        if isinstance(duration, int | float):
            series.duration.observe(duration)

    # --- fed by a worker's executor (its attempt observer) ----------------------------------------
    def started(self, msg: TaskMessage) -> None:
        series = self.series(msg.task_id)
        series.started.inc()
        if msg.attempt > 1:
            series.retried.inc()

    def finished(self, msg: TaskMessage, reply: TaskReply) -> None:
        series = self.series(msg.task_id)
        if reply.ok:
            series.completed.inc()
        elif not reply.suspended:  # a feedback wait that timed out is neither
            series.failed.inc()
        series.duration.observe(reply.duration)

    def count_executor(self, executor: Executor) -> None:
        """Also export ``graflow_worker_tasks_total{outcome}`` from `executor`'s totals."""
        self.registry.register(_ExecutorTotals(executor))

    # --- runs -------------------------------------------------------------------------------------
    def run_started(self) -> None:
        self._running.inc()

    def run_ended(self, status: str) -> None:
        self._running.dec()
        self._runs.labels(status).inc()


class QueueGauges:
    """A collector of the task stream's figures, as of the last `refresh`."""

    def __init__(self, transport: RedisStreamsTransport) -> None:
        self.transport = transport
        self.stats: dict[str, Any] | None = None

    async def refresh(self) -> None:
        """Read the figures from Redis; when that fails or takes too long, the gauges are
        left out of the scrape (Prometheus then marks them stale) and a warning logged."""
        try:
            async with asyncio.timeout(QUEUE_STATS_TIMEOUT):
                self.stats = await queue_stats(self.transport)
        except Exception as exc:  # an outage must not fail the scrape of everything else
            self.stats = None
            log.warning("queue figures unavailable for metrics", url=self.transport.url, error=repr(exc))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self.stats
        if stats is None:
            return
        figures = (
            ("graflow_stream_length", "Entries in the task stream.", stats["length"]),
            ("graflow_stream_pending", "Entries delivered to a worker and not yet acked.", stats["pending"]),
            ("graflow_stream_lag", "Entries not yet delivered to any worker.", stats["lag"]),
            ("graflow_stream_consumers", "Consumers (workers) in the group.", len(stats["consumers"])),
            ("graflow_dead_letters", "Entries in the dead-letter stream.", stats["dead_letters"]),
        )
        for name, documentation, value in figures:
            family = GaugeMetricFamily(name, documentation, labels=("stream",))
            family.add_metric((stats["stream"],), value)
            yield family


class _ExecutorTotals:
    """``graflow_worker_tasks_total{outcome}``: the executor's own counts, read at scrape time."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        family = CounterMetricFamily(
            "graflow_worker_tasks", "Tasks this worker finished, by outcome.", labels=("outcome",)
        )
        family.add_metric(("done",), self.executor.done)
        family.add_metric(("failed",), self.executor.failed)
        yield family
        throttled = GaugeMetricFamily(
            "graflow_tasks_throttled",
            "Task attempts on this worker waiting for their limits, by limit.",
            labels=("limit",),
        )
        for name, waiting in _copied(self.executor.transport.limits().waiting):
            throttled.add_metric((name,), waiting)
        yield throttled


def _copied(counts: dict[str, int]) -> list[tuple[str, int]]:
    """`counts`' items, read from a scrape's thread while the event loop may change them."""
    for _ in range(5):
        try:
            return list(counts.items())
        except RuntimeError:  # changed size while read: read again
            continue
    return []


async def exposition(metrics: Metrics, accept: str | None) -> tuple[bytes, str]:
    """The metrics in the format `accept` asks for (Prometheus text by default), and its
    content type. The queue figures are read first; the text is made off the event loop."""
    if metrics.queue is not None:
        await metrics.queue.refresh()
    encoder, content_type = choose_encoder(accept or "")
    body = await asyncio.to_thread(encoder, metrics.registry)
    return body, content_type


async def metrics_response(metrics: Metrics, request: web.Request) -> web.Response:
    from aiohttp import web

    body, content_type = await exposition(metrics, request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type, "X-Content-Type-Options": "nosniff"})


async def serve_metrics(metrics: Metrics, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Serve ``GET /metrics`` on `port` (all interfaces by default, as scrapers expect)."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return await metrics_response(metrics, request)

    app = web.Application(handler_args=server_options())
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def queue_stats(transport: RedisStreamsTransport) -> dict[str, Any]:
    """Length, pending entries and consumers of the task stream, and dead letters."""
    return await transport.queue_stats()


def server_options() -> dict[str, Any]:
    """Keywords for aiohttp's request handler (``web.Application(handler_args=...)``):
    a connection that sends no complete request head within `REQUEST_TIMEOUT` seconds is
    closed (aiohttp's default leaves it open for an hour)."""
    return {"keepalive_timeout": REQUEST_TIMEOUT, "lingering_time": min(LINGERING_TIME, REQUEST_TIMEOUT)}

"""Queue figures for operators: `queue_stats` (the ``queue-stats`` command) and a
Prometheus endpoint on a worker (``--metrics-port``), e.g. for KEDA to scale on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .transports import keys

if TYPE_CHECKING:
    from aiohttp import web

    from .executor import Executor
    from .transports.redis_streams import RedisStreamsTransport


async def queue_stats(transport: RedisStreamsTransport) -> dict[str, Any]:
    """Length, pending entries and consumers of the task stream, and dead letters."""
    client, names = transport.client, transport.keys
    stream = names.stream(keys.TASK_QUEUE)

    async def gather() -> dict[str, Any]:
        length = await client.xlen(stream)
        dead = await client.xlen(names.dead)
        try:
            groups = await client.xinfo_groups(stream)
            consumers = await client.xinfo_consumers(stream, names.group)
        except Exception:  # no stream or no group yet: nothing is queued
            groups, consumers = [], []
        group: dict[str, Any] = next((g for g in groups if _text(g.get("name")) == names.group), {})
        return {
            "stream": stream,
            "length": int(length),
            "pending": int(group.get("pending", 0)),
            "lag": int(group.get("lag") or 0),
            "consumers": [
                {"name": _text(c.get("name")), "pending": int(c.get("pending", 0)), "idle_ms": int(c.get("idle", 0))}
                for c in consumers
            ],
            "dead_letters": int(dead),
        }

    return await transport._call("queue stats", gather)


def prometheus_text(stats: dict[str, Any], executor: Executor | None = None) -> str:
    """The figures in Prometheus' text exposition format."""
    labels = f'stream="{stats["stream"]}"'
    lines = [
        "# HELP graflow_stream_length Entries in the task stream.",
        "# TYPE graflow_stream_length gauge",
        f"graflow_stream_length{{{labels}}} {stats['length']}",
        "# HELP graflow_stream_pending Entries delivered to a worker and not yet acked.",
        "# TYPE graflow_stream_pending gauge",
        f"graflow_stream_pending{{{labels}}} {stats['pending']}",
        "# HELP graflow_stream_lag Entries not yet delivered to any worker.",
        "# TYPE graflow_stream_lag gauge",
        f"graflow_stream_lag{{{labels}}} {stats['lag']}",
        "# HELP graflow_stream_consumers Consumers (workers) in the group.",
        "# TYPE graflow_stream_consumers gauge",
        f"graflow_stream_consumers{{{labels}}} {len(stats['consumers'])}",
        "# HELP graflow_dead_letters Entries in the dead-letter stream.",
        "# TYPE graflow_dead_letters gauge",
        f"graflow_dead_letters{{{labels}}} {stats['dead_letters']}",
    ]
    if executor is not None:
        lines += [
            "# HELP graflow_worker_tasks_total Tasks this worker finished, by outcome.",
            "# TYPE graflow_worker_tasks_total counter",
            f'graflow_worker_tasks_total{{outcome="done"}} {executor.done}',
            f'graflow_worker_tasks_total{{outcome="failed"}} {executor.failed}',
        ]
    return "\n".join(lines) + "\n"


async def serve_metrics(transport: RedisStreamsTransport, executor: Executor, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` on `port` (all interfaces, as scrapers expect)."""
    from aiohttp import web

    async def metrics(request: web.Request) -> web.Response:
        text = prometheus_text(await queue_stats(transport), executor)
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""Where a run's tasks go: the run's transport, or a Redis group's own.

A `Route` is a transport plus the queue tasks are sent to and the queue replies come
back on. Every task takes the run's route, except members of a group declared with
``with_execution(backend=CoordinationBackend.REDIS, ...)``, which take a route to
Redis workers; the run pumps that route's replies into its own inbox.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .compile import CompiledGraph
from .context import Channel, MemoryChannel
from .exceptions import TransportError
from .policies import CoordinationBackend
from .tasks import unreachable_reason
from .transports import keys
from .transports.base import Transport


@dataclass(frozen=True, slots=True)
class Route:
    transport: Transport
    task_queue: str
    reply_to: str

    @property
    def remote(self) -> bool:
        return not self.transport.in_process

    async def close(self, run_id: str) -> None:
        """The run ended: drop its queues (remote: its reply stream; its channel expires)."""
        if not self.remote:
            await self.transport.discard(self.reply_to)
            await self.transport.discard(self.task_queue)
            return
        expire = getattr(self.transport, "expire_run", None)
        if expire is not None:
            await expire(run_id, self.reply_to)
        else:
            await self.transport.discard(self.reply_to)


def route_for(transport: Transport, run_id: str) -> Route:
    if transport.in_process:  # private queues: the run's own executor consumes them
        return Route(transport, f"{run_id}:tasks", f"{run_id}:replies")
    return Route(transport, keys.TASK_QUEUE, keys.reply_queue(run_id))


def _members(graph: CompiledGraph, group: int) -> list[int]:
    """Task nodes inside `group`, nested groups included."""
    out = []
    for node, task in enumerate(graph.tasks):
        g = graph.group_of[node]
        while g >= 0 and g != group:
            g = graph.group_of[graph.groups[g].barrier]
        if task is not None and g == group:
            out.append(node)
    return out


async def open_group_routes(
    graph: CompiledGraph, run_id: str, stack: contextlib.AsyncExitStack
) -> list[tuple[list[int], Route]]:
    """A route to Redis workers for each group asking for one (closed by `stack`)."""
    routes = []
    for gi, info in enumerate(graph.groups):
        if info.backend is not CoordinationBackend.REDIS:
            continue
        from .transports.redis_streams import RedisStreamsTransport

        config: Mapping[str, Any] = info.backend_config or {}
        namespace = config.get("namespace", keys.DEFAULT_NAMESPACE)
        if config.get("redis_client") is not None:
            transport = RedisStreamsTransport(client=config["redis_client"], namespace=namespace)
        elif config.get("redis_url"):
            transport = RedisStreamsTransport(config["redis_url"], namespace=namespace)
        else:
            raise TransportError(
                f"group {info.name!r} uses the REDIS backend: give backend_config={{'redis_url': ...}} "
                "or {'redis_client': ...}"
            )
        await stack.enter_async_context(transport)
        routes.append((_members(graph, gi), route_for(transport, run_id)))
    return routes


def check_sendable(graph: CompiledGraph, nodes: list[int]) -> None:
    """TransportError, before anything is dispatched, for a task workers cannot import."""
    for node in nodes:
        task = graph.tasks[node]
        assert task is not None
        reason = unreachable_reason(task)
        if reason is not None:
            raise TransportError(
                f"task {task.id!r} cannot be sent to workers, which find tasks by import path: {reason}"
            )


async def open_channel(
    main: Transport, group_routes: list[Route], run_id: str, initial: Mapping[str, Any]
) -> Channel:
    """The run's channel: in Redis when any of its tasks run on workers, else in memory."""
    for transport in [main, *(r.transport for r in group_routes)]:
        make = getattr(transport, "channel", None)
        if make is not None and not transport.in_process:
            channel = make(run_id)
            await channel.update(dict(initial))
            return channel
    return MemoryChannel(initial)

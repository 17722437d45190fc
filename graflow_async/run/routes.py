"""Where a run's tasks go: the run's transport, or a Redis group's own.

A `Route` is a transport plus the queue tasks are sent to and the queue replies (and
context requests) come back on. Every task takes the run's route, except members of
a group declared with ``with_execution(backend=CoordinationBackend.REDIS, ...)``,
which take a route to Redis workers. Tasks added at runtime take the route of the
task that added them. Whether a route's tasks run in this process is decided here,
once, from the transport's declared `in_process`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from graflow_async.define.compile import CompiledGraph
from graflow_async.define.policies import CoordinationBackend
from graflow_async.define.tasks import unreachable_reason
from graflow_async.exceptions import TransportError
from graflow_async.logs import LibraryLog
from graflow_async.transports import keys
from graflow_async.transports.base import Transport

log = LibraryLog()


@dataclass(frozen=True, slots=True)
class Route:
    transport: Transport
    task_queue: str
    reply_to: str  # the run's inbox on this transport
    context_queue: str  # where this process's executor takes its context replies ("" when none runs here)
    run_id: str = ""
    epoch: int = 0  # the run's incarnation on this transport (0: none, in-process)
    durable: bool = False  # its run is durable: the run's end is written with its outcome (`run.homes`)

    @property
    def local(self) -> bool:
        """Its tasks run in this process (the run starts an executor for them)."""
        return bool(self.context_queue)

    async def close(self) -> None:
        """The run ended: its queued tasks are skipped from now on; drop its queues."""
        if self.epoch and not self.durable:
            try:
                await self.transport.end_run(self.run_id, self.epoch)
            except TransportError as exc:  # its lease lapses all the same: then workers skip its tasks
                log.warning("could not mark the run ended on its transport", run_id=self.run_id, error=str(exc)[:200])
        await self.transport.discard(self.reply_to)
        if self.local:
            await self.transport.discard(self.task_queue)
            await self.transport.discard(self.context_queue)


def route_for(transport: Transport, run_id: str) -> Route:
    if transport.in_process:  # private queues: the run's own executor consumes them
        return Route(transport, f"{run_id}:tasks", f"{run_id}:replies", f"{run_id}:context")
    return Route(transport, keys.TASK_QUEUE, keys.reply_queue(run_id), "")


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


async def open_routes(
    graph: CompiledGraph,
    run_id: str,
    main: Transport,
    stack: contextlib.AsyncExitStack,
    lease: float = 10.0,
    epoch: int = 0,
) -> list[Route]:
    """The route of each node of `graph`: the run's, or its Redis group's (opened on
    `stack`), each to workers begun as a new incarnation of the run (its epoch, a lease of
    `lease` seconds). `epoch`: a durable run's incarnation on `main`, already begun with
    its journal. TransportError, before anything is sent, for a task workers cannot
    import."""
    route = route_for(main, run_id)
    routes = [route] * len(graph.ids)
    for gi, info in enumerate(graph.groups):
        if info.backend is not CoordinationBackend.REDIS:
            continue
        group_route = route_for(await _open_group_transport(info.name, info.backend_config, stack), run_id)
        for node in _members(graph, gi):
            routes[node] = group_route
    check_sendable(graph, [n for n, r in enumerate(routes) if not r.local and graph.tasks[n] is not None])
    begun = {}
    for r in distinct(routes):
        if r.local:
            continue
        if epoch and r.transport is main:
            begun[id(r)] = replace(r, run_id=run_id, epoch=epoch, durable=True)
        else:
            begun[id(r)] = replace(r, run_id=run_id, epoch=await r.transport.begin_run(run_id, lease))
    return [begun.get(id(r), r) for r in routes] if begun else routes


async def _open_group_transport(name: str, config: Mapping[str, Any] | None, stack: contextlib.AsyncExitStack) -> Any:
    from graflow_async.transports.redis import RedisStreamsTransport

    config = config or {}
    namespace = config.get("namespace", keys.DEFAULT_NAMESPACE)
    secret = config.get("secret")  # None: GRAFLOW_SECRET, if set
    if config.get("redis_client") is not None:
        transport = RedisStreamsTransport(client=config["redis_client"], namespace=namespace, secret=secret)
    elif config.get("redis_url"):
        transport = RedisStreamsTransport(config["redis_url"], namespace=namespace, secret=secret)
    else:
        raise TransportError(
            f"group {name!r} uses the REDIS backend: "
            "give backend_config={'redis_url': ...} or {'redis_client': ...}"
        )
    return await stack.enter_async_context(transport)


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


def distinct(routes: list[Route]) -> list[Route]:
    return list({id(r): r for r in routes}.values())

"""Worker processes: run the tasks of any run, taken from a Redis task stream.

    python -m graflow_async worker --redis-url redis://host:6379/0 --import myapp.flows \\
        --concurrency 16 --worker-id w1 --metrics-port 9100

A worker runs only ``@task`` objects defined in the modules it was told to import (and
their submodules imported by then), found by the import path each message carries
among the modules imported at start: an entry never makes it import anything. It runs
a task with the arguments the run resolved, writes the reply and only then acks. A task's context
operations travel to its run as messages, and their answers come back on the
worker's own stream (``<ns>:worker:<id>:context``). SIGTERM or SIGINT: stop taking
tasks, let running ones finish within the grace period, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from graflow_async.actors import Supervisor
from graflow_async.clock import current_clock, within
from graflow_async.define.tasks import Task, load_task
from graflow_async.exceptions import TransportError
from graflow_async.execute.context_port import REMOTE_ANSWER_TIMEOUT
from graflow_async.execute.executor import Executor
from graflow_async.execute.handlers import housekeeping
from graflow_async.logs import LibraryLog
from graflow_async.options import number, whole
from graflow_async.transports import keys
from graflow_async.transports.redis import RedisStreamsTransport
from graflow_async.wire.messages import TaskMessage

if TYPE_CHECKING:
    from graflow_async.execute.metrics import Metrics

log = LibraryLog()
HOUSEKEEPING_EVERY = 60.0  # seconds between the handlers' chores


class TaskNotFound(LookupError):
    """A task message names something this worker will not run: not a ``@task``, or not
    defined in a module it was told to import."""


class TaskFinder:
    """Finds the tasks a worker may run: ``@task`` objects defined at module level in the
    modules named with ``--import``, or in their submodules already imported when the
    finder is made (the worker makes it once those imports are done). It never imports
    anything: an entry naming a module that was not imported then is refused, however
    its name looks (a submodule, a package's ``__main__``), and so is anything else a
    message names (a plain function, a builtin, another module's task)."""

    def __init__(self, modules: list[str] | tuple[str, ...]) -> None:
        self.modules = tuple(modules)
        #: the allowed modules imported now: the only ones tasks are looked for in
        self.imported = frozenset(
            name for name, module in list(sys.modules.items()) if module is not None and self.allows(name)
        )
        self._found: dict[str, Task] = {}

    def allows(self, module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in self.modules)

    def __call__(self, message: TaskMessage) -> Task:
        if not keys.is_reply_queue(message.reply_to):
            raise TaskNotFound(f"task {message.task_id!r} answers to {message.reply_to!r}, not a run's reply queue")
        ref = message.task_ref
        task = self._found.get(ref) if isinstance(ref, str) else None
        if task is None:
            task = self._find(message)
            self._found[ref] = task  # type: ignore[index]
        return task

    def _find(self, message: TaskMessage) -> Task:
        ref = message.task_ref
        if not isinstance(ref, str) or not ref:
            raise TaskNotFound(f"task {message.task_id!r} carries no import path")
        module = ref.partition(":")[0]
        if not self.allows(module):
            raise TaskNotFound(
                f"task {message.task_id!r} names {ref}, outside the modules this worker runs tasks from "
                f"({', '.join(self.modules) or 'none'}; start workers with --import {module} to run it)"
            )
        if module not in self.imported:
            raise TaskNotFound(
                f"task {message.task_id!r} names {ref}, but module {module!r} was not imported by this worker "
                f"at start; add --import {module} (a worker never imports a module because an entry names it)"
            )
        try:
            task = load_task(ref, import_module=False)
        except LookupError as exc:
            raise TaskNotFound(
                f"worker cannot find task {message.task_id!r} at {ref}: {exc} (start the worker with "
                "--import for its module, with the same code as the run)"
            ) from exc
        if not self.allows(task.func.__module__ or ""):
            raise TaskNotFound(f"{ref} is a task defined in {task.func.__module__}, outside this worker's modules")
        return task


async def run_worker(
    url: str,
    *,
    namespace: str = keys.DEFAULT_NAMESPACE,
    worker_id: str | None = None,
    imports: list[str] | None = None,
    concurrency: int | None = 64,
    threads: int | None = None,
    metrics_port: int | None = None,
    grace_period: float = 30.0,
    context_timeout: float = REMOTE_ANSWER_TIMEOUT,
    secret: str | bytes | list[bytes] | None = None,
    ready: asyncio.Event | None = None,
) -> int:
    """Run a worker until SIGTERM/SIGINT; returns the process exit code. `threads` sizes
    the pool plain (sync) task functions run in (None: `ThreadPoolExecutor`'s default)."""
    grace_period = number("grace_period", grace_period, above=True)
    context_timeout = number("context_timeout", context_timeout, above=True)
    if concurrency is not None:
        concurrency = whole("concurrency", concurrency, minimum=1)
    for module in imports or []:
        importlib.import_module(module)  # an ImportError ends the worker before it takes work
    async with RedisStreamsTransport(url, namespace=namespace, consumer=worker_id, secret=secret) as transport:
        context_queue = keys.worker_queue(transport.consumer)
        observer = None
        if metrics_port is not None:  # counted only when served: no work per task otherwise
            from graflow_async.execute.metrics import Metrics

            observer = Metrics(transport=transport)
        executor = Executor(
            transport,
            keys.TASK_QUEUE,
            context_queue=context_queue,
            remote=True,
            concurrency=concurrency,
            find_task=TaskFinder(imports or []),
            answer_timeout=context_timeout,
            observer=observer,
            max_threads=threads,
        )
        stop = asyncio.Event()
        async with _metrics_served(observer, executor, metrics_port):
            with _stopped_by_signals(stop):
                log.info(
                    "worker started",
                    worker_id=transport.consumer,
                    url=transport.url,
                    namespace=namespace,
                    signed=transport.signer is not None,
                    loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
                )
                if ready is not None:
                    ready.set()
                await run_until_stopped(executor, stop, grace_period)
                await _hand_back(transport, executor)
                await _leave(transport, context_queue)
        log.info("worker stopped", worker_id=transport.consumer, done=executor.done, failed=executor.failed)
    return 0


@contextlib.contextmanager
def _stopped_by_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` while the block runs."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def _metrics_served(observer: Metrics | None, executor: Executor, port: int | None) -> AsyncIterator[None]:
    """`observer`'s figures (and `executor`'s counts) served on `port` while the block runs."""
    if observer is None or port is None:
        yield
        return
    from graflow_async.execute.metrics import serve_metrics

    observer.count_executor(executor)
    server = await serve_metrics(observer, port)
    try:
        yield
    finally:
        await server.cleanup()


async def run_until_stopped(executor: Executor, stop: asyncio.Event, grace_period: float) -> None:
    """Run `executor` under a `Supervisor` until `stop` is set; then give running tasks
    `grace_period` seconds (on the run's clock) to finish before cancelling them."""
    async with Supervisor("worker") as sup:
        running = sup.spawn(executor.run(), name="executor")
        stopping = sup.spawn(stop.wait(), name="stop signal")
        chores = sup.spawn(_housekeeping(), name="housekeeping")
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        chores.cancel()
        if running.done():
            return
        executor.stop()
        try:
            await within(current_clock(), asyncio.shield(running), grace_period)
        except TimeoutError:
            log.warning(
                "grace period over: stopping the running tasks and handing them back to the queue",
                grace_period=grace_period,
                running=executor.running,
            )
            executor.abandon_threads()
            running.cancel()


async def _housekeeping() -> None:
    """The handlers' chores, every `HOUSEKEEPING_EVERY` seconds (the docker handler
    removes containers whose owner died)."""
    while True:
        await current_clock().sleep(HOUSEKEEPING_EVERY)
        await housekeeping()


async def _hand_back(transport: RedisStreamsTransport, executor: Executor) -> None:
    """Tasks stopped past the grace period go back to the queue for another worker, now."""
    if executor.stopped:
        try:
            async with asyncio.timeout(5.0):
                await transport.release(keys.TASK_QUEUE, executor.stopped)
        except (TimeoutError, TransportError):  # they come back when their lease lapses
            log.warning("could not hand the stopped tasks back", count=len(executor.stopped))


async def _leave(transport: RedisStreamsTransport, context_queue: str) -> None:
    """Best effort: during an outage, exit anyway."""
    try:
        async with asyncio.timeout(2.0):
            await transport.leave(keys.TASK_QUEUE)
            await transport.discard(context_queue)
    except (TimeoutError, TransportError):
        log.warning("could not leave the consumer group", worker_id=transport.consumer)

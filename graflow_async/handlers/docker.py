"""The ``docker`` handler: each attempt of a task runs in a fresh container (SPEC 8).

    @task(handler="docker", handler_kwargs={"image": "python:3.11-slim", "mem_limit": "512m"})
    def train(data: list[float]) -> float: ...

The call's inputs and result cross as msgpack files in a per-call directory mounted into
the container, which runs ``python -m graflow_async.handlers.container``; graflow_async,
what it imports and the task's module are bind-mounted read-only (``mount_code``). With
``inject_context=True`` the context's operations travel as messages over a socket in that
directory. Every container carries the label ``graflow-async`` (the run id) and labels
naming its owner (`reaper`), and is removed whatever happens, cancellation included;
containers whose owner died are removed when a handler next starts on that engine.

The container is a sandbox (`define.docker_options`, `sandbox`): an unprivileged user,
no capabilities, a read-only root filesystem, a limited context with quotas. A breach
of its rules kills the container and fails the task with a `HandlerError` naming it.

Errors: what the task raises comes back as `RemoteTaskError` (type, message, traceback);
a non-zero exit, an out-of-memory kill, a timeout or a missing image is a
`TaskFailedError` carrying the container's log tail (retried per the task's policy); an
engine that cannot be reached is a `HandlerError` naming its address.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import aiodocker
import aiohttp

from graflow_async.define import docker_options
from graflow_async.define.docker_options import DockerOptions, Launch, container_config
from graflow_async.exceptions import HandlerError, TaskFailedError, TaskTimeoutError
from graflow_async.handlers.code_mounts import code_mounts
from graflow_async.handlers.isolated import CallDirectory, NoReply, call_directory
from graflow_async.handlers.reaper import REAP_EVERY, reap, this_process
from graflow_async.handlers.sandbox import Sandbox
from graflow_async.logs import LibraryLog

log = LibraryLog()
LOG_TAIL_LINES = 40
LOG_TAIL_CHARS = 4000
REMOVE_TIMEOUT = 30.0


class DockerHandler:
    """Runs each attempt of a task in a container (``handler="docker"``)."""

    def __init__(self) -> None:
        self._reaped: dict[str, float] = {}  # engine url -> when its orphans were last removed

    async def run(self, call: Any) -> Any:
        opts = docker_options.parse(call.options, call.task_id)
        url = opts.url()
        sandbox = Sandbox(call.task_id, full=opts.context == "full", quotas=opts.quotas)
        async with call_directory(call, sandbox=sandbox) as directory, _engine(url) as docker:
            await self._reap_due(docker, url)
            owner = this_process()
            launch = Launch(
                run_id=call.run_id,
                task_id=call.task_id,
                call_dir=str(directory.path),
                code_mounts=code_mounts(call.func) if opts.mount_code else (),
                owner=owner.labels(),
            )
            return await _attempt(docker, opts, launch, directory)

    async def housekeeping(self) -> None:
        """Remove the orphaned containers of every engine this handler has used (a
        worker calls it periodically)."""
        for url in list(self._reaped):
            with contextlib.suppress(HandlerError):
                async with _engine(url) as docker:
                    await self._reap_due(docker, url)

    async def _reap_due(self, docker: aiodocker.Docker, url: str) -> None:
        now = time.monotonic()
        last = self._reaped.get(url)
        if last is not None and now - last < REAP_EVERY:
            return
        self._reaped[url] = now
        try:
            await reap(docker)
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as exc:
            log.warning("could not look for orphaned task containers", url=url, error=str(exc)[:200])


@contextlib.asynccontextmanager
async def _engine(url: str) -> Any:
    """A client of the engine at `url`; HandlerError naming it when it cannot be reached."""
    try:
        docker = aiodocker.Docker(url=url)
    except (ValueError, OSError) as exc:
        raise HandlerError(f"cannot use the Docker engine at {url}: {exc}") from None
    try:
        try:
            await docker.version()
        except (aiohttp.ClientError, OSError, aiodocker.DockerError) as exc:
            raise HandlerError(f"cannot reach the Docker engine at {url}: {type(exc).__name__}: {exc}") from None
        yield docker
    finally:
        await docker.close()


async def _attempt(docker: aiodocker.Docker, opts: DockerOptions, launch: Launch, directory: CallDirectory) -> Any:
    """Create, start and wait for the container; remove it whatever happens (it is named
    first, so that one created while the attempt is cancelled is found and removed too)."""
    call = directory.call
    container = docker.containers.container(f"graflow-{uuid.uuid4().hex}")
    try:
        await docker.containers.create(config=container_config(opts, launch), name=container.id)
        await container.start()
        try:
            async with asyncio.timeout(opts.timeout):
                status = await _wait(container, directory)
        except TimeoutError:
            tail = await _log_tail(container)
            raise TaskTimeoutError(call.task_id, opts.timeout or 0.0) from TaskFailedError(
                call.task_id, None, f"task {call.task_id!r}: the container ran past {opts.timeout:g}s{tail}"
            )
        return await _outcome(container, status, directory)
    except aiodocker.DockerError as exc:
        raise TaskFailedError(
            call.task_id,
            None,
            f"task {call.task_id!r}: the engine refused the container (image {opts.image!r}): {exc.message}",
        ) from None
    finally:
        await _remove(container)


async def _wait(container: Any, directory: CallDirectory) -> dict[str, Any]:
    """The container's exit status; the sandbox's `HandlerError` as soon as it breaks a rule
    (the container is then removed by the caller)."""
    exited = asyncio.ensure_future(container.wait())
    breached = asyncio.ensure_future(directory.violated())
    try:
        await asyncio.wait({exited, breached}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (exited, breached):
            waiter.cancel()
    if breached.done() and not breached.cancelled():
        raise breached.result()
    status: dict[str, Any] = exited.result()
    return status


async def _outcome(container: Any, status: dict[str, Any], directory: CallDirectory) -> Any:
    task_id = directory.call.task_id
    directory.check_rules()
    code = status.get("StatusCode")
    if code == 0:
        try:
            return await directory.outcome()
        except NoReply:
            tail = await _log_tail(container)
            raise TaskFailedError(task_id, None, f"task {task_id!r}: the container wrote no reply{tail}") from None
    info = await container.show()
    state = info.get("State", {})
    reason = "was killed: out of memory" if state.get("OOMKilled") else f"exited with status {code}"
    tail = await _log_tail(container)
    raise TaskFailedError(task_id, None, f"task {task_id!r}: the container {reason}{tail}")


async def _log_tail(container: Any) -> str:
    """The last lines the container printed, for an error message."""
    try:
        lines = await container.log(stdout=True, stderr=True, tail=LOG_TAIL_LINES)
    except (aiodocker.DockerError, aiohttp.ClientError, OSError):
        return ""
    text = "".join(lines)[-LOG_TAIL_CHARS:].rstrip()
    return f"\n--- container log (last lines) ---\n{text}" if text else ""


async def _remove(container: Any) -> None:
    """Remove the container (killing it if it runs), even while the attempt is cancelled."""
    removal = asyncio.ensure_future(_force_remove(container))
    try:
        await asyncio.shield(removal)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(removal), REMOVE_TIMEOUT)
        raise


async def _force_remove(container: Any) -> None:
    try:
        await container.delete(force=True, v=True)
    except aiodocker.DockerError as exc:
        if exc.status != 404:
            log.warning("could not remove a task container", container=container.id, error=exc.message)

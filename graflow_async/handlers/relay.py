"""A task's context in another process: its operations travel as messages over a Unix
socket in the call directory to the handler, which passes them on to the run (as a task
on a Redis worker sends them over its stream). The other process is not trusted: each
frame is bounded, checked, and answered or refused; the run checks the rest.

The frames are `wire.frames`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from typing import Any

from graflow_async.clock import current_clock
from graflow_async.exceptions import HandlerError, TransportError
from graflow_async.execute.context import TaskContext, relay_call
from graflow_async.feedback.models import FeedbackRequest
from graflow_async.handlers.sandbox import Sandbox
from graflow_async.logs import LibraryLog
from graflow_async.wire import envelope
from graflow_async.wire.codec import packb
from graflow_async.wire.frames import frame, read_frame, request_from
from graflow_async.wire.messages import ContextReply, TaskMessage

log = LibraryLog()


# --- the handler's side ------------------------------------------------------------------------------
class ContextRelay:
    """Serves the context of one call at `path` while the other process runs.

    `suspended_on` is the feedback request whose wait timed out, when one did: the
    handler then suspends the task as the run expects. With a `Sandbox`, each connection
    and request is checked first: the first one refused sets `violation` (and
    `violated`), later connections are refused, and the handler fails the task with it.
    """

    def __init__(self, context: TaskContext, path: str, sandbox: Sandbox | None = None) -> None:
        self.context = context
        self.path = path
        self.sandbox = sandbox
        self.suspended_on: FeedbackRequest | None = None
        self.violation: HandlerError | None = None
        self.violated = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> ContextRelay:
        self._server = await asyncio.start_unix_server(self._connection, path=self.path)
        os.chmod(self.path, 0o666)  # any uid of the container may connect (its directory is private)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._server.wait_closed()

    def _violate(self, error: HandlerError) -> None:
        if self.violation is None:
            self.violation = error
            self.violated.set()
            log.warning("a sandboxed task broke its rules", task_id=self.context.task_id, reason=str(error)[:300])
            # The server stays open until the handler has removed the container (closing it
            # while accepts are in flight leaks their sockets): new connections are refused.
            for task in list(self._tasks):
                task.cancel()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        refused = self.violation or (self.sandbox.connect() if self.sandbox is not None else None)
        if refused is not None:
            self._violate(refused)
            writer.close()
            return
        current = asyncio.current_task()
        assert current is not None
        self._tasks.add(current)
        lock = asyncio.Lock()
        try:
            async with asyncio.TaskGroup() as group:
                while (body := await read_frame(reader)) is not None:
                    group.create_task(self._answer(body, writer, lock))
        except asyncio.CancelledError:  # the relay closes (or the task broke a rule): this connection ends
            pass
        except Exception as exc:  # a malformed frame: the connection is closed, the task's calls fail
            log.warning(
                "closed a task's context connection",
                task_id=self.context.task_id,
                reason=f"{type(exc).__name__}: {exc}"[:200],
            )
        finally:
            self._tasks.discard(current)
            if self.sandbox is not None:
                self.sandbox.disconnect()
            writer.close()

    async def _answer(self, body: bytes, writer: asyncio.StreamWriter, lock: asyncio.Lock) -> None:
        request_id, op, args, timeout = request_from(body)
        refused = self.sandbox.admit(op, len(body), current_clock().time()) if self.sandbox is not None else None
        if refused is not None:
            self._violate(refused)
            reply = ContextReply(request_id, False, None, refused)
        else:
            try:
                value = await relay_call(self.context, op, args, timeout)
                reply = ContextReply(request_id, True, value, None)
            except Exception as exc:
                reply = ContextReply(request_id, False, None, exc)
            if op == "feedback" and reply.ok and isinstance(reply.value, dict):
                if reply.value.get("status") != "answered":
                    self.suspended_on = FeedbackRequest.from_dict(reply.value["request"])
                elif self.sandbox is not None:
                    self.sandbox.feedback_answered()
        async with lock:
            writer.write(frame(envelope.encode(reply)))
            await writer.drain()


# --- the other process's side ------------------------------------------------------------------------
class SocketPort:
    """The port a `TaskContext` in the other process sends its operations through."""

    remote = True  # what the task hands its run is described by import path

    def __init__(self) -> None:
        self._pending: dict[str, asyncio.Future[ContextReply]] = {}
        self._ids = itertools.count(1)
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._lost: TransportError | None = None  # set when the connection has ended

    async def open(self, path: str) -> None:
        reader, self._writer = await asyncio.open_unix_connection(path)
        self._reader_task = asyncio.create_task(self._read(reader))

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        if self._writer is not None:
            self._writer.close()

    async def stream(self, message: TaskMessage, data: Any) -> None:
        """Through the handler, which appends it to the run's stream (`relay_call`)."""
        await self.call(message, "stream", {"data": data})

    async def call(self, message: TaskMessage, op: str, args: dict[str, Any], *, timeout: float | None = None) -> Any:
        assert self._writer is not None, "open() first"
        if self._lost is not None:
            raise self._lost
        request_id = str(next(self._ids))
        future: asyncio.Future[ContextReply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(frame(packb({"id": request_id, "op": op, "args": args, "timeout": timeout})))
            await self._writer.drain()
            reply = await future
        finally:
            self._pending.pop(request_id, None)
        if not reply.ok:
            assert reply.error is not None
            raise reply.error
        return reply.value

    async def _read(self, reader: asyncio.StreamReader) -> None:
        error = TransportError("the handler closed the task's context connection")
        try:
            while (body := await read_frame(reader)) is not None:
                reply = envelope.decode(body)
                future = self._pending.get(reply.request_id) if isinstance(reply, ContextReply) else None
                if future is not None and not future.done():
                    future.set_result(reply)
        except (ValueError, OSError) as exc:
            error = TransportError(f"the task's context connection failed: {exc}")
        self._lost = error
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

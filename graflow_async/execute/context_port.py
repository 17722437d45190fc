"""The executor's end of context messages: a task's requests go to its run, and each
`ContextReply` that comes back on the executor's own queue wakes the request waiting
for it.

One port serves every task an executor runs. In-process the replies are handed over
as they are sent (`Transport.attach`); a worker reads them from its own stream.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from graflow_async.actors import MailboxClosed
from graflow_async.clock import Backoff, current_clock, within
from graflow_async.exceptions import TransportError
from graflow_async.execute.stream_buffer import StreamBuffer
from graflow_async.logs import LibraryLog
from graflow_async.transports.base import Transport
from graflow_async.wire.messages import ContextReply, ContextRequest, QueueFailed, QueueLost, StreamChunk, TaskMessage

log = LibraryLog()
#: how long a task on a worker waits for its run to answer a context request before it
#: concludes the run has ended (a feedback wait adds the request's own timeout)
REMOTE_ANSWER_TIMEOUT = 300.0
RESEND_FIRST, RESEND_MAX = 2.0, 30.0  # seconds before a remote request is sent again, doubling (with jitter)


class Port(Protocol):
    """What a `TaskContext` sends its operations through."""

    remote: bool  # the run is in another process: hand it import paths, not objects

    async def call(
        self, message: TaskMessage, op: str, args: dict[str, Any], *, timeout: float | None = None
    ) -> Any: ...

    async def stream(self, message: TaskMessage, data: Any) -> None:
        """Append `data` to the stream of the run of `message` (SPEC 12)."""
        ...


class ContextPort:
    """Sends context requests over `transport` and takes their replies on `queue`.

    `remote` says the run is in another process: what a task hands its run must then
    be described by import path, and a run that has gone quiet is given up on after
    `answer_timeout` seconds (plus the request's own timeout, for a feedback wait).
    """

    def __init__(
        self, transport: Transport, queue: str, *, remote: bool, answer_timeout: float = REMOTE_ANSWER_TIMEOUT
    ) -> None:
        self.transport = transport
        self.queue = queue
        self.remote = remote
        self.answer_timeout = answer_timeout
        self._pending: dict[str, asyncio.Future[ContextReply]] = {}
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:12]
        self.streams = StreamBuffer(transport)  # a worker's: batched to the runs' streams on Redis

    async def stream(self, message: TaskMessage, data: Any) -> None:
        """In-process a message to the run (which keeps its stream); on a worker, into
        `streams`, sent in batches (waited for only past `StreamBuffer.HIGH` items)."""
        if not self.remote:
            chunk = StreamChunk(
                message.run_id, message.node, message.cycle, message.attempt, message.epoch, message.task_id, data
            )
            if not self.transport.send_nowait(message.reply_to, (chunk,)):
                await self.transport.send(message.reply_to, (chunk,))
            return
        await self.streams.add(message, data)

    async def call(self, message: TaskMessage, op: str, args: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Send `op` for the task of `message` to its run; its answer, or the error it
        raised there. A remote request unanswered for a while is sent again, with the same
        id (the run answers it once): a request or an answer lost in a Redis restart does
        not leave the task waiting."""
        request = self._request(message, op, args)
        request_id = request.request_id
        future: asyncio.Future[ContextReply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        bound = (timeout or 0.0) + self.answer_timeout if self.remote else None
        try:
            async with asyncio.timeout(bound):
                reply = await self._exchange(message.reply_to, request, future)
        except TimeoutError:
            log.warning(
                "a run did not answer a context request; it may have ended",
                run_id=message.run_id,
                task_id=message.task_id,
                op=op,
                waited=bound,
            )
            raise TransportError(
                f"run {message.run_id} did not answer {op} from task {message.task_id!r} within {bound:g}s "
                "(it may have ended)"
            ) from None
        finally:
            self._pending.pop(request_id, None)
        if not reply.ok:
            assert reply.error is not None
            raise reply.error
        return reply.value

    async def notify(self, message: TaskMessage, op: str, args: dict[str, Any]) -> None:
        """Tell the run of `message` something that wants no answer (its answer, if any,
        is dropped: nothing waits for it); a notice that cannot be sent is only logged."""
        request = self._request(message, op, args)
        try:
            await self.transport.send(message.reply_to, (request,))
        except TransportError as exc:
            log.warning("could not tell a run about its task", run_id=message.run_id, op=op, error=str(exc))

    def _request(self, message: TaskMessage, op: str, args: dict[str, Any]) -> ContextRequest:
        """Request `op` of the attempt of `message`, under an id of its own, answered here."""
        return ContextRequest(
            message.run_id,
            message.node,
            message.cycle,
            message.attempt,
            f"{self._prefix}-{next(self._ids)}",
            op,
            args,
            self.queue,
            message.epoch,
        )

    async def _exchange(self, to: str, request: ContextRequest, future: asyncio.Future[ContextReply]) -> ContextReply:
        await self.transport.send(to, (request,))
        if not self.remote:
            return await future
        clock, backoff = current_clock(), Backoff(RESEND_FIRST, RESEND_MAX)
        while True:
            try:
                return await within(clock, asyncio.shield(future), backoff.next())
            except TimeoutError:
                pass
            await self.transport.open_queue(self.queue)  # where the answer lands, if it vanished
            await self.transport.send(to, (request,))

    def deliver(self, replies: Sequence[Any]) -> None:
        """Hand each reply to its waiting request; others (late, duplicate, foreign) are dropped."""
        for reply in replies:
            if isinstance(reply, QueueLost):
                continue  # the queue was made again; unanswered requests are sent again anyway
            if isinstance(reply, QueueFailed):  # requests are sent again until their run answers or times out
                log.warning("the context queue cannot be read for now", queue=self.queue, error=str(reply.error))
                continue
            if not isinstance(reply, ContextReply):
                log.warning(
                    "dropped a message that is not a context reply", queue=self.queue, kind=type(reply).__name__
                )
                continue
            future = self._pending.get(reply.request_id)
            if future is not None and not future.done():
                future.set_result(reply)

    async def pump(self) -> None:
        """Deliver what arrives on `queue` (for transports that cannot hand replies over)."""
        inbox = self.transport.inbox(self.queue)
        try:
            while True:
                self.deliver(await inbox.receive_batch())
        except MailboxClosed:
            return  # the transport closed: the executor is ending
        finally:
            inbox.close()

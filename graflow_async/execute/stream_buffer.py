"""What tasks on a worker stream (SPEC 12), on its way to their runs' streams on Redis:
kept in order per run and sent in batches by one sender at a time, so that a task that
streams 10,000 chunks makes a few round trips, not 10,000. A task waits only while
more than `HIGH` chunks are unsent (a reader slower than the writer holds it back
there, bounding memory). Before an attempt's reply is written its chunks are sent
(`flush`): a stream never shows less than its task's outcome says it streamed."""

from __future__ import annotations

import asyncio
from typing import Any

from graflow_async.logs import LibraryLog
from graflow_async.transports.base import Transport
from graflow_async.wire.messages import TaskMessage

log = LibraryLog()
HIGH = 1000  # chunks unsent before a streaming task waits for them to go
BATCH = 500  # chunks per round trip


class StreamBuffer:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._pending: dict[str, list[tuple[str, int, Any]]] = {}  # run id -> items, in order
        self._count = 0
        self._sending: asyncio.Task[None] | None = None

    async def add(self, message: TaskMessage, data: Any) -> None:
        self._pending.setdefault(message.run_id, []).append((message.task_id, message.attempt, data))
        self._count += 1
        if self._sending is None or self._sending.done():
            self._sending = asyncio.ensure_future(self._send())
        if self._count > HIGH:
            await self.flush()

    async def flush(self) -> None:
        """Until everything added so far is sent (or failed: logged, dropped)."""
        while self._sending is not None and not self._sending.done():
            await asyncio.shield(self._sending)
        if self._count:
            self._sending = asyncio.ensure_future(self._send())
            await asyncio.shield(self._sending)

    async def _send(self) -> None:
        await asyncio.sleep(0)  # the chunks of this turn go together
        while self._pending:
            run_id, items = next(iter(self._pending.items()))
            batch, rest = items[:BATCH], items[BATCH:]
            if rest:
                self._pending[run_id] = rest
            else:
                del self._pending[run_id]
            self._count -= len(batch)
            try:
                await self.transport.stream_append(run_id, batch)
            except Exception as exc:  # a stream is best effort: the run goes on without these chunks
                log.warning("could not append to a run's stream", run_id=run_id, count=len(batch), error=str(exc))

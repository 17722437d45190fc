"""Coalescing writes: every write queued in one event-loop turn goes in one pipeline.

A worker running many tasks at once would otherwise send each reply and each ack as
a pipeline of its own, each holding a connection for a round trip. Here the first
writer of a turn leads: it yields once so the others of the turn can queue their
commands behind its own, then sends them all in one pipeline, in the order they
were queued (so a task's ack still follows its reply), and tells the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from ..exceptions import TransportError

Command = Callable[[Any], Any]  # given a pipeline, queues one command on it


class Ack(NamedTuple):
    """Entries of `stream` to acknowledge and delete. The acks of one batch are merged
    into one XACK and one XDEL per stream, after the batch's other commands (so an ack
    still follows the reply it concludes)."""

    stream: str
    group: str
    ids: list[Any]


def queue_commands(pipe: Any, commands: list[Command | Ack]) -> None:
    """Queue `commands` on `pipe`, the acks merged at the end."""
    acks: dict[tuple[str, str], list[Any]] = {}
    for command in commands:
        if isinstance(command, Ack):
            acks.setdefault((command.stream, command.group), []).extend(command.ids)
        else:
            command(pipe)
    for (stream, group), ids in acks.items():
        pipe.xack(stream, group, *ids)
        pipe.xdel(stream, *ids)


class WriteBatcher:
    """Batches commands per event-loop turn; `run` executes a list of them."""

    def __init__(self, run: Callable[[list[Command | Ack]], Awaitable[None]]) -> None:
        self._run = run
        self._queued: list[Command | Ack] = []
        self._batch_done: asyncio.Future[None] | None = None

    async def write(self, commands: list[Command | Ack]) -> None:
        """Queue `commands` and return once the pipeline holding them has run."""
        self._queued.extend(commands)
        done = self._batch_done
        if done is not None:  # a leader will send them
            await asyncio.shield(done)
            return
        done = self._batch_done = asyncio.get_running_loop().create_future()
        try:
            await asyncio.sleep(0)  # let the other writers of this turn queue theirs
        finally:
            batch, self._queued, self._batch_done = self._queued, [], None
        try:
            await self._run(batch)
        except BaseException as exc:
            if not done.done():
                if isinstance(exc, asyncio.CancelledError):  # followers' writes were not sent
                    done.set_exception(TransportError("a batched Redis write was interrupted"))
                else:
                    done.set_exception(exc)
                done.exception()  # followers may be gone; do not warn about it
            raise
        done.set_result(None)

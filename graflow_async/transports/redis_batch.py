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

from redis.exceptions import ResponseError

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


class Recorder:
    """Takes the commands `queue_commands` queues (the XADD, XACK and XDEL a batch holds)
    as argument lists, for `execute`."""

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def xadd(self, name: str, fields: dict[bytes, bytes], nomkstream: bool = False) -> None:
        head: tuple[Any, ...] = ("XADD", name, "NOMKSTREAM", "*") if nomkstream else ("XADD", name, "*")
        self.commands.append((*head, *(x for pair in fields.items() for x in pair)))

    def xack(self, name: str, group: str, *ids: Any) -> None:
        self.commands.append(("XACK", name, group, *ids))

    def xdel(self, name: str, *ids: Any) -> None:
        self.commands.append(("XDEL", name, *ids))


async def execute(pool: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Send `commands` on one connection of `pool` in one write and read their answers
    (an error answer in its place): a pipeline without redis-py's Pipeline, which
    releases its connection through a task of its own and a shield, on every batch."""
    connection = await pool.get_connection()
    try:
        await connection.send_packed_command(connection.pack_commands(commands))
        answers: list[Any] = []
        for _ in commands:
            try:
                answers.append(await connection.read_response())
            except ResponseError as exc:
                answers.append(exc)
    except BaseException:
        await asyncio.shield(_drop(pool, connection))  # half read: never handed out again as is
        raise
    await pool.release(connection)
    return answers


async def _drop(pool: Any, connection: Any) -> None:
    try:
        await connection.disconnect()
    finally:
        await pool.release(connection)


class WriteBatcher:
    """Batches commands per event-loop turn; `run` executes a list of them."""

    def __init__(self, run: Callable[[list[Command | Ack]], Awaitable[None]]) -> None:
        self._run = run
        self._queued: list[Command | Ack] = []
        self._followers: list[asyncio.Future[None]] | None = None  # the current batch's, once it has a leader

    async def write(self, commands: list[Command | Ack]) -> None:
        """Queue `commands` and return once the pipeline holding them has run."""
        self._queued.extend(commands)
        followers = self._followers
        if followers is not None:  # a leader will send them and tell us; a future of our own, so
            mine = asyncio.get_running_loop().create_future()  # that our cancellation is ours alone
            followers.append(mine)
            await mine
            return
        followers = self._followers = []
        try:
            await asyncio.sleep(0)  # let the other writers of this turn queue theirs
        finally:
            batch, self._queued, self._followers = self._queued, [], None
        try:
            await self._run(batch)
        except BaseException as exc:
            error = TransportError("a batched Redis write was interrupted") if isinstance(
                exc, asyncio.CancelledError) else exc  # followers' writes were not sent
            for follower in followers:
                if not follower.done():
                    follower.set_exception(error)
            raise
        for follower in followers:
            if not follower.done():
                follower.set_result(None)

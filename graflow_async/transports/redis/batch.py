"""Coalescing writes: every write queued in one event-loop turn goes in one round trip.

A worker running many tasks at once would otherwise send each reply and each ack on a
round trip of its own. Here the first writer of a turn leads: it yields once so the
others of the turn can queue their commands behind its own, then sends them all at
once, in the order they were queued, and tells each writer how its own commands fared.

`commands` turns the writers' items into Redis commands: the acks of a batch are merged
into one XACK and one XDEL per stream, after the other commands. A batch that both adds
and acks is one MULTI/EXEC, so that an ack never takes effect without the reply it
concludes (under ``maxmemory`` Redis refuses the XADD of a reply and would still take
its XACK, losing the task).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from graflow_async.exceptions import TransportError

Command = tuple[Any, ...]


class Ack(NamedTuple):
    """Entries of `stream` to acknowledge and delete."""

    stream: str
    group: str
    ids: list[Any]


Item = Command | Ack
#: runs one batch: each writer's items in, one outcome per writer out (None: written)
Runner = Callable[[list[list[Item]]], Awaitable[list[BaseException | None]]]


def commands(writers: Sequence[Sequence[Item]]) -> tuple[list[Command], list[list[int]]]:
    """The commands of a batch, and for each writer the indices of the commands that are
    its own (its merged acks included)."""
    out: list[Command] = []
    mine: list[list[int]] = [[] for _ in writers]
    acks: dict[tuple[str, str], tuple[list[Any], set[int]]] = {}
    for w, items in enumerate(writers):
        for item in items:
            if isinstance(item, Ack):
                ids, who = acks.setdefault((item.stream, item.group), ([], set()))
                ids.extend(item.ids)
                who.add(w)
            else:
                mine[w].append(len(out))
                out.append(item)
    for (stream, group), (ids, who) in acks.items():
        for w in who:
            mine[w].extend((len(out), len(out) + 1))
        out.append(("XACK", stream, group, *ids))
        out.append(("XDEL", stream, *ids))
    return out, mine


def needs_transaction(batch: Sequence[Command]) -> bool:
    """Whether `batch` both adds entries and settles others (see the module's docstring)."""
    kinds = {command[0] for command in batch}
    return "XACK" in kinds and len(kinds) > 2


class WriteBatcher:
    """Batches items per event-loop turn; `run` executes a batch."""

    def __init__(self, run: Runner) -> None:
        self._run = run
        self._queued: list[list[Item]] = []
        self._waiting: list[asyncio.Future[None]] | None = None  # the current batch's, once it has a leader

    async def write(self, items: list[Item]) -> None:
        """Queue `items` and return once the round trip holding them has run; raise what
        went wrong with one of them (a refusal of this writer's commands)."""
        self._queued.append(items)
        waiting = self._waiting
        mine = asyncio.get_running_loop().create_future()
        if waiting is not None:  # a leader will send them and tell us; a future of our own, so
            waiting.append(mine)  # that our cancellation is ours alone
            await mine
            return
        waiting = self._waiting = [mine]
        try:
            await asyncio.sleep(0)  # let the other writers of this turn queue theirs
        finally:
            batch, self._queued, self._waiting = self._queued, [], None
        try:
            outcomes = await self._run(batch)
        except BaseException as exc:
            error = (
                TransportError("a batched Redis write was interrupted")
                if isinstance(exc, asyncio.CancelledError)
                else exc
            )  # the others' writes were not sent
            for other in waiting[1:]:
                if not other.done():
                    other.set_exception(error)
            raise
        for future, outcome in zip(waiting, outcomes, strict=True):
            if future.done():
                continue
            if outcome is None:
                future.set_result(None)
            else:
                future.set_exception(outcome)
        await mine

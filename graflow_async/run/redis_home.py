"""`RedisHome`: a durable run's header, journal, lease and outcome on its Redis server
(see `run.homes`). Its lease is the run's owner record (`transports.redis.owners`), which
the run renews through its route; the outcome is written by one script that checks the
epoch, keeps the outcome `retention` seconds and lets every key of the run expire then."""

from __future__ import annotations

import contextlib
from typing import Any

from graflow_async.run.homes import MAX_DOC, Home, nothing_held
from graflow_async.run.journal import Fenced
from graflow_async.run.journal.redis import RedisJournal, RedisJournalWriter
from graflow_async.run.recording import FactWriter
from graflow_async.transports.keys import reply_queue
from graflow_async.transports.redis import RedisStreamsTransport
from graflow_async.transports.redis.owners import ENDED_KEPT
from graflow_async.transports.redis.scripts import Script
from graflow_async.wire.messages import TaskReply

_CONCLUDE = Script(
    """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'ended')
redis.call('EXPIRE', KEYS[1], math.max(tonumber(ARGV[3]), tonumber(ARGV[4])))
redis.call('DEL', KEYS[2])
for i = 4, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
return 1
"""
)


class RedisHome(Home):
    adoptable = True

    def __init__(self, transport: RedisStreamsTransport, run_id: str) -> None:
        self.run_id = run_id
        self.transport = transport
        self.journal: RedisJournal = RedisJournal(transport, run_id)
        self.where = f"Redis namespace {transport.keys.namespace!r}"
        self._keys = transport.keys

    async def read_header(self) -> bytes | None:
        return _bytes(await self.transport.conn.call("GET", self._keys.header(self.run_id)))

    async def create(self, header: bytes, owner: str, lease: float) -> int | None:
        return await self.journal.create(header, owner, lease)  # one script: no header without a lease

    async def read_outcome(self) -> bytes | None:
        return _bytes(await self.transport.conn.call("GET", self._keys.outcome(self.run_id)))

    async def conclude(self, epoch: int, outcome: bytes, retention: float) -> None:
        keys = self._keys
        run_id = self.run_id
        names = [keys.owner(run_id), keys.lease(run_id), keys.outcome(run_id)]
        names += [keys.header(run_id), keys.journal(run_id), keys.snapshot(run_id)]
        keep = max(1, int(retention))
        if not await _CONCLUDE(self.transport.conn, names, [epoch, outcome, keep, ENDED_KEPT]):
            raise Fenced(run_id, f"run {run_id} was taken over: the owner of epoch {epoch} keeps no outcome")
        await self.transport.owners.forget(run_id)

    async def let_go(self, epoch: int) -> None:
        await self.transport.owners.let_go(self.run_id, epoch)

    async def backlog(self) -> list[TaskReply]:
        return await self.transport.backlog(reply_queue(self.run_id))

    def writer(self, epoch: int) -> FactWriter:
        return RedisJournalWriter(self.journal, epoch)

    def held(self, epoch: int, lease: float) -> contextlib.AbstractAsyncContextManager[Any]:
        return nothing_held()  # the run's hold on its route renews this lease


def _bytes(answer: Any) -> bytes | None:
    if answer is None:
        return None
    if isinstance(answer, str):
        answer = answer.encode()
    if not isinstance(answer, bytes):
        return b""  # not msgpack: the reader says so
    return answer[: MAX_DOC + 1]

"""Run incarnations on Redis: who drives a run, and which incarnation of it is current.

Every run on Redis begins by taking the next *epoch* of its run id (a resumed run, a
run started again under the same id: each a new epoch) and a lease its driver renews.
Its task messages, replies and context requests carry the epoch; a worker judges from
the owner record, not from whether a stream exists, whether the run a task belongs to
has ended: ended, another incarnation, or a driver gone (its lease lapsed) all mean
the task is skipped, never run. A replayed entry of a former incarnation, or one
replayed after the run ended into a re-created stream, is skipped the same way.

    begin(run_id, lease)  -> epoch     HINCRBY epoch, state running, the lease set
    renew(run_id, epoch, lease) -> bool  False once another incarnation took the run
    end(run_id, epoch, keep)           state ended (when still ours), kept `keep` seconds
    judge(incarnations) -> ended ones  one pipeline for every run a batch names
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from graflow_async.clock import current_clock
from graflow_async.transports.base import Incarnation
from graflow_async.transports.keys import Keys
from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.transports.redis.errors import Refused
from graflow_async.transports.redis.scripts import Script

ENDED_KEPT = 24 * 3600  # seconds an ended run's owner record is kept (replays of its entries are judged by it)
ORPHAN_KEPT = 3600  # seconds the keys of a run whose driver died are kept, once a worker notices

_BEGIN = Script(
    """
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[2], 'durable', ARGV[3])
redis.call('PERSIST', KEYS[1])
redis.call('SET', KEYS[2], epoch, 'PX', ARGV[1])
return epoch
"""
)
_CREATE = Script(
    """
if not redis.call('SET', KEYS[3], ARGV[3], 'NX') then return 0 end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[2], 'durable', '1')
redis.call('PERSIST', KEYS[1])
redis.call('SET', KEYS[2], epoch, 'PX', ARGV[1])
return epoch
"""
)
_ADOPT = Script(
    """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[2], 'durable', '1')
redis.call('PERSIST', KEYS[1])
redis.call('SET', KEYS[2], epoch, 'PX', ARGV[1])
return epoch
"""
)
_RENEW = Script(
    """
local current = redis.call('HGET', KEYS[1], 'epoch')
if not current then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'state', 'running', 'owner', ARGV[3], 'durable', ARGV[4])
elseif current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""
)
_LET_GO = Script(
    """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
return 1
"""
)
_END = Script(
    """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'ended')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""
)


class Owners:
    """The owner records of one namespace, through the connection layer."""

    def __init__(self, conn: RedisConnection, keys: Keys) -> None:
        self.conn = conn
        self.keys = keys
        self._durable: set[str] = set()  # durable runs this process drives: listed for adopters

    async def begin(self, run_id: str, lease: float, owner: str, *, durable: bool = False) -> int:
        ms = max(1, int(lease * 1000))
        keys = [self.keys.owner(run_id), self.keys.lease(run_id)]
        epoch = int(await _BEGIN(self.conn, keys, [ms, owner, "1" if durable else "0"]))
        if durable:
            self._durable.add(run_id)
            await self._list(run_id, ms)
        return epoch

    async def create(self, run_id: str, lease: float, owner: str, header: bytes) -> int | None:
        """Start durable run `run_id`: its header written and its first epoch and lease
        taken in one step, so that a process attaching to the run never finds a header
        without a live lease (and adopts a run being created); None when it exists."""
        ms = max(1, int(lease * 1000))
        keys = [self.keys.owner(run_id), self.keys.lease(run_id), self.keys.header(run_id)]
        epoch = int(await _CREATE(self.conn, keys, [ms, owner, header]))
        if epoch <= 0:
            return None
        self._durable.add(run_id)
        await self._list(run_id, ms)
        return epoch

    async def adopt(self, run_id: str, lease: float, owner: str) -> int | None:
        """Take a durable run whose driver's lease lapsed: the new epoch; None while the
        lease is live (of two adopters at once, one wins) or once the run has an outcome."""
        ms = max(1, int(lease * 1000))
        keys = [self.keys.owner(run_id), self.keys.lease(run_id), self.keys.outcome(run_id)]
        epoch = int(await _ADOPT(self.conn, keys, [ms, owner]))
        if epoch <= 0:
            return None
        self._durable.add(run_id)
        await self._list(run_id, ms)
        return epoch

    async def renew(self, run_id: str, epoch: int, lease: float, owner: str, *, durable: bool = False) -> bool:
        """Renew the lease; False once another epoch holds the run. A record Redis lost (a
        restart without persistence) is made again: a running run's record has no expiry."""
        ms = max(1, int(lease * 1000))
        durable = durable or run_id in self._durable
        keys = [self.keys.owner(run_id), self.keys.lease(run_id)]
        ours = bool(await _RENEW(self.conn, keys, [epoch, ms, owner, "1" if durable else "0"]))
        if ours and durable:
            await self._list(run_id, ms)
        return ours

    async def end(self, run_id: str, epoch: int, keep: int = ENDED_KEPT) -> None:
        await _END(self.conn, [self.keys.owner(run_id), self.keys.lease(run_id)], [epoch, keep])
        if run_id in self._durable:
            self._durable.discard(run_id)
            await self.conn.call("ZREM", self.keys.durable_index, run_id)

    async def let_go(self, run_id: str, epoch: int) -> None:
        """This process stops driving durable run `run_id` without ending it (it shuts
        down): its lease is dropped, so another process adopts the run at once."""
        self._durable.discard(run_id)
        if await _LET_GO(self.conn, [self.keys.owner(run_id), self.keys.lease(run_id)], [epoch]):
            await self.conn.call("ZADD", self.keys.durable_index, 0, run_id)

    async def orphans(self, limit: int = 50, offset: int = 0) -> list[str]:
        """Durable runs whose lease should have lapsed by this host's clock, `limit` from
        `offset` on (an adopter checks each for real: `adopt` takes only a run whose lease
        is gone)."""
        now = int(current_clock().wall() * 1000)
        found = await self.conn.call("ZRANGEBYSCORE", self.keys.durable_index, "-inf", now, "LIMIT", offset, limit)
        if not isinstance(found, list):
            return []
        return [r.decode() if isinstance(r, bytes) else str(r) for r in found if isinstance(r, bytes | str)]

    async def forget(self, run_id: str) -> None:
        """Drop `run_id` from the adopters' list (it ended, or its keys are gone)."""
        await self.conn.call("ZREM", self.keys.durable_index, run_id)

    async def _list(self, run_id: str, lease_ms: int) -> None:
        expires = int(current_clock().wall() * 1000) + lease_ms
        await self.conn.call("ZADD", self.keys.durable_index, expires, run_id)

    async def judge(self, runs: Collection[Incarnation], stream_of: Callable[[str], str]) -> set[Incarnation]:
        """Those of `runs` that have ended, by their owner records: no record, ended,
        another epoch, or a driver whose lease lapsed (then the run's keys are set to
        expire). Messages without an epoch (a driver before epochs) are judged by whether
        their reply stream exists."""
        runs = list(runs)
        commands: list[tuple[Any, ...]] = []
        for run in runs:
            if run.epoch:
                commands.append(("HMGET", self.keys.owner(run.run_id), "epoch", "state", "durable"))
                commands.append(("EXISTS", self.keys.lease(run.run_id)))
            else:
                commands.append(("EXISTS", stream_of(run.reply_to)))
        answers = await self.conn.pipeline(commands)
        for answer in answers:
            if isinstance(answer, Refused):
                raise answer
        ended: set[Incarnation] = set()
        orphans: list[Incarnation] = []
        at = 0
        for run in runs:
            if not run.epoch:
                if answers[at] == 0:
                    ended.add(run)
                at += 1
                continue
            record, leased = answers[at], answers[at + 1]
            at += 2
            verdict = _verdict(record, leased, run.epoch)
            if verdict is not None:
                ended.add(run)
                if verdict == "orphan":
                    orphans.append(run)
        if orphans:
            await self._expire(orphans, stream_of)
        return ended

    async def _expire(self, runs: list[Incarnation], stream_of: Callable[[str], str]) -> None:
        """The keys of runs whose driver died: kept a while for a look, then gone."""
        commands: list[tuple[Any, ...]] = []
        for run in runs:
            commands.append(("EXPIRE", stream_of(run.reply_to), ORPHAN_KEPT, "NX"))
            commands.append(("EXPIRE", self.keys.owner(run.run_id), ORPHAN_KEPT, "NX"))
        await self.conn.pipeline(commands)


def _verdict(record: Any, leased: Any, epoch: int) -> str | None:
    """None while the incarnation `epoch` runs; else why it has ended."""
    if not isinstance(record, list) or len(record) != 3 or record[0] is None:
        return "unknown"
    current, state, durable = record
    try:
        if int(current) != epoch:
            return "another incarnation"
    except (TypeError, ValueError):
        return "unknown"
    if state in (b"ended", "ended"):
        return "ended"
    if leased == 0 and durable not in (b"1", "1"):
        return "orphan"  # a durable run's tasks wait for the process that adopts it
    return None

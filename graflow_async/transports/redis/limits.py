"""The limits of a Redis namespace (SPEC 11), shared by every run and worker on it: one
Lua script per admission decision, made on the server's clock (`TIME`), so that workers
on hosts whose clocks differ count one window.

    <ns>:{limits}:c:<ident>    sorted set: the holders of a concurrency limit, scored by
                               when their hold lapses (ms); renewed by their worker's
                               heartbeats, so a dead worker's slots lapse with its lease
    <ns>:{limits}:r:<ident>    sorted set: the starts of a rate limit in its window (ms)
    <ns>:{limits}:freed        stream: idents that just had a slot given back (capped)

All of them share one hash tag, so that one script may touch them together. The rules
are `transports.admission`'s; a worker waiting for a slot reads ``freed`` (one blocking
read while any of its attempts waits) and, every `SWEEP` seconds, lets the best waiter
of each limit try again (slots of a worker that died lapse without a word).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from typing import Any

from graflow_async.define.limits import CONCURRENCY, Want
from graflow_async.exceptions import TransportError
from graflow_async.logs import LibraryLog
from graflow_async.transports.admission import RATE_SLACK
from graflow_async.transports.limits import Limits
from graflow_async.transports.redis import replies
from graflow_async.transports.redis.connection import RedisConnection
from graflow_async.transports.redis.lean import Interrupt
from graflow_async.transports.redis.scripts import Script

log = LibraryLog()
SWEEP = 0.5  # seconds between retries of every limit's best waiter
FREED_CAP = 10_000  # entries the freed stream keeps

_ACQUIRE = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder, lease = ARGV[1], tonumber(ARGV[2])
local wait = 0
for i, key in ipairs(KEYS) do
  local kind, amount, per = ARGV[3 * i], tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  if kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if not redis.call('ZSCORE', key, holder) and redis.call('ZCARD', key) >= amount then wait = -1 end
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - per)
    if redis.call('ZCARD', key) >= amount and wait >= 0 then
      local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      local at = tonumber(oldest[2]) + per - now
      if at > wait then wait = at end
    end
  end
end
if wait ~= 0 then return tostring(wait) end
for i, key in ipairs(KEYS) do
  if ARGV[3 * i] == 'c' then
    redis.call('ZADD', key, now + lease, holder)
    redis.call('PEXPIRE', key, 3 * lease)
  else
    local per = tonumber(ARGV[3 * i + 2])
    redis.call('ZADD', key, now, holder .. '@' .. t[1] .. '.' .. t[2])
    redis.call('PEXPIRE', key, math.ceil(per) + 1000)
  end
end
return '0'
"""
)
_RELEASE = Script(  # a limit that was full may have waiters on other workers: they hear of it
    """
local freed = {}
for i = 2, #KEYS do
  local full = redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[2 * i])
  if redis.call('ZREM', KEYS[i], ARGV[1]) == 1 then
    if full then redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'i', ARGV[2 * i - 1]) end
    freed[#freed + 1] = ARGV[2 * i - 1]
  end
end
return freed
"""
)
_RENEW = Script(
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if redis.call('ZADD', key, 'XX', 'CH', now + lease, ARGV[i + 1]) == 1 then
    redis.call('PEXPIRE', key, 3 * lease)
  end
end
return #KEYS
"""
)


class RedisLimits(Limits):
    """`Limits` kept on a Redis server (see the module docstring)."""

    sweep_every = SWEEP

    def __init__(self, conn: RedisConnection, namespace: str) -> None:
        super().__init__()
        self.conn = conn
        self.prefix = f"{namespace}:{{limits}}"
        self.freed_key = f"{self.prefix}:freed"
        self._watching: asyncio.Task[None] | None = None
        self._interrupt = Interrupt()

    def key(self, want: Want) -> str:
        return f"{self.prefix}:{want.kind}:{want.ident}"

    async def _try(self, holder: str, wants: Sequence[Want], lease: float) -> float | None:
        args: list[Any] = [holder, int(lease * 1000)]
        for want in wants:
            args += [want.kind, want.amount, int((want.per + RATE_SLACK) * 1000)]
        answer = await _ACQUIRE(self.conn, [self.key(w) for w in wants], args)
        wait = _number(answer)
        if wait == 0:
            return None
        return math.inf if wait < 0 else wait / 1000

    async def _give_back(self, holder: str, wants: Sequence[Want]) -> list[str]:
        held = [w for w in wants if w.kind == CONCURRENCY]
        if not held:
            return []
        keys = [self.freed_key, *(self.key(w) for w in held)]
        args: list[Any] = [holder, FREED_CAP]
        for w in held:
            args += [w.ident, w.amount]
        answer = await _RELEASE(self.conn, keys, args)
        return [_text(i) for i in answer] if isinstance(answer, list) else []

    async def renew(self, held: Sequence[tuple[str, Sequence[Want]]], lease: float) -> None:
        pairs = [(self.key(w), holder) for holder, wants in held for w in wants if w.kind == CONCURRENCY]
        if pairs:
            await _RENEW(self.conn, [k for k, _ in pairs], [int(lease * 1000), *(h for _, h in pairs)])

    # --- hearing of slots given back elsewhere --------------------------------------------------
    def _queued(self, waiter: Any) -> None:
        if self._watching is None or self._watching.done():
            self._watching = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        """While attempts wait: wake the best waiter of each limit another worker freed a
        slot of, and every `SWEEP` seconds of each limit (lapsed slots)."""
        last: bytes = b"$"
        swept = time.monotonic()
        while self.waiting_idents():
            try:
                found = await self.conn.blocking(
                    "XREAD",
                    "COUNT",
                    1000,
                    "BLOCK",
                    int(SWEEP * 1000),
                    "STREAMS",
                    self.freed_key,
                    last,
                    interrupt=self._interrupt,
                    parse=replies.streams,
                    block_ms=int(SWEEP * 1000),
                )
            except TransportError as exc:
                if self.conn.closed:
                    return
                log.warning("could not hear of freed limit slots", error=str(exc))
                await asyncio.sleep(SWEEP)
                found = {}
            entries = found.get(self.freed_key.encode(), []) if found else []
            if entries:
                last = entries[-1][0]
                self.wake(list(dict.fromkeys(_text(fields.get(b"i", b"")) for _, fields in entries)))
            if not entries or time.monotonic() - swept >= SWEEP:
                swept = time.monotonic()
                self.wake(self.waiting_idents())  # a sweep: lapsed slots free up without a word

    async def aclose(self) -> None:
        task, self._watching = self._watching, None
        if task is not None:
            self._interrupt.interrupt()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _number(answer: Any) -> float:
    try:
        return float(_text(answer))
    except ValueError:
        raise TransportError(f"the limits script answered {answer!r}") from None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

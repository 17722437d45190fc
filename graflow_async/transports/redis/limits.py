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
from collections.abc import Awaitable, Callable, Sequence
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

_ACQUIRE = Script(  # requests one after another: [n, (holder, lease ms, wants, (kind, amount, per ms) * wants) * n]
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out, a, k = {}, 2, 0
for r = 1, tonumber(ARGV[1]) do
  local holder, lease, n = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local wait = 0
  for i = 1, n do
    local key, kind = KEYS[k + i], ARGV[a + 3 * i - 3]
    local amount, per = tonumber(ARGV[a + 3 * i - 2]), tonumber(ARGV[a + 3 * i - 1])
    if kind == 'c' then
      if redis.call('ZCARD', key) >= amount then  -- full, unless some hold lapsed
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
        if not redis.call('ZSCORE', key, holder) and redis.call('ZCARD', key) >= amount then wait = -1 end
      end
    else
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now - per)
      if redis.call('ZCARD', key) >= amount and wait >= 0 then
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        local at = tonumber(oldest[2]) + per - now
        if at > wait then wait = at end
      end
    end
  end
  if wait == 0 then
    for i = 1, n do
      local key, per = KEYS[k + i], tonumber(ARGV[a + 3 * i - 1])
      if ARGV[a + 3 * i - 3] == 'c' then
        redis.call('ZADD', key, now + lease, holder)
        if redis.call('PTTL', key) < 2 * lease then redis.call('PEXPIRE', key, 3 * lease) end
      else
        redis.call('ZADD', key, now, holder .. '@' .. t[1] .. '.' .. t[2])
        redis.call('PEXPIRE', key, math.ceil(per) + 1000)
      end
    end
  end
  out[r] = tostring(wait)
  a, k = a + 3 * n, k + n
end
return out
"""
)
_RELEASE = Script(  # [cap, (holder, slots, (ident, amount) * slots) * n]; KEYS: the freed stream, then each slot's
    """
local freed, a, k = {}, 2, 1
while a <= #ARGV do
  local holder, n = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  for i = 1, n do
    local key, ident = KEYS[k + i], ARGV[a + 2 * i - 2]
    local full = redis.call('ZCARD', key) >= tonumber(ARGV[a + 2 * i - 1])
    if redis.call('ZREM', key, holder) == 1 then
      if full then redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'i', ident) end
      freed[#freed + 1] = ident
    end
  end
  a, k = a + 2 * n, k + n
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
        self._acquiring = _Turn(self._acquire_all)  # the admissions of one turn: one script
        self._releasing = _Turn(self._release_all)

    def key(self, want: Want) -> str:
        return f"{self.prefix}:{want.kind}:{want.ident}"

    async def _try(self, holder: str, wants: Sequence[Want], lease: float) -> float | None:
        wait: float = await self._acquiring.ask((holder, wants, lease))
        if wait == 0:
            return None
        return math.inf if wait < 0 else wait / 1000

    async def _give_back(self, holder: str, wants: Sequence[Want]) -> list[str]:
        held = tuple(w for w in wants if w.kind == CONCURRENCY)
        if not held:
            return []
        freed: list[str] = await self._releasing.ask((holder, held))
        return freed

    async def _acquire_all(self, requests: list[Any]) -> list[Any]:
        """The admissions asked in one turn, in one script: each one's wait (ms; 0: in)."""
        keys: list[str] = []
        args: list[Any] = [len(requests)]
        for holder, wants, lease in requests:
            keys += [self.key(w) for w in wants]
            args += [holder, int(lease * 1000), len(wants)]
            for want in wants:
                args += [want.kind, want.amount, int((want.per + RATE_SLACK) * 1000)]
        answer = await _ACQUIRE(self.conn, keys, args)
        if not isinstance(answer, list) or len(answer) != len(requests):
            raise TransportError(f"the limits script answered {answer!r:.200}")
        return [_number(a) for a in answer]

    async def _release_all(self, requests: list[Any]) -> list[Any]:
        """The releases asked in one turn, in one script: each one's freed idents."""
        keys, args = [self.freed_key], [FREED_CAP]
        for holder, held in requests:
            keys += [self.key(w) for w in held]
            args += [holder, len(held)]
            for w in held:
                args += [w.ident, w.amount]
        answer = await _RELEASE(self.conn, keys, args)
        freed = {_text(i) for i in answer} if isinstance(answer, list) else set()
        return [[w.ident for w in held if w.ident in freed] for _, held in requests]

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
        for turn in (self._acquiring, self._releasing):
            await turn.aclose()
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


class _Turn:
    """Requests made in one event-loop turn, sent together (`send`: the requests in, one
    answer each out) by a task of its own once the turn is over: a worker that starts
    a batch of tasks under limits asks for all their slots in one script."""

    def __init__(self, send: Callable[[list[Any]], Awaitable[list[Any]]]) -> None:
        self._send = send
        self._queued: list[tuple[Any, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def ask(self, request: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append((request, future))
        return await future

    async def aclose(self) -> None:
        """Wait for the requests being sent (a closing transport fails them)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.ensure_future(self._run(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _run(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            answers = await self._send([request for request, _ in batch])
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else TransportError("a limits request was interrupted")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)

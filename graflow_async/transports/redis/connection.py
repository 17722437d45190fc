"""The one way graflow-async speaks Redis: commands in, answers out, failures sorted.

`RedisConnection` sends raw commands and hands back raw answers (`replies` reads them).
It carries them on the lean path (`lean.py`: hiredis on asyncio protocols) when the URL
is plain TCP or a unix socket, and on redis-py's connections otherwise (TLS, RESP3, a
client given by the application), with the same rules on both (`errors.py`):

- the first contact fails fast: `TransportError` naming the URL after `connect_timeout`;
- after it, an outage (lost connection, a command unanswered for `op_timeout`, ``LOADING``,
  ``READONLY``...) is waited out with backoff and jitter, logged once when it starts and
  once when it ends; the command is sent again, never reported as sent before it was;
- a refusal (``OOM``, ``NOPERM``, ``WRONGTYPE``...) goes to the sender as `Refused`;
- a malformed answer drops its connection; the command is tried once more on a fresh
  one, then `MalformedReply` goes to the sender.

A command that was written may have taken effect even though its answer was lost (a
connection cut mid-answer): sending it again can apply it twice. Everything this
transport sends again is harmless twice (an XADD of a task makes a duplicate its run
drops; acks and deletes are idempotent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from graflow_async.clock import Backoff
from graflow_async.exceptions import TransportError
from graflow_async.logs import LibraryLog, Outage, as_text
from graflow_async.transports.redis.errors import (
    MalformedReply,
    Refused,
    ReplyError,
    Unavailable,
    is_retryable,
    refusal,
)
from graflow_async.transports.redis.lean import Interrupt, LeanRedis
from graflow_async.transports.redis.protocol import MAX_REPLY_BYTES
from graflow_async.transports.redis.redispy import describe, execute_on_pool, pack_with_hiredis, redact

T = TypeVar("T")
Command = tuple[Any, ...]
OP_TIMEOUT = 10.0  # seconds a command may go unanswered before its connection is taken for lost


class RedisConnection:
    """Commands to one Redis server (see the module's docstring). `client`, when given,
    carries every command and is not closed here."""

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        client: Redis | None = None,
        connect_timeout: float = 5.0,
        max_connections: int = 32,
        max_blocking: int = 8,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        op_timeout: float = OP_TIMEOUT,
    ) -> None:
        if client is not None and client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("a Redis client given to graflow-async must not decode responses (decode_responses=False)")
        self.url = redact(url) if client is None else describe(client)
        self.connect_timeout = connect_timeout
        self.op_timeout = op_timeout
        self._owned = client is None
        # A bounded pool that makes a caller wait for a free connection (redis-py's default
        # pool raises MaxConnectionsError, which would pass for an outage). No socket
        # timeout: redis-py would send through asyncio.wait_for, which on Python 3.11 can
        # swallow a cancellation; every command is bounded here instead. No retries of
        # its own: outages are waited out here.
        self.client: Any = client or Redis.from_pool(
            pack_with_hiredis(
                BlockingConnectionPool.from_url(
                    url,
                    max_connections=max_connections,
                    timeout=None,
                    socket_connect_timeout=connect_timeout,
                    socket_timeout=None,
                    health_check_interval=10,
                    retry=Retry(NoBackoff(), 0),
                )
            )
        )
        settings = LeanRedis.settings_for(url) if client is None else None
        self._lean = (
            None
            if settings is None
            else LeanRedis(
                settings,
                connect_timeout,
                max_blocking=max_blocking,
                max_reply_bytes=max_reply_bytes,
                url=self.url,
                op_timeout=op_timeout,
            )
        )
        self._connected = False
        self._closed = False
        self.outage = Outage(LibraryLog(), "redis")

    @property
    def hot_path(self) -> str:
        """ "lean" (hiredis on asyncio protocol connections) or "redis-py" (a client given, TLS or RESP3)."""
        return "redis-py" if self._lean is None else "lean"

    @property
    def closed(self) -> bool:
        return self._closed

    async def connect(self) -> None:
        """Reach Redis once; `TransportError` naming the URL if that takes too long. A server
        that answers it is loading or read-only counts as reached (that is waited out later)."""
        if self._connected:
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                [answer] = await self._send([("PING",)])
        except (Unavailable, TimeoutError, MalformedReply) as exc:
            raise TransportError(
                f"cannot reach Redis at {self.url} within {self.connect_timeout:g}s: {exc or type(exc).__name__}"
            ) from exc
        if isinstance(answer, ReplyError) and not is_retryable(str(answer)):
            raise refusal(str(answer), "PING", self.url)
        self._connected = True

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._lean is not None:
            await self._lean.aclose()
        if self._owned:
            await self.client.aclose()

    # --- commands ---------------------------------------------------------------------------
    async def call(self, *command: Any, parse: Callable[[Any], T] | None = None) -> Any:
        """The answer to `command` (read by `parse`, inside the attempt: a shape it refuses
        counts as a malformed answer); a refusal raised."""
        answers = await self.pipeline([command], parse=parse)
        if isinstance(answers[0], Refused):
            raise answers[0]
        return answers[0]

    async def pipeline(self, commands: Sequence[Command], *, parse: Callable[[Any], Any] | None = None) -> list[Any]:
        """The answers to `commands`, sent in one write: each answer in its place, a refusal
        as a `Refused` value. Commands answered with an outage reply (``LOADING``...) did not
        take effect: they alone are sent again, after a wait."""
        results: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))

        async def attempt() -> None:
            answers = await self._send([commands[i] for i in todo])
            again = []
            for i, answer in zip(todo, answers, strict=True):
                if isinstance(answer, ReplyError):
                    if is_retryable(str(answer)):
                        again.append(i)
                        continue
                    answer = refusal(str(answer), _name(commands[i]), self.url)
                elif parse is not None:
                    answer = parse(answer)
                results[i] = answer
            if again:
                todo[:] = again
                raise Unavailable(f"Redis answered {commands[again[0]][0]!r} with an outage reply")

        await self._attempts(_name(commands[0]) if commands else "pipeline", attempt)
        return results

    async def transaction(self, commands: Sequence[Command]) -> list[Any]:
        """`commands` in MULTI/EXEC: all take effect or none does. An outage reply to any of
        them is waited out and the whole sent again; a refusal of any raises `Refused` (none
        took effect). A command that fails as it runs (WRONGTYPE) is a `Refused` in place."""
        wrapped = [("MULTI",), *commands, ("EXEC",)]

        async def attempt() -> list[Any]:
            return self._settled(commands, await self._send(wrapped))

        return await self._attempts("MULTI/EXEC", attempt)

    async def blocking(
        self,
        *command: Any,
        interrupt: Interrupt | None = None,
        parse: Callable[[Any], T] | None = None,
        block_ms: int = 0,
    ) -> Any:
        """The answer to one blocking read (XREAD or XREADGROUP with BLOCK `block_ms`) on a
        connection of its own; None when `interrupt` cut it short (lean path only)."""

        async def attempt() -> Any:
            if self._lean is not None:
                answer = await self._lean.blocking(command, interrupt, block_ms / 1000)
            else:
                [answer] = await self._on_redis_py([command])
            if isinstance(answer, ReplyError):
                if is_retryable(str(answer)):
                    raise Unavailable(str(answer))
                raise refusal(str(answer), _name(command), self.url)
            return answer if parse is None else parse(answer)

        return await self._attempts(_name(command), attempt, timeout=block_ms / 1000 + self.op_timeout)

    async def once(self, *command: Any) -> Any:
        """One attempt at `command`, nothing waited out (a probe that must not block): its
        answer, or the `Refused` or `Unavailable` it met."""
        try:
            async with asyncio.timeout(self.op_timeout):
                [answer] = await self._send([command])
        except (Unavailable, TimeoutError, MalformedReply) as exc:
            return Unavailable(str(exc) or type(exc).__name__)
        if not isinstance(answer, ReplyError):
            return answer
        if is_retryable(str(answer)):
            return Unavailable(str(answer))
        return refusal(str(answer), _name(command), self.url)

    # --- the rules ----------------------------------------------------------------------------
    async def _attempts(self, what: str, attempt: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run `attempt` until it answers: outages waited out, one malformed answer forgiven.
        The lean path bounds each answer itself (`LeanConnection`'s watchdog); redis-py's
        commands are bounded here by `timeout` (default: `op_timeout`)."""
        if not self._connected:
            await self.connect()
        backoff: Backoff | None = None
        malformed = False
        while True:
            if self._closed:
                raise TransportError("the Redis transport is closed")
            try:
                if self._lean is not None:
                    result = await attempt()
                else:
                    result = await self._bounded(attempt, timeout or self.op_timeout)
            except (Unavailable, TimeoutError) as exc:
                if self._closed:  # closed under a pending command: not an outage
                    raise TransportError("the Redis transport is closed") from exc
                self.outage.begin(exc, url=self.url, op=what)
                backoff = backoff or Backoff(0.05, 2.0)
                await backoff.sleep()
                continue
            except MalformedReply as exc:
                if malformed or self._closed:
                    raise
                malformed = True  # that connection is dropped; once more on a fresh one
                LibraryLog().warning(
                    "a malformed answer from Redis; trying again on a new connection",
                    url=self.url,
                    op=what,
                    error=str(exc),
                )
                continue
            if self.outage.active:
                self.outage.end(url=self.url)
            return result

    @staticmethod
    async def _bounded(attempt: Callable[[], Awaitable[T]], timeout: float) -> T:
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        async with asyncio.timeout(timeout):
            result = await attempt()
        if task is not None and task.cancelling() > cancels:
            # a client given with a socket_timeout sends with asyncio.wait_for, which on
            # Python 3.11 drops a cancellation that lands as the send completes: honour it
            raise asyncio.CancelledError
        return result

    def _settled(self, commands: Sequence[Command], answers: list[Any]) -> list[Any]:
        """The results of a MULTI/EXEC exchange (see `transaction`)."""
        multi, queued, done = answers[0], answers[1:-1], answers[-1]
        errors = [(c, a) for c, a in zip(commands, queued, strict=True) if isinstance(a, ReplyError)]
        if isinstance(multi, ReplyError):  # not in a transaction: each command ran on its own
            if errors and all(is_retryable(str(a)) for _, a in errors) and len(errors) == len(commands):
                raise Unavailable(str(errors[0][1]))
            return [
                refusal(str(a), _name(c), self.url) if isinstance(a, ReplyError) else a
                for c, a in zip(commands, queued, strict=True)
            ]
        for command, error in errors:  # refused as queued: EXEC discarded them all
            if is_retryable(str(error)):
                raise Unavailable(str(error))
            raise refusal(str(error), _name(command), self.url)
        if isinstance(done, ReplyError):
            if is_retryable(str(done)):
                raise Unavailable(str(done))
            raise refusal(str(done), "EXEC", self.url)
        if not isinstance(done, list) or len(done) != len(commands):
            raise MalformedReply(f"EXEC answered {type(done).__name__}, not {len(commands)} answers")
        return [
            refusal(str(a), _name(c), self.url) if isinstance(a, ReplyError) else a
            for c, a in zip(commands, done, strict=True)
        ]

    async def _send(self, commands: Sequence[Command]) -> list[Any]:
        """Raw answers to `commands` in one write, error answers as `ReplyError` values."""
        if self._lean is not None:
            return await self._lean.execute(commands)
        return await self._on_redis_py(commands)

    async def _on_redis_py(self, commands: Sequence[Command]) -> list[Any]:
        try:
            return await execute_on_pool(self.client.connection_pool, commands)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise Unavailable(str(exc) or type(exc).__name__) from exc
        except (redis_errors.InvalidResponse, RecursionError) as exc:
            raise MalformedReply(f"Redis sent bytes that are not a reply: {type(exc).__name__}: {exc}") from exc


def _name(command: Command) -> str:
    return as_text(command[0]) if command else "?"
